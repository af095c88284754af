package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

func sameCounters(tb testing.TB, names []string, want map[string]uint64, now time.Time, stores ...*store.Store) {
	tb.Helper()
	for _, n := range names {
		var ref []uint64
		for i, s := range stores {
			if got := mustTotal(tb, s, n); got != want[n] {
				tb.Fatalf("store %d: total of %s = %d, want %d", i, n, got, want[n])
			}
			pts, _ := mustRange(tb, s, n, window.Query{From: now.Add(-3 * time.Hour), To: now.Add(time.Minute), Step: time.Minute}, now)
			if i == 0 {
				ref = pts
				continue
			}
			for j := range pts {
				if pts[j] != ref[j] {
					tb.Fatalf("store %d: %s point %d = %d, store 0 has %d", i, n, j, pts[j], ref[j])
				}
			}
		}
	}
}

func TestStore_Replicate_Chunked(t *testing.T) {
	c := newClock(t0)
	a := mustOpen(t, testConfig(t.TempDir(), c))
	b := mustOpen(t, testConfig(t.TempDir(), c))
	ctx := context.Background()
	now := c.Now()
	want := map[string]uint64{}
	var names []string
	for i := 0; i < 40; i++ {
		names = append(names, fmt.Sprintf("c%02d", i))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 3; round++ {
		for i := 0; i < 100; i++ {
			n := names[r.IntN(len(names))]
			amt := uint64(r.IntN(9) + 1)
			ts := now.Add(-time.Duration(r.IntN(150)) * time.Minute)
			s := a
			if r.IntN(3) == 0 {
				s = b
			}
			mustApply(t, s, inc(n, amt, ts))
			want[n] += amt
		}
		if round == 1 {
			// Half of A's entries in state.db, half in mem.
			if err := a.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	syncAll(t, a, b, 200)
	syncAll(t, b, a, 150)
	sameCounters(t, names, want, now, a, b)
	da, db := a.Digest(), b.Digest()
	if len(da) != 2 || da[a.Replica()] != db[a.Replica()] || da[b.Replica()] != db[b.Replica()] {
		t.Fatalf("digests differ after sync: %v vs %v", da, db)
	}
	// Converged: nothing more to send.
	c1, err := a.EntriesSince(b.Replica(), db[b.Replica()], 1<<20)
	if err != nil || len(c1.Deltas) != 0 || !c1.Done {
		t.Fatalf("converged chunk = %+v, %v", c1, err)
	}

	// A replica that lost its data directory comes back new and learns every
	// other replica's entries, B's included, from A alone.
	wiped := mustOpen(t, testConfig(t.TempDir(), c))
	syncAll(t, a, wiped, 300)
	sameCounters(t, names, want, now, a, b, wiped)
}

// TestStore_Replicate_Model runs random histories against three stores:
// increments, broadcasts delivered late, twice or never, checkpoints, crashes
// that keep only what is on disk, and anti-entropy in chunks. After a final
// anti-entropy round every store must hold exactly the acknowledged counts.
func TestStore_Replicate_Model(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := newClock(t0)
		now := c.Now()
		m := newModelCluster(t, rt, c)
		defer m.close()
		names := []string{"x", "y", "z"}
		want := map[string]uint64{}
		ctx := context.Background()
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			n := m.nodes[rapid.IntRange(0, 2).Draw(rt, "node")]
			if rapid.IntRange(0, 2).Draw(rt, "increment") > 0 {
				m.step(rt, n)
				continue
			}
			name := rapid.SampledFrom(names).Draw(rt, "name")
			amt := rapid.Uint64Range(1, 50).Draw(rt, "amount")
			ago := time.Duration(rapid.IntRange(0, 120).Draw(rt, "ago")) * time.Minute
			if _, err := n.s.Apply(ctx, &store.Request{Increments: []store.Increment{inc(name, amt, now.Add(-ago))}}); err != nil {
				rt.Fatal(err)
			}
			want[name] += amt
		}
		m.syncAll()
		sameCounters(t, names, want, now, m.nodes[0].s, m.nodes[1].s, m.nodes[2].s)
	})
}

// modelCluster is three stores for the replication model tests, with every
// delta they commit kept as broadcast (wire).
type modelCluster struct {
	t     *testing.T
	c     *clock
	mu    sync.Mutex
	wire  []crdt.Delta
	nodes []*modelNode
}

type modelNode struct {
	dir string
	s   *store.Store
}

func newModelCluster(t *testing.T, rt *rapid.T, c *clock) *modelCluster {
	m := &modelCluster{t: t, c: c}
	for range 3 {
		dir := t.TempDir()
		m.nodes = append(m.nodes, &modelNode{dir: dir, s: m.open(rt, dir)})
	}
	return m
}

