package store_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// Data-directory fixtures: directories written by the store's own code at
// each schema, with what its read API answered when they were written, so
// that a change of the on-disk layout (issue 14) is checked against data
// written before it. They are regenerated only on purpose, by
// TestFixture_Generate (fixture_gen_test.go); once a layout is released,
// its fixtures are never regenerated, only added to.

// fixtureDir holds one directory per fixture, each beside its expectations
// file NAME.json.
const fixtureDir = "testdata/datadir"

// fixtures are the fixture names: schemas 1, 2 and 3, each closed cleanly
// and as a crash left it (journal records not yet checkpointed).
var fixtures = []string{"schema1-closed", "schema1-crashed", "schema2-closed", "schema2-crashed", "schema3-closed", "schema3-crashed"}

// fixtureWantSchema is the schema a fixture's directory reports once opened
// by this build: Open migrates schemas 1 and 2 to 3.
func fixtureWantSchema(uint64) uint64 { return 3 }

// fixtureExpect is a fixture's expectations file.
type fixtureExpect struct {
	Comment string `json:"comment"`
	// Schema is the schema the directory was written at.
	Schema uint64 `json:"schema"`
	// Now is the clock the directory was read at. The store must be opened
	// with it: windows and key records expire relative to the clock, and a
	// fixture read at any later time would rot.
	Now time.Time `json:"now"`
	// Windows is the store's window configuration (window.ParseConfig).
	Windows string `json:"windows"`
	// Replica is the directory's replica ID.
	Replica string `json:"replica"`
	// Closed is true for a directory closed cleanly, false for one copied
	// while its store was open, with JournalRecords not yet checkpointed.
	Closed         bool   `json:"closed"`
	JournalRecords uint64 `json:"journal_records,omitempty"`
	fixtureState
	// Keys are the idempotency keys still live at Now: a retry of each is
	// a replay of Response.
	Keys []fixtureKey `json:"keys"`
}

// fixtureState is everything read back through the store's read API.
type fixtureState struct {
	// Digest is the version vector: replica ID → seq.
	Digest map[string]uint64 `json:"digest"`
	// Counters lists every counter (List), in name order.
	Counters []fixtureCounter `json:"counters"`
}

type fixtureCounter struct {
	Name  string `json:"name"`
	Total uint64 `json:"total"`
	// Windows: resolution ("1m") → window start (RFC 3339) → count, for
	// every window retained at Now; windows that read zero are left out.
	Windows map[string]map[string]uint64 `json:"windows"`
	// Replicas is Replicas(name), in its order.
	Replicas []fixtureReplica `json:"replicas"`
	// DCs is CountsByDC over the same windows as Windows.
	DCs []fixtureDC `json:"dcs"`
}

type fixtureReplica struct {
	Replica string `json:"replica"`
	Node    string `json:"node"`
	DC      string `json:"dc"`
	Count   uint64 `json:"count"`
}

type fixtureDC struct {
	DC      string                       `json:"dc"`
	Total   uint64                       `json:"total"`
	Windows map[string]map[string]uint64 `json:"windows"`
}

type fixtureKey struct {
	Key         string       `json:"key"`
	Fingerprint string       `json:"fingerprint"` // hex
	Increments  []fixtureInc `json:"increments"`
	Response    string       `json:"response"`
}

type fixtureInc struct {
	Name   string    `json:"name"`
	Amount uint64    `json:"amount"`
	TS     time.Time `json:"ts"`
}

func (k fixtureKey) request(tb testing.TB) *store.Request {
	tb.Helper()
	req := &store.Request{IdempotencyKey: k.Key, Render: func(store.Result) []byte {
		tb.Errorf("key %q: a retry rendered a new response", k.Key)
		return nil
	}}
	fp, err := hex.DecodeString(k.Fingerprint)
	if err != nil || len(fp) != len(req.Fingerprint) {
		tb.Fatalf("key %q: fingerprint %q", k.Key, k.Fingerprint)
	}
	copy(req.Fingerprint[:], fp)
	for _, inc := range k.Increments {
		req.Increments = append(req.Increments, store.Increment{Name: inc.Name, Amount: inc.Amount, TS: inc.TS})
	}
	return req
}

