package store_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// heldWriter opens a store whose writer can be held right after a group's
// journal record is written and before that group is published to mem: the
// groups queued meanwhile are staged over it.
type heldWriter struct {
	t       *testing.T
	s       *store.Store
	dir     string
	hold    atomic.Bool
	held    chan struct{}
	release chan struct{}
	over    chan struct{} // a group was staged over the held one
}

func openHeldWriter(t *testing.T, c *clock) *heldWriter {
	t.Helper()
	h := &heldWriter{t: t, dir: t.TempDir(), held: make(chan struct{}), release: make(chan struct{}), over: make(chan struct{}, 1)}
	cfg := store.WithHooks(testConfig(h.dir, c), store.Hooks{CheckpointTxSlots: 7, StagedOver: func() {
		select {
		case h.over <- struct{}{}:
		default:
		}
	}})
	cfg.ObserveCommit = func(int, time.Duration) {
		if h.hold.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
	}
	h.s = mustOpen(t, cfg)
	return h
}

// while runs first, holds the writer in its commit, starts each of then in
// a goroutine, waits until a group of them is staged over the held one, and
// lets the writer go; it returns once everything has answered. What was not
// in that group is staged over it in turn.
func (h *heldWriter) while(first func(), then ...func()) {
	h.hold.Store(true)
	var wg sync.WaitGroup
	wg.Go(first)
	<-h.held
	select {
	case <-h.over: // first's own group, staged over the one before it
	default:
	}
	for _, f := range then {
		wg.Go(f)
	}
	select {
	case <-h.over:
	case <-time.After(10 * time.Second):
		h.t.Error("nothing was staged over the held group")
	}
	close(h.release)
	wg.Wait()
}

// totalAfterCrash is name's total in a store opened on a copy of the data
// directory as it is on disk now: what a restart after a crash would serve.
func (h *heldWriter) totalAfterCrash(c *clock, name string) uint64 {
	r := mustOpen(h.t, testConfig(copyDir(h.t, h.dir), c))
	defer mustClose(h.t, r)
	return mustTotal(h.t, r, name)
}

// TestStore_StagedOverGroupBeingWritten: a group staged while the one before
// is being written reads that group's counters, not mem's older ones: no
// increment is lost when the two commits are published, the answers count
// the held group's increment, and a restart replays the same totals.
func TestStore_StagedOverGroupBeingWritten(t *testing.T) {
	c := newClock(t0)
	h := openHeldWriter(t, c)
	defer mustClose(t, h.s)
	now := c.Now()
	mustApply(t, h.s, inc("c", 1, now))

	var totals [2]uint64
	apply := func(i int, amount uint64) func() {
		return func() { totals[i] = mustApply(t, h.s, inc("c", amount, now)).Totals[0] }
	}
	h.while(func() { mustApply(t, h.s, inc("c", 10, now)) }, apply(0, 100), apply(1, 1000))
	if a, b := min(totals[0], totals[1]), max(totals[0], totals[1]); !(a == 111 && b == 1111) && !(a == 1011 && b == 1111) {
		t.Fatalf("answers %v: each must count the 11 committed before it and the other's amount at most once", totals)
	}
	if got := mustTotal(t, h.s, "c"); got != 1111 {
		t.Fatalf("total %d, want 1111", got)
	}
	// Every commit here holds this replica's increments, each under a seq
	// of its own.
	if st := h.s.Stats(); st.Seq != st.Commits {
		t.Fatalf("seq %d after %d commits", st.Seq, st.Commits)
	}
	points, _ := mustRange(t, h.s, "c", window.Query{From: now.Add(-time.Minute), To: now.Add(time.Minute), Step: time.Minute}, now)
	if sum(points) != 1111 {
		t.Fatalf("minute windows %v, want 1111 in all", points)
	}
	if got := h.totalAfterCrash(c, "c"); got != 1111 {
		t.Fatalf("total %d after a restart, want 1111", got)
	}
}

