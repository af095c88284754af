package store

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/window"
)

// Durability says when an increment is acknowledged.
type Durability int

const (
	// Fsync acknowledges an increment only after the commit holding it is
	// fsynced. Concurrent increments share one commit.
	Fsync Durability = iota
	// Async acknowledges an increment once it is staged in memory; commits
	// happen at least every Config.AsyncFlushInterval. A crash loses at most
	// that much. Reads, peers and idempotent retries see the increment once
	// it commits: uncommitted state is never served.
	Async
)

func (d Durability) String() string {
	if d == Async {
		return "async"
	}
	return "fsync"
}

// ParseDurability parses "fsync" or "async".
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "fsync":
		return Fsync, nil
	case "async":
		return Async, nil
	}
	return 0, fmt.Errorf("durability %q: want fsync or async", s)
}

// Config configures a Store.
type Config struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// Windows is the resolution set. A data directory remembers the set it was
	// created with and refuses to open with another.
	Windows window.Config
	// Durability: Fsync (default) or Async.
	Durability Durability
	// CommitLinger is the longest the committer waits for more requests when
	// the previous commit was shared by several (4 or more): fewer, fuller
	// commits cost less CPU per request, which under load lowers latency too.
	// Zero means 2ms; negative means never wait.
	CommitLinger time.Duration
	// AsyncFlushInterval is the longest an Async increment waits in memory
	// before its commit. Zero means 10ms.
	AsyncFlushInterval time.Duration
	// CheckpointInterval is the longest changed slots wait in mem and the
	// journal before they are folded into the main database. Zero means ten
	// seconds; negative turns the background checkpointer off, and the
	// triggers below with it (tests call Checkpoint by hand).
	CheckpointInterval time.Duration
	// CheckpointSlots starts a checkpoint early once this many slots are
	// waiting. Zero means 100,000.
	CheckpointSlots int
	// CheckpointDeltas starts a checkpoint early once the journal holds this
	// many entry changes since the last one: it bounds what a restart after
	// a crash replays (about a second's work: BenchmarkReplay measures some
	// 0.4 µs a change on 2 cores). Zero means 2,500,000.
	CheckpointDeltas int
	// MaxPendingSlots makes writers wait for a checkpoint once this many slots
	// are waiting, bounding memory. Zero means 4 × CheckpointSlots.
	MaxPendingSlots int
	// JanitorInterval is how often expired windows and idempotency keys are
	// deleted. Zero means one minute; negative turns it off (tests call
	// Expire by hand).
	JanitorInterval time.Duration
	// IdempotencyTTL is how long an idempotency key is remembered. Zero means
	// 24 hours.
	IdempotencyTTL time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of the replica ID of a new data directory. Nil means
	// crypto/rand.
	Rand io.Reader
	// RefuseLostJournal makes Open fail with a *DamagedError when journal.db
	// is missing or empty after an unclean shutdown, instead of treating the
	// directory as a restored snapshot: right for a node that no peer is
	// configured to give back what the journal held (abacus recover then
	// makes the loss explicit).
	RefuseLostJournal bool
	// Logger receives the store's logs. Nil discards them.
	Logger *slog.Logger
	// Sink, if set, receives what each commit makes known to other nodes:
	// the gossip layer's outbox (gossip.Outbox).
	Sink Sink
	// ObserveResolution, if set, is called when this store compensates a
	// losing copy of a keyed request, with the time since that copy was
	// accepted at its origin. Same rules as Sink's methods.
	ObserveResolution func(time.Duration)
	// ObserveCommit, if set, is called after each journal commit with the
	// requests and merges it carried and how long the commit took. Same rules
	// as Sink's methods.
	ObserveCommit func(ops int, took time.Duration)
	// ObserveCheckpoint, if set, is called after each checkpoint with the slots
	// it wrote and how long it took.
	ObserveCheckpoint func(slots int, took time.Duration)

	// hooks are set by tests only (export_test.go).
	hooks hooks
}

// hooks let tests reach inside a store. They are fields of its Config, not
// package variables, so that stores (and tests running in parallel) never
// see each other's.
type hooks struct {
	// afterSlotTx runs on the checkpointer after each committed slot
	// transaction of a checkpoint: the instant a crash would leave state.db
	// between them.
	afterSlotTx func()
	// checkpointTxSlots bounds the slots one checkpoint transaction writes:
	// one huge transaction makes bbolt hold every page it touches in memory
	// at once. Zero means 25,000.
	checkpointTxSlots int
	// cleanCheckMax is the size up to which state.db is checked at every
	// start (see inspect). Zero means 64 MiB.
	cleanCheckMax int64
	// journalRotateSize: a journal file above it is replaced by a new one
	// once a checkpoint leaves it without records. Zero means 4 MiB.
	journalRotateSize int64
	// stagedOver runs on the committer after it staged a group over the one
	// last handed to the writer (committed or not), before it waits for
	// that one.
	stagedOver func()
	// afterIdemLookup runs after idemBegin found no record of a key: the
	// instant before the request reaches the committer.
	afterIdemLookup func()
}

// Sink receives what each commit makes known to other nodes. Its methods are
// called after the commit, from the committing goroutine: every value they
// see is already on disk. They must not block, call back into the store, or
// keep the slices after returning.
type Sink interface {
	// Committed receives the entries of this replica the commit raised.
	// (Entries learned from peers are returned by Merge instead.)
	Committed([]crdt.Delta)
	// CommittedRecords receives the key records of this replica's own
	// keyed requests the commit stored.
	CommittedRecords([]crdt.KeyRecord)
}

// DefaultConfig returns the defaults for a data directory.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, Windows: window.DefaultConfig()}
}

func (c *Config) setDefaults() error {
	if c.Dir == "" {
		return fmt.Errorf("store: no data directory")
	}
	if err := c.Windows.Validate(); err != nil {
		return err
	}
	if c.CommitLinger == 0 {
		c.CommitLinger = 2 * time.Millisecond
	}
	if c.AsyncFlushInterval == 0 {
		c.AsyncFlushInterval = 10 * time.Millisecond
	}
	if c.CheckpointInterval == 0 {
		// Many increments to one slot between checkpoints cost one write:
		// at one second, single increments spread over 10,000 counters
		// spent a fifth of the node's CPU rewriting blocks. The two
		// triggers below bound mem and the journal meanwhile.
		c.CheckpointInterval = 10 * time.Second
	}
	if c.CheckpointDeltas == 0 {
		c.CheckpointDeltas = 2_500_000
	}
	if c.CheckpointSlots == 0 {
		c.CheckpointSlots = 100_000
	}
	if c.MaxPendingSlots == 0 {
		c.MaxPendingSlots = 4 * c.CheckpointSlots
	}
	if c.JanitorInterval == 0 {
		c.JanitorInterval = time.Minute
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.hooks.checkpointTxSlots == 0 {
		c.hooks.checkpointTxSlots = 25_000
	}
	if c.hooks.cleanCheckMax == 0 {
		c.hooks.cleanCheckMax = 64 << 20
	}
	if c.hooks.journalRotateSize == 0 {
		c.hooks.journalRotateSize = 4 << 20
	}
	return nil
}
