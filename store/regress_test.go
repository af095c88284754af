package store_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
)

// waitFor polls cond, yielding, until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 10_000_000 {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// A batch reads slots that are not in mem from one state.db read
// transaction. A checkpoint that writes a slot and evicts it from mem while
// the batch is being staged must not make a later request of the same batch
// read the slot's value from before that checkpoint: the increment would be
// added to a stale value and the acknowledged ones in between lost.
func TestStagingRereadsSlotsEvictedDuringBatch(t *testing.T) {
	c := newClock(t0)
	dir := t.TempDir()
	s := mustOpen(t, testConfig(dir, c))
	ctx := context.Background()
	now := c.Now()
	// Grow state.db until bbolt has just doubled it, leaving free pages: the
	// checkpoint below must not need a remap, which would wait for the
	// batch's open read transaction.
	var last int64
	for i := 0; ; i++ {
		mustApply(t, s, inc(fmt.Sprintf("pad%05d", i), 1, now))
		if err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, store.StateFile))
		if err != nil {
			t.Fatal(err)
		}
		if last != 0 && fi.Size() > last && fi.Size() >= 1<<18 {
			break
		}
		last = fi.Size()
	}
	mustApply(t, s, inc("hot", 100, now))
	if err := s.Checkpoint(ctx); err != nil { // state.db: hot = 100
		t.Fatal(err)
	}
	mustApply(t, s, inc("hot", 5, now)) // mem: hot = 105

	// Hold the committer in a first batch while A and B queue behind it, so
	// that they are staged together.
	blocked, hold := make(chan struct{}), make(chan struct{})
	go s.Apply(ctx, &store.Request{Increments: []store.Increment{inc("blocker", 1, now)}, IdempotencyKey: "k0",
		Render: func(store.Result) []byte { close(blocked); <-hold; return nil }})
	<-blocked
	inA, resumeA := make(chan struct{}), make(chan struct{})
	errA := make(chan error, 1)
	go func() {
		// A reads the new counter "fresh" from state.db: the batch's read
		// transaction opens.
		_, err := s.Apply(ctx, &store.Request{Increments: []store.Increment{inc("fresh", 1, now)}, IdempotencyKey: "kA",
			Render: func(store.Result) []byte { close(inA); <-resumeA; return nil }})
		errA <- err
	}()
	waitFor(t, "A to queue", func() bool { return s.QueuedOps() == 1 })
	resB := make(chan store.Result, 1)
	errB := make(chan error, 1)
	go func() {
		r, err := s.Apply(ctx, &store.Request{Increments: []store.Increment{inc("hot", 1, now)}})
		resB <- r
		errB <- err
	}()
	waitFor(t, "B to queue", func() bool { return s.QueuedOps() == 2 })
	close(hold)
	<-inA
	// hot = 105 goes to state.db and leaves mem while A's batch is staged.
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	close(resumeA)
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	if err := <-errB; err != nil {
		t.Fatal(err)
	}
	if got := (<-resB).Totals[0]; got != 106 {
		t.Errorf("B's response: total(hot) = %d, want 106", got)
	}
	mustClose(t, s)
	s2 := mustOpen(t, testConfig(dir, c))
	defer mustClose(t, s2)
	if got := mustTotal(t, s2, "hot"); got != 106 {
		t.Fatalf("after restart total(hot) = %d, want 106", got)
	}
}

