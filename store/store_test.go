package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/internal/testenv"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

const t0 = "2026-11-23T12:00:00Z"

func TestStore_ReplicaIDPersists(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	s := mustOpen(t, testConfig(dir, c))
	id := s.Replica()
	if id.IsZero() {
		t.Fatal("zero replica id")
	}
	mustClose(t, s)
	s = mustOpen(t, testConfig(dir, c))
	if s.Replica() != id {
		t.Fatalf("replica id changed across restart: %s → %s", id, s.Replica())
	}
	other := mustOpen(t, testConfig(t.TempDir(), c))
	if other.Replica() == id {
		t.Fatal("two data directories share a replica id")
	}
}

func TestStore_Open_DirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	mustOpen(t, testConfig(dir, c))
	if _, err := store.Open(testConfig(dir, c)); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("second open = %v, want ErrInUse", err)
	}
}

func TestStore_Open_WindowConfigMismatch(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	mustClose(t, mustOpen(t, testConfig(dir, c)))
	cfg := testConfig(dir, c)
	cfg.Windows, _ = window.ParseConfig("1m:1h")
	if _, err := store.Open(cfg); !errors.Is(err, store.ErrIncompatible) {
		t.Fatalf("open with other windows = %v, want ErrIncompatible", err)
	}
}

func TestStore_Apply_TotalsAndWindows(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	res := mustApply(t, s, inc("signups", 3, now))
	if res.Totals[0] != 3 {
		t.Fatalf("total after first increment = %d, want 3", res.Totals[0])
	}
	res = mustApply(t, s, inc("signups", 4, now.Add(-90*time.Second)), inc("logins", 1, now))
	if res.Totals[0] != 7 || res.Totals[1] != 1 {
		t.Fatalf("totals = %v, want [7 1]", res.Totals)
	}
	if got := mustTotal(t, s, "signups"); got != 7 {
		t.Fatalf("Total = %d, want 7", got)
	}
	if got := mustTotal(t, s, "never"); got != 0 {
		t.Fatalf("Total of unknown counter = %d, want 0", got)
	}
	pts, _ := mustRange(t, s, "signups", window.Query{From: now.Add(-5 * time.Minute), To: now.Add(time.Minute), Step: time.Minute}, now)
	want := []uint64{0, 0, 0, 4, 0, 3}
	for i := range want {
		if pts[i] != want[i] {
			t.Fatalf("points = %v, want %v", pts, want)
		}
	}
}

