package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// replicas opens n stores sharing one clock, as n nodes of a cluster.
func replicas(tb testing.TB, c *clock, n int) []*store.Store {
	tb.Helper()
	out := make([]*store.Store, n)
	for i := range out {
		out[i] = mustOpen(tb, testConfig(tb.TempDir(), c))
	}
	return out
}

// meshSync runs anti-entropy between every ordered pair until nothing moves.
func meshSync(tb testing.TB, ss ...*store.Store) {
	tb.Helper()
	for range 2 {
		for _, a := range ss {
			for _, b := range ss {
				if a != b {
					syncAll(tb, a, b, 1<<10)
				}
			}
		}
	}
}

func minuteCount(tb testing.TB, s *store.Store, name string, at time.Time) uint64 {
	tb.Helper()
	start := at.Truncate(time.Minute)
	pts, _ := mustRange(tb, s, name, window.Query{From: start, To: start.Add(time.Minute), Step: time.Minute}, s.Now())
	return sum(pts)
}

// TestClusterIdem_RetryAfterReplicationIsReplay: once a key's record has
// reached another replica, a retry there applies nothing and answers the
// original response; another body under the key is refused there too.
func TestClusterIdem_RetryAfterReplicationIsReplay(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	first, err := a.Apply(ctx, idemReq("k", 1, inc("signups", 5, c.Now())))
	if err != nil {
		t.Fatal(err)
	}
	syncAll(t, a, b, 1<<10)
	c.Advance(time.Second)
	mustApply(t, b, inc("signups", 1, c.Now())) // b's total moves on
	again, err := b.Apply(ctx, idemReq("k", 1, inc("signups", 5, c.Now())))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || !bytes.Equal(again.Response, first.Response) {
		t.Fatalf("retry at b = replayed %v %q, want the original %q replayed", again.Replayed, again.Response, first.Response)
	}
	if _, err := b.Apply(ctx, idemReq("k", 2, inc("signups", 7, c.Now()))); !errors.Is(err, store.ErrIdempotencyMismatch) {
		t.Fatalf("another body at b = %v, want ErrIdempotencyMismatch", err)
	}
	meshSync(t, a, b)
	for i, s := range rs {
		if got := mustTotal(t, s, "signups"); got != 6 {
			t.Errorf("replica %d total = %d, want 6", i, got)
		}
	}
	if st := b.Stats(); st.Replays != 1 || st.KeyRecordsMerged != 1 {
		t.Errorf("b stats: replays %d, records merged %d; want 1 and 1", st.Replays, st.KeyRecordsMerged)
	}
}

