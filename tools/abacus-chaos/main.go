//go:build linux

// Command abacus-chaos tests Abacus the way Jepsen tests databases: it runs
// real `abacus agent` processes, each in its own Linux network namespace,
// drives concurrent clients against them while it kills, pauses, partitions,
// wipes and skews the nodes, records every request and its outcome in a JSONL
// history, heals everything, and checks that every acknowledged increment is
// counted exactly once on every node. See docs/RELIABILITY.md.
//
// It needs root (namespaces, iptables) and iproute2 and iptables.
//
//	abacus-chaos                          # the short mode: ~2 minutes, 3 nodes in 2 DCs
//	abacus-chaos --mode long --seed 7     # 20 minutes, 5 nodes in 3 DCs, more faults
//	abacus-chaos --cleanup                # remove what killed runs left behind
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// config is the command line.
type config struct {
	mode      string
	seed      uint64
	duration  time.Duration // the load phase, with faults
	nodes     int
	dcs       int
	clients   int
	roaming   int     // clients whose retries roam; -1: half of them
	resend    float64 // share of roaming clients' acknowledged ops re-sent at another node
	counters  int
	history   string
	out       string
	binary    string
	keep      bool
	cleanup   bool
	converge  time.Duration // bound on convergence after healing
	faults    []string      // fault kinds to inject
	post      string        // --postmortem: a kept run's out directory
	args      []string      // as given, for the record
	seedGiven bool
}

