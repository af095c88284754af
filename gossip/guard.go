package gossip

import (
	"bytes"
	"log/slog"
	"sync"
	"time"

	"github.com/abacus-counter/abacus/crdt"
)

// The key authenticates packets; these checks are the defense behind it.
// User messages are accepted only from current members: a message that
// names its sender (digest, pull, chunk, bye) must name a node memberlist
// told this node about, and a deltas or records message, which does not name
// its sender, may carry only entries and key records of replicas of such
// nodes (or of this one, while it recovers). Anything else is
// dropped, counted, and logged at a bounded rate.

// knownNode reports whether name is a member this node knows, other than itself.
func (g *Gossip) knownNode(name string) bool {
	if name == g.cfg.NodeName {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peers[name] != nil
}

// recovering reports whether this node is catching up on its own entries
// (see Recover): the only time it takes entries of its own replica.
func (g *Gossip) recovering() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover.active
}

// checkOrigin says why entries of origin must be dropped, or "". This node
// holds every entry of its own replica it ever committed, unless it is
// recovering: one of its own from a peer is then news of nothing, and one
// forged (any value, any seq) could raise its counts for good or push an
// entry to the top of uint64, where every later increment overflows.
func (g *Gossip) checkOrigin(origin crdt.ReplicaID) string {
	if origin == g.store.Replica() {
		if g.recovering() {
			return ""
		}
		return "entries of this node's own replica, which only this node raises"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.peers {
		if p.meta.replica == origin {
			return ""
		}
	}
	return "entries of a replica of no member"
}

// dropEchoes removes from m the entries of this node's own replica, unless
// it is recovering, and reports whether nothing is left. Peers relay what they
// learn to random members, this node among them, so its own entries come
// back to it in a healthy cluster: they are news of nothing, dropped without
// a log line and counted apart (own_replica) from the messages checkDeltas
// refuses. A forged message of this replica's entries ends here too, harmless.
func (g *Gossip) dropEchoes(m *deltasMsg) bool {
	self := g.store.Replica()
	own := false
	for _, grp := range m.groups {
		own = own || grp.origin == self
	}
	if !own || g.recovering() { // recovering takes mu: only when it matters
		return false
	}
	kept := m.groups[:0]
	for _, grp := range m.groups {
		if grp.origin != self {
			kept = append(kept, grp)
		}
	}
	if len(kept) == len(m.groups) {
		return false
	}
	m.groups = kept
	if len(kept) > 0 {
		return false
	}
	g.stats.echoes.Add(1)
	return true
}

// checkDeltas is checkOrigin for every origin of a deltas message.
func (g *Gossip) checkDeltas(m *deltasMsg) string {
	for _, grp := range m.groups {
		if why := g.checkOrigin(grp.origin); why != "" {
			return why
		}
	}
	return ""
}

// checkRecords is checkOrigin for the origin of every key record of a
// records message, which does not name its sender either.
func (g *Gossip) checkRecords(m *recordsMsg) string {
	for i := range m.records {
		if why := g.checkOrigin(m.records[i].Origin); why != "" {
			return why
		}
	}
	return ""
}

// reject drops a message that did not pass the checks above.
func (g *Gossip) reject(t msgType, why string) {
	g.stats.rejected.Add(1)
	if g.dropLog.allow() {
		g.log.Warn("dropping gossip message", "type", t.String(), "reason", why)
	}
}

// malformed drops a message that does not decode: counted as a decode
// error, logged at the same bounded rate.
func (g *Gossip) malformed(t msgType) {
	g.stats.decodeErrors.Add(1)
	if g.dropLog.allow() {
		g.log.Warn("dropping gossip message", "type", t.String(), "reason", "malformed")
	}
}

// rateLimit lets through at most n log lines per period and then reports,
// once the period is over, how many it held back.
type rateLimit struct {
	log    *slog.Logger
	n      int
	period time.Duration

	mu         sync.Mutex
	start      time.Time
	used, held int
}

func newRateLimit(log *slog.Logger, n int, period time.Duration) *rateLimit {
	return &rateLimit{log: log, n: n, period: period}
}

func (r *rateLimit) allow() bool {
	if r == nil {
		return true // a Gossip built by hand in a test
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.start) >= r.period {
		if r.held > 0 {
			r.log.Warn("held back log lines about dropped gossip packets", "lines", r.held, "period", r.period)
		}
		r.start, r.used, r.held = now, 0, 0
	}
	if r.used < r.n {
		r.used++
		return true
	}
	r.held++
	return false
}

// packetDrops are the memberlist log lines that say it dropped a packet or
// a stream it could not accept: they are counted as dropped, and logged
// at a bounded rate.
var packetDrops = [][]byte{
	[]byte("Decrypt packet failed"), []byte("unacceptable label"), []byte("double packet label"),
	[]byte("double stream label"), []byte("missing message type"), []byte("not supported"),
	[]byte("Failed to decode"), []byte("invalid checksum"), []byte("Failed to decompress"),
	[]byte("Failed to receive"), []byte("stream label header"), []byte("No installed keys could decrypt"),
	[]byte("Received invalid msgType"), []byte("truncated messages"), []byte("Failed to read remote state"),
	[]byte("Blocked alive"), []byte("Got ping for unexpected node"),
}

func isPacketDrop(line []byte) bool {
	for _, p := range packetDrops {
		if bytes.Contains(line, p) {
			return true
		}
	}
	return false
}
