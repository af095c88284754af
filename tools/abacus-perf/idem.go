package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// The cost of cluster-wide idempotency keys (issue 10): what a key costs a
// single increment, what its record costs in replication, and how soon
// after one node acknowledges a keyed request a retry at another node is a
// replay.

// runIdemInc measures keyed single increments against unkeyed ones on the
// same node in the same runs: 64 abacus-bench clients on one counter, the
// two kinds alternating (which goes first alternates too). The unkeyed
// requests carry the same unique value in a header the server ignores, so
// both send the same bytes and the client does the same work; the
// difference is the key's record in the commit.
func runIdemInc(s *suite) error {
	n, err := s.newNode("idem")
	if err != nil {
		return err
	}
	if err := s.startReady(n); err != nil {
		return err
	}
	defer s.stopNode(n)
	unkeyed := s.row("idem-inc64/unkeyed", "durable inc/s: POST …/increment, 64 clients (abacus-bench), 1 counter, no key (a decoy header of the key's size)", "inc/s")
	keyed := s.row("idem-inc64/keyed", "… the same with a distinct Idempotency-Key on every request, same node, runs alternating", "inc/s")
	keyed.Target = &Target{Bound: 0.8, Ref: "idem-inc64/unkeyed", Desc: "≥ 0.8× unkeyed"}
	ucpu := s.row("idem-inc64/unkeyed-cpu", "server CPU per unkeyed increment", "µs")
	kcpu := s.row("idem-inc64/keyed-cpu", "server CPU per keyed increment", "µs")
	kcpu.Target = &Target{Info: true, Ref: "idem-inc64/unkeyed-cpu", Desc: "ratio to unkeyed"}
	type kind struct {
		keys      string
		rate, cpu *Row
	}
	kinds := []kind{{"decoy", unkeyed, ucpu}, {"idempotency", keyed, kcpu}}
	for run := range s.cfg.runs {
		for i := range kinds {
			k := kinds[(i+run)%2]
			r, err := s.bench(s.cfg.duration+s.cfg.warmup+5*time.Minute, "abacus-bench-idem-"+k.keys,
				"--addr", n.url(), "--mode", "inc", "--keys", k.keys, "--clients", "64", "--counters", "1",
				"--prefix", "perf.idem"+k.keys, "--duration", s.cfg.duration.String(), "--warmup", s.cfg.warmup.String(),
				"--pid", strconv.Itoa(n.p.pid()))
			if err != nil {
				return err
			}
			k.rate.addWithP99(r.IncPerSec, r.P99ms)
			k.cpu.add(r.ServerCPUus)
		}
	}
	return nil
}

// runIdemCluster measures, on three nodes with the lan profile: the gossip
// bytes a keyed request costs beyond an unkeyed one, and how soon after A
// acknowledges a keyed request a retry at C is a replay.
func runIdemCluster(s *suite) error {
	rows := idemRows{
		unkeyed: s.row("idem-cluster/gossip-unkeyed", fmt.Sprintf("gossip payload bytes per request per peer: unkeyed increments at A, paced %s/s for %v over 100 counters (abacus_gossip_bytes_total, out, all 3 nodes)", thousands(int64(s.cfg.idemRate)), s.cfg.hotDuration), "B"),
		keyed:   s.row("idem-cluster/gossip-keyed", "… the same load with a distinct Idempotency-Key on every request", "B"),
		extra:   s.row("idem-cluster/gossip-extra", "replication bytes per keyed request per peer: keyed − unkeyed", "B"),
		p50:     s.row("idem-cluster/replay-p50", fmt.Sprintf("A→C until a retry at C is a replay, p50, lan profile, %d trials: C shows A's keyed increment (polled every 1 ms), then the retry at C must answer Idempotent-Replayed", s.cfg.visTrials), "ms"),
		p99:     s.row("idem-cluster/replay-p99", "A→C until a retry at C is a replay, p99", "ms"),
		missed:  s.row("idem-cluster/replay-missed", "… retries at C applied again although C showed the increment (each a duplicate the cluster must resolve)", "retries"),
		at300:   s.row("idem-cluster/replay-at-300ms", fmt.Sprintf("retries at C sent 300 ms after A's answer that were replays, %d trials", s.cfg.visTrials), "%"),
	}
	rows.extra.Target = &Target{AtMost: true, Bound: 64, Desc: "≤ 64 B (aim)"}
	rows.p99.Target = &Target{AtMost: true, Bound: 300, Desc: "≤ 300 ms"}
	rows.missed.Target = &Target{AtMost: true, Bound: 0, Desc: "0"}
	rows.at300.Target = &Target{Bound: 99, Desc: "≥ 99 %"}
	for run := range s.cfg.runs {
		cl, err := s.startCluster()
		if err != nil {
			return err
		}
		err = s.idemClusterRun(cl, run, rows)
		for _, n := range cl.all() {
			s.stopNode(n)
		}
		if err != nil {
			return err
		}
		if !s.cfg.keep {
			for _, n := range cl.all() {
				os.RemoveAll(n.dataDir)
			}
		}
	}
	return nil
}

