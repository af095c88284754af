//go:build linux

package main

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The checker must be able to fail: each case doctors a consistent history
// or observation the way a broken node would, and expects the checker to say
// so.

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func at(min, sec int) time.Time {
	return t0.Add(time.Duration(min)*time.Minute + time.Duration(sec)*time.Second)
}

// fixture is a small consistent run: three nodes, two counters, acked ops
// (one retried and replayed), one indeterminate op that did apply, one
// indeterminate op with an unknown event time that did not.
func fixture() ([]Op, Observation) {
	ops := []Op{
		{Type: "op", ID: 1, Node: "n1", Key: "k1", Kind: "single", Outcome: OutcomeOK, Attempts: 1,
			Items: []Item{{Name: "a", Amount: 3, TS: at(0, 10)}}},
		{Type: "op", ID: 2, Node: "n2", Key: "k2", Kind: "batch", Outcome: OutcomeOK, Attempts: 2, Replayed: true,
			Items: []Item{{Name: "a", Amount: 2, TS: at(1, 59)}, {Name: "b", Amount: 5, TS: at(2, 0)}}},
		{Type: "op", ID: 3, Node: "n3", Key: "k3", Kind: "single", Outcome: OutcomeIndeterminate, Attempts: 5,
			Items: []Item{{Name: "b", Amount: 4, TS: at(2, 30)}}},
		{Type: "op", ID: 4, Node: "n1", Key: "k4", Kind: "single", Outcome: OutcomeIndeterminate, Attempts: 5,
			Items: []Item{{Name: "a", Amount: 7, DefaultTS: true, TSLo: at(0, 50), TSHi: at(1, 20)}}},
		{Type: "op", ID: 5, Node: "n1", Key: "k5", Kind: "single", Outcome: OutcomeOK, Attempts: 1,
			Items: []Item{{Name: "b", Amount: 1, DefaultTS: true, TS: at(2, 45)}}},
	}
	// a: 3 in minute 0, 2 in minute 1. b: 5+4 (op 3 applied) +1 in minute 2.
	node := func(name string) NodeObservation {
		return NodeObservation{
			Node:   name,
			Totals: map[string]uint64{"a": 5, "b": 10},
			Windows: map[string]map[int64]uint64{
				"a": {at(0, 0).Unix(): 3, at(1, 0).Unix(): 2},
				"b": {at(2, 0).Unix(): 10},
			},
			Listed:  map[string]uint64{"a": 5, "b": 10},
			Members: map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"},
		}
	}
	obs := Observation{From: at(0, 0), To: at(3, 0), Nodes: []NodeObservation{node("n1"), node("n2"), node("n3")},
		Converged: true, Seconds: 4, Bound: 90}
	return ops, obs
}

func TestCheck_Consistent(t *testing.T) {
	ops, obs := fixture()
	r := Check(ops, obs)
	if !r.Pass {
		t.Fatalf("a consistent run fails: %v", r.Failures)
	}
	if r.AmountAcked != 11 || r.AmountIndeterminate != 11 || r.OpsReplayed != 1 || r.OpsRetried != 3 || r.Lost != 0 || r.DoubleCounted != 0 {
		t.Errorf("numbers: %+v", r)
	}
	// The indeterminate op with unknown event time may land in minute 0 or
	// 1: the window counts it in both upper bounds but it is not required.
	obs.Nodes = nil
	for _, name := range []string{"n1", "n2", "n3"} {
		_, o := fixture()
		n := o.Nodes[0]
		n.Node = name
		n.Totals = map[string]uint64{"a": 12, "b": 10}
		n.Windows = map[string]map[int64]uint64{"a": {at(0, 0).Unix(): 3, at(1, 0).Unix(): 9}, "b": {at(2, 0).Unix(): 10}}
		n.Listed = map[string]uint64{"a": 12, "b": 10}
		obs.Nodes = append(obs.Nodes, n)
	}
	if r := Check(ops, obs); !r.Pass {
		t.Fatalf("an indeterminate op that applied fails the check: %v", r.Failures)
	}
}