func (m *modelCluster) open(rt *rapid.T, dir string) *store.Store {
	cfg := testConfig(dir, m.c)
	cfg.Sink = entrySink(func(ds []crdt.Delta) {
		m.mu.Lock()
		m.wire = append(m.wire, ds...)
		m.mu.Unlock()
	})
	s, err := store.Open(cfg)
	if err != nil {
		rt.Fatal(err)
	}
	return s
}

func (m *modelCluster) close() {
	for _, n := range m.nodes {
		n.s.Close(context.Background())
	}
}

// step runs one of the actions both model tests share at n: deliver a
// broadcast (possibly stale or repeated), checkpoint, crash (restart from
// what is on disk right now), or anti-entropy from another node cut short.
func (m *modelCluster) step(rt *rapid.T, n *modelNode) {
	ctx := context.Background()
	switch rapid.IntRange(0, 3).Draw(rt, "shared action") {
	case 0:
		m.mu.Lock()
		var d crdt.Delta
		ok := len(m.wire) > 0
		if ok {
			d = m.wire[rapid.IntRange(0, len(m.wire)-1).Draw(rt, "delta")]
		}
		m.mu.Unlock()
		if ok {
			if _, err := n.s.Merge(ctx, []crdt.Delta{d}, nil); err != nil {
				rt.Fatal(err)
			}
		}
	case 1:
		if err := n.s.Checkpoint(ctx); err != nil {
			rt.Fatal(err)
		}
	case 2:
		crashed := copyDir(m.t, n.dir)
		n.s.Close(ctx)
		n.dir, n.s = crashed, m.open(rt, crashed)
	case 3:
		from := m.nodes[rapid.IntRange(0, 2).Draw(rt, "from")]
		if from != n {
			syncSome(m.t, from.s, n.s, rapid.IntRange(1, 400).Draw(rt, "chunk"), rapid.IntRange(-1, 3).Draw(rt, "chunks"))
		}
	}
}

// syncAll runs a full anti-entropy round between every ordered pair, twice.
func (m *modelCluster) syncAll() {
	for range 2 {
		for _, from := range m.nodes {
			for _, to := range m.nodes {
				if from != to {
					syncAll(m.t, from.s, to.s, 256)
				}
			}
		}
	}
}

func TestStore_Merge_ReturnsWhatItLearned(t *testing.T) {
	c := newClock(t0)
	cfg := testConfig(t.TempDir(), c)
	var mu sync.Mutex
	var own []crdt.Delta
	cfg.Sink = entrySink(func(ds []crdt.Delta) {
		mu.Lock()
		own = append(own, ds...)
		mu.Unlock()
	})
	s := mustOpen(t, cfg)
	ctx := context.Background()
	peer := crdt.ReplicaID{9}
	d := crdt.Delta{Slot: crdt.TotalSlot("m"), Entry: crdt.Entry{Replica: peer, Value: 5, Seq: 3}}
	stale := crdt.Delta{Slot: crdt.TotalSlot("m"), Entry: crdt.Entry{Replica: peer, Value: 4, Seq: 2}}
	learned, err := s.Merge(ctx, []crdt.Delta{d}, nil)
	if err != nil || len(learned) != 1 || learned[0] != d {
		t.Fatalf("first merge learned %v, %v", learned, err)
	}
	for _, again := range []crdt.Delta{d, stale} {
		if learned, err := s.Merge(ctx, []crdt.Delta{again}, nil); err != nil || len(learned) != 0 {
			t.Fatalf("merging %+v again learned %v, %v", again, learned, err)
		}
	}
	mustApply(t, s, inc("m", 1, c.Now()))
	mu.Lock()
	defer mu.Unlock()
	for _, o := range own {
		if o.Entry.Replica != s.Replica() {
			t.Fatalf("the sink saw another replica's entry %+v", o)
		}
	}
	if len(own) != 4 {
		t.Fatalf("the sink saw %d entries, want 4", len(own))
	}
	if got := mustTotal(t, s, "m"); got != 6 {
		t.Fatalf("total = %d, want 6", got)
	}
}

