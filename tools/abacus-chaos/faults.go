//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Fault kinds.
const (
	faultKill      = "kill"       // SIGKILL, then restart on the same data directory
	faultPause     = "pause"      // SIGSTOP, then SIGCONT
	faultIsolateDC = "isolate-dc" // one datacenter cut off from the rest
	faultSplit     = "split"      // the cluster split in two, across datacenters
	faultBridge    = "bridge"     // groups A and C cut from each other, both reach B
	faultLoss      = "loss"       // random loss of node-to-node packets
	faultWipe      = "wipe"       // SIGKILL, data directory removed, restart as a new replica
	faultSkew      = "skew"       // SIGKILL, restart with the clock offset
	faultReplies   = "reply-loss" // a node's answers to clients dropped: retries must replay
)

var allFaults = []string{faultKill, faultPause, faultIsolateDC, faultSplit, faultBridge, faultLoss, faultWipe, faultSkew, faultReplies}

// maxSkew bounds the clock offsets the tool gives nodes.
const maxSkew = 45 * time.Second

// fault is one scheduled fault.
type fault struct {
	Kind   string        `json:"kind"`
	Node   int           `json:"node"`             // process faults
	Dur    time.Duration `json:"dur"`              // how long it lasts (downtime, for kill and skew)
	Cuts   [][2]int      `json:"cuts,omitempty"`   // partitions: node pairs cut
	Groups [][]int       `json:"groups,omitempty"` // partitions, for the log
	Loss   float64       `json:"loss,omitempty"`
	Offset time.Duration `json:"offset,omitempty"` // skew
}

func (f fault) String() string {
	switch f.Kind {
	case faultKill, faultPause, faultReplies:
		return fmt.Sprintf("%s %s for %v", f.Kind, nodeName(f.Node), f.Dur)
	case faultSkew:
		return fmt.Sprintf("%s %s: restart after %v with clock offset %v", f.Kind, nodeName(f.Node), f.Dur, f.Offset)
	case faultWipe:
		return fmt.Sprintf("%s %s", f.Kind, nodeName(f.Node))
	case faultLoss:
		return fmt.Sprintf("%s %.0f%% for %v", f.Kind, 100*f.Loss, f.Dur)
	}
	var gs []string
	for _, g := range f.Groups {
		var ns []string
		for _, i := range g {
			ns = append(ns, nodeName(i))
		}
		gs = append(gs, "{"+strings.Join(ns, " ")+"}")
	}
	sep := " | "
	if f.Kind == faultBridge {
		sep = " ~ " // A ~ B ~ C: only the ends are cut
	}
	return fmt.Sprintf("%s %s for %v", f.Kind, strings.Join(gs, sep), f.Dur)
}

// step is faults that start together: at most one network fault and one
// process fault, or a wipe alone. The next step starts Gap after all of
// them ended.
type step struct {
	Faults []fault       `json:"faults"`
	Gap    time.Duration `json:"gap"`
}

// onlyKinds keeps the faults of the given kinds, and the steps left with any.
func onlyKinds(steps []step, kinds []string) []step {
	var out []step
	for _, s := range steps {
		var fs []fault
		for _, f := range s.Faults {
			if slices.Contains(kinds, f.Kind) {
				fs = append(fs, f)
			}
		}
		if len(fs) > 0 {
			out = append(out, step{Faults: fs, Gap: s.Gap})
		}
	}
	return out
}

// topology is what the scheduler needs to know of the cluster.
type topology struct {
	nodes int
	dcOf  []int // by node
	dcs   int
}

func newTopology(nodes, dcs int) topology {
	t := topology{nodes: nodes, dcs: dcs}
	for i := 0; i < nodes; i++ {
		t.dcOf = append(t.dcOf, dcOf(i, nodes, dcs))
	}
	return t
}

// cutsBetween cuts every pair of nodes in different groups.
func cutsBetween(groups [][]int) [][2]int {
	var cuts [][2]int
	for i, a := range groups {
		for _, b := range groups[i+1:] {
			for _, x := range a {
				for _, y := range b {
					cuts = append(cuts, [2]int{x, y})
				}
			}
		}
	}
	return cuts
}

