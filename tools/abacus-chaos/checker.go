//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"time"
)

// The checker is a pure function of the history (what clients were told)
// and the observation (what every node reports after healing). It does no
// I/O and reads no clock, so its tests can feed it doctored inputs.

// Observation is what the nodes reported after the faults healed.
type Observation struct {
	// From and To bound the minute windows read, [From, To), minute-aligned.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Nodes is each node's final answer.
	Nodes []NodeObservation `json:"nodes"`
	// Converged says whether every node reported identical counts (and saw
	// every other node alive) before Bound ran out; Seconds is how long after
	// healing that first happened.
	Converged bool    `json:"converged"`
	Seconds   float64 `json:"converge_seconds"`
	Bound     float64 `json:"converge_bound_seconds"`
}

// NodeObservation is one node's view.
type NodeObservation struct {
	Node string `json:"node"`
	// Err is why the node could not be read; the rest is then empty.
	Err string `json:"err,omitempty"`
	// Totals is GET /v1/counters/{name}'s total per counter.
	Totals map[string]uint64 `json:"totals"`
	// Windows is, per counter, the count of each 1m window of the range
	// query, keyed by the window's start (Unix seconds).
	Windows map[string]map[int64]uint64 `json:"windows"`
	// Listed is every counter GET /v1/counters lists, with its total.
	Listed map[string]uint64 `json:"listed"`
	// Members is the state of each member this node knows, by name.
	Members map[string]string `json:"members"`
}

// CounterRow is the per-counter table of the verdict.
type CounterRow struct {
	Name string `json:"name"`
	// Acked is the amount acknowledged; Indeterminate the amount whose fate
	// the clients never learned.
	Acked         uint64 `json:"acked"`
	Indeterminate uint64 `json:"indeterminate"`
	// Min and Max are the lowest and highest total any node reported.
	Min uint64 `json:"min"`
	Max uint64 `json:"max"`
	// Lost is how far the lowest total is below Acked; DoubleCounted how far
	// the highest is above Acked + Indeterminate.
	Lost          uint64 `json:"lost"`
	DoubleCounted uint64 `json:"double_counted"`
	// Windows is the number of minute windows with increments; WindowsBad
	// how many of them broke a bound on some node.
	Windows    int `json:"windows"`
	WindowsBad int `json:"windows_bad"`
	// AppliedTwice is the amount of the ops that two or more nodes answered
	// as fresh (not replayed): applied more than once, duplicates the
	// cluster had to resolve. It must still count once.
	AppliedTwice uint64 `json:"applied_twice"`
}

// Result is the verdict and the numbers behind it.
type Result struct {
	Pass     bool     `json:"pass"`
	Failures []string `json:"failures"`

	Ops                int `json:"ops"`
	OpsOK              int `json:"ops_ok"`
	OpsIndeterminate   int `json:"ops_indeterminate"`
	OpsFailed          int `json:"ops_failed"`
	OpsRetried         int `json:"ops_retried"`       // ops that needed more than one attempt
	OpsReplayed        int `json:"ops_replayed"`      // ok answers with Idempotent-Replayed: true
	OpsRetriedAcked    int `json:"ops_retried_acked"` // retried ops that ended acknowledged
	IncrementsAcked    int `json:"increments_acked"`  // items of ok ops
	IncrementsIndeterm int `json:"increments_indeterminate"`

	// Roaming clients: each retry at the next node, and a share of the
	// acknowledged ops re-sent at another node.
	OpsRoaming      int `json:"ops_roaming"`
	OpsRoamed       int `json:"ops_roamed"`       // roaming ops whose attempts (re-send aside) reached more than one node
	OpsResent       int `json:"ops_resent"`       // acknowledged ops sent once more at another node
	ResendsReplayed int `json:"resends_replayed"` // … answered Idempotent-Replayed: true
	ResendsApplied  int `json:"resends_applied"`  // … answered fresh: the re-send raced the key's replication
	// OpsAppliedTwice counts ops answered fresh by two nodes or more: each
	// was applied more than once and must still count once.
	OpsAppliedTwice    int    `json:"ops_applied_twice"`
	AmountAppliedTwice uint64 `json:"amount_applied_twice"`

	AmountAcked         uint64 `json:"amount_acked"`
	AmountIndeterminate uint64 `json:"amount_indeterminate"`
	// Lost and DoubleCounted sum, over counters, the worst node's shortfall
	// below the acknowledged amount and excess above acknowledged plus
	// indeterminate. Both must be 0.
	Lost          uint64 `json:"lost"`
	DoubleCounted uint64 `json:"double_counted"`
	// WindowLost and WindowExcess do the same per minute window.
	WindowLost   uint64 `json:"window_lost"`
	WindowExcess uint64 `json:"window_excess"`
	// Divergent counts (counter or window) readings on which nodes disagree.
	Divergent int `json:"divergent"`

	Converged       bool    `json:"converged"`
	ConvergeSeconds float64 `json:"converge_seconds"`
	ConvergeBound   float64 `json:"converge_bound_seconds"`

	Counters []CounterRow `json:"counters"`
}