// TestStore_ChainChunk_ColumnWithNothingAboveBase: a block column whose seq
// is above a chain's base, but whose entries are not (the entry that gave
// the column its seq expired and was dropped), gives nothing, and the chunk
// goes on to the next key of the seq index.
func TestStore_ChainChunk_ColumnWithNothingAboveBase(t *testing.T) {
	c := newClock(t0)
	s := mustOpen(t, testConfig(t.TempDir(), c))
	ctx := context.Background()
	now := c.Now()
	const span = 64 * 60 // a block of minutes
	w0 := time.Unix((now.Add(-2*time.Hour).Unix()/span)*span, 0)
	w60 := w0.Add(60 * time.Minute)
	// seq 1 raises window 60 of the block, seq 2 window 0: the column's
	// seq is 2.
	mustApply(t, s, inc("a", 1, w60))
	mustApply(t, s, inc("a", 1, w0))
	mustApply(t, s, inc("b", 1, now)) // seq 3: the next keys of the index
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// Window 0 expires, window 60 not; another replica's entry in the
	// block makes the next checkpoint rewrite it without window 0.
	c.Advance(w0.Add(48*time.Hour + 30*time.Minute).Sub(now))
	other := crdt.Delta{Slot: crdt.Slot{Name: "a", Res: 60, Start: w0.Add(61 * time.Minute).Unix()}, Entry: crdt.Entry{Replica: crdt.ReplicaID{9}, Value: 1, Seq: 1}}
	if _, err := s.Merge(ctx, []crdt.Delta{other}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := s.ChainChunk(s.Replica(), 1, 1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Every entry of this replica above the base: a's total, hour and day
	// (seq 2), and b's four slots (seq 3); window 60 of a (seq 1) is not.
	got := map[string]bool{}
	for _, d := range ch.Deltas {
		if d.Entry.Seq <= 1 {
			t.Errorf("chunk holds %+v, at or below the base", d)
		}
		got[fmt.Sprintf("%s/%d", d.Slot.Name, d.Slot.Res)] = true
	}
	for _, want := range []string{"a/0", "a/3600", "a/86400", "b/0", "b/60", "b/3600", "b/86400"} {
		if !got[want] {
			t.Errorf("chunk lacks %s: a key after a's empty column was skipped? (has %v)", want, got)
		}
	}
	if !ch.Done {
		t.Error("chunk not done")
	}
}

// TestStore_Replicate_ModelWithExpiry: random histories over two days of
// event times at three stores, with the clock moving on so that windows (and
// the windows a block holds) expire while increments, broadcasts, crashes,
// checkpoints and anti-entropy chains in small chunks go on. After a final
// anti-entropy round every store holds exactly the acknowledged counts: every
// total, and every minute window still retained.
func TestStore_Replicate_ModelWithExpiry(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := newClock(t0)
		m := newModelCluster(t, rt, c)
		defer m.close()
		nodes := m.nodes
		names := []string{"x", "y"}
		type win struct {
			name  string
			start int64
		}
		want := map[string]uint64{}
		minutes := map[win]uint64{}
		ctx := context.Background()
		for i, steps := 0, rapid.IntRange(1, 50).Draw(rt, "steps"); i < steps; i++ {
			n := nodes[rapid.IntRange(0, 2).Draw(rt, "node")]
			switch rapid.IntRange(0, 3).Draw(rt, "action") {
			case 0:
				name := rapid.SampledFrom(names).Draw(rt, "name")
				amt := rapid.Uint64Range(1, 50).Draw(rt, "amount")
				ts := c.Now().Add(-time.Duration(rapid.IntRange(0, 47*60).Draw(rt, "ago")) * time.Minute)
				if _, err := n.s.Apply(ctx, &store.Request{Increments: []store.Increment{inc(name, amt, ts)}}); err != nil {
					rt.Fatal(err)
				}
				want[name] += amt
				minutes[win{name, ts.Truncate(time.Minute).Unix()}] += amt
			case 1: // time passes; windows expire
				c.Advance(time.Duration(rapid.IntRange(1, 12*60).Draw(rt, "minutes")) * time.Minute)
				for _, n := range nodes {
					if err := n.s.Expire(ctx); err != nil {
						rt.Fatal(err)
					}
				}
			default:
				m.step(rt, n)
			}
		}
		m.syncAll()
		now := c.Now()
		q := window.Query{From: now.Add(-48 * time.Hour), To: now.Add(time.Minute), Step: time.Minute}
		for i, n := range nodes {
			for _, name := range names {
				if got := mustTotal(t, n.s, name); got != want[name] {
					rt.Fatalf("store %d: total of %s = %d, want %d", i, name, got, want[name])
				}
				pts, plan := mustRange(t, n.s, name, q, now)
				for j, got := range pts {
					start := plan.From.Add(time.Duration(j) * time.Minute).Unix()
					w := minutes[win{name, start}]
					if !n.s.Config().Windows.Retained(60, start, now) {
						w = 0 // past retention: no longer served
					}
					if got != w {
						rt.Fatalf("store %d: %s minute %s = %d, want %d", i, name, time.Unix(start, 0).UTC().Format(time.RFC3339), got, w)
					}
				}
			}
		}
	})
}
