// Command abacus-perf runs Abacus's whole performance suite and prints one
// table: single increments (hot, wide, one client, async), batches, reads
// under load, nodes holding a million and ten million slots, a three-node
// cluster, what idempotency keys cost and how soon a retry at another node
// is a replay, and Redis on the same machine for comparison.
//
//	go run ./tools/abacus-perf                # 5 runs of 10 s per scenario
//	go run ./tools/abacus-perf --quick        # 1 short run each: a smoke test
//	go run ./tools/abacus-perf --only inc64-hot,redis-aof --runs 3
//
// It builds abacus and abacus-bench into a temporary directory, installs
// wrk and Redis from Debian when they are missing (as root), starts every
// process itself on 127.0.0.1, stops them (by PID) when done, on errors and
// on Ctrl-C, and removes its temporary files unless --keep. Run it from the
// repository on a quiet machine: the load generators share the cores with
// the servers they measure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/abacus-counter/abacus/internal/syspath"
)

type config struct {
	runs     int
	duration time.Duration
	warmup   time.Duration
	quick    bool
	only     map[string]bool
	skip     map[string]bool
	jsonFile string
	outDir   string
	keep     bool

	// Loads, smaller with --quick.
	wideCounters     int
	scaleCounters    int // scale: about 1,000,000 slots
	scale10mCounters int // scale-10m: about 10,000,000 slots
	scaleRange       time.Duration
	visTrials        int
	hotRate          int
	hotDuration      time.Duration
	idemRate         int           // keyed and unkeyed paced loads of idem-cluster, requests/s
	idemDrain        time.Duration // bound on the wait for key records to stop flowing after them
	catchupIncs      int64
	catchupCounters  int
	rangePreload     int64
	pushPullSlots    int
	promCounters     int
}

// scenario is one named part of the suite.
type scenario struct {
	name  string
	needs []string // tools from Debian: wrk, redis
	run   func(s *suite) error
}

var scenarios = []scenario{
	{"trivial", []string{"wrk"}, runTrivial},
	{"inc64-hot", []string{"wrk"}, func(s *suite) error { return runIncWrk(s, incHot) }},
	{"inc64-wide", []string{"wrk"}, func(s *suite) error { return runIncWrk(s, incWide) }},
	{"paired", []string{"wrk"}, runPaired},
	{"inc1", []string{"wrk"}, func(s *suite) error { return runIncWrk(s, incOne) }},
	{"inc64-async", []string{"wrk"}, func(s *suite) error { return runIncWrk(s, incAsync) }},
	{"batch-100", nil, func(s *suite) error { return runBatch(s, 100) }},
	{"batch-10k", nil, func(s *suite) error { return runBatch(s, 10_000) }},
	{"read-total", []string{"wrk"}, runReadTotal},
	{"read-range", nil, runReadRange},
	{"scale", nil, func(s *suite) error { return runScale(s, s.cfg.scaleCounters) }},
	{"scale-10m", nil, func(s *suite) error { return runScale(s, s.cfg.scale10mCounters) }},
	{"cluster", nil, runCluster},
	{"idem-inc64", nil, runIdemInc},
	{"idem-cluster", nil, runIdemCluster},
	{"gossip-bench", nil, runGossipBench},
	{"prom-range", nil, runPromRange},
	{"prom-sum", nil, runPromSum},
	{"redis-aof", []string{"redis"}, func(s *suite) error { return runRedis(s, true) }},
	{"redis-none", []string{"redis"}, func(s *suite) error { return runRedis(s, false) }},
}

// suite is one invocation's state.
type suite struct {
	cfg     config
	ctx     context.Context
	root    string // the module's directory
	tmp     string
	logDir  string
	procs   *procs
	bin     struct{ abacus, bench string }
	tools   map[string]string // command → path
	cur     string            // the scenario running
	rows    []*Row
	failed  map[string]string
	raw     map[string][]any // scenario → raw results of its runs
	started time.Time
}

// row adds a row to the current scenario.
func (s *suite) row(key, what, unit string) *Row {
	r := &Row{Scenario: s.cur, Key: key, What: what, Unit: unit}
	s.rows = append(s.rows, r)
	return r
}

// record keeps a raw result for --json.
func (s *suite) record(v any) { s.raw[s.cur] = append(s.raw[s.cur], v) }

func main() {
	os.Exit(realMain())
}

