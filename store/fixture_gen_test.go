package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// The fixtures in testdata/datadir are written by TestFixture_Generate with
// the store's own code, and only on purpose:
//
//	go test ./store/ -run TestFixture_Generate -update-fixtures
//
// It writes the four directories of fixtures and their expectations files,
// then checks each as TestFixture_Open does. The run is reproducible: replica
// IDs come from fixed bytes and the clock is the test's, so the expectations
// come out identical every time (the bbolt files need not be byte for byte:
// bbolt's page allocation is not deterministic). It writes only fixtures of
// the schema this build writes: a fixture of an older layout is data written
// by the code of its day, and stays as it is. (The schema 1 and 2 fixtures
// were written by this generator at commit 007550a, before schema 3.)
var updateFixtures = flag.Bool("update-fixtures", false, "rewrite the data-directory fixtures in testdata/datadir")

// fixtureNow is the clock at which the fixtures are read. Their history
// runs over the three days before it, with event times back to six years
// before it.
var fixtureNow = time.Date(2026, 12, 1, 12, 34, 56, 0, time.UTC)

// maxAmount is the largest amount the API takes in one increment.
const maxAmount = 1<<53 - 1

const fixtureComment = "Written by TestFixture_Generate (store/fixture_gen_test.go) with the store's own code; " +
	"read with the clock stopped at now, the default windows and background loops off. " +
	"Replica A (this directory, node-a, eu-west) took most increments; B (node-b, eu-west) and C (node-c, us-east) were merged in by anti-entropy, " +
	"C's last commits by broadcast only (the digest lags them); D's DC is unknown to A. " +
	"Event times reach from the future edge (now+5m) to six years back, so windows sit at each resolution's retention edge and some counts have no window left; " +
	"1m windows of the first days have expired; some of them are still in state.db, hidden by retention (the janitor last ran at now-25h). " +
	"overflow.max holds an entry at 2^64-1, overflow.sat two entries whose sum saturates. " +
	"dup-1 and dup-2 were applied at A and B both, so one copy of each is compensated. " +
	"Keys applied 25 hours before now (order-1001, b-expired) have expired and are not listed. " +
	"A crashed fixture is the directory copied while open: commits of the last ten minutes (requests, merges, key records, compensations) are only in journal.db."

// TestFixture_Generate writes the fixtures, when asked to (see
// updateFixtures).
func TestFixture_Generate(t *testing.T) {
	if !*updateFixtures {
		t.Skip("rewrites testdata/datadir only with -update-fixtures")
	}
	for _, schema := range []uint64{3} {
		exp := generateFixtures(t, schema)
		for _, name := range []string{fmt.Sprintf("schema%d-closed", schema), fmt.Sprintf("schema%d-crashed", schema)} {
			t.Run(name, func(t *testing.T) {
				got := readFixture(t, name)
				if !equalJSON(t, got.fixtureState, exp.fixtureState) {
					t.Fatalf("%s.json does not hold what was read", name)
				}
				checkFixture(t, copyFixture(t, name), got)
			})
		}
	}
}