// TestClusterIdem_DuplicateResolves: a retry that reaches b before the key's
// record does applies there too; once the records meet, every replica counts
// the request once, in the winner's windows, and keeps doing so across
// restarts and checkpoints.
func TestClusterIdem_DuplicateResolves(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 3)
	a, b, d := rs[0], rs[1], rs[2]
	ctx := context.Background()
	tsA := c.Now() // the client gave no ts: each node takes its own clock
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 4, tsA))); err != nil {
		t.Fatal(err)
	}
	c.Advance(90 * time.Second) // the retry lands in another minute
	tsB := c.Now()
	res, err := b.Apply(ctx, idemReq("k", 1, inc("x", 4, tsB)))
	if err != nil || res.Replayed {
		t.Fatalf("retry at b = %+v, %v; want applied (b has not heard of the key)", res, err)
	}
	mustApply(t, b, inc("x", 1, tsB))
	// Both copies' entries reach d as broadcasts, ahead of the records: d
	// counts the request twice for now.
	for _, from := range []*store.Store{a, b} {
		ch, err := from.EntriesSince(from.Replica(), 0, 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Merge(ctx, ch.Deltas, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := mustTotal(t, d, "x"); got != 9 {
		t.Fatalf("d before the records meet = %d, want 9 (the transient overcount)", got)
	}
	meshSync(t, rs...)
	check := func(when string) {
		t.Helper()
		for i, s := range rs {
			if got := mustTotal(t, s, "x"); got != 5 {
				t.Errorf("%s: replica %d total = %d, want 5", when, i, got)
			}
			if got := minuteCount(t, s, "x", tsA); got != 4 {
				t.Errorf("%s: replica %d minute of a = %d, want 4 (the winner's)", when, i, got)
			}
			if got := minuteCount(t, s, "x", tsB); got != 1 {
				t.Errorf("%s: replica %d minute of b = %d, want 1 (the loser's 4 compensated)", when, i, got)
			}
		}
	}
	check("converged")
	var resolved uint64
	for _, s := range rs {
		resolved += s.Stats().DuplicatesResolved
	}
	if resolved == 0 {
		t.Error("no replica counted a resolved duplicate")
	}
	// Replica detail: the loser's share is net of its compensation.
	reps, err := d.Replicas("x")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if want := map[crdt.ReplicaID]uint64{a.Replica(): 4, b.Replica(): 1}[r.ID]; r.Count != want {
			t.Errorf("replica %s count = %d, want %d", r.ID, r.Count, want)
		}
	}
	for _, s := range rs {
		if err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check("after checkpoints")
	// A retry anywhere now is a replay of the winner's response.
	for i, s := range rs {
		res, err := s.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now())))
		if err != nil || !res.Replayed {
			t.Errorf("retry at replica %d = %+v, %v; want a replay", i, res, err)
		}
	}
	// Restart d from disk: compensations persist.
	cfg := d.Config()
	mustClose(t, d)
	d = mustOpen(t, cfg)
	rs[2] = d
	check("after restart")
	list, _, err := d.List("", "", 10)
	if err != nil || len(list) != 1 || list[0].Total != 5 {
		t.Errorf("list = %+v, %v; want x with 5", list, err)
	}
}

// TestClusterIdem_LoserWiped: the replica that applied the losing copy loses
// its disk before the partition heals; its entries live on at a peer, which
// settles the duplicate on its own.
func TestClusterIdem_LoserWiped(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 3)
	a, b, d := rs[0], rs[1], rs[2]
	ctx := context.Background()
	ts := c.Now()
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 3, ts), inc("y", 2, ts))); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if _, err := b.Apply(ctx, idemReq("k", 1, inc("x", 3, ts), inc("y", 2, ts))); err != nil {
		t.Fatal(err)
	}
	syncAll(t, b, d, 1<<10) // b and d are on one side of a partition
	mustClose(t, b)         // and b's disk is gone
	meshSync(t, a, d)
	for _, s := range []*store.Store{a, d} {
		if x, y := mustTotal(t, s, "x"), mustTotal(t, s, "y"); x != 3 || y != 2 {
			t.Errorf("replica %s: x=%d y=%d, want 3 and 2 (the batch once)", s.Replica(), x, y)
		}
	}
	// A new replica that joins later learns the compensations with b's
	// entries, from either survivor.
	e := mustOpen(t, testConfig(t.TempDir(), c))
	syncAll(t, d, e, 1<<10)
	if x := mustTotal(t, e, "x"); x != 3 {
		t.Errorf("a new replica: x = %d, want 3", x)
	}
}

// TestClusterIdem_DifferentBodies: a key reused for two different requests
// at two nodes at once is two requests: both count, and a retry of either is
// a replay of its own response.
func TestClusterIdem_DifferentBodies(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	ra, err := a.Apply(ctx, idemReq("k", 1, inc("x", 3, c.Now())))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Apply(ctx, idemReq("k", 2, inc("x", 5, c.Now())))
	if err != nil {
		t.Fatal(err)
	}
	meshSync(t, a, b)
	for _, s := range rs {
		if got := mustTotal(t, s, "x"); got != 8 {
			t.Errorf("total = %d, want 8", got)
		}
		for fp, want := range map[byte][]byte{1: ra.Response, 2: rb.Response} {
			res, err := s.Apply(ctx, idemReq("k", fp, inc("x", 9, c.Now())))
			if err != nil || !res.Replayed || !bytes.Equal(res.Response, want) {
				t.Errorf("retry with body %d = %+v, %v; want a replay of %q", fp, res, err, want)
			}
		}
		if _, err := s.Apply(ctx, idemReq("k", 3, inc("x", 9, c.Now()))); !errors.Is(err, store.ErrIdempotencyMismatch) {
			t.Errorf("a third body = %v, want ErrIdempotencyMismatch", err)
		}
	}
}