func realMain() int {
	var cfg config
	var only, skip string
	fs := flag.NewFlagSet("abacus-perf", flag.ContinueOnError)
	fs.IntVar(&cfg.runs, "runs", 5, "measured runs per scenario; the table shows the median and the range")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each measured run")
	fs.BoolVar(&cfg.quick, "quick", false, "a smoke test: 1 run of 2 s per scenario and smaller loads (the figures mean nothing)")
	fs.StringVar(&only, "only", "", "run only these scenarios (comma-separated)")
	fs.StringVar(&skip, "skip", "", "skip these scenarios (comma-separated)")
	fs.StringVar(&cfg.jsonFile, "json", "", "write the raw results and the table's rows to this file")
	fs.StringVar(&cfg.outDir, "out", "", "write the logs of every process here (default: the temporary directory, removed unless --keep)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (binaries, data directories, logs)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./tools/abacus-perf [flags]\n\nRuns the performance suite and prints one table.\n\nScenarios:")
		for _, sc := range scenarios {
			fmt.Fprintf(fs.Output(), " %s", sc.name)
		}
		fmt.Fprintf(fs.Output(), "\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "abacus-perf: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["runs"] {
			cfg.runs = 1
		}
		if !set["duration"] {
			cfg.duration = 2 * time.Second
		}
	}
	if cfg.runs < 1 || cfg.duration < time.Second {
		fmt.Fprintln(os.Stderr, "abacus-perf: --runs must be at least 1 and --duration at least 1s")
		return 2
	}
	// wrk takes whole seconds.
	cfg.warmup = max(time.Second, min(2*time.Second, cfg.duration/5).Truncate(time.Second))
	cfg.setLoads()
	var err error
	if cfg.only, err = scenarioSet(only); err != nil {
		fmt.Fprintln(os.Stderr, "abacus-perf: --only:", err)
		return 2
	}
	if cfg.skip, err = scenarioSet(skip); err != nil {
		fmt.Fprintln(os.Stderr, "abacus-perf: --skip:", err)
		return 2
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	s := &suite{cfg: cfg, ctx: ctx, failed: map[string]string{}, raw: map[string][]any{}, tools: map[string]string{}, started: time.Now()}
	code := s.main()
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "abacus-perf: interrupted")
		return 130
	}
	return code
}

// setLoads sets the scenarios' loads, smaller with --quick.
func (cfg *config) setLoads() {
	cfg.wideCounters, cfg.scaleRange = 10_000, 5*time.Second
	cfg.scaleCounters, cfg.scale10mCounters = 350, 3500
	cfg.visTrials, cfg.hotRate, cfg.hotDuration = 200, 10_000, 10*time.Second
	cfg.catchupIncs, cfg.catchupCounters, cfg.rangePreload = 1_200_000, 1000, 28_800
	cfg.pushPullSlots = 1_000_000
	cfg.promCounters = 1000
	cfg.idemRate, cfg.idemDrain = 1_000, 2*time.Minute
	if cfg.quick {
		cfg.pushPullSlots = 100_000
		cfg.promCounters = 100
		cfg.scaleCounters, cfg.scale10mCounters, cfg.scaleRange = 35, 70, 2*time.Second
		cfg.visTrials, cfg.hotDuration = 20, 2*time.Second
		cfg.idemRate, cfg.idemDrain = 200, time.Minute
		cfg.catchupIncs, cfg.catchupCounters = 120_000, 100
	}
}

func scenarioSet(list string) (map[string]bool, error) {
	m := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		found := false
		for _, sc := range scenarios {
			found = found || sc.name == name
		}
		if !found {
			var names []string
			for _, sc := range scenarios {
				names = append(names, sc.name)
			}
			return nil, fmt.Errorf("unknown scenario %q; scenarios: %s", name, strings.Join(names, ", "))
		}
		m[name] = true
	}
	return m, nil
}

func (s *suite) selected() []scenario {
	var out []scenario
	for _, sc := range scenarios {
		if (len(s.cfg.only) == 0 || s.cfg.only[sc.name]) && !s.cfg.skip[sc.name] {
			out = append(out, sc)
		}
	}
	return out
}