// maxFailures bounds the failure messages kept; the counts stay exact.
const maxFailures = 50

type bounds struct{ lo, hi uint64 }

// Check decides whether the observation is consistent with the history.
//
// For each counter and each of its minute windows, on every node:
// acked ≤ count ≤ acked + indeterminate, where acked sums the increments of
// ok ops and indeterminate those of ops that never got an answer (a window
// gets an indeterminate increment of unknown event time in every window it
// may fall in). Failed ops count nothing. Every node must report the same
// totals and windows, list no counter the history never touched, sum its
// windows to its total (every event time lies in the range read), and see
// every node alive. Any failed op is itself a failure: the workload never
// sends a request that deserves a 4xx.
//
// An idempotency key is one request in the whole cluster: an op counts
// once however many nodes its attempts and its re-send reached, and however
// many of them answered it as fresh. So the bounds above take each op once;
// a key used by two ops is a broken history, a 4xx to a re-send (same key,
// same bytes) is a failure, and a replayed answer to an op that only one
// node can have applied must repeat that node's answer.
func Check(ops []Op, obs Observation) Result {
	r := Result{Failures: []string{}, Counters: []CounterRow{}}
	nfail := 0
	fail := func(format string, args ...any) {
		nfail++
		if len(r.Failures) < maxFailures {
			r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
		}
	}

	total := map[string]*bounds{}
	win := map[string]map[int64]*bounds{}
	keys := map[string]int64{} // key → op id
	appliedTwice := map[string]uint64{}
	bound := func(name string) *bounds {
		if total[name] == nil {
			total[name] = &bounds{}
			win[name] = map[int64]*bounds{}
		}
		return total[name]
	}
	wb := func(name string, start int64) *bounds {
		bound(name)
		if win[name][start] == nil {
			win[name][start] = &bounds{}
		}
		return win[name][start]
	}
	from, to := obs.From.Unix(), obs.To.Unix()
	inRange := func(t time.Time) bool { return t.Unix() >= from && t.Unix() < to }

	for _, op := range ops {
		r.Ops++
		// Keys hold cluster-wide: a key names one op, whatever node.
		if prev, dup := keys[op.Key]; dup && op.Key != "" {
			fail("op %d reuses the idempotency key %q of op %d (at %s): the history is unusable", op.ID, op.Key, prev, op.Node)
		}
		keys[op.Key] = op.ID
		if op.Attempts > 1 {
			r.OpsRetried++
		}
		if checkTries(&r, op, fail) {
			for _, it := range op.Items {
				appliedTwice[it.Name] += it.Amount
				r.AmountAppliedTwice += it.Amount
			}
		}
		switch op.Outcome {
		case OutcomeOK:
			r.OpsOK++
			if op.Replayed {
				r.OpsReplayed++
			}
			if op.Attempts > 1 {
				r.OpsRetriedAcked++
			}
			for _, it := range op.Items {
				r.IncrementsAcked++
				r.AmountAcked += it.Amount
				bound(it.Name).lo += it.Amount
				bound(it.Name).hi += it.Amount
				if !it.TS.IsZero() {
					if !inRange(it.TS) {
						fail("op %d: event time %s outside the range read [%s, %s)", op.ID, it.TS.Format(time.RFC3339), obs.From.Format(time.RFC3339), obs.To.Format(time.RFC3339))
					}
					b := wb(it.Name, minute(it.TS))
					b.lo += it.Amount
					b.hi += it.Amount
				} else {
					// Acknowledged, but its event time is unknown: it is
					// in one of the windows it may fall in.
					spread(wb, it, obs, fail, op.ID)
				}
			}
		case OutcomeIndeterminate:
			r.OpsIndeterminate++
			for _, it := range op.Items {
				r.IncrementsIndeterm++
				r.AmountIndeterminate += it.Amount
				bound(it.Name).hi += it.Amount
				if !it.TS.IsZero() {
					if !inRange(it.TS) {
						fail("op %d: event time %s outside the range read", op.ID, it.TS.Format(time.RFC3339))
					}
					wb(it.Name, minute(it.TS)).hi += it.Amount
				} else {
					spread(wb, it, obs, fail, op.ID)
				}
			}
		case OutcomeFailed:
			r.OpsFailed++
			fail("op %d (%s at %s, key %q) failed with status %d: %s", op.ID, op.Kind, op.Node, op.Key, op.Status, op.Error)
		default:
			fail("op %d has unknown outcome %q", op.ID, op.Outcome)
		}
	}

	names := slices.Sorted(maps.Keys(total))
	var ok []NodeObservation
	for _, n := range obs.Nodes {
		if n.Err != "" {
			fail("node %s could not be read: %s", n.Node, n.Err)
			continue
		}
		ok = append(ok, n)
	}
	if len(obs.Nodes) == 0 {
		fail("no node was observed")
	}

	for _, name := range names {
		b := total[name]
		row := CounterRow{Name: name, Acked: b.lo, Indeterminate: b.hi - b.lo, Windows: len(win[name]), AppliedTwice: appliedTwice[name]}
		hint := ""
		if row.AppliedTwice > 0 {
			hint = fmt.Sprintf(" (ops applied at two nodes or more carry %d of it: a duplicate the cluster did not resolve?)", row.AppliedTwice)
		}
		first := true
		for _, n := range ok {
			v := n.Totals[name]
			if first || v < row.Min {
				row.Min = v
			}
			if first || v > row.Max {
				row.Max = v
			}
			first = false
			if v < b.lo {
				fail("%s on %s: total %d < acknowledged %d: %d acknowledged increments lost", name, n.Node, v, b.lo, b.lo-v)
			} else if v > b.hi {
				fail("%s on %s: total %d > acknowledged %d + indeterminate %d: counted %d more than was ever sent%s", name, n.Node, v, b.lo, b.hi-b.lo, v-b.hi, hint)
			}
			var sum uint64
			for _, c := range n.Windows[name] {
				sum += c
			}
			if sum != v {
				fail("%s on %s: its minute windows sum to %d but its total is %d (every event time lies in the range read)", name, n.Node, sum, v)
			}
		}
		if !first {
			if row.Min < b.lo {
				row.Lost = b.lo - row.Min
			}
			if row.Max > b.hi {
				row.DoubleCounted = row.Max - b.hi
			}
			if row.Min != row.Max {
				r.Divergent++
				fail("%s: nodes disagree on the total: %s", name, describe(ok, func(n NodeObservation) uint64 { return n.Totals[name] }))
			}
		}

		// Windows: every window with increments, and every window a node
		// reports a count for.
		starts := map[int64]bool{}
		for s := range win[name] {
			starts[s] = true
		}
		for _, n := range ok {
			for s, c := range n.Windows[name] {
				if c > 0 {
					starts[s] = true
				}
			}
		}
		bad := map[int64]bool{}
		for _, s := range slices.Sorted(maps.Keys(starts)) {
			wbd := bounds{}
			if x := win[name][s]; x != nil {
				wbd = *x
			}
			lo, hi := uint64(0), uint64(0)
			first := true
			for _, n := range ok {
				v := n.Windows[name][s]
				if first || v < lo {
					lo = v
				}
				if first || v > hi {
					hi = v
				}
				first = false
				ws := time.Unix(s, 0).UTC().Format("15:04")
				if v < wbd.lo {
					bad[s] = true
					r.WindowLost += wbd.lo - v
					fail("%s window %s on %s: %d < acknowledged %d", name, ws, n.Node, v, wbd.lo)
				} else if v > wbd.hi {
					bad[s] = true
					r.WindowExcess += v - wbd.hi
					fail("%s window %s on %s: %d > acknowledged %d + indeterminate %d", name, ws, n.Node, v, wbd.lo, wbd.hi-wbd.lo)
				}
			}
			if lo != hi {
				bad[s] = true
				r.Divergent++
				fail("%s window %s: nodes disagree: %s", name, time.Unix(s, 0).UTC().Format("15:04"), describe(ok, func(n NodeObservation) uint64 { return n.Windows[name][s] }))
			}
		}
		row.WindowsBad = len(bad)
		r.Lost += row.Lost
		r.DoubleCounted += row.DoubleCounted
		r.Counters = append(r.Counters, row)
	}

	for _, n := range ok {
		for name := range n.Listed {
			if total[name] == nil {
				fail("%s lists counter %q, which no client ever incremented", n.Node, name)
			}
		}
		for _, m := range ok {
			if st := n.Members[m.Node]; st != "alive" {
				if st == "" {
					st = "unknown"
				}
				fail("%s sees %s as %s after healing", n.Node, m.Node, st)
			}
		}
	}

	r.Converged, r.ConvergeSeconds, r.ConvergeBound = obs.Converged, obs.Seconds, obs.Bound
	if !obs.Converged {
		fail("the nodes did not converge within %.0fs of healing", obs.Bound)
	}
	if nfail > len(r.Failures) {
		r.Failures = append(r.Failures, fmt.Sprintf("… and %d more failures", nfail-len(r.Failures)))
	}
	r.Pass = nfail == 0
	return r
}