// makeFault draws a fault of kind from r.
func (t topology) makeFault(r *rand.Rand, kind string) fault {
	f := fault{Kind: kind, Node: r.IntN(t.nodes)}
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1)).Truncate(100*time.Millisecond)
	}
	switch kind {
	case faultKill:
		f.Dur = between(time.Second, 8*time.Second)
	case faultPause:
		// Up to well past the clients' retry budget (about 18 s), so that
		// some ops end indeterminate.
		f.Dur = between(2*time.Second, 25*time.Second)
	case faultReplies:
		f.Dur = between(3*time.Second, 10*time.Second)
	case faultSkew:
		f.Dur = between(time.Second, 4*time.Second)
		f.Offset = between(10*time.Second, 40*time.Second).Truncate(time.Second)
		if r.IntN(2) == 0 {
			f.Offset = -f.Offset
		}
	case faultLoss:
		f.Dur = between(6*time.Second, 20*time.Second)
		f.Loss = float64(10+r.IntN(31)) / 100
	case faultIsolateDC:
		f.Dur = between(8*time.Second, 25*time.Second)
		dc := r.IntN(t.dcs)
		var in, out []int
		for i, d := range t.dcOf {
			if d == dc {
				in = append(in, i)
			} else {
				out = append(out, i)
			}
		}
		f.Groups = [][]int{in, out}
		f.Cuts = cutsBetween(f.Groups)
	case faultSplit:
		f.Dur = between(8*time.Second, 25*time.Second)
		// A split that is not along datacenters: every DC-aligned cut is
		// isolate-dc's business. Try a few draws, then take any.
		for try := 0; ; try++ {
			perm := r.Perm(t.nodes)
			k := 1 + r.IntN(t.nodes-1)
			a, b := slices.Sorted(slices.Values(perm[:k])), slices.Sorted(slices.Values(perm[k:]))
			f.Groups = [][]int{a, b}
			if try > 20 || !t.dcAligned(a) {
				break
			}
		}
		f.Cuts = cutsBetween(f.Groups)
	case faultBridge:
		f.Dur = between(8*time.Second, 20*time.Second)
		perm := r.Perm(t.nodes)
		// A and C get at least one node each, B the rest (at least one).
		na := 1 + r.IntN(max(1, (t.nodes-1)/2))
		nc := 1 + r.IntN(max(1, t.nodes-na-1))
		a := slices.Sorted(slices.Values(perm[:na]))
		c := slices.Sorted(slices.Values(perm[na : na+nc]))
		b := slices.Sorted(slices.Values(perm[na+nc:]))
		f.Groups = [][]int{a, b, c}
		f.Cuts = cutsBetween([][]int{a, c})
	}
	return f
}

// dcAligned reports whether group is exactly a union of whole datacenters.
func (t topology) dcAligned(group []int) bool {
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	for i := 0; i < t.nodes; i++ {
		for j := 0; j < t.nodes; j++ {
			if t.dcOf[i] == t.dcOf[j] && in[i] != in[j] {
				return false
			}
		}
	}
	return true
}

func isNetwork(kind string) bool {
	return kind == faultIsolateDC || kind == faultSplit || kind == faultBridge || kind == faultLoss
}

// shortSchedule is every fault kind once, in a fixed order, one at a time;
// the seed picks the nodes, groups, durations and offsets, shortened to fit
// about 80 seconds.
func shortSchedule(seed uint64, t topology) []step {
	r := rand.New(rand.NewPCG(seed, 0x5c4ed))
	var steps []step
	for _, kind := range []string{faultKill, faultPause, faultIsolateDC, faultLoss, faultSplit, faultReplies, faultBridge, faultWipe, faultSkew} {
		f := t.makeFault(r, kind)
		switch {
		case isNetwork(kind):
			f.Dur = 7*time.Second + time.Duration(r.IntN(4))*time.Second
		case kind == faultPause:
			f.Dur = 20 * time.Second // past the clients' retry budget
		case kind == faultReplies:
			f.Dur = 5 * time.Second
		case kind == faultKill, kind == faultSkew:
			f.Dur = 2 * time.Second
		}
		steps = append(steps, step{Faults: []fault{f}, Gap: 2 * time.Second})
	}
	return steps
}