// TestStore_EventTime_LandsInEveryResolution checks that an event with an
// explicit time lands in the right window of every resolution that still keeps
// it, and skips those that do not, while the total counts it regardless.
func TestStore_EventTime_LandsInEveryResolution(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	recent := now.Add(-(2*time.Hour + 17*time.Minute)) // all three resolutions
	old := now.Add(-(5*24*time.Hour + 3*time.Hour))    // hours and days only
	ancient := now.Add(-(6 * 365 * 24 * time.Hour))    // total only
	mustApply(t, s, inc("e", 1, recent), inc("e", 10, old), inc("e", 100, ancient))
	if got := mustTotal(t, s, "e"); got != 111 {
		t.Fatalf("total = %d, want 111", got)
	}
	check := func(step time.Duration, at time.Time, want uint64) {
		t.Helper()
		p, _ := s.Config().Windows.Plan(window.Query{From: at, To: at.Add(step), Step: step}, now)
		pts, err := s.Range("e", p)
		if err != nil {
			t.Fatal(err)
		}
		if sum(pts) != want {
			t.Fatalf("%v window at %v = %d, want %d (resolution %v)", step, at, sum(pts), want, p.Resolution.Size)
		}
	}
	for _, ckpt := range []bool{false, true} {
		if ckpt {
			if err := s.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		check(time.Minute, recent.Truncate(time.Minute), 1)
		check(time.Hour, recent.Truncate(time.Hour), 1)
		check(24*time.Hour, recent.Truncate(24*time.Hour), 1)
		check(time.Minute, old.Truncate(time.Minute), 0)
		check(time.Hour, old.Truncate(time.Hour), 10)
		check(24*time.Hour, old.Truncate(24*time.Hour), 10)
		check(24*time.Hour, ancient.Truncate(24*time.Hour), 0)
	}
}

// TestStore_EventTime_WindowsAtEachCommitsClock: which windows an event time
// lands in depends on the clock when it commits, not only on the event time.
// Two increments with one event time, an hour apart, on either side of the
// minute window's retention: the first counts in its minute, the second does
// not, and both count in the hour. (The clock then steps back, as a clock
// may, so that the minute window is read while it is still kept.)
func TestStore_EventTime_WindowsAtEachCommitsClock(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	first := c.Now()
	ts := first.Add(-(47*time.Hour + 30*time.Minute)) // minutes kept 48 h
	mustApply(t, s, inc("e", 1, ts))
	c.Advance(time.Hour)
	mustApply(t, s, inc("e", 10, ts))
	mustApply(t, s, inc("e", 100, ts))
	mustApply(t, s, inc("e", 1000, ts))
	c.Advance(-time.Hour)
	read := func(step time.Duration) uint64 {
		t.Helper()
		p, _ := s.Config().Windows.Plan(window.Query{From: ts.Truncate(step), To: ts.Truncate(step).Add(step), Step: step}, first)
		if p.Resolution.Size != step {
			t.Fatalf("planned %v, want %v", p.Resolution.Size, step)
		}
		pts, err := s.Range("e", p)
		if err != nil {
			t.Fatal(err)
		}
		return sum(pts)
	}
	if got := read(time.Minute); got != 1 {
		t.Errorf("minute window = %d, want 1: only the first increment was in time for it", got)
	}
	if got := read(time.Hour); got != 1111 {
		t.Errorf("hour window = %d, want 1111", got)
	}
}

func TestStore_Apply_Overflow(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	const max53 = 1<<53 - 1
	batch := make([]store.Increment, 2048)
	for i := range batch {
		batch[i] = inc("big", max53, now)
	}
	mustApply(t, s, batch...)
	before := mustTotal(t, s, "big")
	if before != 2048*max53 {
		t.Fatalf("total = %d, want %d", before, uint64(2048*max53))
	}
	// 2048 more would pass 2^64: the whole batch is refused, including the
	// increment to another counter in it.
	_, err := s.Apply(context.Background(), &store.Request{Increments: append(batch[:2048:2048], inc("other", 1, now))})
	if !errors.Is(err, store.ErrOverflow) {
		t.Fatalf("err = %v, want ErrOverflow", err)
	}
	if got := mustTotal(t, s, "big"); got != before {
		t.Fatalf("refused batch changed the total: %d → %d", before, got)
	}
	if got := mustTotal(t, s, "other"); got != 0 {
		t.Fatalf("refused batch applied its other increment: %d", got)
	}
	// What still fits is taken.
	room := math.MaxUint64 - before
	mustApply(t, s, inc("big", room, now))
	if got := mustTotal(t, s, "big"); got != math.MaxUint64 {
		t.Fatalf("total = %d, want MaxUint64", got)
	}
	if _, err := s.Apply(context.Background(), &store.Request{Increments: []store.Increment{inc("big", 1, now)}}); !errors.Is(err, store.ErrOverflow) {
		t.Fatalf("err = %v, want ErrOverflow", err)
	}
}

func TestStore_Apply_Invalid(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	tests := []struct {
		name string
		req  store.Request
		want error
	}{
		{"empty", store.Request{}, store.ErrInvalid},
		{"bad name", store.Request{Increments: []store.Increment{inc("a b", 1, now)}}, store.ErrInvalid},
		{"zero amount", store.Request{Increments: []store.Increment{inc("a", 0, now)}}, store.ErrInvalid},
		{"no time", store.Request{Increments: []store.Increment{{Name: "a", Amount: 1}}}, store.ErrInvalid},
		{"future", store.Request{Increments: []store.Increment{inc("a", 1, now.Add(6*time.Minute))}}, store.ErrFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Apply(context.Background(), &tt.req); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestStore_Restart_NothingLostNothingDoubled applies increments, checkpoints
// part of them, and reopens the directory: the journal replays over state.db
// and every count is exact, in totals and windows.
func TestStore_Restart_NothingLostNothingDoubled(t *testing.T) {
	for _, mode := range []string{"journal only", "checkpointed", "half checkpointed", "checkpointed twice"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			c := newClock(t0)
			s := mustOpen(t, testConfig(dir, c))
			now := c.Now()
			var want uint64
			for i := 1; i <= 50; i++ {
				mustApply(t, s, inc("n", uint64(i), now.Add(-time.Duration(i)*time.Minute)))
				want += uint64(i)
				if (mode == "half checkpointed" && i == 25) || (mode == "checkpointed" && i == 50) || (mode == "checkpointed twice" && i%20 == 0) {
					if err := s.Checkpoint(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Take the files as a power cut would leave them, then close normally.
			crashed := copyDir(t, dir)
			mustClose(t, s)
			for _, d := range []string{crashed, dir} {
				r := mustOpen(t, testConfig(d, c))
				if got := mustTotal(t, r, "n"); got != want {
					t.Fatalf("%s: total = %d, want %d", d, got, want)
				}
				pts, _ := mustRange(t, r, "n", window.Query{From: now.Add(-60 * time.Minute), To: now, Step: time.Minute}, now)
				if sum(pts) != want {
					t.Fatalf("%s: minute windows sum = %d, want %d", d, sum(pts), want)
				}
				if pts[60-7] != 7 {
					t.Fatalf("%s: window 7 minutes ago = %d, want 7", d, pts[60-7])
				}
				mustClose(t, r)
			}
		})
	}
}

// TestStore_GroupCommit checks that concurrent increments share commits and
// all count.
func TestStore_GroupCommit(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	const clients, each = 32, 50
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if _, err := s.Apply(context.Background(), &store.Request{Increments: []store.Increment{inc("hot", 1, c.Now())}}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := mustTotal(t, s, "hot"); got != clients*each {
		t.Fatalf("total = %d, want %d", got, clients*each)
	}
	st := s.Stats()
	if st.CommittedOps != clients*each {
		t.Fatalf("committed ops = %d, want %d", st.CommittedOps, clients*each)
	}
	if st.Commits >= st.CommittedOps {
		t.Fatalf("%d commits for %d concurrent requests: no group commit", st.Commits, st.CommittedOps)
	}
	t.Logf("%d requests in %d commits", st.CommittedOps, st.Commits)
}

func TestStore_Async(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	cfg := testConfig(dir, c)
	cfg.Durability = store.Async
	cfg.AsyncFlushInterval = time.Hour // only Close flushes
	s := mustOpen(t, cfg)
	mustApply(t, s, inc("a", 2, c.Now()))
	if res := mustApply(t, s, inc("a", 3, c.Now())); res.Totals[0] != 5 {
		t.Fatalf("second async answer: total %d, want 5", res.Totals[0])
	}
	if st := s.Stats(); st.Commits != 0 {
		t.Fatalf("async increment committed at once (%d commits)", st.Commits)
	}
	// Until the commit, the increments are in the committer's staging only:
	// reads and peers see committed state.
	if got := mustTotal(t, s, "a"); got != 0 {
		t.Fatalf("total before the commit = %d, want 0", got)
	}
	if got := s.Digest()[s.Replica()]; got != 0 {
		t.Fatalf("digest before the commit claims seq %d", got)
	}
	mustClose(t, s)
	s = mustOpen(t, testConfig(dir, c))
	if got := mustTotal(t, s, "a"); got != 5 {
		t.Fatalf("after close, total = %d, want 5", got)
	}
}

func TestStore_Async_FlushesOnItsOwn(t *testing.T) {
	c := newClock(t0)
	cfg := testConfig(t.TempDir(), c)
	cfg.Durability = store.Async
	cfg.AsyncFlushInterval = time.Millisecond
	var mu sync.Mutex
	committed := make(chan struct{}, 1)
	cfg.Sink = entrySink(func([]crdt.Delta) {
		mu.Lock()
		defer mu.Unlock()
		select {
		case committed <- struct{}{}:
		default:
		}
	})
	s := mustOpen(t, cfg)
	mustApply(t, s, inc("a", 1, c.Now()))
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("async increment never committed")
	}
}

func TestStore_Sink_SeesOnlyDurableValues(t *testing.T) {
	dir := t.TempDir()
	c := newClock(t0)
	cfg := testConfig(dir, c)
	var mu sync.Mutex
	var seen []crdt.Delta
	cfg.Sink = entrySink(func(ds []crdt.Delta) {
		mu.Lock()
		seen = append(seen, ds...)
		mu.Unlock()
	})
	s := mustOpen(t, cfg)
	mustApply(t, s, inc("a", 2, c.Now()))
	crashed := copyDir(t, dir)
	mu.Lock()
	got := append([]crdt.Delta(nil), seen...)
	mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("the sink saw %d deltas, want 4 (total and three windows)", len(got))
	}
	r := mustOpen(t, testConfig(crashed, c))
	for _, d := range got {
		if d.Entry.Replica != s.Replica() || d.Entry.Value != 2 || d.Entry.Seq != 1 {
			t.Fatalf("delta %+v: want this replica's value 2 at seq 1", d)
		}
		if d.Slot.IsTotal() {
			if v := mustTotal(t, r, d.Slot.Name); v != d.Entry.Value {
				t.Fatalf("the sink got %d before the disk held it (disk: %d)", d.Entry.Value, v)
			}
		}
	}
}

func TestStore_List(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	names := []string{"a.1", "a.2", "a.3", "b.1", "a.4", "a.5"}
	for i, n := range names[:3] {
		mustApply(t, s, inc(n, uint64(i+1), now))
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, n := range names[3:] {
		mustApply(t, s, inc(n, uint64(i+4), now))
	}
	mustApply(t, s, inc("a.2", 10, now)) // in state.db and in mem
	page, next, err := s.List("a.", "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0] != (store.NameTotal{"a.1", 1}) || page[1] != (store.NameTotal{"a.2", 12}) || next != "a.2" {
		t.Fatalf("page 1 = %v next %q", page, next)
	}
	page, next, _ = s.List("a.", next, 2)
	if len(page) != 2 || page[0].Name != "a.3" || page[1] != (store.NameTotal{"a.4", 5}) || next != "a.4" {
		t.Fatalf("page 2 = %v next %q", page, next)
	}
	page, next, _ = s.List("a.", next, 2)
	if len(page) != 1 || page[0] != (store.NameTotal{"a.5", 6}) || next != "" {
		t.Fatalf("page 3 = %v next %q", page, next)
	}
	all, _, _ := s.List("", "", 100)
	if len(all) != 6 {
		t.Fatalf("all = %v", all)
	}
}

// TestStore_SnapshotRestore: a snapshot placed alone in an empty directory
// opens with the same replica ID, counts and windows, and says it was
// restored.
func TestStore_SnapshotRestore(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	now := c.Now()
	mustApply(t, s, inc("snap", 3, now), inc("snap", 4, now.Add(-2*time.Hour)), inc("other", 1, now))
	if _, err := s.Merge(context.Background(), []crdt.Delta{{Slot: crdt.TotalSlot("snap"), Entry: crdt.Entry{Replica: crdt.ReplicaID{5}, Value: 10, Seq: 2}}}, []store.Cover{{Origin: crdt.ReplicaID{5}, From: 0, To: 2}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, store.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.Snapshot(context.Background(), f)
	f.Close()
	if err != nil || n == 0 {
		t.Fatalf("snapshot: %d bytes, %v", n, err)
	}
	if s.Restored() {
		t.Fatal("the original claims to be restored")
	}
	r := mustOpen(t, testConfig(dir, c))
	if !r.Restored() {
		t.Fatal("a snapshot opened without its journal does not say it was restored")
	}
	if r.Replica() != s.Replica() || r.Seq() != s.Seq() {
		t.Fatalf("restored replica %s seq %d, want %s seq %d", r.Replica(), r.Seq(), s.Replica(), s.Seq())
	}
	if got := mustTotal(t, r, "snap"); got != 17 {
		t.Fatalf("restored total = %d, want 17", got)
	}
	if d := r.Digest(); d[crdt.ReplicaID{5}] != 2 {
		t.Fatalf("restored version vector = %v", d)
	}
	pts, _ := mustRange(t, r, "snap", window.Query{From: now.Add(-3 * time.Hour), To: now.Add(time.Hour), Step: time.Hour}, now)
	if sum(pts) != 7 || pts[1] != 4 || pts[3] != 3 {
		t.Fatalf("restored hour windows = %v", pts)
	}
	if r.RestoredSeq() != s.Seq() {
		t.Fatalf("restored from seq %d, the snapshot's is %d", r.RestoredSeq(), s.Seq())
	}
	// Restarted before catching up: still restored, from the same seq.
	mustClose(t, r)
	r = mustOpen(t, testConfig(dir, c))
	if !r.Restored() || r.RestoredSeq() != s.Seq() {
		t.Fatalf("after a restart before catching up: restored %v from seq %d", r.Restored(), r.RestoredSeq())
	}
	if err := r.CaughtUp(); err != nil {
		t.Fatal(err)
	}
	if r.Restored() {
		t.Fatal("still restored after CaughtUp")
	}
	mustClose(t, r)
	r = mustOpen(t, testConfig(dir, c))
	defer mustClose(t, r)
	if r.Restored() {
		t.Fatal("restored again after CaughtUp and a restart")
	}
}

// TestStore_JournalRotates: a journal that a burst of writes made big is
// replaced by a small one once a checkpoint leaves it without records;
// writes go on into the new one, and a restart replays them.
func TestStore_JournalRotates(t *testing.T) {
	c := newClock(t0)
	dir := t.TempDir()
	cfg := store.WithHooks(testConfig(dir, c), store.Hooks{CheckpointTxSlots: 7, JournalRotateSize: 256 << 10})
	s := mustOpen(t, cfg)
	ctx := context.Background()
	for i := range 100 {
		var incs []store.Increment
		for k := range 100 {
			incs = append(incs, inc(fmt.Sprintf("c%03d", k), 1, c.Now().Add(-time.Duration(i)*time.Minute)))
		}
		mustApply(t, s, incs...)
	}
	big := s.Stats().JournalBytes
	if big <= 256<<10 {
		t.Fatalf("journal of %d bytes after the burst: the test needs more than 256 KiB", big)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.JournalRotations != 1 || st.JournalBytes >= big/4 {
		t.Fatalf("after the checkpoint: %d rotations, journal %d bytes (was %d)", st.JournalRotations, st.JournalBytes, big)
	}
	mustApply(t, s, inc("c000", 5, c.Now()))
	// The files as a crash would leave them: the last increment is only in
	// the new journal, and replaying it must bring it back.
	crashed := copyDir(t, dir)
	mustClose(t, s)
	s = mustOpen(t, store.WithHooks(testConfig(crashed, c), store.Hooks{CheckpointTxSlots: 7}))
	if got := mustTotal(t, s, "c000"); got != 105 {
		t.Fatalf("c000 = %d after the crash, want 105", got)
	}
}

// TestStore_CheckpointTriggers: with a long checkpoint interval, a
// checkpoint still comes once the journal holds CheckpointDeltas changes, or
// mem CheckpointSlots slots, since the last one.
func TestStore_CheckpointTriggers(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*store.Config)
	}{
		{"deltas", func(cfg *store.Config) { cfg.CheckpointDeltas = 200 }},
		// Writers wait for room only far above: the trigger, not that
		// wait, must start the checkpoint.
		{"slots", func(cfg *store.Config) { cfg.CheckpointSlots, cfg.MaxPendingSlots = 100, 1<<20 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			cfg := testConfig(t.TempDir(), c)
			cfg.CheckpointInterval = time.Hour
			tc.set(&cfg)
			s := mustOpen(t, cfg)
			// 10 increments of one counter: 40 changes, 4 slots.
			for range 10 {
				mustApply(t, s, inc("hot", 1, c.Now()))
			}
			if n := s.Stats().Checkpoints; n != 0 {
				t.Fatalf("%d checkpoints before either bound was reached", n)
			}
			// 100 counters: 400 more changes and slots.
			for k := range 100 {
				mustApply(t, s, inc(fmt.Sprintf("c%03d", k), 1, c.Now()))
			}
			testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
				st := s.Stats()
				return st.Checkpoints > 0, fmt.Sprintf("no checkpoint after the bound was passed: %+v", st)
			})
			if tc.name != "deltas" {
				return
			}
			// A checkpoint counts the changes anew: 40 more, far below the
			// bound, start none (a checkpoint that forgot to would have
			// every commit ask for the next one).
			if err := s.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // one the load asked for may follow
			n := s.Stats().Checkpoints
			for range 10 {
				mustApply(t, s, inc("hot", 1, c.Now()))
			}
			time.Sleep(300 * time.Millisecond) // what a checkpoint asked for would take
			if got := s.Stats().Checkpoints; got != n {
				t.Errorf("%d checkpoints after 40 changes, want %d", got, n)
			}
		})
	}
}

// TestStore_CheckpointWritesABlockOnce: a checkpoint's transactions end
// between blocks, never inside one, so each block is read and written once
// even when a transaction's share of slots runs out in its middle.
func TestStore_CheckpointWritesABlockOnce(t *testing.T) {
	c := newClock(t0)
	txs := 0
	cfg := store.WithHooks(testConfig(t.TempDir(), c), store.Hooks{CheckpointTxSlots: 1, AfterSlotTx: func() { txs++ }})
	s := mustOpen(t, cfg)
	defer mustClose(t, s)
	blocks := map[[2]int64]bool{}
	for k := range 40 {
		ts := c.Now().Add(-time.Duration(k) * time.Minute)
		mustApply(t, s, inc("c", 1, ts))
		for _, w := range cfg.Windows.AppendWindows(nil, ts, c.Now()) {
			blocks[[2]int64{int64(w.Res), w.Start / (int64(w.Res) * 64)}] = true
		}
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	// One transaction for the total, one for each block.
	if want := 1 + len(blocks); txs != want {
		t.Fatalf("%d slot transactions for the total and %d blocks, want %d", txs, len(blocks), want)
	}
	if got := mustTotal(t, s, "c"); got != 40 {
		t.Fatalf("total %d, want 40", got)
	}
}

// TestStore_JournalRecordsAfterRestart: the journal records a restart
// replays are counted from the first one left, not from record 1, which a
// checkpoint trimmed.
func TestStore_JournalRecordsAfterRestart(t *testing.T) {
	c := newClock(t0)
	dir := t.TempDir()
	s := mustOpen(t, testConfig(dir, c))
	for range 3 {
		mustApply(t, s, inc("a", 1, c.Now()))
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, inc("a", 1, c.Now()))
	mustApply(t, s, inc("b", 1, c.Now()))
	if got := s.Stats().JournalRecords; got != 2 {
		t.Fatalf("%d journal records before the crash, want 2", got)
	}
	crashed := copyDir(t, dir)
	mustClose(t, s)
	s = mustOpen(t, testConfig(crashed, c))
	defer mustClose(t, s)
	if got := s.Stats().JournalRecords; got != 2 {
		t.Fatalf("%d journal records after the restart, want 2", got)
	}
	if got := mustTotal(t, s, "a"); got != 4 {
		t.Fatalf("a = %d after the restart, want 4", got)
	}
}

// TestStore_TrimKeepsLaterRecords: a checkpoint trims the journal records
// its snapshot covered and keeps those committed while it ran, which a
// restart replays.
func TestStore_TrimKeepsLaterRecords(t *testing.T) {
	c := newClock(t0)
	dir := t.TempDir()
	var s *store.Store
	during := false
	cfg := store.WithHooks(testConfig(dir, c), store.Hooks{CheckpointTxSlots: 7, AfterSlotTx: func() {
		if !during {
			during = true
			for range 3 {
				mustApply(t, s, inc("later", 1, c.Now()))
			}
		}
	}})
	s = mustOpen(t, cfg)
	for i := range 50 {
		mustApply(t, s, inc(fmt.Sprintf("c%02d", i), 1, c.Now()))
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().JournalRecords; got != 3 {
		t.Fatalf("%d journal records after the checkpoint, want the 3 committed while it ran", got)
	}
	crashed := copyDir(t, dir)
	mustClose(t, s)
	r := mustOpen(t, testConfig(crashed, c))
	defer mustClose(t, r)
	if got := r.Stats().JournalRecords; got != 3 {
		t.Fatalf("%d journal records replayed, want 3", got)
	}
	if got := mustTotal(t, r, "later"); got != 3 {
		t.Fatalf("later = %d after the restart, want 3", got)
	}
	if got := mustTotal(t, r, "c49"); got != 1 {
		t.Fatalf("c49 = %d after the restart, want 1", got)
	}
}