// TestClusterIdem_TTL: records expire everywhere after the TTL; an expired
// record arriving late is dropped, and the key is then free again.
func TestClusterIdem_TTL(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	if err := a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	c.Advance(a.Config().IdempotencyTTL + time.Second)
	syncAll(t, a, b, 1<<10)
	// b may keep the expired record, to settle duplicates (it is retained a
	// TTL past its expiry), but never answers a retry with it.
	for _, s := range rs {
		if err := s.Expire(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := s.Apply(ctx, idemReq("k", 1, inc("x", 1, c.Now())))
		if err != nil || res.Replayed {
			t.Errorf("after the TTL: %+v, %v; want applied as new", res, err)
		}
	}
}

// TestClusterIdem_Property: random keyed requests at random replicas (each a
// client retrying at whatever node it reaches), random partial exchanges in
// any order and repeated, then a full exchange: every replica counts every
// request exactly once, in totals and in windows, and the converged state does
// not depend on the order.
func TestClusterIdem_Property(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := newClock(t0)
		n := rapid.IntRange(2, 4).Draw(rt, "replicas")
		rs := make([]*store.Store, n)
		for i := range rs {
			s, err := store.Open(testConfig(t.TempDir(), c))
			if err != nil {
				rt.Fatal(err)
			}
			defer s.Close(context.Background())
			rs[i] = s
		}
		ctx := context.Background()
		type request struct {
			name   string
			amount uint64
			ts     time.Time // zero: each node uses its own clock
		}
		var reqs []request
		wantTotal := map[string]uint64{}
		applied := map[int]bool{}
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for range steps {
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0, 1: // a keyed request, new or retried, at some replica
				k := rapid.IntRange(0, len(reqs)).Draw(rt, "key")
				if k == len(reqs) {
					r := request{name: rapid.SampledFrom([]string{"a", "b"}).Draw(rt, "name"), amount: rapid.Uint64Range(1, 9).Draw(rt, "amount")}
					if rapid.Bool().Draw(rt, "ts") {
						r.ts = c.Now()
					}
					reqs = append(reqs, r)
				}
				r := reqs[k]
				ts := r.ts
				if ts.IsZero() {
					ts = c.Now()
				}
				at := rs[rapid.IntRange(0, n-1).Draw(rt, "at")]
				if _, err := at.Apply(ctx, idemReq(fmt.Sprint("key", k), 1, inc(r.name, r.amount, ts))); err != nil {
					rt.Fatal(err)
				}
				if !applied[k] {
					applied[k] = true
					wantTotal[r.name] += r.amount
				}
			case 2: // a partial exchange: one chunk of one origin
				from, to := rs[rapid.IntRange(0, n-1).Draw(rt, "from")], rs[rapid.IntRange(0, n-1).Draw(rt, "to")]
				if from != to {
					syncSome(t, from, to, rapid.IntRange(40, 400).Draw(rt, "chunk"), 1)
				}
			case 3:
				c.Advance(time.Duration(rapid.IntRange(1, 120).Draw(rt, "advance")) * time.Second)
				if rapid.Bool().Draw(rt, "checkpoint") {
					if err := rs[rapid.IntRange(0, n-1).Draw(rt, "ckpt")].Checkpoint(ctx); err != nil {
						rt.Fatal(err)
					}
				}
			}
		}
		meshSync(t, rs...)
		for i, s := range rs {
			for _, name := range []string{"a", "b"} {
				if got := mustTotal(t, s, name); got != wantTotal[name] {
					rt.Fatalf("replica %d: total of %s = %d, want %d", i, name, got, wantTotal[name])
				}
				// Windows: every replica holds the same minutes, which add up
				// to the total.
				pts, _ := mustRange(t, s, name, window.Query{From: c.Now().Add(-3 * time.Hour), To: c.Now().Add(time.Minute), Step: time.Minute}, c.Now())
				if sum(pts) != wantTotal[name] {
					rt.Fatalf("replica %d: minutes of %s sum to %d, want %d", i, name, sum(pts), wantTotal[name])
				}
				ref, _ := mustRange(t, rs[0], name, window.Query{From: c.Now().Add(-3 * time.Hour), To: c.Now().Add(time.Minute), Step: time.Minute}, c.Now())
				for j := range pts {
					if pts[j] != ref[j] {
						rt.Fatalf("replica %d disagrees with replica 0 on a minute of %s: %d vs %d", i, name, pts[j], ref[j])
					}
				}
			}
		}
	})
}