// Exit codes.
const (
	exitPass        = 0
	exitFail        = 1 // the checker found a violation, or a fault could not be carried out
	exitUsage       = 2
	exitError       = 3 // the run could not be set up or was cut short by its deadline
	exitInterrupted = 130
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "abacus-chaos:", err)
		os.Exit(exitUsage)
	}
	if cfg.post != "" {
		var rep struct {
			RunID   string `json:"run_id"`
			DataDir string `json:"data_dir"`
		}
		b, err := os.ReadFile(filepath.Join(cfg.post, "result.json"))
		if err == nil {
			err = json.Unmarshal(b, &rep)
		}
		if d := filepath.Join(os.TempDir(), namePrefix+rep.RunID, "data"); err == nil && rep.DataDir == "" && rep.RunID != "" {
			if _, serr := os.Stat(d); serr == nil {
				rep.DataDir = d
			}
		}
		if err == nil && rep.DataDir == "" {
			err = errors.New("result.json names no data directory: was the run kept with --keep?")
		}
		if err == nil {
			err = postmortem(os.Stdout, cfg.post, rep.DataDir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "abacus-chaos: postmortem:", err)
			os.Exit(exitError)
		}
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, cfg, os.Stdout, os.Stderr))
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	cfg := config{args: args}
	fs := flag.NewFlagSet("abacus-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.mode, "mode", "short", "short: a fixed schedule of every fault kind once, about 2 minutes; long: random overlapping faults for --duration")
	seed := fs.Uint64("seed", 0, "seed of the fault schedule and the workload (default: random, printed)")
	fs.DurationVar(&cfg.duration, "duration", 0, "length of the load phase with faults (default: short 90s, long 20m); healing and checking add up to --converge-timeout and a few minutes, and the run is cut off at duration + converge-timeout + 4m")
	fs.IntVar(&cfg.nodes, "nodes", 0, "agents, 3 to 5 (default: short 3, long 5)")
	fs.IntVar(&cfg.dcs, "dcs", 0, "datacenters, 2 or 3 (default: short 2, long 3)")
	fs.IntVar(&cfg.clients, "clients", 0, "concurrent clients, each bound to one node (default: short 6, long 10)")
	fs.IntVar(&cfg.roaming, "roaming", -1, "clients (the last ones) that send each retry of a keyed request to the next node, always name the event time, and re-send a share of acknowledged requests at another node (default: half the clients)")
	fs.Float64Var(&cfg.resend, "resend", 0.2, "share of a roaming client's acknowledged requests sent once more (same key, same body) at another node after a random pause of 0–300 ms")
	fs.IntVar(&cfg.counters, "counters", 6, "counters the clients increment")
	fs.StringVar(&cfg.history, "history", "", "JSONL history file (default: OUT/history.jsonl)")
	fs.StringVar(&cfg.out, "out", "", "directory for the history, the agents' logs and result.json (default: a new abchaos-out-RUNID in the temp directory; kept)")
	fs.StringVar(&cfg.binary, "binary", "", "abacus binary (default: go build abacus/cmd/abacus, from inside the module)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the agents' data directories, and a wiped node's old one (renamed DIR.wiped-UNIXTIME)")
	fs.BoolVar(&cfg.cleanup, "cleanup", false, "remove the namespaces, processes and directories of abacus-chaos runs that are no longer running, then exit")
	fs.DurationVar(&cfg.converge, "converge-timeout", 90*time.Second, "how long after healing every node must agree")
	fs.StringVar(&cfg.post, "postmortem", "", "instead of a run: attribute the counts of a failed run kept with --keep (its out directory) to the replicas that acknowledged them")
	faults := fs.String("faults", strings.Join(allFaults, ","), "fault kinds to inject (to narrow down a failure); none for a run without faults")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: abacus-chaos [flags]\n\nRuns a chaos test of Abacus (needs root, iproute2 and iptables).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "seed" {
			cfg.seedGiven = true
		}
	})
	cfg.seed = *seed
	for _, k := range strings.Split(*faults, ",") {
		if k = strings.TrimSpace(k); k == "" || k == "none" {
			continue
		}
		if !slices.Contains(allFaults, k) {
			return cfg, fmt.Errorf("--faults: unknown kind %q; the kinds are %s", k, strings.Join(allFaults, ","))
		}
		cfg.faults = append(cfg.faults, k)
	}
	def := map[string][4]int{"short": {90, 3, 2, 6}, "long": {1200, 5, 3, 10}}
	d, ok := def[cfg.mode]
	if !ok {
		return cfg, fmt.Errorf("--mode %q: want short or long", cfg.mode)
	}
	if cfg.duration == 0 {
		cfg.duration = time.Duration(d[0]) * time.Second
	}
	if cfg.nodes == 0 {
		cfg.nodes = d[1]
	}
	if cfg.dcs == 0 {
		cfg.dcs = d[2]
	}
	if cfg.clients == 0 {
		cfg.clients = d[3]
	}
	if cfg.roaming < 0 {
		cfg.roaming = cfg.clients / 2
	}
	switch {
	case cfg.nodes < 3 || cfg.nodes > 5:
		return cfg, fmt.Errorf("--nodes %d: want 3 to 5", cfg.nodes)
	case cfg.dcs < 2 || cfg.dcs > 3 || cfg.dcs > cfg.nodes-1:
		return cfg, fmt.Errorf("--dcs %d: want 2 or 3, fewer than the nodes", cfg.dcs)
	case cfg.clients < 1 || cfg.clients > 64:
		return cfg, fmt.Errorf("--clients %d: want 1 to 64", cfg.clients)
	case cfg.roaming > cfg.clients:
		return cfg, fmt.Errorf("--roaming %d: more than the %d clients", cfg.roaming, cfg.clients)
	case cfg.resend < 0 || cfg.resend > 1:
		return cfg, fmt.Errorf("--resend %v: want a share from 0 to 1", cfg.resend)
	case cfg.counters < 1 || cfg.counters > 100:
		return cfg, fmt.Errorf("--counters %d: want 1 to 100", cfg.counters)
	case cfg.duration < 10*time.Second || cfg.duration > 2*time.Hour:
		return cfg, fmt.Errorf("--duration %v: want 10s to 2h", cfg.duration)
	case cfg.converge < 10*time.Second || cfg.converge > 30*time.Minute:
		return cfg, fmt.Errorf("--converge-timeout %v: want 10s to 30m", cfg.converge)
	}
	return cfg, nil
}

// report is result.json.
type report struct {
	RunID     string         `json:"run_id"`
	Seed      uint64         `json:"seed"`
	Mode      string         `json:"mode"`
	Command   string         `json:"command"`
	Nodes     int            `json:"nodes"`
	DCs       int            `json:"dcs"`
	Clients   int            `json:"clients"`
	Roaming   int            `json:"roaming_clients"`
	Resend    float64        `json:"resend_share"`
	Duration  string         `json:"duration"`
	Started   time.Time      `json:"started"`
	LoadSecs  float64        `json:"load_seconds"`
	WallSecs  float64        `json:"wall_seconds"`
	Schedule  []step         `json:"schedule"`
	Injected  map[string]int `json:"faults_injected"`
	Wipes     []string       `json:"wipes"`
	Problems  []string       `json:"problems"`
	History   string         `json:"history"`
	DataDir   string         `json:"data_dir,omitempty"` // kept with --keep
	Result    Result         `json:"result"`
	Interrupt bool           `json:"interrupted,omitempty"`
}