// A crash between a checkpoint's slot transaction and its metadata
// transaction must leave a state.db that opens: counters written name
// replicas by local index, so the index goes in the same transaction.
func TestCrashBetweenCheckpointTransactions(t *testing.T) {
	c := newClock(t0)
	dir := t.TempDir()
	var crashed string
	var armed atomic.Bool
	cfg := store.WithHooks(testConfig(dir, c), store.Hooks{CheckpointTxSlots: 7, AfterSlotTx: func() {
		if armed.Load() && crashed == "" {
			crashed = copyDir(t, dir) // the power goes out here
		}
	}})
	s := mustOpen(t, cfg)
	ctx := context.Background()
	now := c.Now()
	mustApply(t, s, inc("x", 3, now))
	peer := crdt.ReplicaID{7}
	if _, err := s.Merge(ctx, []crdt.Delta{{Slot: crdt.TotalSlot("x"), Entry: crdt.Entry{Replica: peer, Value: 5, Seq: 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	armed.Store(false)
	mustClose(t, s)
	if crashed == "" {
		t.Fatal("checkpoint wrote no slot transaction")
	}
	s2 := mustOpen(t, testConfig(crashed, c))
	defer mustClose(t, s2)
	if got := mustTotal(t, s2, "x"); got != 8 {
		t.Fatalf("total = %d, want 8", got)
	}
	reps, err := s2.Replicas("x")
	if err != nil {
		t.Fatalf("replicas: %v", err)
	}
	if len(reps) != 2 {
		t.Fatalf("replicas of x: %+v, want 2", reps)
	}
}

// Async answers before the commit. Anti-entropy must not serve the answered
// but uncommitted entries: after a crash the node would number new commits
// with seqs a peer's version vector already covers, and the peer would never
// pull them.
func TestAsyncServesNothingUncommitted(t *testing.T) {
	c := newClock(t0)
	now := c.Now()
	dir := t.TempDir()
	cfg := testConfig(dir, c)
	cfg.Durability = store.Async
	cfg.AsyncFlushInterval = time.Hour
	n := mustOpen(t, cfg)
	peer := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, peer)

	mustApply(t, n, inc("a", 1, now)) // answered, not committed
	ch, err := n.EntriesSince(n.Replica(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Deltas) != 0 || ch.Top != 0 {
		t.Fatalf("before the commit, anti-entropy serves %d entries, claiming seq %d", len(ch.Deltas), ch.Top)
	}
	syncAll(t, n, peer, 1<<20)
	crashed := copyDir(t, dir) // kill -9 before the commit: "a" is lost
	mustClose(t, n)
	n2 := mustOpen(t, testConfig(crashed, c))
	defer mustClose(t, n2)
	mustApply(t, n2, inc("b", 1, now))
	for range 2 {
		syncAll(t, n2, peer, 1<<20)
		syncAll(t, peer, n2, 1<<20)
	}
	for _, name := range []string{"a", "b"} {
		if x, y := mustTotal(t, n2, name), mustTotal(t, peer, name); x != y {
			t.Errorf("%s diverges after anti-entropy: node %d, peer %d", name, x, y)
		}
	}
	if got := mustTotal(t, peer, "b"); got != 1 {
		t.Errorf("peer's total(b) = %d, want 1", got)
	}
}

// Async: a request answered but lost in a crash may be retried with its
// idempotency key; the retry must count once, not twice, even when a peer
// synced with the node before the crash.
func TestAsyncRetryAfterCrashCountsOnce(t *testing.T) {
	c := newClock(t0)
	ctx := context.Background()
	now := c.Now()
	dir := t.TempDir()
	cfg := testConfig(dir, c)
	cfg.Durability = store.Async
	cfg.AsyncFlushInterval = time.Hour
	n := mustOpen(t, cfg)
	peer := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, peer)
	req := func() *store.Request {
		return &store.Request{Increments: []store.Increment{inc("k", 1, now)}, IdempotencyKey: "retry-me"}
	}
	if _, err := n.Apply(ctx, req()); err != nil { // answered; the answer is lost
		t.Fatal(err)
	}
	syncAll(t, n, peer, 1<<20)
	crashed := copyDir(t, dir)
	mustClose(t, n)
	cfg.Dir = crashed
	n2 := mustOpen(t, cfg)
	defer mustClose(t, n2)
	syncAll(t, peer, n2, 1<<20)
	if _, err := n2.Apply(ctx, req()); err != nil { // the client retries
		t.Fatal(err)
	}
	if err := n2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustTotal(t, n2, "k"); got != 1 {
		t.Fatalf("one request with one idempotency key counted %d times", got)
	}
}

// Async: a retry that arrives while the first request is answered but not
// yet committed waits for the commit and gets the first answer.
func TestAsyncRetryBeforeCommitIsReplayed(t *testing.T) {
	c := newClock(t0)
	ctx := context.Background()
	now := c.Now()
	cfg := testConfig(t.TempDir(), c)
	cfg.Durability = store.Async
	cfg.AsyncFlushInterval = 20 * time.Millisecond
	n := mustOpen(t, cfg)
	defer mustClose(t, n)
	req := &store.Request{Increments: []store.Increment{inc("k", 1, now)}, IdempotencyKey: "twice",
		Render: func(r store.Result) []byte { return []byte(fmt.Sprint(r.Totals[0])) }}
	if _, err := n.Apply(ctx, req); err != nil {
		t.Fatal(err)
	}
	res, err := n.Apply(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Replayed || string(res.Response) != "1" {
		t.Fatalf("retry: replayed %v, response %q; want the first answer replayed", res.Replayed, res.Response)
	}
	if got := mustTotal(t, n, "k"); got != 1 {
		t.Fatalf("total = %d, want 1", got)
	}
}

// A chain of chunks cut short must not raise the receiver's version vector:
// a slot whose change lies in the first chunk's range but whose entry has
// since moved past it is in no chunk yet, and a vector claiming it would stop
// every other peer from sending it.
func TestCutChainClaimsNothing(t *testing.T) {
	c := newClock(t0)
	now := c.Now()
	a := mustOpen(t, testConfig(t.TempDir(), c))
	b := mustOpen(t, testConfig(t.TempDir(), c))
	r := mustOpen(t, testConfig(t.TempDir(), c))
	for _, s := range []*store.Store{a, b, r} {
		defer mustClose(t, s)
	}
	mustApply(t, a, inc("k", 1, now)) // seq 1
	mustApply(t, a, inc("x", 1, now)) // seq 2
	mustApply(t, a, inc("y", 1, now)) // seq 3
	syncAll(t, a, b, 1<<20)           // b: k=1, x, y; vector[a] = 3
	mustApply(t, a, inc("k", 1, now)) // seq 4: k's seq-1 change is superseded at a
	// A chunk cut by its size says so (not Done, Next short of a's seq): that
	// is what keeps a receiver from claiming the chain.
	if c, err := a.EntriesSince(a.Replica(), 0, 1); err != nil || c.Done || c.Next >= 4 || c.Top != 4 {
		t.Fatalf("first 1-byte chunk of a's entries: done %v, next %d, top %d (%v); want not done, next < 4, top 4", c.Done, c.Next, c.Top, err)
	}
	// r pulls from a one small chunk at a time; it gets one, and a is gone.
	syncSome(t, a, r, 1, 1)
	if got := r.Digest()[a.Replica()]; got != 0 {
		t.Fatalf("after one chunk of a cut chain, r's vector claims a's changes up to %d", got)
	}
	for range 3 {
		syncAll(t, b, r, 1<<20)
		syncAll(t, r, b, 1<<20)
	}
	if kb, kr := mustTotal(t, b, "k"), mustTotal(t, r, "k"); kb != 1 || kr != 1 {
		t.Fatalf("survivors: k = %d at b, %d at r; want 1 at both", kb, kr)
	}
}

// A chain's cover is bounded by the smallest Top of its chunks, not the
// last: a change the server did not hold when the chain passed its seq is in
// no chunk, even if the server holds it by the final one.
func TestChainCoverIsBoundedByEarliestTop(t *testing.T) {
	c := newClock(t0)
	ctx := context.Background()
	now := c.Now()
	a := mustOpen(t, testConfig(t.TempDir(), c))
	relay := mustOpen(t, testConfig(t.TempDir(), c))
	r := mustOpen(t, testConfig(t.TempDir(), c))
	for _, s := range []*store.Store{a, relay, r} {
		defer mustClose(t, s)
	}
	for _, name := range []string{"p", "q", "s", "t"} {
		mustApply(t, a, inc(name, 1, now)) // seqs 1..4
	}
	// relay learns seqs 1, 3 and 4 by broadcast (no cover: vector[a] = 0),
	// but not 2.
	var missing []crdt.Delta
	for seq := uint64(1); seq <= 4; seq++ {
		ch, err := a.EntriesSince(a.Replica(), seq-1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if seq == 2 {
			missing = ch.Deltas
			continue
		}
		if _, err := relay.Merge(ctx, ch.Deltas, nil); err != nil {
			t.Fatal(err)
		}
	}
	// r pulls from relay: the first chunk passes seq 2 while relay lacks it.
	var first store.Chunk
	for size := 1; size < 1<<12; size++ {
		ch, err := relay.EntriesSince(a.Replica(), 0, size)
		if err != nil {
			t.Fatal(err)
		}
		if first = ch; ch.Next >= 2 {
			break
		}
	}
	if first.Done || first.Next < 2 {
		t.Fatalf("first chunk: next %d, done %v; the test needs it to pass seq 2 unfinished", first.Next, first.Done)
	}
	// relay then gets seq 2 with a cover: its vector reaches 4.
	if _, err := relay.Merge(ctx, missing, []store.Cover{{Origin: a.Replica(), From: 0, To: 4}}); err != nil {
		t.Fatal(err)
	}
	last, err := relay.ChainChunk(a.Replica(), 0, first.Next, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.Top != 4 {
		t.Fatalf("last chunk: done %v, top %d", last.Done, last.Top)
	}
	if _, err := r.Merge(ctx, append(first.Deltas, last.Deltas...), []store.Cover{{Origin: a.Replica(), From: 0, To: min(first.Top, last.Top)}}); err != nil {
		t.Fatal(err)
	}
	if got := r.Digest()[a.Replica()]; got != 0 {
		t.Fatalf("r's vector for a = %d, but r lacks seq 2 (q = %d)", got, mustTotal(t, r, "q"))
	}
	syncAll(t, a, r, 1<<20)
	for _, name := range []string{"p", "q", "s", "t"} {
		if got := mustTotal(t, r, name); got != 1 {
			t.Errorf("total(%s) at r = %d, want 1", name, got)
		}
	}
}

// A merged entry with an absurd seq (corrupt, or a peer's bug) is dropped:
// it must not push this replica's own seq to overflow.
func TestMergeDropsAbsurdSeqs(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, s)
	huge := []crdt.Delta{
		{Slot: crdt.TotalSlot("x"), Entry: crdt.Entry{Replica: s.Replica(), Value: 5, Seq: math.MaxUint64}},
		{Slot: crdt.TotalSlot("x"), Entry: crdt.Entry{Replica: crdt.ReplicaID{9}, Value: 5, Seq: math.MaxUint64}},
	}
	learned, err := s.Merge(context.Background(), huge, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(learned) != 0 {
		t.Fatalf("learned %v", learned)
	}
	mustApply(t, s, inc("x", 1, c.Now()))
	if got := s.Seq(); got != 1 {
		t.Fatalf("seq after one commit = %d", got)
	}
	if got := mustTotal(t, s, "x"); got != 1 {
		t.Fatalf("total = %d, want 1", got)
	}
}

// Async: a restored node clears its restored mark only once the own entries
// it pulled back from peers are committed; a crash right after CaughtUp
// keeps them.
func TestAsyncCaughtUpCommitsWhatItMerged(t *testing.T) {
	c := newClock(t0)
	ctx := context.Background()
	now := c.Now()
	s := mustOpen(t, testConfig(t.TempDir(), c))
	mustApply(t, s, inc("k", 1, now))
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, store.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustApply(t, s, inc("k", 5, now)) // after the snapshot: only peers hold it
	defer mustClose(t, s)

	cfg := testConfig(dir, c)
	cfg.Durability = store.Async
	cfg.AsyncFlushInterval = time.Hour
	r := mustOpen(t, cfg)
	if !r.Restored() {
		t.Fatal("not restored")
	}
	syncAll(t, s, r, 1<<20) // recovery pulls this replica's entries back
	if err := r.CaughtUp(); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, dir)
	mustClose(t, r)
	cfg.Dir = crashed
	r2 := mustOpen(t, cfg)
	defer mustClose(t, r2)
	if r2.Restored() {
		t.Fatal("restored again after CaughtUp")
	}
	if got := mustTotal(t, r2, "k"); got != 6 {
		t.Fatalf("after a crash right after CaughtUp: total %d, want 6", got)
	}
}

// An entry of this replica with a seq at the very top of the accepted range
// (a corrupt or hostile peer) must not push this replica's numbering to
// where every peer drops its new entries.
func TestOwnSeqNearTheLimitKeepsReplicating(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	p := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, s)
	defer mustClose(t, p)
	top := []crdt.Delta{{Slot: crdt.TotalSlot("x"), Entry: crdt.Entry{Replica: s.Replica(), Value: 5, Seq: 1 << 62}}}
	if _, err := s.Merge(context.Background(), top, nil); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, inc("x", 1, c.Now()))
	syncAll(t, s, p, 1<<20)
	if got := mustTotal(t, p, "x"); got != 6 {
		t.Fatalf("peer's total of x = %d, want 6: the new increment did not replicate (seq %d)", got, s.Seq())
	}
}

// TestStore_CrashAfterEverySlotTransaction: a checkpoint writes its slots
// to state.db in many transactions (here 3 slots each) before it trims and
// rotates the journal; a crash after any of them, or after the whole
// checkpoint, leaves a directory that opens (the check on open finds nothing
// amiss: every transaction writes slots with their index keys) and holds
// every total, the same digest, and the key records that make a retry a
// replay. Three rounds, each with a peer's entries merged in. (The crash
// points between the last slot transaction and the end of the checkpoint,
// around the trim and the rotation, are not taken.)
func TestStore_CrashAfterEverySlotTransaction(t *testing.T) {
	c := newClock(t0)
	dir := t.TempDir()
	var copies []string
	cfg := store.WithHooks(testConfig(dir, c), store.Hooks{CheckpointTxSlots: 3, JournalRotateSize: 1, AfterSlotTx: func() {
		copies = append(copies, copyDir(t, dir))
	}})
	s := mustOpen(t, cfg)
	defer mustClose(t, s)
	other := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, other)
	ctx := context.Background()
	keyed := func(round int) *store.Request {
		return &store.Request{Increments: []store.Increment{inc("k", 3, c.Now())}, IdempotencyKey: fmt.Sprintf("key%d", round), Fingerprint: [32]byte{1}}
	}
	for round := range 3 {
		for i := range 30 {
			name := fmt.Sprintf("c%02d", i)
			mustApply(t, s, inc(name, uint64(i+1), c.Now().Add(-time.Duration(i)*time.Minute)))
			mustApply(t, other, inc(name, 2, c.Now()))
		}
		if _, err := s.Apply(ctx, keyed(round)); err != nil {
			t.Fatal(err)
		}
		syncAll(t, other, s, 1<<20)
		list, _, err := s.List("", "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{}
		for _, nt := range list {
			want[nt.Name] = nt.Total
		}
		wantDigest := fmt.Sprint(s.Digest())
		copies = copies[:0]
		if err := s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, copyDir(t, dir))
		if len(copies) < 30 {
			t.Fatalf("round %d: %d checkpoint transactions: the test checks too little", round, len(copies))
		}
		for i, d := range copies {
			r, err := store.Open(testConfig(d, c))
			if err != nil {
				t.Fatalf("round %d, crash after transaction %d: open: %v", round, i, err)
			}
			got, _, err := r.List("", "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Errorf("round %d, crash after transaction %d: %d counters, want %d", round, i, len(got), len(want))
			}
			for _, nt := range got {
				if nt.Total != want[nt.Name] {
					t.Errorf("round %d, crash after transaction %d: %s = %d, want %d", round, i, nt.Name, nt.Total, want[nt.Name])
				}
			}
			if d := fmt.Sprint(r.Digest()); d != wantDigest {
				t.Errorf("round %d, crash after transaction %d: digest %s, want %s", round, i, d, wantDigest)
			}
			if res, err := r.Apply(ctx, keyed(round)); err != nil || !res.Replayed {
				t.Errorf("round %d, crash after transaction %d: the key's retry: %+v, %v; want a replay", round, i, res, err)
			}
			mustClose(t, r)
		}
		c.Advance(time.Minute)
	}
}