func (s *suite) main() int {
	var err error
	if s.tmp, err = os.MkdirTemp("", "abacus-perf-"); err != nil {
		fmt.Fprintln(os.Stderr, "abacus-perf:", err)
		return 1
	}
	s.logDir = filepath.Join(s.tmp, "logs")
	if s.cfg.outDir != "" {
		s.logDir = s.cfg.outDir
	}
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "abacus-perf:", err)
		return 1
	}
	s.procs = newProcs(s.logDir)
	defer func() {
		s.procs.stopAll()
		if s.cfg.keep {
			fmt.Fprintf(os.Stderr, "abacus-perf: kept %s\n", s.tmp)
		} else {
			os.RemoveAll(s.tmp)
		}
	}()

	sel := s.selected()
	if len(sel) == 0 {
		fmt.Fprintln(os.Stderr, "abacus-perf: no scenario selected")
		return 2
	}
	if err := s.prepare(sel); err != nil {
		fmt.Fprintln(os.Stderr, "abacus-perf:", err)
		return 1
	}
	header := s.header()
	for _, line := range header {
		fmt.Fprintln(os.Stderr, line)
	}
	var order []string
	for _, sc := range sel {
		if s.ctx.Err() != nil {
			break
		}
		s.cur = sc.name
		s.procs.mu.Lock()
		s.procs.tag = sc.name
		s.procs.mu.Unlock()
		order = append(order, sc.name)
		fmt.Fprintf(os.Stderr, "abacus-perf: %s: running (%s)\n", sc.name, time.Since(s.started).Round(time.Second))
		t0 := time.Now()
		err := sc.run(s)
		s.procs.stopAll() // whatever the scenario left running
		if err != nil {
			s.failed[sc.name] = err.Error()
			fmt.Fprintf(os.Stderr, "abacus-perf: %s: FAILED after %s: %v\n", sc.name, time.Since(t0).Round(time.Second), err)
			continue
		}
		fmt.Fprintf(os.Stderr, "abacus-perf: %s: done in %s\n", sc.name, time.Since(t0).Round(time.Second))
	}

	lines := header
	lines = append(lines, "")
	lines = append(lines, tableLines(s.rows, s.failed, order)...)
	lines = append(lines, "", "Notes:")
	lines = append(lines, s.notes()...)
	fmt.Println(strings.Join(lines, "\n"))
	if s.cfg.jsonFile != "" {
		if err := s.writeJSON(header, order); err != nil {
			fmt.Fprintln(os.Stderr, "abacus-perf: --json:", err)
			return 1
		}
	}
	if len(s.failed) > 0 {
		return 1
	}
	return 0
}

func (s *suite) notes() []string {
	n := []string{
		fmt.Sprintf("- median and min–max over %d run(s) of %v each; p99 is the median of the runs' p99s. wrk scenarios start with one unmeasured %v run; abacus-bench warms up %v before each run.", s.cfg.runs, s.cfg.duration, s.cfg.warmup, s.cfg.warmup),
		"- ratios (×) compare medians measured in this invocation: a target whose reference row did not run here reads n/a.",
		"- Redis figures are redis-benchmark's INCR on one key (the work of INCRBY 1), against a fresh redis-server per run.",
		"- write runs are verified: each node's totals must rise by the increments acknowledged (wrk: at least its 2xx responses, at most that plus its connections); a failed check fails the scenario.",
		"- server CPU is the node's user+system time from /proc per request (per increment for batches).",
		"- scale rows: per-slot figures divide by the slots the load created; memory is VmRSS, RssAnon and RssFile from /proc/<pid>/status, read once abacus_store_pending_slots and abacus_store_journal_records are both 0 after the load, and again after the restart, the timed range run and one 48 h read of every counter.",
		"- cluster gossip bytes are gossip payload bytes from abacus_gossip_bytes_total (sent by all nodes, before memberlist framing and encryption); gossip-bench's figures are transport bytes from Go benchmarks (framing, membership and encryption included).",
	}
	if s.cfg.quick {
		n = append([]string{"- QUICK MODE: one short run per scenario and smaller loads; the figures are a smoke test and mean nothing."}, n...)
	}
	for _, m := range missedTargets(s.rows) {
		n = append(n, "- target not met: "+m)
	}
	for sc, why := range s.failed {
		n = append(n, fmt.Sprintf("- %s failed: %s", sc, oneLine(why, 600)))
	}
	return n
}