func newRunID() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// run is the whole tool; ctx ends on SIGINT or SIGTERM. Everything it
// creates is removed before it returns, on every path.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) (code int) {
	var logMu sync.Mutex
	var logFile io.Writer = io.Discard
	logf := func(format string, args ...any) {
		line := fmt.Sprintf("%s abacus-chaos: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		logMu.Lock()
		defer logMu.Unlock()
		io.WriteString(stderr, line)
		io.WriteString(logFile, line)
	}
	t, err := findTools()
	if err != nil {
		logf("%v", err)
		return exitError
	}
	if os.Geteuid() != 0 {
		logf("needs root: it creates network namespaces and iptables rules")
		return exitError
	}
	if out, err := runCmd(t.iptables, "-V"); err != nil {
		logf("iptables does not work here: %v", err)
		return exitError
	} else {
		logf("%s", strings.TrimSpace(out))
	}
	removed, err := removeStale(t, logf)
	if err != nil {
		logf("looking for leftovers: %v", err)
		return exitError
	}
	for _, r := range removed {
		logf("removed leftover %s", r)
	}
	if cfg.cleanup {
		logf("cleanup done: %d leftovers removed", len(removed))
		return exitPass
	}

	runID := newRunID()
	lock, err := takeRunLock(runID)
	if err != nil {
		logf("%v", err)
		return exitError
	}
	defer lock.release()
	if !cfg.seedGiven {
		var b [8]byte
		rand.Read(b[:])
		for _, x := range b {
			cfg.seed = cfg.seed<<8 | uint64(x)
		}
		cfg.seed %= 1_000_000
	}
	started := time.Now()
	logf("run %s: mode %s, seed %d, %d nodes in %d DCs, %d clients (%d roaming, re-sending %.0f%%), load %v", runID, cfg.mode, cfg.seed, cfg.nodes, cfg.dcs, cfg.clients, cfg.roaming, 100*cfg.resend, cfg.duration)

	// The hard deadline: everything, setup to verdict.
	hardDeadline := cfg.duration + cfg.converge + 4*time.Minute
	dctx, cancel := context.WithTimeout(ctx, hardDeadline)
	defer cancel()

	workDir := filepath.Join(os.TempDir(), namePrefix+runID)
	if err := os.MkdirAll(filepath.Join(workDir, "data"), 0o755); err != nil {
		logf("%v", err)
		return exitError
	}
	defer func() {
		if cfg.keep {
			// The marker spares the directory from removeStale.
			os.WriteFile(filepath.Join(workDir, keptMarker), nil, 0o644)
			logf("kept the data directories in %s", workDir)
			return
		}
		if err := os.RemoveAll(workDir); err != nil {
			logf("remove %s: %v", workDir, err)
		}
	}()
	outDir := cfg.out
	if outDir == "" {
		outDir = filepath.Join(os.TempDir(), namePrefix+"out-"+runID)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		logf("%v", err)
		return exitError
	}
	if f, err := os.Create(filepath.Join(outDir, "chaos.log")); err == nil {
		defer f.Close()
		logMu.Lock()
		logFile = f
		logMu.Unlock()
	}
	histPath := cfg.history
	if histPath == "" {
		histPath = filepath.Join(outDir, "history.jsonl")
	}
	logf("out: %s (history %s)", outDir, histPath)

	bin := cfg.binary
	if bin == "" {
		bin = filepath.Join(workDir, "abacus")
		cmd := exec.CommandContext(dctx, "go", "build", "-o", bin, "github.com/abacus-counter/abacus/cmd/abacus")
		if out, err := cmd.CombinedOutput(); err != nil {
			logf("go build abacus/cmd/abacus (run from inside the module, or give --binary): %v\n%s", err, out)
			return exitError
		}
	}
	if bin, err = filepath.Abs(bin); err != nil {
		logf("%v", err)
		return exitError
	}
	keyFile := filepath.Join(workDir, "gossip.key")
	if err := makeKey(bin, keyFile); err != nil {
		logf("%v", err)
		return exitError
	}

	nw, err := setupNetwork(t, runID, cfg.nodes, logf)
	if err != nil {
		logf("network: %v", err)
		return exitError
	}
	defer nw.remove()
	cl := newCluster(bin, keyFile, filepath.Join(workDir, "data"), outDir, nw, cfg.dcs, logf)
	graceful := false
	defer func() {
		// Processes first, then (deferred above) the namespaces they live in.
		var wg sync.WaitGroup
		for _, n := range cl.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl.stop(n, graceful, 10*time.Second)
			}()
		}
		wg.Wait()
		cl.http.CloseIdleConnections()
	}()

	hist, err := newHistoryWriter(histPath)
	if err != nil {
		logf("%v", err)
		return exitError
	}
	defer hist.close()

	for _, n := range cl.nodes {
		if err := cl.start(n); err != nil {
			logf("%v", err)
			return exitError
		}
	}
	for _, n := range cl.nodes {
		if err := cl.waitHTTP(dctx, n, "/readyz", 60*time.Second); err != nil {
			logf("%v", err)
			return abortCode(ctx, exitError)
		}
	}
	logf("all %d nodes ready", len(cl.nodes))

	topo := newTopology(cfg.nodes, cfg.dcs)
	var steps []step
	if cfg.mode == "short" {
		steps = shortSchedule(cfg.seed, topo)
	} else {
		steps = longSchedule(cfg.seed, topo, cfg.duration)
	}
	steps = onlyKinds(steps, cfg.faults)
	for i, s := range steps {
		var fs []string
		for _, f := range s.Faults {
			fs = append(fs, f.String())
		}
		logf("schedule %2d: %s, then %v", i+1, strings.Join(fs, " + "), s.Gap)
	}

	counters := make([]string, cfg.counters)
	for i := range counters {
		counters[i] = fmt.Sprintf("chaos.c%d", i)
	}
	// abort ends the clients at once (interrupt, deadline); a normal end
	// lets them finish the op in hand.
	wl := newWorkload(runID, counters, cfg.clients, cfg.roaming, cfg.resend, cfg.seed, cl, hist, logf)
	inj := &injector{cl: cl, counters: counters, keep: cfg.keep, hist: hist, logf: logf}
	loadStart := time.Now()
	hist.event("load-start", "", fmt.Sprintf("seed %d", cfg.seed))
	logf("load started")
	wl.start(dctx)
	stopAt := loadStart.Add(cfg.duration)
	if cfg.mode == "short" {
		stopAt = loadStart.Add(hardDeadline) // every step of the fixed schedule runs
	}
	injDone := make(chan struct{})
	go func() {
		defer close(injDone)
		if sleep(dctx, 3*time.Second) { // let the clients warm up
			inj.run(dctx, steps, stopAt)
		}
	}()
	progress := time.NewTicker(15 * time.Second)
	defer progress.Stop()
	loadEnd := time.NewTimer(cfg.duration)
	defer loadEnd.Stop()
	for ended, done := false, false; !ended || !done; {
		select {
		case <-loadEnd.C:
			ended = true
		case <-injDone:
			done, injDone = true, nil
		case <-progress.C:
			logf("load: %d ok, %d indeterminate, %d failed, %d retries, %d replayed; %d re-sent (%d replayed, %d applied again)", wl.stats.ok.Load(), wl.stats.indet.Load(), wl.stats.failed.Load(), wl.stats.retried.Load(), wl.stats.replayed.Load(),
				wl.stats.resent.Load(), wl.stats.resentReplayed.Load(), wl.stats.resentApplied.Load())
		case <-dctx.Done():
			ended, done = true, true
		}
	}
	loadSecs := time.Since(loadStart).Seconds()
	if dctx.Err() != nil {
		wl.stop()
		hist.event("aborted", "", dctx.Err().Error())
		logf("aborted: %v; cleaning up", context.Cause(dctx))
		return abortCode(ctx, exitError)
	}

	hist.event("heal", "", "")
	logf("healing: flushing rules, resuming and restarting nodes, letting the clients finish")
	inj.healAll(dctx)
	wl.stop()
	healed := time.Now()
	hist.event("healed", "", "")
	logf("healed; %d ok, %d indeterminate, %d failed", wl.stats.ok.Load(), wl.stats.indet.Load(), wl.stats.failed.Load())
	if err := hist.flush(); err != nil {
		logf("history: %v", err)
		return exitError
	}

	minTS, maxTS := wl.tsBounds()
	from := time.Unix(minute(minTS), 0).UTC()
	to := time.Unix(minute(maxTS)+60, 0).UTC()
	obs := cl.converge(dctx, counters, from, to, healed, cfg.converge, logf)
	if dctx.Err() != nil {
		logf("aborted while checking: %v", context.Cause(dctx))
		return abortCode(ctx, exitError)
	}
	logf("converged: %v after %.1fs", obs.Converged, obs.Seconds)

	f, err := os.Open(histPath)
	if err != nil {
		logf("%v", err)
		return exitError
	}
	ops, _, err := readHistory(f)
	f.Close()
	if err != nil {
		logf("%v", err)
		return exitError
	}
	res := Check(ops, obs)
	inj.mu.Lock()
	problems := slicesOrEmpty(inj.problems)
	wipes := slicesOrEmpty(inj.wipes)
	injected := inj.counts
	inj.mu.Unlock()
	for _, p := range problems {
		res.Failures = append(res.Failures, "fault injection: "+p)
		res.Pass = false
	}
	rep := report{
		RunID: runID, Seed: cfg.seed, Mode: cfg.mode, Command: commandLine(cfg), Nodes: cfg.nodes, DCs: cfg.dcs, Clients: cfg.clients, Roaming: cfg.roaming, Resend: cfg.resend,
		Duration: cfg.duration.String(), Started: started.UTC(), LoadSecs: loadSecs, WallSecs: time.Since(started).Seconds(),
		Schedule: steps, Injected: injected, Wipes: wipes, Problems: problems, History: histPath, Result: res,
	}
	if cfg.keep {
		rep.DataDir = filepath.Join(workDir, "data")
	}
	writeJSON(filepath.Join(outDir, "observation.json"), obs, logf)
	writeJSON(filepath.Join(outDir, "result.json"), rep, logf)
	printVerdict(stdout, rep)
	graceful = true
	if !res.Pass {
		return exitFail
	}
	return exitPass
}

