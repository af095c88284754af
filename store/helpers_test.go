package store_test

import (
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(s string) *clock {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &clock{t: t}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testConfig turns the background loops off: tests drive Checkpoint and the
// janitor by hand, so nothing depends on timing.
func testConfig(dir string, c *clock) store.Config {
	cfg := store.DefaultConfig(dir)
	cfg.Now = c.Now
	cfg.CheckpointInterval = -1
	cfg.JanitorInterval = -1
	// Checkpoints run in many small transactions, as large ones do in
	// production.
	return store.WithHooks(cfg, store.Hooks{CheckpointTxSlots: 7})
}

func mustOpen(tb testing.TB, cfg store.Config) *store.Store {
	tb.Helper()
	s, err := store.Open(cfg)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func mustClose(tb testing.TB, s *store.Store) {
	tb.Helper()
	if err := s.Close(context.Background()); err != nil {
		tb.Fatalf("close store: %v", err)
	}
}

func inc(name string, amount uint64, ts time.Time) store.Increment {
	return store.Increment{Name: name, Amount: amount, TS: ts}
}

func mustApply(tb testing.TB, s *store.Store, incs ...store.Increment) store.Result {
	tb.Helper()
	res, err := s.Apply(context.Background(), &store.Request{Increments: incs})
	if err != nil {
		tb.Fatalf("apply %+v: %v", incs, err)
	}
	return res
}

func mustTotal(tb testing.TB, s *store.Store, name string) uint64 {
	tb.Helper()
	v, err := s.Total(name)
	if err != nil {
		tb.Fatalf("total %s: %v", name, err)
	}
	return v
}

func mustRange(tb testing.TB, s *store.Store, name string, q window.Query, now time.Time) ([]uint64, window.Plan) {
	tb.Helper()
	p, err := s.Config().Windows.Plan(q, now)
	if err != nil {
		tb.Fatalf("plan: %v", err)
	}
	pts, err := s.Range(name, p)
	if err != nil {
		tb.Fatalf("range %s: %v", name, err)
	}
	return pts, p
}

func sum(v []uint64) (s uint64) {
	for _, x := range v {
		s += x
	}
	return s
}

// copyDir copies the data directory's files as they are on disk right now: what
// a machine that lost power at this instant would find on restart.
func copyDir(tb testing.TB, from string) string {
	tb.Helper()
	to := tb.TempDir()
	for _, name := range []string{store.StateFile, store.JournalFile} {
		src, err := os.Open(filepath.Join(from, name))
		if err != nil {
			tb.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, name))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			tb.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return to
}

// syncAll merges every entry a has and b lacks into b, the way anti-entropy
// does, in chunks of about chunkBytes.
func syncAll(tb testing.TB, from, to *store.Store, chunkBytes int) {
	tb.Helper()
	syncSome(tb, from, to, chunkBytes, -1)
}

// syncSome is syncAll interrupted after maxChunks chunks per origin (no limit
// if negative), as a catch-up cut short by a crash or a partition is.
func syncSome(tb testing.TB, from, to *store.Store, chunkBytes, maxChunks int) {
	tb.Helper()
	for origin, top := range from.Digest() {
		start := to.Digest()[origin]
		if start >= top {
			continue
		}
		// A chain covers (start, its smallest Top] once its Done chunk is
		// in; its other chunks carry no cover.
		after, chainTop := start, uint64(math.MaxUint64)
		for {
			c, err := from.ChainChunk(origin, start, after, chunkBytes)
			if err != nil {
				tb.Fatal(err)
			}
			chainTop = min(chainTop, c.Top)
			var covers []store.Cover
			if c.Done {
				covers = []store.Cover{{Origin: origin, From: start, To: chainTop}}
			}
			if _, err := to.MergeChanges(context.Background(), store.Changes{Deltas: c.Deltas, Covers: covers, Records: c.Records, Comps: c.Comps}); err != nil {
				tb.Fatal(err)
			}
			if c.Done || maxChunks == 1 {
				break
			}
			maxChunks--
			after = c.Next
		}
	}
}

// entrySink is a store.Sink that hands this replica's committed entries to a
// function and drops key records.
type entrySink func([]crdt.Delta)

func (f entrySink) Committed(ds []crdt.Delta)         { f(ds) }
func (f entrySink) CommittedRecords([]crdt.KeyRecord) {}