func readFixture(tb testing.TB, name string) fixtureExpect {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var exp fixtureExpect
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&exp); err != nil {
		tb.Fatalf("%s.json: %v", name, err)
	}
	return exp
}

// fixtureConfig is how a fixture is opened: its window configuration, its
// clock stopped at exp.Now, background loops off.
func fixtureConfig(tb testing.TB, dir string, exp fixtureExpect) store.Config {
	tb.Helper()
	w, err := window.ParseConfig(exp.Windows)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := store.DefaultConfig(dir)
	cfg.Windows = w
	cfg.Now = func() time.Time { return exp.Now }
	cfg.CheckpointInterval, cfg.JanitorInterval = -1, -1
	return store.WithHooks(cfg, store.Hooks{CheckpointTxSlots: 7})
}

// copyFixture copies a fixture's files into a new temporary directory.
func copyFixture(tb testing.TB, name string) string {
	tb.Helper()
	dir := tb.TempDir()
	ents, err := os.ReadDir(filepath.Join(fixtureDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		if err := store.CopyFile(filepath.Join(dir, e.Name()), filepath.Join(fixtureDir, name, e.Name())); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// fixtureSpans are, per resolution, the windows retained at now and up to
// window.MaxFuture ahead of it: every window a read can see.
func fixtureSpans(w window.Config, now time.Time) []store.Span {
	spans := make([]store.Span, len(w.Resolutions))
	for i, r := range w.Resolutions {
		spans[i] = store.Span{Res: r.Seconds(), From: r.Cutoff(now), To: r.Start(now.Add(window.MaxFuture)) + int64(r.Seconds())}
	}
	return spans
}

// windowMap turns counts of the windows of span (one per window) into a
// window-start → count map without the zeros, nil if all are zero.
func windowMap(sp store.Span, counts []uint64) map[string]uint64 {
	var m map[string]uint64
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if m == nil {
			m = make(map[string]uint64)
		}
		m[time.Unix(sp.From+int64(i)*int64(sp.Res), 0).UTC().Format(time.RFC3339)] = n
	}
	return m
}

// observeFixture reads everything a fixture's expectations hold through the
// store's read API.
func observeFixture(tb testing.TB, s *store.Store) fixtureState {
	tb.Helper()
	var st fixtureState
	st.Digest = make(map[string]uint64)
	for id, seq := range s.Digest() {
		st.Digest[id.String()] = seq
	}
	w, now := s.Config().Windows, s.Now()
	spans := fixtureSpans(w, now)
	for after := ""; ; {
		page, next, err := s.List("", after, 1000)
		if err != nil {
			tb.Fatal(err)
		}
		for _, nt := range page {
			st.Counters = append(st.Counters, observeCounter(tb, s, nt, w, spans, now))
		}
		if next == "" {
			break
		}
		after = next
	}
	return st
}

func observeCounter(tb testing.TB, s *store.Store, nt store.NameTotal, w window.Config, spans []store.Span, now time.Time) fixtureCounter {
	tb.Helper()
	total, err := s.Total(nt.Name)
	if err != nil {
		tb.Fatal(err)
	}
	if total != nt.Total {
		tb.Errorf("counter %s: List says total %d, Total %d", nt.Name, nt.Total, total)
	}
	c := fixtureCounter{Name: nt.Name, Total: total, Windows: map[string]map[string]uint64{}}
	for i, r := range w.Resolutions {
		sp := spans[i]
		p, err := w.Plan(window.Query{From: time.Unix(sp.From, 0), To: time.Unix(sp.To, 0), Step: r.Size}, now)
		if err != nil {
			tb.Fatal(err)
		}
		if p.Resolution != r || p.From.Unix() != sp.From || p.To.Unix() != sp.To || p.Partial {
			tb.Fatalf("plan of %s windows is %+v, want every window of it retained at %v", r, p, now)
		}
		pts, err := s.Range(nt.Name, p)
		if err != nil {
			tb.Fatal(err)
		}
		if m := windowMap(sp, pts); m != nil {
			c.Windows[window.FormatDuration(r.Size)] = m
		}
	}
	reps, err := s.Replicas(nt.Name)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range reps {
		c.Replicas = append(c.Replicas, fixtureReplica{Replica: r.ID.String(), Node: r.Node, DC: r.DC, Count: r.Count})
	}
	dcs, err := s.CountsByDC(nt.Name, spans)
	if err != nil {
		tb.Fatal(err)
	}
	for _, d := range dcs {
		fd := fixtureDC{DC: d.DC, Total: d.Total, Windows: map[string]map[string]uint64{}}
		for i, r := range w.Resolutions {
			if m := windowMap(spans[i], d.Windows[i]); m != nil {
				fd.Windows[window.FormatDuration(r.Size)] = m
			}
		}
		c.DCs = append(c.DCs, fd)
	}
	return c
}

// diffFixture reports every difference between what was expected and what
// was read, naming what is missing, extra or different.
func diffFixture(want, got fixtureState) []string {
	var out []string
	out = append(out, diffMap("digest", want.Digest, got.Digest)...)
	wc := make(map[string]fixtureCounter)
	for _, c := range want.Counters {
		wc[c.Name] = c
	}
	gc := make(map[string]fixtureCounter)
	for _, c := range got.Counters {
		gc[c.Name] = c
	}
	for _, name := range unionKeys(wc, gc) {
		w, inW := wc[name]
		g, inG := gc[name]
		switch {
		case !inG:
			out = append(out, fmt.Sprintf("counter %s is missing (want total %d)", name, w.Total))
			continue
		case !inW:
			out = append(out, fmt.Sprintf("counter %s is extra (total %d)", name, g.Total))
			continue
		}
		if w.Total != g.Total {
			out = append(out, fmt.Sprintf("counter %s: total %d, want %d", name, g.Total, w.Total))
		}
		out = append(out, diffWindows("counter "+name, w.Windows, g.Windows)...)
		if !slices.Equal(w.Replicas, g.Replicas) {
			out = append(out, fmt.Sprintf("counter %s: replicas %+v, want %+v", name, g.Replicas, w.Replicas))
		}
		wd := make(map[string]fixtureDC)
		for _, d := range w.DCs {
			wd[d.DC] = d
		}
		gd := make(map[string]fixtureDC)
		for _, d := range g.DCs {
			gd[d.DC] = d
		}
		for _, dc := range unionKeys(wd, gd) {
			w, inW := wd[dc]
			g, inG := gd[dc]
			what := fmt.Sprintf("counter %s dc %q", name, dc)
			switch {
			case !inG:
				out = append(out, what+" is missing")
			case !inW:
				out = append(out, what+" is extra")
			default:
				if w.Total != g.Total {
					out = append(out, fmt.Sprintf("%s: total %d, want %d", what, g.Total, w.Total))
				}
				out = append(out, diffWindows(what, w.Windows, g.Windows)...)
			}
		}
	}
	return out
}

func diffWindows(what string, want, got map[string]map[string]uint64) []string {
	var out []string
	for _, res := range unionKeys(want, got) {
		out = append(out, diffMap(what+" "+res+" window", want[res], got[res])...)
	}
	return out
}

func diffMap[V comparable](what string, want, got map[string]V) []string {
	var out []string
	for _, k := range unionKeys(want, got) {
		w, inW := want[k]
		g, inG := got[k]
		switch {
		case !inG:
			out = append(out, fmt.Sprintf("%s %s is missing (want %v)", what, k, w))
		case !inW:
			out = append(out, fmt.Sprintf("%s %s is extra (%v)", what, k, g))
		case w != g:
			out = append(out, fmt.Sprintf("%s %s: %v, want %v", what, k, g, w))
		}
	}
	return out
}

func unionKeys[V any](a, b map[string]V) []string {
	var ks []string
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// checkFixture opens the fixture directory dir with this build and checks
// it against exp: the schema it reports, every total, window, replica and
// datacenter share and the version vector; that a retry of each live key is
// a replay of its response that changes nothing; and all of it again after
// a close and a reopen.
func checkFixture(t *testing.T, dir string, exp fixtureExpect) {
	t.Helper()
	cfg := fixtureConfig(t, dir, exp)
	check := func(when string, s *store.Store) {
		t.Helper()
		if s.Replica().String() != exp.Replica {
			t.Errorf("%s: replica %s, want %s", when, s.Replica(), exp.Replica)
		}
		if got, want := s.Schema(), fixtureWantSchema(exp.Schema); got != want {
			t.Errorf("%s: schema %d, want %d", when, got, want)
		}
		if s.Restored() {
			t.Errorf("%s: the directory says it is a restored snapshot", when)
		}
		for _, d := range diffFixture(exp.fixtureState, observeFixture(t, s)) {
			t.Errorf("%s: %s", when, d)
		}
	}
	s, err := store.Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	check("on open", s)
	ctx := context.Background()
	for _, k := range exp.Keys {
		req := k.request(t)
		res, err := s.Apply(ctx, req)
		if err != nil || !res.Replayed || string(res.Response) != k.Response {
			t.Errorf("retry of key %q = replayed %v %q, %v; want a replay of %q", k.Key, res.Replayed, res.Response, err, k.Response)
		}
		req.Fingerprint[0] ^= 0xff
		if _, err := s.Apply(ctx, req); !errors.Is(err, store.ErrIdempotencyMismatch) {
			t.Errorf("key %q with another request = %v, want ErrIdempotencyMismatch", k.Key, err)
		}
	}
	check("after the retries", s)
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	s, err = store.Open(cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close(ctx)
	check("reopened", s)
}

// TestFixture_Open: every fixture data directory opens with this build and
// reads exactly as it did when it was written.
func TestFixture_Open(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			exp := readFixture(t, name)
			if len(exp.Counters) == 0 || len(exp.Keys) == 0 {
				t.Fatalf("%s.json expects no counters or no keys", name)
			}
			checkFixture(t, copyFixture(t, name), exp)
		})
	}
}

// TestFixture_CheckNamesEveryDifference: the comparison behind
// TestFixture_Open fails on a counter or a window that is missing or extra,
// not only on one that differs.
func TestFixture_CheckNamesEveryDifference(t *testing.T) {
	exp := readFixture(t, "schema1-closed")
	s := mustOpen(t, fixtureConfig(t, copyFixture(t, "schema1-closed"), exp))
	if d := diffFixture(exp.fixtureState, observeFixture(t, s)); len(d) != 0 {
		t.Fatalf("fixture differs before any change: %q", d)
	}
	// A new counter, and a counter's new window.
	mustApply(t, s, inc("fixture.new", 1, exp.Now), inc("ancient", 1, exp.Now.Add(4*time.Minute)))
	got := observeFixture(t, s)
	// Expect a window that is not there, and drop one that is.
	b, err := json.Marshal(exp.fixtureState)
	if err != nil {
		t.Fatal(err)
	}
	var want fixtureState
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for i := range want.Counters {
		switch c := &want.Counters[i]; c.Name {
		case "future":
			c.Windows["1m"]["2026-12-01T12:33:00Z"] = 1
		case "a":
			for start := range c.Windows["1h"] {
				delete(c.Windows["1h"], start)
				break
			}
		}
	}
	d := diffFixture(want, got)
	for _, w := range []string{
		"counter fixture.new is extra",
		"counter ancient: total 8, want 7",
		"counter ancient 1m window 2026-12-01T12:38:00Z is extra",
		"counter ancient dc \"eu-west\" 1m window 2026-12-01T12:38:00Z is extra",
		"counter future 1m window 2026-12-01T12:33:00Z is missing",
		"counter a 1h window ",
	} {
		if !slices.ContainsFunc(d, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("no difference reported as %q; got %q", w, d)
		}
	}
	// Besides: the digest, ancient's 1h and 1d windows twice, its replica.
	if len(d) != 13 {
		t.Errorf("%d differences, want 13: %q", len(d), d)
	}
}

// TestFixture_MigrationCutShort: a migration that a crash cut short leaves
// state.db as it was and a partial state.db.v3 beside it; the next start
// migrates again from the old file.
func TestFixture_MigrationCutShort(t *testing.T) {
	exp := readFixture(t, "schema2-crashed")
	dir := copyFixture(t, "schema2-crashed")
	partial := filepath.Join(dir, store.StateFile+".v3")
	if err := os.WriteFile(partial, []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFixture(t, dir, exp)
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("%s is still there after the migration: %v", partial, err)
	}
}
