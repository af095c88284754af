package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/crdt"
)

// Store is what the gossip layer needs from the node's store.
type Store interface {
	Replica() crdt.ReplicaID
	// Digest is the version vector: for each origin, the seq up to which
	// every change is held. It must not block or do I/O: delegates call it.
	Digest() map[crdt.ReplicaID]uint64
	// ChainChunk returns about maxBytes of a chain of origin's entries with
	// a seq above base: the chunk after cursor after (store.ChainChunk).
	ChainChunk(origin crdt.ReplicaID, base, after uint64, maxBytes int) (Chunk, error)
	// Merge applies entries, covers, key records and compensations durably,
	// in one commit, and returns the entries it learned.
	Merge(ctx context.Context, c Changes) ([]crdt.Delta, error)
	// SetReplicaInfo records where a replica lives. It must not block.
	SetReplicaInfo(id crdt.ReplicaID, node, dc string)
	// ReplicaInfo says where a replica lives, if known.
	ReplicaInfo(id crdt.ReplicaID) (node, dc string, ok bool)
}

// Chunk is a piece of one origin's entries (see store.Chunk).
type Chunk struct {
	After, Next, Top uint64
	Deltas           []crdt.Delta
	Done             bool
	Records          []crdt.KeyRecord
	Comps            []crdt.CompDelta
}

// Changes is what a merge carries (see store.Changes).
type Changes struct {
	Deltas  []crdt.Delta
	Covers  []Cover
	Records []crdt.KeyRecord
	Comps   []crdt.CompDelta
}

// Cover claims deltas hold every change of Origin with a seq in (From, To].
type Cover struct {
	Origin   crdt.ReplicaID
	From, To uint64
}

// Profile names a set of memberlist timings.
type Profile string

const (
	// LAN: memberlist's LAN defaults (gossip every 200ms, probe every 1s).
	LAN Profile = "lan"
	// WAN: memberlist's WAN defaults, for links across oceans.
	WAN Profile = "wan"
	// Local: memberlist's loopback defaults (gossip every 100ms).
	Local Profile = "local"
)

// ParseProfile parses "lan", "wan" or "local".
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case LAN, WAN, Local:
		return p, nil
	}
	return "", fmt.Errorf("gossip profile %q: want lan, wan or local", s)
}

// defaultOutboxLimit is Config.OutboxLimit's default.
const defaultOutboxLimit = 100_000

// Config configures a node's gossip.
type Config struct {
	// NodeName is this node's name; unique in the cluster.
	NodeName string
	// BindAddr is host:port for gossip, UDP and TCP; port 0 picks one.
	BindAddr string
	// AdvertiseAddr is host:port peers should use; empty means BindAddr
	// (or, when binding 0.0.0.0, a private address memberlist picks).
	AdvertiseAddr string
	// Join lists host:port addresses of nodes to join; retried until one
	// answers, and again whenever members go missing.
	Join []string
	// Profile picks memberlist's timings.
	Profile Profile
	// Keys, if any, encrypt and authenticate every gossip packet and stream
	// with AES-GCM (each 16, 24 or 32 bytes). The first key encrypts; all of
	// them decrypt, which is how a key is rotated without downtime.
	Keys [][]byte
	// ClusterName separates clusters: it labels every packet and is checked
	// in node metadata. Nodes of another cluster are refused.
	ClusterName string
	// DC is this node's datacenter.
	DC string
	// Windows is the canonical window configuration; a node with another is
	// refused.
	Windows string
	// HTTPAddr is this node's API address, published to peers.
	HTTPAddr string

	// DigestInterval is how often this node sends its version vector to every
	// peer and pulls what it lacks. Zero means the profile's: 1s LAN, 3s
	// WAN, 500ms local.
	DigestInterval time.Duration
	// RejoinInterval is how often a node missing members tries to rejoin
	// them and its Join addresses. Zero means the profile's: 10s LAN, 30s
	// WAN, 2s local.
	RejoinInterval time.Duration
	// ChunkBytes bounds one catch-up chunk. Zero means 256 KiB.
	ChunkBytes int
	// PullTimeout abandons a catch-up that made no progress for this long
	// (a catch-up from a peer that is no longer alive is abandoned at once).
	// Zero means the profile's: 5s LAN, 10s WAN, 2s local.
	PullTimeout time.Duration
	// OutboxLimit bounds the entries waiting to be broadcast, and the key
	// records waiting to be pushed; past it the oldest are dropped
	// (anti-entropy delivers them). Zero means 100,000.
	OutboxLimit int
	// Outbox is where the store leaves this node's commits (see Outbox): the
	// store's Config.Sink. Nil makes one of OutboxLimit; OutboxLimit does
	// not apply to one given.
	Outbox *Outbox
	// RecordsInterval is how often this node pushes its fresh key records
	// to every peer over a stream. Zero means 50ms.
	RecordsInterval time.Duration

	// Logger receives this package's logs and memberlist's. Nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// WrapTransport, if set, wraps the network transport (tests inject
	// faults with it).
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
	// Tune, if set, adjusts memberlist's configuration last (tests shorten
	// timings with it).
	Tune func(*memberlist.Config)
}

func (c *Config) setDefaults() error {
	if c.NodeName == "" {
		return fmt.Errorf("gossip: no node name")
	}
	if c.Profile == "" {
		c.Profile = LAN
	}
	if _, err := ParseProfile(string(c.Profile)); err != nil {
		return err
	}
	for _, k := range c.Keys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("gossip: key of %d bytes; want 16, 24 or 32", n)
		}
	}
	def := map[Profile][3]time.Duration{
		LAN:   {time.Second, 10 * time.Second, 5 * time.Second},
		WAN:   {3 * time.Second, 30 * time.Second, 10 * time.Second},
		Local: {500 * time.Millisecond, 2 * time.Second, 2 * time.Second},
	}[c.Profile]
	if c.DigestInterval == 0 {
		c.DigestInterval = def[0]
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = def[1]
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = 256 << 10
	}
	if c.PullTimeout == 0 {
		c.PullTimeout = def[2]
	}
	if c.OutboxLimit == 0 {
		c.OutboxLimit = defaultOutboxLimit
	}
	if c.RecordsInterval <= 0 {
		c.RecordsInterval = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func (c *Config) memberlist() *memberlist.Config {
	switch c.Profile {
	case WAN:
		return memberlist.DefaultWANConfig()
	case Local:
		return memberlist.DefaultLocalConfig()
	}
	return memberlist.DefaultLANConfig()
}
