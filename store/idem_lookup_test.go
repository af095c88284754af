package store_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/store"
)

// TestClusterIdem_RecordArrivesDuringLookup: the committer reads state.db
// for a key's records only when they may have moved there since the
// request's own lookup. A peer's record of the key that arrives after that
// lookup is still found, whether it is in mem or a checkpoint has already
// moved it to state.db: the local copy loses to it (the peer's was accepted
// first) and is compensated.
func TestClusterIdem_RecordArrivesDuringLookup(t *testing.T) {
	for _, tc := range []struct {
		name       string
		checkpoint bool // the record leaves mem before the committer looks
		wantSkip   uint64
	}{
		{name: "in mem", checkpoint: false, wantSkip: 1},
		{name: "checkpointed", checkpoint: true, wantSkip: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			var hook atomic.Pointer[func()]
			a := mustOpen(t, testConfig(t.TempDir(), c))
			b := mustOpen(t, withLookupHook(testConfig(t.TempDir(), c), &hook))
			rs := []*store.Store{a, b}
			ctx := context.Background()
			if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now()))); err != nil {
				t.Fatal(err)
			}
			ch, err := a.EntriesSince(a.Replica(), 0, 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.Records) != 1 {
				t.Fatalf("a's chunk holds %d records, want 1", len(ch.Records))
			}
			c.Advance(time.Second)
			hook.Store(ptr(func() {
				hook.Store(nil)
				// Only the record: its entries stay behind, as when a push
				// outruns anti-entropy.
				if _, err := b.MergeChanges(ctx, store.Changes{Records: ch.Records}); err != nil {
					t.Error(err)
				}
				if tc.checkpoint {
					if err := b.Checkpoint(ctx); err != nil {
						t.Error(err)
					}
				}
			}))
			res, err := b.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now())))
			if err != nil || res.Replayed {
				t.Fatalf("retry at b = %+v, %v; want applied (its lookup came first)", res, err)
			}
			if got := b.Stats().DuplicatesResolved; got != 1 {
				t.Errorf("b resolved %d duplicates, want 1", got)
			}
			if got := mustTotal(t, b, "x"); got != 0 {
				t.Errorf("b total = %d, want 0 (its copy compensated, a's entries not here yet)", got)
			}
			if got := b.StoredReadsSkipped(); got != tc.wantSkip {
				t.Errorf("committer skipped %d state.db reads, want %d", got, tc.wantSkip)
			}
			meshSync(t, a, b)
			for i, s := range rs {
				if got := mustTotal(t, s, "x"); got != 4 {
					t.Errorf("replica %d total = %d, want 4", i, got)
				}
			}
		})
	}
}

// TestStore_Idempotency_SkipsStoredReadAfterLookup: a keyed request whose
// lookup found nothing, with no checkpoint of key records since, is settled
// from mem alone; one that straddles such a checkpoint reads state.db.
func TestStore_Idempotency_SkipsStoredReadAfterLookup(t *testing.T) {
	c := newClock(t0)
	var hook atomic.Pointer[func()]
	s := mustOpen(t, withLookupHook(testConfig(t.TempDir(), c), &hook))
	ctx := context.Background()
	if _, err := s.Apply(ctx, idemReq("k1", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	if got := s.StoredReadsSkipped(); got != 1 {
		t.Fatalf("skipped %d reads, want 1", got)
	}
	hook.Store(ptr(func() {
		hook.Store(nil)
		if err := s.Checkpoint(ctx); err != nil { // moves k1's record to state.db
			t.Error(err)
		}
	}))
	if _, err := s.Apply(ctx, idemReq("k2", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	if got := s.StoredReadsSkipped(); got != 1 {
		t.Fatalf("skipped %d reads after a checkpoint of records, want still 1", got)
	}
	if _, err := s.Apply(ctx, idemReq("k1", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	if got := mustTotal(t, s, "x"); got != 2 {
		t.Errorf("total = %d, want 2 (the retry of k1 replayed)", got)
	}
}

// withLookupHook sets cfg's hook after a key's lookup to run what hook holds,
// if anything, when it runs.
func withLookupHook(cfg store.Config, hook *atomic.Pointer[func()]) store.Config {
	return store.WithHooks(cfg, store.Hooks{CheckpointTxSlots: 7, AfterIdemLookup: func() {
		if f := hook.Load(); f != nil {
			(*f)()
		}
	}})
}

func ptr[T any](v T) *T { return &v }