// longSchedule fills about d: first every fault kind once in a random order,
// then random steps, about half of which pair a network fault with a process
// fault; a wipe always runs alone.
func longSchedule(seed uint64, t topology, d time.Duration) []step {
	r := rand.New(rand.NewPCG(seed, 0x1046))
	var steps []step
	var used time.Duration
	add := func(fs ...fault) {
		gap := time.Duration(2+r.IntN(7)) * time.Second
		var longest time.Duration
		for _, f := range fs {
			longest = max(longest, f.Dur)
			if f.Kind == faultWipe {
				longest = max(longest, 10*time.Second) // replication wait and restart
			}
		}
		used += longest + gap + 2*time.Second // restarts take a second or two
		steps = append(steps, step{Faults: fs, Gap: gap})
	}
	kinds := slices.Clone(allFaults)
	r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	for _, k := range kinds {
		add(t.makeFault(r, k))
	}
	network := []string{faultIsolateDC, faultSplit, faultBridge, faultLoss}
	process := []string{faultKill, faultPause, faultSkew, faultReplies}
	for used < d {
		if r.IntN(10) == 0 {
			add(t.makeFault(r, faultWipe))
			continue
		}
		var fs []fault
		if r.IntN(10) < 7 {
			fs = append(fs, t.makeFault(r, network[r.IntN(len(network))]))
		}
		if len(fs) == 0 || r.IntN(10) < 6 {
			fs = append(fs, t.makeFault(r, process[r.IntN(len(process))]))
		}
		add(fs...)
	}
	return steps
}

// injector carries out a schedule.
type injector struct {
	cl       *cluster
	counters []string
	keep     bool // keep wiped data directories aside
	hist     *historyWriter
	logf     func(string, ...any)

	mu       sync.Mutex
	problems []string // faults that could not be carried out as planned
	wipes    []string // what each wipe waited for
	counts   map[string]int
}

func (x *injector) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	x.logf("PROBLEM: %s", msg)
	x.hist.event("problem", "", msg)
	x.mu.Lock()
	x.problems = append(x.problems, msg)
	x.mu.Unlock()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// run carries out steps until they are done, until ctx ends, or until
// stopAt, whichever is first; each fault is healed when it ends.
func (x *injector) run(ctx context.Context, steps []step, stopAt time.Time) {
	x.counts = map[string]int{}
	for _, s := range steps {
		if ctx.Err() != nil || time.Now().After(stopAt) {
			return
		}
		var wg sync.WaitGroup
		for _, f := range s.Faults {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x.inject(ctx, f)
			}()
		}
		wg.Wait()
		if !sleep(ctx, s.Gap) {
			return
		}
	}
}

func (x *injector) inject(ctx context.Context, f fault) {
	cl := x.cl
	n := cl.nodes[f.Node]
	x.logf("fault: %s", f)
	x.hist.event("fault-start", f.Kind, f.String())
	x.mu.Lock()
	x.counts[f.Kind]++
	x.mu.Unlock()
	defer func() {
		x.hist.event("fault-end", f.Kind, f.String())
		x.logf("fault over: %s", f)
	}()
	switch f.Kind {
	case faultKill, faultSkew:
		if err := cl.kill(n); err != nil {
			x.problem("%s: %v", f, err)
			return
		}
		sleep(ctx, f.Dur)
		if f.Kind == faultSkew {
			n.mu.Lock()
			n.offset = f.Offset
			n.mu.Unlock()
		}
		x.restart(ctx, n, f)
	case faultPause:
		if _, err := n.signal(syscall.SIGSTOP); err != nil {
			x.problem("%s: %v", f, err)
			return
		}
		sleep(ctx, f.Dur)
		if _, err := n.signal(syscall.SIGCONT); err != nil {
			x.problem("%s: SIGCONT: %v", f, err)
		}
	case faultIsolateDC, faultSplit, faultBridge, faultLoss:
		var err error
		if f.Kind == faultLoss {
			for i := range cl.nodes {
				if err == nil {
					err = cl.nw.loss(i, f.Loss)
				}
			}
		} else {
			for _, c := range f.Cuts {
				if err == nil {
					err = cl.nw.block(c[0], c[1])
				}
			}
		}
		if err != nil {
			x.problem("%s: %v", f, err)
		} else {
			sleep(ctx, f.Dur)
		}
		if err := cl.nw.healLinks(); err != nil {
			x.problem("heal after %s: %v", f, err)
		}
	case faultReplies:
		if err := cl.nw.dropReplies(f.Node); err != nil {
			x.problem("%s: %v", f, err)
		} else {
			sleep(ctx, f.Dur)
		}
		if err := cl.nw.iptables(f.Node, "-F", chainOut); err != nil {
			x.problem("heal after %s: %v", f, err)
		}
	case faultWipe:
		x.wipe(ctx, n, f)
	}
}

