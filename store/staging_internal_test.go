package store

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
)

// TestStaging_WindowsAtEachStagesClock: staging works out an event time's
// windows once for the increments that share it, but a staging the
// committer reuses must work them out again at its next clock. One event
// time, staged at a clock that keeps its minute window and then, in the
// same staging, an hour later when that window is no longer kept: only the
// first increment lands in the minute.
func TestStaging_WindowsAtEachStagesClock(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := openAt(t, &now)
	ts := now.Add(-(47*time.Hour + 30*time.Minute)) // minutes are kept 48 h
	minute := crdt.Slot{Name: "e", Res: 60, Start: ts.Truncate(time.Minute).Unix()}
	st := newStaging(s)
	for _, amount := range []uint64{1, 10} {
		o := getOp()
		o.kind = opApply
		o.req = &Request{Increments: []Increment{{Name: "e", Amount: amount, TS: ts}}}
		s.com.stage(st, []*op{o})
		if o.err != nil {
			t.Fatal(o.err)
		}
		now = now.Add(time.Hour)
	}
	var got uint64
	for _, d := range st.deltas {
		if d.Slot == minute {
			got = d.Entry.Value
		}
	}
	if got != 1 {
		t.Errorf("minute window staged as %d, want 1: the second increment came after the window's retention", got)
	}
}

// TestStaging_RequestNumbersStartAfreshEachCommit: staging tells the slots a
// request adds to by stamping them with the request's number, and a slot met
// for the first time carries number 0. The committer reuses its stagings for
// the life of the process, so numbers that ran on from commit to commit
// would wrap after 2^32 requests (about three days of single increments at
// 35,000 a second), and the request numbered 0 would add to none of the
// slots it met first: answered as counted, never counted. Each commit's
// numbers start afresh.
func TestStaging_RequestNumbersStartAfreshEachCommit(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := openAt(t, &now)
	st := newStaging(s)
	st.reqNo = math.MaxUint32 // where 2^32 requests through this staging would leave it
	st.reset()                // as after the commit that made the last of them durable
	o := getOp()
	o.kind = opApply
	o.req = &Request{Increments: []Increment{{Name: "c", Amount: 5, TS: now}}}
	s.com.stage(st, []*op{o})
	s.com.commit(st) // on the committer's goroutine, as with Async: no writer is running
	<-o.done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if len(o.res.Totals) != 1 || o.res.Totals[0] != 5 {
		t.Errorf("answered with totals %v, want [5]", o.res.Totals)
	}
	if got, err := s.Total("c"); err != nil || got != 5 {
		t.Errorf("total(c) = %d, %v; want 5", got, err)
	}
}

// openAt opens a store in a new directory whose clock reads *now, with no
// background checkpoints or janitor, and closes it when t ends.
func openAt(t *testing.T, now *time.Time) *Store {
	t.Helper()
	cfg := DefaultConfig(t.TempDir())
	cfg.Now = func() time.Time { return *now }
	cfg.CheckpointInterval, cfg.JanitorInterval = -1, -1
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}