func equalJSON(tb testing.TB, a, b any) bool {
	tb.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		tb.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// fixtureGen drives four replicas through the fixtures' history.
type fixtureGen struct {
	t          *testing.T
	clk        *clock
	a, b, c, d *store.Store
	// live are the keys whose retry at A must replay once the history is
	// written.
	live []fixtureKey
}

// fixtureReplicaID is replica name's ID: fixed, so that every run writes
// the same directories.
func fixtureReplicaID(name string) *bytes.Reader {
	sum := sha256.Sum256([]byte("abacus fixture replica " + name))
	return bytes.NewReader(sum[:16])
}

func (g *fixtureGen) open(name, dir string) *store.Store {
	// Checkpoints in transactions as large as production's, not in the
	// small ones of the other tests.
	cfg := store.WithHooks(testConfig(dir, g.clk), store.Hooks{})
	cfg.Rand = fixtureReplicaID(name)
	s, err := store.Open(cfg)
	if err != nil {
		g.t.Fatalf("open %s: %v", name, err)
	}
	return s
}

// at sets the clock every replica runs on.
func (g *fixtureGen) at(t time.Time) { g.clk.Advance(t.Sub(g.clk.Now())) }

func (g *fixtureGen) apply(s *store.Store, incs ...store.Increment) {
	g.t.Helper()
	if _, err := s.Apply(context.Background(), &store.Request{Increments: incs}); err != nil {
		g.t.Fatalf("apply %+v: %v", incs, err)
	}
}

// keyed applies incs under key at s; a key applied within the key TTL of
// fixtureNow is listed as live, once.
func (g *fixtureGen) keyed(s *store.Store, key string, incs ...store.Increment) {
	g.t.Helper()
	k := fixtureKey{Key: key}
	// The fingerprint of a body without event times, as clients send
	// them: a retry that lands elsewhere gets another clock's times.
	var desc strings.Builder
	for _, inc := range incs {
		k.Increments = append(k.Increments, fixtureInc{Name: inc.Name, Amount: inc.Amount, TS: inc.TS.UTC()})
		fmt.Fprintf(&desc, "%s %d\n", inc.Name, inc.Amount)
	}
	fp := sha256.Sum256([]byte(desc.String()))
	k.Fingerprint = hex.EncodeToString(fp[:])
	req := k.request(g.t)
	req.Render = func(r store.Result) []byte {
		b, _ := json.Marshal(map[string]any{"key": key, "totals": r.Totals})
		return b
	}
	res, err := s.Apply(context.Background(), req)
	if err != nil || res.Replayed {
		g.t.Fatalf("keyed %q: %+v, %v; want applied", key, res, err)
	}
	live := g.clk.Now().After(fixtureNow.Add(-s.Config().IdempotencyTTL))
	if live && !slices.ContainsFunc(g.live, func(l fixtureKey) bool { return l.Key == key }) {
		g.live = append(g.live, k)
	}
}

// spread applies, in one request per counter, increments of each counter
// at a varied choice of the offsets before now.
func (g *fixtureGen) spread(s *store.Store, names []string, offsets []time.Duration, amounts []uint64) {
	g.t.Helper()
	now := g.clk.Now()
	for i, name := range names {
		var incs []store.Increment
		for j, off := range offsets {
			if (i+j)%3 == 0 {
				continue
			}
			incs = append(incs, inc(name, amounts[(i*7+j)%len(amounts)], now.Add(-off)))
		}
		g.apply(s, incs...)
	}
}

func (g *fixtureGen) sync(from, to *store.Store) { syncAll(g.t, from, to, 1<<10) }

// broadcast merges the entries of from's own replica above after into to
// as gossip broadcasts carry them (and key records as their push does):
// values without covers, so that to's digest does not move.
func (g *fixtureGen) broadcast(from, to *store.Store, after uint64) {
	g.t.Helper()
	ch, err := from.EntriesSince(from.Replica(), after, 1<<20)
	if err != nil {
		g.t.Fatal(err)
	}
	if !ch.Done {
		g.t.Fatal("broadcast: entries do not fit one chunk")
	}
	if _, err := to.MergeChanges(context.Background(), store.Changes{Deltas: ch.Deltas, Records: ch.Records, Comps: ch.Comps}); err != nil {
		g.t.Fatal(err)
	}
}

// generateFixtures writes schemaN-closed and schemaN-crashed, and returns
// their expectations (the same but for Closed and JournalRecords).
func generateFixtures(t *testing.T, schema uint64) fixtureExpect {
	ctx := context.Background()
	g := &fixtureGen{t: t, clk: &clock{t: fixtureNow.Add(-72 * time.Hour)}}
	dirA := t.TempDir()
	g.a = g.open("A", dirA)
	if got := g.a.Schema(); got != schema {
		t.Fatalf("A is at schema %d, want %d", got, schema)
	}
	g.b, g.c, g.d = g.open("B", t.TempDir()), g.open("C", t.TempDir()), g.open("D", t.TempDir())
	defer func() {
		for _, s := range []*store.Store{g.a, g.b, g.c, g.d} {
			s.Close(ctx)
		}
	}()
	for _, info := range []store.ReplicaInfo{
		{ID: g.a.Replica(), Node: "node-a", DC: "eu-west"},
		{ID: g.b.Replica(), Node: "node-b", DC: "eu-west"},
		{ID: g.c.Replica(), Node: "node-c", DC: "us-east"},
	} {
		g.a.SetReplicaInfo(info)
	}

	names := []string{"a", "a.b", "a:b", "A", "-", "page_views", strings.Repeat("L", 128)}
	offsets := []time.Duration{
		0, 5 * time.Hour, 47*time.Hour + 59*time.Minute, 49 * time.Hour,
		30 * 24 * time.Hour, 91 * 24 * time.Hour, 1826 * 24 * time.Hour,
	}
	amounts := []uint64{1, 2, 7, 1000, 1 << 40, maxAmount}

	// Day 1 (now-72h): every replica counts.
	g.spread(g.a, names, offsets, amounts)
	g.spread(g.b, names[:4], offsets[:5], amounts[:4])
	g.spread(g.c, names[3:7], offsets[1:], amounts)
	g.apply(g.a, inc("ancient", 3, fixtureNow.Add(-2000*24*time.Hour)), inc("ancient", 4, fixtureNow.Add(-2100*24*time.Hour)))
	if err := g.a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	// Day 2 (now-25h): keys that will have expired by now; D appears.
	g.at(fixtureNow.Add(-25 * time.Hour))
	g.spread(g.a, names[:4], offsets, amounts[2:])
	g.keyed(g.a, "order-1001", inc("orders", 1, g.clk.Now()), inc("revenue.cents", 4599, g.clk.Now()))
	g.keyed(g.b, "b-expired", inc("orders", 1, g.clk.Now().Add(-time.Minute)))
	g.spread(g.d, []string{"page_views", "d.only"}, offsets[:4], []uint64{3, 5})
	g.sync(g.b, g.a)
	g.sync(g.c, g.a)
	g.sync(g.d, g.a)
	if err := g.a.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	// The janitor's last run: the 1m windows it leaves of day 1 have expired
	// by now, and are still on disk, as in any directory that stood still.
	if err := g.a.Expire(ctx); err != nil {
		t.Fatal(err)
	}

	// Day 3 (now-1h): live keys, a duplicate, counters at the overflow
	// edge, and a restart.
	g.at(fixtureNow.Add(-time.Hour))
	g.spread(g.a, names[4:], offsets[:5], amounts)
	g.keyed(g.a, "order-2001", inc("orders", 1, g.clk.Now()), inc("revenue.cents", 1250, g.clk.Now()))
	g.keyed(g.a, "batch:7f3a 0001", inc("a", 2, g.clk.Now().Add(-2*time.Hour)), inc("page_views", 9, g.clk.Now()), inc("a", 3, g.clk.Now()))
	g.keyed(g.a, strings.Repeat("k", 255), inc("long.key", 1, g.clk.Now()))
	g.keyed(g.b, "b-order-7", inc("orders", 1, g.clk.Now()))
	g.keyed(g.a, "dup-1", inc("dup.count", 4, g.clk.Now()))
	g.clk.Advance(90 * time.Second) // the retry lands in another minute, at B
	g.keyed(g.b, "dup-1", inc("dup.count", 4, g.clk.Now()))
	g.apply(g.b, inc("dup.count", 1, g.clk.Now()))
	// overflow.max: A's entry reaches 2^64-1 exactly, then refuses +1; B
	// adds 1, and the total saturates.
	var incs []store.Increment
	for range 2048 {
		incs = append(incs, inc("overflow.max", maxAmount, g.clk.Now()))
	}
	g.apply(g.a, incs...)
	g.apply(g.a, inc("overflow.max", 2047, g.clk.Now()))
	if _, err := g.a.Apply(ctx, &store.Request{Increments: []store.Increment{inc("overflow.max", 1, g.clk.Now())}}); !errors.Is(err, store.ErrOverflow) {
		t.Fatalf("overflow.max +1 = %v, want ErrOverflow", err)
	}
	g.apply(g.b, inc("overflow.max", 1, g.clk.Now().Add(-24*time.Hour)))
	// overflow.sat: A and C each hold 2^63, far from their own limit.
	incs = incs[:0]
	for range 1024 {
		incs = append(incs, inc("overflow.sat", maxAmount, g.clk.Now()))
	}
	incs = append(incs, inc("overflow.sat", 1024, g.clk.Now()))
	g.apply(g.a, incs...)
	g.apply(g.c, incs...)
	g.sync(g.b, g.a)
	g.sync(g.a, g.b)
	g.sync(g.c, g.a)
	if err := g.a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	g.a = g.open("A", dirA)

	// The last ten minutes: commits that reach only the journal.
	g.at(fixtureNow.Add(-10 * time.Minute))
	cSeq := g.c.Seq()
	g.spread(g.a, names[:3], offsets[:5], amounts)
	g.keyed(g.a, "order-3001", inc("orders", 1, g.clk.Now()), inc("revenue.cents", 9900, g.clk.Now()))
	g.keyed(g.c, "c-order-1", inc("orders", 2, g.clk.Now()))
	g.keyed(g.a, "dup-2", inc("dup.count", 6, g.clk.Now()), inc("revenue.cents", 600, g.clk.Now()))
	g.clk.Advance(time.Minute)
	g.keyed(g.b, "dup-2", inc("dup.count", 6, g.clk.Now()), inc("revenue.cents", 600, g.clk.Now()))
	g.spread(g.b, names[5:], offsets[:3], amounts[:3])
	g.sync(g.b, g.a)
	g.sync(g.a, g.b)
	g.clk.Advance(5 * time.Minute)
	g.spread(g.c, []string{"page_views", "c.recent"}, offsets[:3], []uint64{11})
	g.broadcast(g.c, g.a, cSeq)
	g.at(fixtureNow)
	now := fixtureNow
	g.apply(g.a,
		inc("retention.edge", 1, now.Add(-48*time.Hour+time.Second)),        // the oldest 1m window kept
		inc("retention.edge", 2, now.Add(-48*time.Hour-time.Second)),        // the same window
		inc("retention.edge", 4, now.Add(-48*time.Hour-57*time.Second)),     // no 1m window
		inc("retention.edge", 8, now.Add(-90*24*time.Hour+time.Second)),     // the oldest 1h window kept
		inc("retention.edge", 16, now.Add(-90*24*time.Hour-35*time.Minute)), // no 1h window
		inc("retention.edge", 32, now.Add(-1825*24*time.Hour)),              // the oldest 1d window kept
		inc("retention.edge", 64, now.Add(-1825*24*time.Hour-13*time.Hour)), // no 1d window
		inc("future", 5, now.Add(window.MaxFuture-time.Second)),             // the newest windows there can be
		inc("future", 6, now),
	)

	// Read everything, and the responses the live keys replay.
	exp := fixtureExpect{
		Comment: fixtureComment,
		Schema:  schema,
		Now:     fixtureNow,
		Windows: g.a.Config().Windows.String(),
		Replica: g.a.Replica().String(),
	}
	exp.fixtureState = observeFixture(t, g.a)
	for _, k := range g.live {
		res, err := g.a.Apply(ctx, k.request(t))
		if err != nil || !res.Replayed {
			t.Fatalf("retry of %q at A = %+v, %v; want a replay", k.Key, res, err)
		}
		k.Response = string(res.Response)
		exp.Keys = append(exp.Keys, k)
	}
	slices.SortFunc(exp.Keys, func(x, y fixtureKey) int { return strings.Compare(x.Key, y.Key) })
	if !equalJSON(t, observeFixture(t, g.a), exp.fixtureState) {
		t.Fatal("the retries changed what A reads")
	}
	st := g.a.Stats()
	if st.JournalRecords == 0 {
		t.Fatal("nothing in the journal to replay")
	}
	crashed := exp
	crashed.JournalRecords = st.JournalRecords
	writeFixture(t, fmt.Sprintf("schema%d-crashed", schema), dirA, crashed)
	if err := g.a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed := exp
	closed.Closed = true
	writeFixture(t, fmt.Sprintf("schema%d-closed", schema), dirA, closed)
	return exp
}

// writeFixture replaces fixture name with the files of dir as they are
// now, and its expectations with exp.
func writeFixture(t *testing.T, name, dir string, exp fixtureExpect) {
	t.Helper()
	to := filepath.Join(fixtureDir, name)
	if err := os.RemoveAll(to); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	// state.db is compacted: a quarter of the size, the same keys and
	// values. (It is copied first: an open store holds its lock.)
	tmp := filepath.Join(t.TempDir(), store.StateFile)
	if err := store.CopyFile(tmp, filepath.Join(dir, store.StateFile)); err != nil {
		t.Fatal(err)
	}
	if err := store.CompactFile(filepath.Join(to, store.StateFile), tmp); err != nil {
		t.Fatal(err)
	}
	if err := store.CopyFile(filepath.Join(to, store.JournalFile), filepath.Join(dir, store.JournalFile)); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(exp, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fixtureDir, name+".json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