func (x *injector) restart(ctx context.Context, n *node, f fault) {
	if ctx.Err() != nil {
		return
	}
	if err := x.cl.start(n); err != nil {
		x.problem("%s: restart: %v", f, err)
		return
	}
	// /healthz, not /readyz: a node restarted inside a partition is not
	// ready until it can join, and that is the fault, not a failure.
	if err := x.cl.waitHTTP(ctx, n, "/healthz", 30*time.Second); err != nil && ctx.Err() == nil {
		x.problem("%s: restart: %v", f, err)
	}
}

// wipe replaces n by a new replica: it holds n's clients off (their ops in
// flight finish first), waits until every peer has confirmed all of n's
// commits, then kills n, removes its data directory and restarts it. If the
// data does not replicate within a bound, the wipe is not done (that would
// lose acknowledged increments by design) and the run fails.
func (x *injector) wipe(ctx context.Context, n *node, f fault) {
	n.gate.Lock()
	defer n.gate.Unlock()
	if st := n.getState(); st != stateRunning {
		x.problem("%s: node is %s; wipe skipped", f, st)
		return
	}
	proof, behind, err := x.cl.waitReplicated(ctx, n, x.counters, 90*time.Second)
	if behind > 0 {
		// The product's own lag metric said every peer had confirmed every
		// commit while a peer still lacked some of the node's counts.
		x.problem("%s: /v1/cluster showed lag 0 at every peer for %v while a peer still lacked some of %s's counts (%s)", f, behind.Round(time.Millisecond), n.name, proof)
	}
	if err != nil {
		if ctx.Err() == nil {
			x.problem("%s: not wiped: %v", f, err)
		}
		return
	}
	x.logf("%s: %s", f, proof)
	x.hist.event("wipe-replicated", f.Kind, nodeName(f.Node)+": "+proof)
	x.mu.Lock()
	x.wipes = append(x.wipes, nodeName(f.Node)+": "+proof)
	x.mu.Unlock()
	if err := x.cl.kill(n); err != nil {
		x.problem("%s: %v", f, err)
		return
	}
	if x.keep {
		// Keep the old replica's files for a post-mortem.
		aside := fmt.Sprintf("%s.wiped-%d", n.dataDir, time.Now().Unix())
		if err := os.Rename(n.dataDir, aside); err != nil {
			x.problem("%s: %v", f, err)
		}
		x.logf("%s: the old data directory is kept in %s", f, aside)
	} else if err := os.RemoveAll(n.dataDir); err != nil {
		x.problem("%s: %v", f, err)
	}
	x.restart(ctx, n, f)
}

// healAll ends every fault: flushes the rules, resumes paused nodes,
// restarts dead ones.
func (x *injector) healAll(ctx context.Context) {
	cl := x.cl
	if err := cl.nw.heal(); err != nil {
		x.problem("heal: %v", err)
	}
	for _, n := range cl.nodes {
		switch n.getState() {
		case statePaused:
			if _, err := n.signal(syscall.SIGCONT); err != nil {
				x.problem("heal: %v", err)
			}
		case stateDead:
			x.restart(ctx, n, fault{Kind: "heal", Node: n.idx})
		}
	}
}