type idemRows struct{ unkeyed, keyed, extra, p50, p99, missed, at300 *Row }

func (s *suite) idemClusterRun(cl *cluster, run int, rows idemRows) error {
	nodes := cl.all()
	peers := float64(len(nodes) - 1)
	// (b) Gossip bytes per request, unkeyed and keyed, in alternating order.
	perReq := map[string]float64{}
	for i := range 2 {
		keys := []string{"decoy", "idempotency"}[(i+run)%2]
		prefix := fmt.Sprintf("perf.idemg%d%s", run, keys)
		out0, err := s.gossipBytes(nodes, "out")
		if err != nil {
			return err
		}
		if _, err := s.bench(s.cfg.hotDuration+5*time.Minute, "abacus-bench-idem-gossip-"+keys, "--addr", cl.a.url(), "--mode", "inc",
			"--keys", keys, "--clients", "16", "--counters", "100", "--prefix", prefix, "--rate", strconv.Itoa(s.cfg.idemRate),
			"--duration", s.cfg.hotDuration.String(), "--warmup", "0s"); err != nil {
			return err
		}
		got, err := s.waitTotals(nodes, prefix+".", nil, time.Minute)
		if err != nil {
			return err
		}
		out1, err := s.gossipBytes(nodes, "out")
		if err != nil {
			return err
		}
		reqs := float64(sumOf(got))
		perReq[keys] = (out1 - out0) / reqs / peers
		s.record(map[string]any{"keys": keys, "requests": reqs, "gossip_out_bytes": out1 - out0})
	}
	rows.unkeyed.add(perReq["decoy"])
	rows.keyed.add(perReq["idempotency"])
	rows.extra.add(perReq["idempotency"] - perReq["decoy"])

	// (c) A→C: C shows the increment, then the retry at C must be a replay.
	r, err := s.bench(time.Duration(s.cfg.visTrials)*time.Second+5*time.Minute, "abacus-bench-replay",
		"--addr", cl.a.url(), "--peer", cl.c.url(), "--mode", "replay", "--retry-after", "0s",
		"--trials", strconv.Itoa(s.cfg.visTrials), "--prefix", fmt.Sprintf("perf.idemr%d", run))
	if err != nil {
		return err
	}
	// A percentile that falls on a retry applied again has no value; the
	// missed row says why.
	if r.P50ms >= 0 {
		rows.p50.add(r.P50ms)
	}
	if r.P99ms >= 0 {
		rows.p99.add(r.P99ms)
	}
	rows.missed.add(float64(r.Missed))
	// (c') The fixed delay the target names.
	r300, err := s.bench(time.Duration(s.cfg.visTrials)*time.Second+5*time.Minute, "abacus-bench-replay-300ms",
		"--addr", cl.a.url(), "--peer", cl.c.url(), "--mode", "replay", "--retry-after", "300ms",
		"--trials", strconv.Itoa(s.cfg.visTrials), "--prefix", fmt.Sprintf("perf.idemd%d", run))
	if err != nil {
		return err
	}
	rows.at300.add(100 * r300.ReplayedShare)
	for _, x := range []benchResult{r, r300} {
		if x.CountedOnce == nil || !*x.CountedOnce {
			return fmt.Errorf("%d of %d retries at C were applied again, and 30 s later A and C did not count each trial once: the duplicates were not resolved", x.Missed, x.Trials)
		}
	}
	return nil
}