func TestCheck_Fails(t *testing.T) {
	tests := []doctored{
		{
			name: "lost acked increment",
			doctor: func(ops []Op, obs *Observation) []Op {
				// Every node forgot op 1 (3 in a's minute 0).
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["a"] = 2
					obs.Nodes[i].Windows["a"][at(0, 0).Unix()] = 0
					obs.Nodes[i].Listed["a"] = 2
				}
				return ops
			},
			want:  "acknowledged increments lost",
			check: func(t *testing.T, r Result) { wantEq(t, "Lost", r.Lost, 3) },
		},
		{
			name: "acked op counted twice",
			doctor: func(ops []Op, obs *Observation) []Op {
				// Op 2 (a retried, replayed batch) applied twice everywhere.
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["a"] += 2
					obs.Nodes[i].Totals["b"] += 5
					obs.Nodes[i].Windows["a"][at(1, 0).Unix()] += 2
					obs.Nodes[i].Windows["b"][at(2, 0).Unix()] += 5
				}
				return ops
			},
			want: "more than was ever sent",
			check: func(t *testing.T, r Result) {
				// a: 7 > 5 + 7 is false (op 4 may have applied), so a hides
				// within the slack; b has none to spare: 15 > 6 + 4.
				wantEq(t, "DoubleCounted", r.DoubleCounted, 5)
			},
		},
		{
			name: "double count without indeterminate slack",
			doctor: func(ops []Op, obs *Observation) []Op {
				ops = ops[:3:3] // ops 1–3 only: a has no indeterminate amount
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["a"] = 7
					obs.Nodes[i].Windows["a"][at(1, 0).Unix()] = 4
					obs.Nodes[i].Totals["b"] = 9
					obs.Nodes[i].Windows["b"][at(2, 0).Unix()] = 9
				}
				return ops
			},
			want:  "a on n1: total 7 > acknowledged 5 + indeterminate 0",
			check: func(t *testing.T, r Result) { wantEq(t, "DoubleCounted", r.DoubleCounted, 2) },
		},
		{
			name: "divergent node",
			doctor: func(ops []Op, obs *Observation) []Op {
				// n3 never got b's indeterminate op that the others have.
				obs.Nodes[2].Totals["b"] = 6
				obs.Nodes[2].Windows["b"][at(2, 0).Unix()] = 6
				obs.Nodes[2].Listed["b"] = 6
				return ops
			},
			want:  "nodes disagree on the total",
			check: func(t *testing.T, r Result) { wantEq(t, "Divergent", uint64(r.Divergent), 2) },
		},
		{
			name: "window off by one",
			doctor: func(ops []Op, obs *Observation) []Op {
				// a's minute-0 increment reported in minute 1: the total is
				// right, the windows are not.
				for i := range obs.Nodes {
					w := obs.Nodes[i].Windows["a"]
					w[at(1, 0).Unix()] += w[at(0, 0).Unix()]
					delete(w, at(0, 0).Unix())
				}
				return ops
			},
			want: "a window 10:00 on n1: 0 < acknowledged 3",
			check: func(t *testing.T, r Result) {
				wantEq(t, "Lost", r.Lost, 0)
				wantEq(t, "WindowLost", r.WindowLost, 3*3)
			},
		},
		{
			name: "windows do not sum to the total",
			doctor: func(ops []Op, obs *Observation) []Op {
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["b"] = 9 // within bounds, but the windows say 10
				}
				return ops
			},
			want: "minute windows sum to 10 but its total is 9",
		},
		{
			name: "failed op",
			doctor: func(ops []Op, obs *Observation) []Op {
				return append(ops, Op{Type: "op", ID: 6, Node: "n2", Key: "k6", Kind: "single", Outcome: OutcomeFailed, Status: 400, Attempts: 1, Error: "bad",
					Items: []Item{{Name: "a", Amount: 1, TS: at(0, 0)}}})
			},
			want: "failed with status 400",
		},
		{
			name: "not converged",
			doctor: func(ops []Op, obs *Observation) []Op {
				obs.Converged = false
				return ops
			},
			want: "did not converge",
		},
		{
			name: "member not alive",
			doctor: func(ops []Op, obs *Observation) []Op {
				obs.Nodes[0].Members["n2"] = "dead"
				return ops
			},
			want: "n1 sees n2 as dead",
		},
		{
			name: "unreadable node",
			doctor: func(ops []Op, obs *Observation) []Op {
				obs.Nodes[1] = NodeObservation{Node: "n2", Err: "connection refused"}
				return ops
			},
			want: "node n2 could not be read",
		},
		{
			name: "unknown counter listed",
			doctor: func(ops []Op, obs *Observation) []Op {
				obs.Nodes[0].Listed["ghost"] = 1
				return ops
			},
			want: `lists counter "ghost"`,
		},
		{
			name: "key reused",
			doctor: func(ops []Op, obs *Observation) []Op {
				ops[4].Key = "k1" // same node as op 1
				return ops
			},
			want: "reuses the idempotency key",
		},
	}
	checkDoctored(t, fixture, tests)
}

