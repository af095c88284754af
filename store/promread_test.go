package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/store"
)

// TestStore_CountsByDC checks the per-datacenter read before and after a
// checkpoint (mem, then state.db), with a peer's entries merged in.
func TestStore_CountsByDC(t *testing.T) {
	c := newClock(t0)
	a := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, a)
	b := mustOpen(t, testConfig(t.TempDir(), c))
	defer mustClose(t, b)
	a.SetReplicaInfo(store.ReplicaInfo{ID: a.Replica(), Node: "a", DC: "east"})
	a.SetReplicaInfo(store.ReplicaInfo{ID: b.Replica(), Node: "b", DC: "west"})

	now := c.Now()
	m := func(n int) time.Time { return now.Add(-time.Duration(n) * time.Minute) }
	mustApply(t, a, inc("x", 3, m(5)), inc("x", 4, m(3)))
	mustApply(t, b, inc("x", 10, m(3)))
	mustApply(t, b, inc("x", 20, m(120)))
	syncAll(t, b, a, 1<<20)

	from := m(10).Unix() - m(10).Unix()%60
	spans := []store.Span{{Res: 60, From: from, To: now.Unix() + 600}, {Res: 3600, From: 0, To: now.Unix() + 7200}}
	check := func(when string) {
		t.Helper()
		got, err := a.CountsByDC("x", spans)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].DC != "east" || got[1].DC != "west" {
			t.Fatalf("%s: %+v", when, got)
		}
		east, west := got[0], got[1]
		if east.Total != 7 || west.Total != 30 {
			t.Fatalf("%s: totals %d %d", when, east.Total, west.Total)
		}
		min3 := m(3).Unix() - m(3).Unix()%60
		k := (min3 - from) / 60
		nonzero := func(ws []uint64) (n int) {
			for _, v := range ws {
				if v > 0 {
					n++
				}
			}
			return n
		}
		if east.Windows[0][k] != 4 || west.Windows[0][k] != 10 || nonzero(west.Windows[0]) != 1 || nonzero(east.Windows[0]) != 2 {
			t.Fatalf("%s: minute windows %v %v", when, east.Windows[0], west.Windows[0])
		}
		var hours uint64
		for _, v := range west.Windows[1] {
			hours += v
		}
		if hours != 30 {
			t.Fatalf("%s: west's hours hold %d, want 30", when, hours)
		}
		none, err := a.CountsByDC("nothing", spans)
		if err != nil || len(none) != 0 {
			t.Fatalf("%s: a counter never incremented: %+v %v", when, none, err)
		}
	}
	check("in mem")
	if err := a.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("in state.db")
	if dcs := a.DCs(); len(dcs) != 2 || dcs[0] != "east" || dcs[1] != "west" {
		t.Fatalf("DCs %v", dcs)
	}
}

// TestStore_CountsByDC_OneInstant reads while increments commit and
// checkpoints evict: every read's windows must add up to its total exactly
// (every event lands in a retained minute), which they would not if a
// commit or an eviction fell between reading the total and the windows.
func TestStore_CountsByDC_OneInstant(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	spans := []store.Span{{Res: 60, From: now.Add(-time.Hour).Unix() - now.Unix()%60, To: now.Unix() + 3600}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	go func() { // writer
		for i := 0; ctx.Err() == nil; i++ {
			if _, err := s.Apply(ctx, &store.Request{Increments: []store.Increment{inc("x", uint64(i%5+1), now.Add(-time.Duration(i%50)*time.Minute))}}); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() { // checkpointer
		for ctx.Err() == nil {
			if err := s.Checkpoint(ctx); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	reads := 0
	var seen uint64 // the largest total read: an empty answer proves nothing
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) || reads < 100; reads++ {
		got, err := s.CountsByDC("x", spans)
		if err != nil {
			t.Fatal(err)
		}
		for _, dc := range got {
			seen = max(seen, dc.Total)
			var sum uint64
			for _, v := range dc.Windows[0] {
				sum += v
			}
			if sum != dc.Total {
				t.Fatalf("read %d: windows sum to %d, total %d", reads, sum, dc.Total)
			}
		}
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if seen == 0 {
		t.Fatalf("none of %d reads saw an event", reads)
	}
}