func abortCode(ctx context.Context, otherwise int) int {
	if ctx.Err() != nil {
		return exitInterrupted
	}
	return otherwise
}

func slicesOrEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return append([]string{}, s...)
}

func commandLine(cfg config) string {
	parts := []string{"abacus-chaos", "--mode", cfg.mode, "--seed", fmt.Sprint(cfg.seed), "--duration", cfg.duration.String(),
		"--nodes", fmt.Sprint(cfg.nodes), "--dcs", fmt.Sprint(cfg.dcs), "--clients", fmt.Sprint(cfg.clients),
		"--roaming", fmt.Sprint(cfg.roaming), "--resend", fmt.Sprint(cfg.resend)}
	if len(cfg.faults) != len(allFaults) {
		f := strings.Join(cfg.faults, ",")
		if f == "" {
			f = "none"
		}
		parts = append(parts, "--faults", f)
	}
	return strings.Join(parts, " ")
}

func writeJSON(path string, v any, logf func(string, ...any)) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err == nil {
		err = os.WriteFile(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		logf("write %s: %v", path, err)
	}
}

func printVerdict(w io.Writer, rep report) {
	r := rep.Result
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "\n%s  run %s, seed %d (%s)\n", verdict, rep.RunID, rep.Seed, rep.Command)
	fmt.Fprintf(w, "  faults injected: %v\n", rep.Injected)
	fmt.Fprintf(w, "  ops: %d (%d ok, %d indeterminate, %d failed; %d retried, %d of them acked; %d replayed answers)\n",
		r.Ops, r.OpsOK, r.OpsIndeterminate, r.OpsFailed, r.OpsRetried, r.OpsRetriedAcked, r.OpsReplayed)
	fmt.Fprintf(w, "  increments: %d acked (amount %d), %d indeterminate (amount %d)\n", r.IncrementsAcked, r.AmountAcked, r.IncrementsIndeterm, r.AmountIndeterminate)
	fmt.Fprintf(w, "  roaming: %d ops, %d retried at another node; %d re-sent (%d replayed, %d applied again); %d applied at two nodes or more (amount %d)\n",
		r.OpsRoaming, r.OpsRoamed, r.OpsResent, r.ResendsReplayed, r.ResendsApplied, r.OpsAppliedTwice, r.AmountAppliedTwice)
	fmt.Fprintf(w, "  lost: %d  double-counted: %d  window lost: %d  window excess: %d  divergent readings: %d\n", r.Lost, r.DoubleCounted, r.WindowLost, r.WindowExcess, r.Divergent)
	fmt.Fprintf(w, "  converged: %v, %.1fs after healing (bound %.0fs)\n", r.Converged, r.ConvergeSeconds, r.ConvergeBound)
	fmt.Fprintf(w, "  %-12s %10s %10s %10s %10s %6s %6s %8s %8s\n", "counter", "acked", "indeterm", "min", "max", "lost", "dup", "windows", "applied2")
	for _, c := range r.Counters {
		fmt.Fprintf(w, "  %-12s %10d %10d %10d %10d %6d %6d %4d/%-3d %8d\n", c.Name, c.Acked, c.Indeterminate, c.Min, c.Max, c.Lost, c.DoubleCounted, c.Windows-c.WindowsBad, c.Windows, c.AppliedTwice)
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  FAILURE: %s\n", f)
	}
}
