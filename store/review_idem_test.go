package store_test

import (
	"context"
	"testing"
	"time"
)

// TestClusterIdem_WinnerExpiresBeforeLoserHolderSeesIt: a retry accepted at b
// shortly before a's record expires loses to a. d took b's copy (entries and
// record) by anti-entropy before anyone knew it lost; by the time d's
// anti-entropy reaches a's changes, a's record has expired. a and b settle the
// duplicate between them (they met in time), but their compensations never
// reach d (its version vector already covers b's copy), and d cannot settle it
// alone without a's record: the replicas must still agree once synced.
func TestClusterIdem_WinnerExpiresBeforeLoserHolderSeesIt(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 3)
	a, b, d := rs[0], rs[1], rs[2]
	ctx := context.Background()
	ttl := a.Config().IdempotencyTTL
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now()))); err != nil {
		t.Fatal(err)
	}
	// b is cut off from a for almost the whole TTL; the client retries there.
	c.Advance(ttl - 2*time.Second)
	if res, err := b.Apply(ctx, idemReq("k", 1, inc("x", 4, c.Now()))); err != nil || res.Replayed {
		t.Fatalf("retry at b = %+v, %v; want applied", res, err)
	}
	syncAll(t, b, d, 1<<10) // d, on b's side, takes b's copy
	// The partition heals a second before a's record expires: a and b meet.
	c.Advance(time.Second)
	syncAll(t, a, b, 1<<10)
	syncAll(t, b, a, 1<<10)
	// d's first exchange with a's side comes a little later.
	c.Advance(2 * time.Second)
	for _, s := range rs {
		if err := s.Expire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	meshSync(t, rs...)
	for i, s := range rs {
		if got := mustTotal(t, s, "x"); got != 4 {
			t.Errorf("replica %d total = %d, want 4", i, got)
		}
	}
}

// TestClusterIdem_RecordRetentionEnds: a record kept past its expiry to
// settle duplicates is still let go one TTL later, on disk and in memory, so
// that records do not pile up.
func TestClusterIdem_RecordRetentionEnds(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, idemReq("m", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	if err := a.Checkpoint(ctx); err != nil { // "k" and "m" on disk, later ones in mem
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, idemReq("n", 1, inc("x", 1, c.Now()))); err != nil {
		t.Fatal(err)
	}
	c.Advance(2*a.Config().IdempotencyTTL + time.Second)
	if err := a.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := a.EntriesSince(a.Replica(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Records) != 0 {
		t.Errorf("a still holds %d records a TTL after they expired", len(ch.Records))
	}
	syncAll(t, a, b, 1<<10)
	if st := b.Stats(); st.KeyRecordsMerged != 0 {
		t.Errorf("b merged %d records past their retention", st.KeyRecordsMerged)
	}
}