// TestClusterIdem_CompensationWaitsForItsEntry: records travel faster than
// entries (their own broadcasts). A replica that settles a duplicate before
// the loser's entries arrive must not take the loser's amount back from a sum
// that does not hold it yet.
func TestClusterIdem_CompensationWaitsForItsEntry(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 3)
	a, b, d := rs[0], rs[1], rs[2]
	ctx := context.Background()
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now()))); err != nil {
		t.Fatal(err)
	}
	// b counted x once before: that older entry of b reaches d.
	mustApply(t, b, inc("x", 1, c.Now()))
	early, err := b.EntriesSince(b.Replica(), 0, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Merge(ctx, early.Deltas, nil); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if _, err := b.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now()))); err != nil {
		t.Fatal(err)
	}
	var recs []crdt.KeyRecord
	for _, from := range []*store.Store{a, b} {
		ch, err := from.EntriesSince(from.Replica(), 0, 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, ch.Records...)
		if from == a { // a's entries arrive; b's do not yet
			if _, err := d.Merge(ctx, ch.Deltas, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(recs) != 2 {
		t.Fatalf("chunks carried %d records, want 2", len(recs))
	}
	if _, err := d.MergeChanges(ctx, store.Changes{Records: recs}); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.DuplicatesResolved != 1 {
		t.Fatalf("d resolved %d duplicates, want 1", st.DuplicatesResolved)
	}
	if got := mustTotal(t, d, "x"); got != 5 {
		t.Fatalf("d total = %d, want 5: the compensation of b's copy ran ahead of b's entry", got)
	}
	meshSync(t, rs...)
	for _, s := range rs {
		if got := mustTotal(t, s, "x"); got != 5 {
			t.Errorf("converged total = %d, want 5", got)
		}
	}
}

// TestClusterIdem_SnapshotRestore: a node restored from a snapshot taken
// before a keyed request gets that request's record back from its peers with
// its own entries, so a retry there is a replay and nothing counts twice.
func TestClusterIdem_SnapshotRestore(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	if _, err := a.Apply(ctx, idemReq("before", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, store.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Snapshot(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := a.Apply(ctx, idemReq("after", 1, inc("x", 2, c.Now()))); err != nil {
		t.Fatal(err)
	}
	syncAll(t, a, b, 1<<10)
	mustClose(t, a) // a's disk is lost; the snapshot is what is left
	r := mustOpen(t, testConfig(dir, c))
	if !r.Restored() || r.Replica() != a.Replica() {
		t.Fatal("the snapshot did not open as a restored copy of a")
	}
	syncAll(t, b, r, 1<<10)
	for _, key := range []string{"before", "after"} {
		res, err := r.Apply(ctx, idemReq(key, 1, inc("x", 9, c.Now())))
		if err != nil || !res.Replayed {
			t.Errorf("retry of %q at the restored node = %+v, %v; want a replay", key, res, err)
		}
	}
	meshSync(t, r, b)
	for _, s := range []*store.Store{r, b} {
		if got := mustTotal(t, s, "x"); got != 3 {
			t.Errorf("total = %d, want 3", got)
		}
	}
}

// TestClusterIdem_Overflow: a keyed request refused for overflow leaves no
// record, at its node or elsewhere: a retry is refused again, not replayed.
func TestClusterIdem_Overflow(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	mustApply(t, a, inc("x", math.MaxUint64-1, c.Now()))
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 2, c.Now()))); !errors.Is(err, store.ErrOverflow) {
		t.Fatalf("overflowing keyed request = %v, want ErrOverflow", err)
	}
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 2, c.Now()))); !errors.Is(err, store.ErrOverflow) {
		t.Fatalf("its retry = %v, want ErrOverflow again", err)
	}
	syncAll(t, a, b, 1<<10)
	if st := b.Stats(); st.KeyRecordsMerged != 0 {
		t.Fatalf("b learned %d records of a refused request", st.KeyRecordsMerged)
	}
}

