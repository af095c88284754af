package main

import (
	"sync"
	"testing"
	"time"
)

// TestGroups_ReleaseTogetherAfterThePeriod: a request waits at least the
// period for its group, everyone waiting is released, and the next group
// gathers anew.
func TestGroups_ReleaseTogetherAfterThePeriod(t *testing.T) {
	const period = 30 * time.Millisecond
	g := newGroups(period)
	for round := range 3 {
		start := time.Now()
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() { defer wg.Done(); g.await() }()
		}
		g.await()
		if took := time.Since(start); took < period {
			t.Fatalf("round %d: released after %v, before the period of %v", round, took, period)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: waiters never released", round)
		}
	}
}