// checkTries checks an op's attempts: where they went, and what a re-send
// and a replay were answered. It reports whether two answers or more were
// fresh (the op was applied more than once).
func checkTries(r *Result, op Op, fail func(string, ...any)) (appliedTwice bool) {
	if op.Roaming {
		r.OpsRoaming++
	}
	nodes := map[string]bool{}
	attempted := map[string]bool{}
	fresh := 0
	for _, t := range op.Tries {
		nodes[t.Node] = true
		if t.fresh() {
			fresh++
		}
		if !t.Resend {
			attempted[t.Node] = true
			continue
		}
		r.OpsResent++
		switch {
		case t.Status >= 400 && t.Status < 500 && t.Status != 429:
			// The same key with the same bytes: a replay or a fresh
			// apply, never a refusal (a 422 says the node saw another
			// body under this key).
			fail("op %d (key %q): re-sent at %s with the same key and body, got %d: %s", op.ID, op.Key, t.Node, t.Status, t.Err)
		case t.fresh():
			r.ResendsApplied++
		case t.Status >= 200 && t.Status < 300:
			r.ResendsReplayed++
		}
	}
	if op.Roaming && len(attempted) > 1 {
		r.OpsRoamed++
	}
	if len(nodes) > 1 {
		for _, it := range op.Items {
			if it.DefaultTS {
				// Two nodes may each have applied it at its own clock's
				// time; the cluster keeps one, and which windows that is
				// cannot be told from the history.
				fail("op %d (key %q): sent without ts to %d nodes: its windows are not knowable; a workload must name the ts of requests it sends to several nodes", op.ID, op.Key, len(nodes))
				break
			}
		}
	}
	// A replay repeats the original answer. Only when one node alone can
	// have applied the op (its first attempt was answered fresh) is that
	// answer known: then every replayed answer must equal it.
	if len(op.Tries) > 1 && op.Tries[0].fresh() && op.Tries[0].Body != "" {
		for _, t := range op.Tries[1:] {
			if t.Status >= 200 && t.Status < 300 && t.Replayed && t.Body != "" && !sameJSON(t.Body, op.Tries[0].Body) {
				fail("op %d (key %q): the replay at %s answered %s, but the original answer at %s was %s", op.ID, op.Key, t.Node, t.Body, op.Tries[0].Node, op.Tries[0].Body)
			}
		}
	}
	if fresh > 1 {
		r.OpsAppliedTwice++
		return true
	}
	return false
}

// sameJSON says whether two JSON texts hold the same value.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return a == b
	}
	return reflect.DeepEqual(x, y)
}

// spread adds an increment of unknown event time to the upper bound of every
// window its time bounds overlap.
func spread(wb func(string, int64) *bounds, it Item, obs Observation, fail func(string, ...any), id int64) {
	lo, hi := it.TSLo, it.TSHi
	if lo.IsZero() || hi.IsZero() || hi.Before(lo) {
		fail("op %d: an increment with neither ts nor bounds for it", id)
		return
	}
	if lo.Before(obs.From) || !hi.Before(obs.To) {
		fail("op %d: event time bounds [%s, %s] outside the range read", id, lo.Format(time.RFC3339), hi.Format(time.RFC3339))
	}
	for s := minute(lo); s <= minute(hi); s += 60 {
		wb(it.Name, s).hi += it.Amount
	}
}

// minute is the start (Unix seconds) of the minute window holding t.
func minute(t time.Time) int64 {
	s := t.Unix()
	return s - ((s%60)+60)%60
}

func describe(nodes []NodeObservation, f func(NodeObservation) uint64) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s=%d", n.Node, f(n)))
	}
	sort.Strings(parts)
	return fmt.Sprint(parts)
}