// TestClusterIdem_OldEventTime: copies of a request whose event time is near
// the edge of the minute retention: the later copy, accepted once the minute
// had expired, never raised it, and its compensation leaves it alone too.
func TestClusterIdem_OldEventTime(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	ts := c.Now().Add(-48*time.Hour + 30*time.Second) // the 1m window is kept 30 s more
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 6, ts))); err != nil {
		t.Fatal(err)
	}
	c.Advance(2 * time.Minute)
	if _, err := b.Apply(ctx, idemReq("k", 1, inc("x", 6, ts))); err != nil {
		t.Fatal(err)
	}
	meshSync(t, a, b)
	for _, s := range rs {
		if got := mustTotal(t, s, "x"); got != 6 {
			t.Errorf("total = %d, want 6", got)
		}
		hour := ts.Truncate(time.Hour)
		pts, _ := mustRange(t, s, "x", window.Query{From: hour, To: hour.Add(time.Hour), Step: time.Hour}, c.Now())
		if sum(pts) != 6 {
			t.Errorf("hour window = %d, want 6", sum(pts))
		}
	}
}

// TestClusterIdem_CompensationRaisedDuringCheckpoint: a compensation whose
// value rises (the set keeps the larger) while a checkpoint writes the
// older value reaches state.db at the next checkpoint, before the journal
// record that held it is trimmed.
func TestClusterIdem_CompensationRaisedDuringCheckpoint(t *testing.T) {
	c := newClock(t0)
	// The first checkpoint below, between its slot and metadata
	// transactions, merges the compensation again with a larger value.
	var s *store.Store
	var armed, fired atomic.Bool
	ctx := context.Background()
	loser := crdt.ReplicaID{7}
	slot := crdt.TotalSlot("x")
	comp := func(v uint64) store.Changes {
		return store.Changes{Comps: []crdt.CompDelta{{Slot: slot, Comp: crdt.Comp{Loser: loser, Seq: 1, Key: 9, Value: v}}}}
	}
	cfg := store.WithHooks(testConfig(t.TempDir(), c), store.Hooks{CheckpointTxSlots: 7, AfterSlotTx: func() {
		if armed.Load() && fired.CompareAndSwap(false, true) {
			if _, err := s.MergeChanges(ctx, comp(5)); err != nil {
				t.Error(err)
			}
		}
	}})
	s = mustOpen(t, cfg)
	if _, err := s.MergeChanges(ctx, store.Changes{Deltas: []crdt.Delta{{Slot: slot, Entry: crdt.Entry{Replica: loser, Value: 10, Seq: 2}}}, Comps: comp(1).Comps}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	for range 2 {
		if err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, s)
	s = mustOpen(t, cfg)
	if got := mustTotal(t, s, "x"); got != 5 {
		t.Fatalf("total after restart = %d, want 5 (10 less the raised compensation)", got)
	}
}
