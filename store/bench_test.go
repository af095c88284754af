package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/store"
)

// BenchmarkApply measures durable single increments from many goroutines: the
// store's group commit without HTTP in front of it.
func BenchmarkApply(b *testing.B) {
	for _, counters := range []int{1, 10_000} {
		b.Run(fmt.Sprintf("counters=%d", counters), func(b *testing.B) {
			cfg := store.DefaultConfig(b.TempDir())
			s, err := store.Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			names := make([]string, counters)
			for i := range names {
				names[i] = fmt.Sprintf("bench.%d", i)
			}
			var next atomic.Int64
			b.SetParallelism(32) // 32 × GOMAXPROCS concurrent writers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					req := &store.Request{Increments: []store.Increment{{Name: names[i%int64(counters)], Amount: 1, TS: time.Now()}}}
					if _, err := s.Apply(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			st := s.Stats()
			b.ReportMetric(float64(st.CommittedOps)/float64(max(st.Commits, 1)), "ops/commit")
			b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(max(st.Commits, 1)), "µs/commit")
		})
	}
}

// BenchmarkApplyBatch measures durable batches of 1,000 increments, each
// over 1,000 of 10,000 counters (the suite's batch-10k without HTTP): ten
// batches that between them cover every counter, taken in turn.
func BenchmarkApplyBatch(b *testing.B) {
	cfg := store.DefaultConfig(b.TempDir())
	s, err := store.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	now := time.Now()
	batches := make([][]store.Increment, 10)
	for k := range batches {
		batches[k] = make([]store.Increment, 1000)
		for i := range batches[k] {
			batches[k][i] = store.Increment{Name: fmt.Sprintf("bench.%d", (k+10*i)*7%10000), Amount: 1, TS: now}
		}
	}
	var next atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			incs := batches[next.Add(1)%int64(len(batches))]
			if _, err := s.Apply(context.Background(), &store.Request{Increments: incs}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "increments/s")
}

// BenchmarkReplay measures what a restart after a crash costs per entry
// change in the journal: CheckpointDeltas bounds how many a restart
// replays. The journal holds 250 batches of 1,000 increments over 10,000
// counters, one record each: 1,000,000 changes.
func BenchmarkReplay(b *testing.B) {
	cfg := store.DefaultConfig(b.TempDir())
	cfg.CheckpointInterval = -1 // everything stays in the journal
	cfg.JanitorInterval = -1
	s, err := store.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const batches, size = 250, 1000
	now := time.Now()
	for k := range batches {
		incs := make([]store.Increment, size)
		for i := range incs {
			incs[i] = store.Increment{Name: fmt.Sprintf("bench.%d", (k*size+i)%10_000), Amount: 1, TS: now}
		}
		if _, err := s.Apply(context.Background(), &store.Request{Increments: incs}); err != nil {
			b.Fatal(err)
		}
	}
	crashed := copyDir(b, cfg.Dir)
	defer s.Close(context.Background())
	changes := batches * size * (1 + len(cfg.Windows.Resolutions))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c := cfg
		c.Dir = copyDir(b, crashed)
		b.StartTimer()
		r, err := store.Open(c)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := r.Stats().JournalRecords; got != batches {
			b.Fatalf("replayed %d records, want %d", got, batches)
		}
		r.Close(context.Background())
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*changes), "ns/change")
}