func (s *suite) writeJSON(header []string, order []string) error {
	b, err := json.MarshalIndent(map[string]any{
		"header":    header,
		"scenarios": order,
		"rows":      s.rows,
		"failed":    s.failed,
		"raw":       s.raw,
		"config": map[string]any{
			"runs": s.cfg.runs, "duration": s.cfg.duration.String(), "warmup": s.cfg.warmup.String(), "quick": s.cfg.quick,
		},
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(s.cfg.jsonFile, append(b, '\n'), 0o644)
}

// prepare finds the module, builds the binaries and gets the tools the
// selected scenarios need.
func (s *suite) prepare(sel []scenario) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %v (is Go installed?)", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return fmt.Errorf("run abacus-perf inside the abacus repository (go env GOMOD is empty)")
	}
	s.root = filepath.Dir(mod)
	binDir := filepath.Join(s.tmp, "bin")
	s.bin.abacus, s.bin.bench = filepath.Join(binDir, "abacus"), filepath.Join(binDir, "abacus-bench")
	for _, b := range []struct{ out, pkg string }{{s.bin.abacus, "./cmd/abacus"}, {s.bin.bench, "./tools/abacus-bench"}} {
		fmt.Fprintf(os.Stderr, "abacus-perf: go build %s\n", b.pkg)
		if _, err := s.procs.runIn(s.ctx, 10*time.Minute, s.root, nil, "go-build-"+filepath.Base(b.out), "go", "build", "-o", b.out, b.pkg); err != nil {
			return err
		}
	}
	need := map[string]bool{}
	for _, sc := range sel {
		for _, t := range sc.needs {
			need[t] = true
		}
	}
	var pkgs []string
	var commands []string
	if need["wrk"] {
		commands = append(commands, "wrk")
		pkgs = append(pkgs, "wrk")
	}
	if need["redis"] {
		commands = append(commands, "redis-server", "redis-benchmark", "redis-cli")
		pkgs = append(pkgs, "redis-server", "redis-tools")
	}
	var missing []string
	for _, c := range commands {
		if p, err := syspath.LookPath(c); err == nil {
			s.tools[c] = p
		} else {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s missing; install them as root: apt-get install -y --no-install-recommends %s (or skip the scenarios that need them with --skip)",
			strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	fmt.Fprintf(os.Stderr, "abacus-perf: installing %s from Debian\n", strings.Join(pkgs, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	install := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if _, err := s.procs.runIn(s.ctx, 10*time.Minute, "", env, "apt-get-install", "apt-get", install...); err != nil {
		// The package lists may be missing or stale: update and try again.
		if _, err := s.procs.runIn(s.ctx, 10*time.Minute, "", env, "apt-get-update", "apt-get", "update"); err != nil {
			return err
		}
		if _, err := s.procs.runIn(s.ctx, 10*time.Minute, "", env, "apt-get-install", "apt-get", install...); err != nil {
			return err
		}
	}
	for _, c := range missing {
		p, err := syspath.LookPath(c)
		if err != nil {
			return fmt.Errorf("%s still missing after apt-get install %s", c, strings.Join(pkgs, " "))
		}
		s.tools[c] = p
	}
	return nil
}

// header describes the machine and the invocation.
func (s *suite) header() []string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if v, ok := parseProcStatus(string(b))["MemTotal"]; ok {
			mem = fmt.Sprintf("%.1f GiB", float64(v)/(1<<30))
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	gover := runtime.Version()
	if out, err := exec.Command("go", "version").Output(); err == nil {
		gover = strings.TrimSpace(string(out))
	}
	var tools []string
	for _, c := range []struct {
		name   string
		fields int
	}{{"wrk", 2}, {"redis-server", 3}} {
		if p, ok := s.tools[c.name]; ok {
			// wrk -v exits 1 after printing its version.
			out, _ := exec.Command(p, "-v").CombinedOutput()
			if f := strings.Fields(string(out)); len(f) >= c.fields {
				tools = append(tools, strings.Join(f[:c.fields], " "))
			}
		}
	}
	h := []string{
		"# Abacus performance suite",
		"",
		"command: " + commandLine(),
		"date:    " + s.started.UTC().Format(time.RFC3339),
		fmt.Sprintf("machine: %d cores (nproc), %s, %s memory, %s", runtime.NumCPU(), model, mem, kernel),
		"go:      " + gover,
	}
	if len(tools) > 0 {
		h = append(h, "tools:   "+strings.Join(tools, "; "))
	}
	return h
}

// commandLine is the invocation as a user would type it: `go run` builds
// the program into a temporary directory, which says nothing to a reader.
func commandLine() string {
	prog := os.Args[0]
	if strings.Contains(prog, "go-build") {
		prog = "go run ./tools/abacus-perf"
	}
	parts := []string{prog}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