func wantEq(t *testing.T, what string, got, want uint64) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %d, want %d", what, got, want)
	}
}

// TestHistory_RoundTrip: the checker reads back what the clients wrote.
func TestHistory_RoundTrip(t *testing.T) {
	ops, _ := fixture()
	path := t.TempDir() + "/h.jsonl"
	h, err := newHistoryWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	h.event("load-start", "", "")
	for _, op := range ops {
		h.write(op)
	}
	h.event("fault-start", faultKill, "kill n1")
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	b, _ := os.ReadFile(path)
	buf.Write(b)
	got, events, err := readHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ops) || len(events) != 2 {
		t.Fatalf("read %d ops and %d events, want %d and 2", len(got), len(events), len(ops))
	}
	for i := range ops {
		if !got[i].Items[0].TS.Equal(ops[i].Items[0].TS) || got[i].Items[0].TSLo != ops[i].Items[0].TSLo || got[i].Outcome != ops[i].Outcome {
			t.Errorf("op %d: got %+v, want %+v", i, got[i], ops[i])
		}
	}
}

func TestMinute(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{at(0, 0), at(0, 0).Unix()},
		{at(0, 59).Add(999 * time.Millisecond), at(0, 0).Unix()},
		{time.Unix(-1, 0), -60},
	} {
		if got := minute(tc.in); got != tc.want {
			t.Errorf("minute(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// roamFixture is a consistent run of roaming clients: their retries went to
// other nodes and some acknowledged ops were re-sent at another node. Op 11
// was answered at n1 and its re-send at n2 replayed; op 12 was answered at
// n3 after a timeout at n2, and its re-send at n1 was applied again (it
// raced the key's replication); op 13 never got an answer from anyone but
// applied once; op 14's re-send replayed an answer other than the one the
// client saw, which is right when two nodes may hold a record of the key.
func roamFixture() ([]Op, Observation) {
	b11 := `{"name":"r","amount":4,"ts":"2026-11-23T10:00:20Z","total":4}`
	timeout := Try{Err: "context deadline exceeded"}
	lost := func(node string) Try { t := timeout; t.Node = node; return t }
	ops := []Op{
		{Type: "op", ID: 11, Node: "n1", Key: "r11", Kind: "single", Outcome: OutcomeOK, Status: 200, Attempts: 1, Roaming: true, Resent: true,
			Items: []Item{{Name: "r", Amount: 4, TS: at(0, 20)}},
			Tries: []Try{{Node: "n1", Status: 200, Body: b11}, {Node: "n2", Status: 200, Replayed: true, Resend: true, Body: b11}}},
		{Type: "op", ID: 12, Node: "n2", Key: "r12", Kind: "single", Outcome: OutcomeOK, Status: 200, Attempts: 2, Roaming: true, Resent: true,
			Items: []Item{{Name: "r", Amount: 6, TS: at(1, 5)}},
			Tries: []Try{lost("n2"), {Node: "n3", Status: 200, Body: `{"total":10}`}, {Node: "n1", Status: 200, Resend: true, Body: `{"total":16}`}}},
		{Type: "op", ID: 13, Node: "n3", Key: "r13", Kind: "batch", Outcome: OutcomeIndeterminate, Attempts: 5, Roaming: true,
			Items: []Item{{Name: "r", Amount: 2, TS: at(0, 30)}, {Name: "s", Amount: 3, TS: at(1, 40)}},
			Tries: []Try{lost("n3"), lost("n1"), {Node: "n2", Status: 503, Err: "shutting down"}, lost("n3"), lost("n1")}},
		{Type: "op", ID: 14, Node: "n1", Key: "r14", Kind: "single", Outcome: OutcomeOK, Status: 200, Attempts: 2, Roaming: true, Resent: true,
			Items: []Item{{Name: "s", Amount: 1, TS: at(2, 0)}},
			Tries: []Try{lost("n1"), {Node: "n2", Status: 200, Body: `{"total":4}`}, {Node: "n3", Status: 200, Replayed: true, Resend: true, Body: `{"total":3}`}}},
	}
	// r: 4 + 2 (op 13) in minute 0, 6 in minute 1. s: 3 in minute 1, 1 in
	// minute 2. Op 12 counts once although two nodes applied it.
	node := func(name string) NodeObservation {
		return NodeObservation{
			Node:   name,
			Totals: map[string]uint64{"r": 12, "s": 4},
			Windows: map[string]map[int64]uint64{
				"r": {at(0, 0).Unix(): 6, at(1, 0).Unix(): 6},
				"s": {at(1, 0).Unix(): 3, at(2, 0).Unix(): 1},
			},
			Listed:  map[string]uint64{"r": 12, "s": 4},
			Members: map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"},
		}
	}
	obs := Observation{From: at(0, 0), To: at(3, 0), Nodes: []NodeObservation{node("n1"), node("n2"), node("n3")},
		Converged: true, Seconds: 3, Bound: 90}
	return ops, obs
}

func TestCheck_Roaming_Consistent(t *testing.T) {
	ops, obs := roamFixture()
	r := Check(ops, obs)
	if !r.Pass {
		t.Fatalf("a consistent run of roaming clients fails: %v", r.Failures)
	}
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"OpsRoaming", r.OpsRoaming, 4}, {"OpsRoamed", r.OpsRoamed, 3}, {"OpsResent", r.OpsResent, 3},
		{"ResendsReplayed", r.ResendsReplayed, 2}, {"ResendsApplied", r.ResendsApplied, 1}, {"OpsAppliedTwice", r.OpsAppliedTwice, 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
	wantEq(t, "AmountAcked", r.AmountAcked, 11)
	wantEq(t, "AmountIndeterminate", r.AmountIndeterminate, 5)
	wantEq(t, "AmountAppliedTwice", r.AmountAppliedTwice, 6)
	if r.Counters[0].Name != "r" || r.Counters[0].AppliedTwice != 6 {
		t.Errorf("counter rows: %+v", r.Counters)
	}
	// Op 13 (every attempt unanswered) may also not have applied at all.
	for i := range obs.Nodes {
		obs.Nodes[i].Totals = map[string]uint64{"r": 10, "s": 1}
		obs.Nodes[i].Listed = map[string]uint64{"r": 10, "s": 1}
		obs.Nodes[i].Windows = map[string]map[int64]uint64{"r": {at(0, 0).Unix(): 4, at(1, 0).Unix(): 6}, "s": {at(2, 0).Unix(): 1}}
	}
	if r := Check(ops, obs); !r.Pass {
		t.Fatalf("an unanswered keyed op that never applied fails the check: %v", r.Failures)
	}
}

// TestCheck_Roaming_Fails: a keyed op counts once in the cluster. Applied at
// two nodes and counted twice is a double count, whether the client got an
// answer or not; and the other ways a roaming run can go wrong are caught.
func TestCheck_Roaming_Fails(t *testing.T) {
	tests := []doctored{
		{
			name: "acked op applied at two nodes counted twice",
			doctor: func(ops []Op, obs *Observation) []Op {
				// The duplicate of op 12 (n3 and n1 both applied it) was
				// never resolved.
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["r"] += 6
					obs.Nodes[i].Listed["r"] += 6
					obs.Nodes[i].Windows["r"][at(1, 0).Unix()] += 6
				}
				return ops
			},
			want: "r on n1: total 18 > acknowledged 10 + indeterminate 2: counted 6 more than was ever sent (ops applied at two nodes or more carry 6 of it",
			check: func(t *testing.T, r Result) {
				wantEq(t, "DoubleCounted", r.DoubleCounted, 6)
				wantEq(t, "WindowExcess", r.WindowExcess, 3*6)
			},
		},
		{
			name: "acked op applied twice, counted twice only where it was applied twice",
			doctor: func(ops []Op, obs *Observation) []Op {
				obs.Nodes[0].Totals["r"] += 6
				obs.Nodes[0].Listed["r"] += 6
				obs.Nodes[0].Windows["r"][at(1, 0).Unix()] += 6
				return ops
			},
			want: "r on n1: total 18 >",
			check: func(t *testing.T, r Result) {
				wantEq(t, "DoubleCounted", r.DoubleCounted, 6)
				wantEq(t, "Divergent", uint64(r.Divergent), 2)
			},
		},
		{
			name: "unanswered op applied at two nodes counted twice",
			doctor: func(ops []Op, obs *Observation) []Op {
				// Op 13 got no answer anywhere: it may count 0 or 1 times,
				// never 2.
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["r"] += 2
					obs.Nodes[i].Totals["s"] += 3
					obs.Nodes[i].Listed["r"] += 2
					obs.Nodes[i].Listed["s"] += 3
					obs.Nodes[i].Windows["r"][at(0, 0).Unix()] += 2
					obs.Nodes[i].Windows["s"][at(1, 0).Unix()] += 3
				}
				return ops
			},
			want: "s on n2: total 7 > acknowledged 1 + indeterminate 3: counted 3 more than was ever sent",
			check: func(t *testing.T, r Result) {
				wantEq(t, "DoubleCounted", r.DoubleCounted, 2+3)
				wantEq(t, "WindowExcess", r.WindowExcess, 3*(2+3))
			},
		},
		{
			name: "both records of a duplicate compensated",
			doctor: func(ops []Op, obs *Observation) []Op {
				// Resolving op 12's duplicate took both applications away.
				for i := range obs.Nodes {
					obs.Nodes[i].Totals["r"] -= 6
					obs.Nodes[i].Listed["r"] -= 6
					delete(obs.Nodes[i].Windows["r"], at(1, 0).Unix())
				}
				return ops
			},
			want: "r on n3: total 6 < acknowledged 10: 4 acknowledged increments lost",
			check: func(t *testing.T, r Result) {
				wantEq(t, "Lost", r.Lost, 4)
				wantEq(t, "WindowLost", r.WindowLost, 3*6)
			},
		},
		{
			name: "duplicate compensated in the wrong window",
			doctor: func(ops []Op, obs *Observation) []Op {
				// The totals are right, but op 12 left minute 1 and a
				// phantom stayed in minute 2.
				for i := range obs.Nodes {
					obs.Nodes[i].Windows["r"][at(1, 0).Unix()] = 0
					obs.Nodes[i].Windows["r"][at(2, 0).Unix()] = 6
				}
				return ops
			},
			want: "r window 10:01 on n1: 0 < acknowledged 6",
			check: func(t *testing.T, r Result) {
				wantEq(t, "Lost", r.Lost, 0)
				wantEq(t, "DoubleCounted", r.DoubleCounted, 0)
				wantEq(t, "WindowExcess", r.WindowExcess, 3*6)
			},
		},
		{
			name: "re-send refused",
			doctor: func(ops []Op, obs *Observation) []Op {
				ops[0].Tries[1] = Try{Node: "n2", Status: 422, Resend: true, Err: `{"title":"idempotency key reused"}`}
				return ops
			},
			want: "op 11 (key \"r11\"): re-sent at n2 with the same key and body, got 422",
		},
		{
			name: "replay with another answer",
			doctor: func(ops []Op, obs *Observation) []Op {
				ops[0].Tries[1].Body = `{"name":"r","amount":4,"ts":"2026-11-23T10:00:20Z","total":9}`
				return ops
			},
			want: "op 11 (key \"r11\"): the replay at n2 answered",
		},
		{
			name: "key reused at another node",
			doctor: func(ops []Op, obs *Observation) []Op {
				ops[1].Key = "r11" // op 11 was at n1, op 12 at n2
				return ops
			},
			want: `op 12 reuses the idempotency key "r11" of op 11`,
		},
		{
			name: "node-chosen ts at several nodes",
			doctor: func(ops []Op, obs *Observation) []Op {
				ops[1].Items[0].DefaultTS = true
				return ops
			},
			want: "sent without ts to 3 nodes",
		},
	}
	checkDoctored(t, roamFixture, tests)
}

// TestHistory_RoundTrip_Tries: a roaming op's tries survive the history.
func TestHistory_RoundTrip_Tries(t *testing.T) {
	ops, _ := roamFixture()
	path := t.TempDir() + "/h.jsonl"
	h, err := newHistoryWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		h.write(op)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _, err := readHistory(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Errorf("read back:\n%+v\nwant:\n%+v", got, ops)
	}
}

// doctored is a history the checker must fail: a fixture changed by doctor,
// whose failures must mention want (and pass check, if any).
type doctored struct {
	name   string
	doctor func(ops []Op, obs *Observation) []Op
	want   string // in a failure message
	check  func(t *testing.T, r Result)
}

// checkDoctored runs each doctored history of fixture through the checker.
func checkDoctored(t *testing.T, fixture func() ([]Op, Observation), tests []doctored) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ops, obs := fixture()
			ops = tc.doctor(ops, &obs)
			r := Check(ops, obs)
			if r.Pass {
				t.Fatal("the checker passed a doctored run")
			}
			if !strings.Contains(strings.Join(r.Failures, "\n"), tc.want) {
				t.Errorf("failures do not mention %q:\n%s", tc.want, strings.Join(r.Failures, "\n"))
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}
