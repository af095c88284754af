package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

func idemReq(key string, fp byte, incs ...store.Increment) *store.Request {
	return &store.Request{
		Increments:     incs,
		IdempotencyKey: key,
		Fingerprint:    [32]byte{fp},
		Render: func(r store.Result) []byte {
			return fmt.Appendf(nil, `{"total":%d}`, r.Totals[0])
		},
	}
}

func TestStore_Idempotency(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	s := mustOpen(t, testConfig(dir, c))
	ctx := context.Background()
	first, err := s.Apply(ctx, idemReq("k1", 1, inc("a", 5, c.Now())))
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed || string(first.Response) != `{"total":5}` {
		t.Fatalf("first = %+v", first)
	}
	mustApply(t, s, inc("a", 1, c.Now())) // moves the total on
	again, err := s.Apply(ctx, idemReq("k1", 1, inc("a", 5, c.Now())))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Replayed || !bytes.Equal(again.Response, first.Response) {
		t.Fatalf("retry = %+v, want the first response replayed", again)
	}
	if got := mustTotal(t, s, "a"); got != 6 {
		t.Fatalf("total = %d, want 6: the retry counted again", got)
	}
	if _, err := s.Apply(ctx, idemReq("k1", 2, inc("a", 7, c.Now()))); !errors.Is(err, store.ErrIdempotencyMismatch) {
		t.Fatalf("reuse with another body = %v, want ErrIdempotencyMismatch", err)
	}

	// Across restarts: from the journal, then from state.db.
	for _, ckpt := range []bool{false, true} {
		if ckpt {
			if err := s.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
		crashed := copyDir(t, dir)
		r := mustOpen(t, testConfig(crashed, c))
		res, err := r.Apply(ctx, idemReq("k1", 1, inc("a", 5, c.Now())))
		if err != nil || !res.Replayed || !bytes.Equal(res.Response, first.Response) {
			t.Fatalf("after restart (checkpointed=%v): %+v, %v", ckpt, res, err)
		}
		if got := mustTotal(t, r, "a"); got != 6 {
			t.Fatalf("after restart total = %d, want 6", got)
		}
		mustClose(t, r)
	}
}

func TestStore_Idempotency_ExpiresAfterTTL(t *testing.T) {
	for _, ckpt := range []bool{false, true} {
		t.Run(fmt.Sprintf("checkpointed=%v", ckpt), func(t *testing.T) {
			c := newClock(t0)
			cfg := testConfig(t.TempDir(), c)
			cfg.IdempotencyTTL = time.Hour
			s := mustOpen(t, cfg)
			ctx := context.Background()
			if _, err := s.Apply(ctx, idemReq("k", 1, inc("a", 1, c.Now()))); err != nil {
				t.Fatal(err)
			}
			if ckpt {
				if err := s.Checkpoint(ctx); err != nil {
					t.Fatal(err)
				}
			}
			c.Advance(59 * time.Minute)
			if res, _ := s.Apply(ctx, idemReq("k", 1, inc("a", 1, c.Now()))); !res.Replayed {
				t.Fatal("key forgotten before its TTL")
			}
			c.Advance(2 * time.Minute)
			if err := s.Expire(ctx); err != nil {
				t.Fatal(err)
			}
			if ckpt && s.KeyCount("idem") != 0 {
				t.Fatalf("expired key still on disk: %d keys", s.KeyCount("idem"))
			}
			res, err := s.Apply(ctx, idemReq("k", 1, inc("a", 1, c.Now())))
			if err != nil || res.Replayed {
				t.Fatalf("after TTL: %+v, %v; want a fresh apply", res, err)
			}
			if got := mustTotal(t, s, "a"); got != 2 {
				t.Fatalf("total = %d, want 2", got)
			}
		})
	}
}

// TestStore_Idempotency_ConcurrentRetries fires the same keyed request from
// many goroutines at once: exactly one applies, all see its response.
func TestStore_Idempotency_ConcurrentRetries(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	const n = 32
	var wg sync.WaitGroup
	results := make([]store.Result, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Apply(context.Background(), idemReq("same", 1, inc("a", 3, c.Now())))
		}()
	}
	wg.Wait()
	fresh := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !results[i].Replayed {
			fresh++
		}
		if string(results[i].Response) != `{"total":3}` {
			t.Fatalf("response %d = %s", i, results[i].Response)
		}
	}
	if fresh != 1 {
		t.Fatalf("%d requests applied, want exactly 1", fresh)
	}
	if got := mustTotal(t, s, "a"); got != 3 {
		t.Fatalf("total = %d, want 3", got)
	}
}

func TestStore_Retention_DeletesExpiredWindows(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	ctx := context.Background()
	now := c.Now()
	// Ten events at 11:50 … 11:59, all in the 11:00 hour of one day.
	for i := 1; i <= 10; i++ {
		mustApply(t, s, inc("r", 1, now.Add(-time.Duration(i)*time.Minute)))
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// Blocks hold 64 windows: the minute blocks of 11:50 … 11:59, one hour
	// block and one day block.
	minuteBlocks := func(from, to time.Time) int {
		seen := map[int64]bool{}
		for m := from.Truncate(time.Minute); m.Before(to); m = m.Add(time.Minute) {
			seen[m.Unix()/(64*60)] = true
		}
		return len(seen)
	}
	// Each block has an expiry key and a seq index key (one replica), and
	// the total a seq index key.
	onDisk := func(when string, blocks int) {
		t.Helper()
		for bucket, want := range map[string]int{"blocks": blocks, "expiry": blocks, "seqidx": blocks + 1} {
			if n := s.KeyCount(bucket); n != want {
				t.Fatalf("%s: %s holds %d keys, want %d", when, bucket, n, want)
			}
		}
	}
	onDisk("after the checkpoint", minuteBlocks(now.Add(-10*time.Minute), now)+2)
	// A fresh window in mem that will also expire.
	mustApply(t, s, inc("r", 1, now.Add(-20*time.Minute)))

	// Two days later at 11:55 the minute windows before 11:55 have expired.
	c.Advance(48*time.Hour - 5*time.Minute)
	if err := s.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// Left: the blocks of the minute windows 11:55 … 11:59 (a block goes
	// when its last window expires), the hour and day blocks.
	onDisk("after expiry", minuteBlocks(now.Add(-5*time.Minute), now)+2)
	if got := mustTotal(t, s, "r"); got != 11 {
		t.Fatalf("total = %d, want 11: the total never expires", got)
	}
	pts, p := mustRange(t, s, "r", window.Query{From: now.Add(-30 * time.Minute), To: now.Add(time.Minute), Step: time.Minute}, c.Now())
	if sum(pts) != 5 || !p.Partial {
		t.Fatalf("minute range after expiry: sum %d partial %v, want 5 true", sum(pts), p.Partial)
	}
	// Gossip bringing an expired window back is ignored.
	if learned, err := s.Merge(ctx, []crdt.Delta{{Slot: crdt.Slot{Name: "r", Res: 60, Start: now.Add(-9 * time.Minute).Truncate(time.Minute).Unix()}, Entry: crdt.Entry{Replica: crdt.ReplicaID{7}, Value: 9, Seq: 1}}}, nil); err != nil || len(learned) != 0 {
		t.Fatalf("merge of an expired window learned %v, %v", learned, err)
	}
}