// TestStore_RecordStagedOverGroupBeingWritten: a key record merged in the
// group being written is known to the group staged after it, so the same
// record arriving again is not learned twice.
func TestStore_RecordStagedOverGroupBeingWritten(t *testing.T) {
	c := newClock(t0)
	h := openHeldWriter(t, c)
	defer mustClose(t, h.s)
	now := c.Now()
	r := crdt.KeyRecord{Key: "k", Origin: crdt.ReplicaID{7}, Seq: 1, Accepted: now.UnixNano(), Expires: now.Add(time.Hour).UnixNano(),
		Increments: []crdt.KeyedIncrement{{Name: "c", Amount: 1, TS: now.UnixNano()}}}
	merge := func() {
		if _, err := h.s.MergeChanges(context.Background(), store.Changes{Records: []crdt.KeyRecord{r}}); err != nil {
			t.Error(err)
		}
	}
	h.while(merge, merge)
	if got := h.s.Stats().KeyRecordsMerged; got != 1 {
		t.Fatalf("%d key records learned, want 1", got)
	}
}

// TestStore_CoverStagedOverGroupBeingWritten: a version vector raised by the
// group being written is where the next group's covers start from.
func TestStore_CoverStagedOverGroupBeingWritten(t *testing.T) {
	c := newClock(t0)
	h := openHeldWriter(t, c)
	defer mustClose(t, h.s)
	o := crdt.ReplicaID{7}
	cover := func(from, to uint64) func() {
		return func() {
			if _, err := h.s.MergeChanges(context.Background(), store.Changes{Covers: []store.Cover{{Origin: o, From: from, To: to}}}); err != nil {
				t.Error(err)
			}
		}
	}
	h.while(cover(0, 5), cover(5, 9))
	if got := h.s.Digest()[o]; got != 9 {
		t.Fatalf("version vector of %s: %d, want 9", o, got)
	}
}

// TestStore_CompStagedOverGroupBeingWritten: compensations staged in the
// group being written are part of the set the next group adds to, so both
// groups' compensations take effect.
func TestStore_CompStagedOverGroupBeingWritten(t *testing.T) {
	c := newClock(t0)
	h := openHeldWriter(t, c)
	defer mustClose(t, h.s)
	res := mustApply(t, h.s, inc("c", 10, c.Now()))
	if res.Totals[0] != 10 {
		t.Fatalf("total %d, want 10", res.Totals[0])
	}
	seq := h.s.Stats().Seq
	comp := func(key string, value uint64) func() {
		return func() {
			d := crdt.CompDelta{Slot: crdt.TotalSlot("c"), Comp: crdt.Comp{Loser: h.s.Replica(), Seq: seq, Key: crdt.KeyHash(key), Value: value}}
			if _, err := h.s.MergeChanges(context.Background(), store.Changes{Comps: []crdt.CompDelta{d}}); err != nil {
				t.Error(err)
			}
		}
	}
	h.while(comp("k1", 2), comp("k2", 3))
	if got := mustTotal(t, h.s, "c"); got != 5 {
		t.Fatalf("total %d after two compensations of 2 and 3, want 5", got)
	}
}

// TestStore_FailureRefusesTheGroupStagedOver: when the store fails while a
// group is being written (a checkpoint failed meanwhile), the group staged
// over it is answered with the refusal and never written; the group in
// flight, already in the journal, stands.
func TestStore_FailureRefusesTheGroupStagedOver(t *testing.T) {
	c := newClock(t0)
	h := openHeldWriter(t, c)
	defer h.s.Close(context.Background())
	now := c.Now()
	mustApply(t, h.s, inc("c", 1, now))

	h.hold.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { mustApply(t, h.s, inc("c", 10, now)) })
	<-h.held
	select {
	case <-h.over:
	default:
	}
	var errLate error
	wg.Go(func() {
		_, errLate = h.s.Apply(context.Background(), &store.Request{Increments: []store.Increment{inc("c", 100, now)}})
	})
	select {
	case <-h.over:
	case <-time.After(10 * time.Second):
		t.Fatal("nothing was staged over the held group")
	}
	boom := errors.New("checkpoint: disk full")
	h.s.Fail(boom)
	close(h.release)
	wg.Wait()

	if !errors.Is(errLate, store.ErrFailed) || !strings.Contains(errLate.Error(), boom.Error()) {
		t.Fatalf("the group staged over the held one: %v, want the refusal (ErrFailed: %v)", errLate, boom)
	}
	if got := mustTotal(t, h.s, "c"); got != 11 {
		t.Fatalf("total %d, want 11: the held group stands, the refused one is not counted", got)
	}
	if got := h.totalAfterCrash(c, "c"); got != 11 {
		t.Fatalf("total %d after a restart, want 11: the refused group reached the journal", got)
	}
}
