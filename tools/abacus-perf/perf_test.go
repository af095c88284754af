package main

// Tests of the suite's pure parts: parsing what the tools print (recorded
// outputs in testdata/), the statistics, the verdicts and the table. The
// suite itself is not run here: it measures, and measurements are not
// tests.

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/table.golden")

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(readTestdata(t, "wrk-inc64-wide.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{Requests: 44522, DurationUS: 2094144, P50us: 2484, P90us: 5810, P99us: 17078, P999us: 24714, MaxUS: 34127}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if got := r.Rate(); math.Abs(got-44522/2.094144) > 0.01 {
		t.Errorf("Rate() = %v", got)
	}
}

func TestParseWrk_Errors(t *testing.T) {
	r, err := parseWrk("ABACUS-PERF-WRK requests=100 duration_us=1000000 connect=0 read=1 write=2 status=7 timeout=3 p50_us=1.5 p90_us=2 p99_us=3 p999_us=4 max_us=5\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() != 93 || r.SocketErrors() != 6 || r.Rate() != 93 {
		t.Errorf("OK %d, socket errors %d, rate %v", r.OK(), r.SocketErrors(), r.Rate())
	}
	for _, tc := range []struct{ name, out string }{
		{"no done line", "Running 2s test @ http://127.0.0.1:1/\nRequests/sec: 5\n"},
		{"missing field", "ABACUS-PERF-WRK requests=100 duration_us=1000000\n"},
		{"bad number", "ABACUS-PERF-WRK requests=x duration_us=1 connect=0 read=0 write=0 status=0 timeout=0 p50_us=1 p90_us=1 p99_us=1 p999_us=1 max_us=1\n"},
		{"zero duration", "ABACUS-PERF-WRK requests=1 duration_us=0 connect=0 read=0 write=0 status=0 timeout=0 p50_us=1 p90_us=1 p99_us=1 p999_us=1 max_us=1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseWrk(tc.out); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestParseRedisCSV(t *testing.T) {
	r, err := parseRedisCSV(readTestdata(t, "redis-benchmark-incr.csv"), "INCR")
	if err != nil {
		t.Fatal(err)
	}
	want := redisResult{Test: "INCR", RPS: 56740.27, AvgMS: 0.957, P50ms: 0.863, P95ms: 1.639, P99ms: 2.159, MaxMS: 5.719}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if _, err := parseRedisCSV(readTestdata(t, "redis-benchmark-incr.csv"), "SET"); err == nil {
		t.Error("a test that is not there: no error")
	}
	_, err = parseRedisCSV(readTestdata(t, "redis-benchmark-old.csv"), "INCR")
	if err == nil || !strings.Contains(err.Error(), "percentiles") {
		t.Errorf("output without percentiles: %v", err)
	}
}

func TestParseBench(t *testing.T) {
	r, err := parseBench("some log line\n" + readTestdata(t, "abacus-bench-load.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "load" || r.Counters != 35 || math.Abs(r.IncPerSec-291678.78) > 0.01 || r.P99ms != 24.941186 ||
		r.TSTo-r.TSFrom != 2879*60 {
		t.Errorf("got %+v", r)
	}
	if _, err := parseBench(readTestdata(t, "abacus-bench-mismatch.jsonl")); err == nil || !strings.Contains(err.Error(), "MISMATCH") {
		t.Errorf("failed verification: %v", err)
	}
	if _, err := parseBench("abacus-bench: connection refused\n"); err == nil {
		t.Error("no result: no error")
	}
}

// TestParseBench_Replay: a replay run against a server whose keys do not
// replicate (main at 6681205): every retry at the peer applied again, and
// the duplicates stayed.
func TestParseBench_Replay(t *testing.T) {
	r, err := parseBench(readTestdata(t, "abacus-bench-replay.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "replay" || r.Trials != 20 || r.Missed != 20 || r.Replayed != 0 || r.ReplayedShare != 0 || r.P99ms != -1 ||
		r.CountedOnce == nil || *r.CountedOnce {
		t.Errorf("got %+v", r)
	}
}

func TestParseGoBench(t *testing.T) {
	res := parseGoBench(readTestdata(t, "go-test-bench.txt"))
	if got := res["BenchmarkPushPull_Converged"]["bytes/exchange"]; got != 682 {
		t.Errorf("bytes/exchange = %v", got)
	}
	hot := res["BenchmarkHotCounter_10kPerSecond"]
	if hot["bytes/inc/peer(all-nodes)"] != 0.2853 || hot["bytes/inc/peer(writer)"] != 0.1004 || hot["inc/s"] != 9996 {
		t.Errorf("hot counter: %v", hot)
	}
}

func TestMetricSum(t *testing.T) {
	text := readTestdata(t, "metrics.txt")
	for _, tc := range []struct {
		name   string
		metric string
		labels []string
		want   float64
		found  bool
	}{
		{"all series", "abacus_gossip_bytes_total", nil, 1200 + 3400 + 56 + 78, true},
		{"one direction", "abacus_gossip_bytes_total", []string{`direction="out"`}, 3400 + 78, true},
		{"two labels", "abacus_gossip_bytes_total", []string{`direction="in"`, `kind="digest"`}, 56, true},
		{"no labels", "abacus_store_pending_slots", nil, 0, true},
		{"exponent", "abacus_store_file_size_bytes", []string{`file="state.db"`}, 4.8e7, true},
		{"absent", "abacus_nothing", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, found := metricSum(text, tc.metric, tc.labels...)
			if got != tc.want || found != tc.found {
				t.Errorf("got %v, %v; want %v, %v", got, found, tc.want, tc.found)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	m := parseProcStatus(readTestdata(t, "proc-status.txt"))
	if m["VmRSS"] != 183296*1024 || m["RssAnon"] != 167936*1024 || m["RssFile"] != 15360*1024 {
		t.Errorf("status: %v", m)
	}
	if _, ok := m["Threads"]; ok {
		t.Error("a field without kB was read")
	}
	ticks, err := parseProcStatTicks(readTestdata(t, "proc-stat.txt"))
	if err != nil || ticks != 325 {
		t.Errorf("stat: %d, %v", ticks, err)
	}
	if _, err := parseProcStatTicks("12 (x) S 1"); err == nil {
		t.Error("short stat: no error")
	}
}

func TestMedianMinMax(t *testing.T) {
	for _, tc := range []struct {
		name        string
		xs          []float64
		med, lo, hi float64
	}{
		{"one", []float64{3}, 3, 3, 3},
		{"odd", []float64{5, 1, 4, 2, 3}, 3, 1, 5},
		{"even", []float64{4, 1, 3, 2}, 2.5, 1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := minMax(tc.xs)
			if m := median(tc.xs); m != tc.med || lo != tc.lo || hi != tc.hi {
				t.Errorf("median %v, min %v, max %v", m, lo, hi)
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is a number")
	}
	xs := []float64{3, 1, 2}
	median(xs)
	if xs[0] != 3 {
		t.Error("median sorted its argument")
	}
}

func TestVerdict(t *testing.T) {
	rows := map[string]*Row{
		"redis/c64": {Key: "redis/c64", Values: []float64{100, 200, 300}, P99: []float64{2, 3, 4}},
		"empty":     {Key: "empty"},
	}
	for _, tc := range []struct {
		name   string
		row    Row
		text   string
		missed bool
	}{
		{"at least, met", Row{Values: []float64{5, 10, 20}, Target: &Target{Bound: 10}}, "met", false},
		{"at least, missed", Row{Values: []float64{5, 9, 20}, Target: &Target{Bound: 10}}, "NOT MET", true},
		{"at most on p99", Row{Values: []float64{1}, P99: []float64{4, 6, 5}, Target: &Target{AtMost: true, Bound: 5, OnP99: true}}, "met", false},
		{"ratio, met", Row{Values: []float64{250}, Target: &Target{Bound: 1, Ref: "redis/c64"}}, "1.25× met", false},
		{"ratio, missed", Row{Values: []float64{100}, Target: &Target{Bound: 1, Ref: "redis/c64"}}, "0.50× NOT MET", true},
		{"ratio to p99", Row{Values: []float64{7}, Target: &Target{AtMost: true, Bound: 2, Ref: "redis/c64", RefP99: true}}, "2.33× NOT MET", true},
		{"info", Row{Values: []float64{50}, Target: &Target{Info: true, Ref: "redis/c64"}}, "0.25× redis c64", false},
		{"reference not measured", Row{Values: []float64{50}, Target: &Target{Bound: 1, Ref: "empty"}}, "n/a (empty not measured)", false},
		{"reference absent", Row{Values: []float64{50}, Target: &Target{Bound: 1, Ref: "redis/c1"}}, "n/a (redis c1 not measured)", false},
		{"not measured", Row{Target: &Target{Bound: 1}}, "not measured", false},
		{"no target", Row{Values: []float64{1}}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, missed := verdict(&tc.row, rows)
			if text != tc.text || missed != tc.missed {
				t.Errorf("got %q, %v; want %q, %v", text, missed, tc.text, tc.missed)
			}
		})
	}
}

func TestFmtNum(t *testing.T) {
	for x, want := range map[float64]string{
		1234567: "1,234,567", 52895.4: "52,895", 999.6: "1,000", 123.4: "123", 42.25: "42.2",
		6.5: "6.50", 0.54: "0.540", 0: "0", math.NaN(): "—", -1500: "-1,500",
	} {
		if got := fmtNum(x); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", x, got, want)
		}
	}
}

func TestSlotsOf(t *testing.T) {
	// 2,880 minutes ending at 10:30:15 UTC on a day: the first is at
	// 10:31:15 two days earlier, so 2,880 minute windows, 49 hour windows
	// (10:00 two days back to 10:00 today) and 3 days.
	to := 1795429815.0 // 2026-11-23T10:30:15Z
	from := to - 2879*60
	if got, want := slotsOf(350, from, to), int64(350*(2880+49+3+1)); got != want {
		t.Errorf("slotsOf = %d, want %d", got, want)
	}
}

func TestWrkSeconds(t *testing.T) {
	for d, want := range map[string]string{"400ms": "1s", "2s": "2s", "10s": "10s", "2500ms": "3s"} {
		dd, _ := time.ParseDuration(d)
		if got := wrkSeconds(dd); got != want {
			t.Errorf("wrkSeconds(%s) = %s, want %s", d, got, want)
		}
	}
}

// sampleRows is a small suite's worth of rows: absolute targets, ratios to
// Redis and to rows of other scenarios, an info ratio, a failed scenario.
func sampleRows() ([]*Row, map[string]string, []string) {
	rows := []*Row{
		{Scenario: "trivial", Key: "trivial", What: "req/s: GET / of a trivial chi handler", Unit: "req/s",
			Values: []float64{52895, 49621, 61514}, P99: []float64{6.5, 6.1, 7}},
		{Scenario: "trivial", Key: "trivial/cpu", What: "server CPU per request", Unit: "µs", Values: []float64{14.0, 13.8, 17.1}},
		{Scenario: "inc64-hot", Key: "inc64-hot", What: "durable inc/s, 64 connections", Unit: "inc/s",
			Values: []float64{27025, 24106, 29438}, P99: []float64{5.2, 5.0, 6.1},
			Target: &Target{Bound: 1, Ref: "redis-aof/c64", Desc: "≥ 1.0× Redis AOF-always c64"}},
		{Scenario: "inc64-hot", Key: "inc64-hot/p99", What: "p99 latency", Unit: "ms", Values: []float64{5.2, 5.0, 6.1},
			Target: &Target{AtMost: true, Bound: 2, Ref: "redis-aof/c64", RefP99: true, Desc: "≤ 2× Redis AOF-always c64 p99"}},
		{Scenario: "inc64-hot", Key: "inc64-hot/cpu", What: "server CPU per increment", Unit: "µs", Values: []float64{32.1, 31.3, 35.4},
			Target: &Target{AtMost: true, Bound: 1.6, Ref: "trivial/cpu", Desc: "≤ 1.6× trivial's CPU per request"}},
		{Scenario: "inc64-wide", Key: "inc64-wide/vs-hot", What: "… the same rate against one hot counter", Unit: "inc/s",
			Values: []float64{26553, 25038, 26670}, Target: &Target{Bound: 0.9, Ref: "inc64-hot", Desc: "≥ 0.9× inc64-hot"}},
		{Scenario: "inc1", Key: "inc1/p50", What: "p50 latency, 1 connection", Unit: "ms", Values: []float64{0.54, 0.5, 0.6},
			Target: &Target{AtMost: true, Bound: 0.5, Desc: "≤ 0.5 ms"}},
		{Scenario: "inc64-async", Key: "inc64-async", What: "async inc/s", Unit: "inc/s", Values: []float64{36715},
			Target: &Target{Info: true, Ref: "redis-none/c64", Desc: "ratio to Redis no-persistence c64"}},
		{Scenario: "scale", Key: "scale/ready", What: "restart → ready", Unit: "s", Values: []float64{0.41, 0.39, 0.45},
			Target: &Target{AtMost: true, Bound: 2, Desc: "≤ 2 s"}},
		{Scenario: "scale-10m", Key: "scale-10m/rss", What: "resident memory per slot after the load and a checkpoint", Unit: "B",
			Values: []float64{382, 358, 465}, Target: &Target{AtMost: true, Bound: 64, Desc: "≤ 64 B/slot"}},
		{Scenario: "scale-10m", Key: "scale-10m/disk", What: "disk per slot", Unit: "B",
			Values: []float64{21.5, 22, 23.9}, Target: &Target{AtMost: true, Bound: 24, Desc: "≤ 24 B/slot"}},
		{Scenario: "redis-aof", Key: "redis-aof/c64", What: "INCR ops/s, -c 64, AOF always", Unit: "ops/s",
			Values: []float64{52813, 50100, 55000}, P99: []float64{2.83, 2.5, 3}},
	}
	failed := map[string]string{"cluster": "node c not ready after 1m0s"}
	order := []string{"trivial", "inc64-hot", "inc64-wide", "inc1", "inc64-async", "scale", "scale-10m", "cluster", "redis-aof"}
	return rows, failed, order
}

func TestTable_Golden(t *testing.T) {
	rows, failed, order := sampleRows()
	got := strings.Join(tableLines(rows, failed, order), "\n") + "\n"
	path := filepath.Join("testdata", "table.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readTestdata(t, "table.golden")
	if got != want {
		t.Errorf("table differs from %s (go test -run Golden -update to accept):\n%s", path, got)
	}
	missed := missedTargets(rows)
	wantMissed := []string{"inc64-hot: durable inc/s, 64 connections", "inc64-hot: server CPU per increment",
		"inc1: p50 latency, 1 connection",
		"scale-10m: resident memory per slot after the load and a checkpoint"}
	if strings.Join(missed, "|") != strings.Join(wantMissed, "|") {
		t.Errorf("missed targets %q, want %q", missed, wantMissed)
	}
}

// TestScaleRows_Targets: both scale scenarios carry issue 14's targets under
// their own keys.
func TestScaleRows_Targets(t *testing.T) {
	for _, sc := range []string{"scale", "scale-10m"} {
		t.Run(sc, func(t *testing.T) {
			s := &suite{cur: sc}
			s.newScaleRows(3500)
			byKey := map[string]*Row{}
			for _, r := range s.rows {
				if r.Scenario != sc || !strings.HasPrefix(r.Key, sc+"/") {
					t.Errorf("row %q of scenario %q", r.Key, r.Scenario)
				}
				byKey[r.Key] = r
			}
			for _, tc := range []struct {
				key, unit string
				want      Target
			}{
				{"disk", "B", Target{AtMost: true, Bound: 24}},
				{"rss", "B", Target{AtMost: true, Bound: 64}},
				{"rss-after", "B", Target{AtMost: true, Bound: 64}},
				{"ready", "s", Target{AtMost: true, Bound: 2}},
				{"range", "req/s", Target{AtMost: true, Bound: 5, OnP99: true}},
			} {
				r := byKey[sc+"/"+tc.key]
				if r == nil || r.Target == nil {
					t.Errorf("%s/%s: no row or no target", sc, tc.key)
					continue
				}
				got := *r.Target
				got.Desc = ""
				if got != tc.want || r.Unit != tc.unit {
					t.Errorf("%s/%s: target %+v in %s, want %+v in %s", sc, tc.key, got, r.Unit, tc.want, tc.unit)
				}
			}
			for _, key := range []string{"load", "slots", "rss-anon", "rss-file", "rss-after-anon", "rss-after-file", "rss-ready", "range-p50"} {
				if byKey[sc+"/"+key] == nil {
					t.Errorf("no row %s/%s", sc, key)
				}
			}
		})
	}
}

// TestIncRows_Targets: the hot counter's CPU is held to the trivial
// handler's, the wide rate to the hot one's, both in the same invocation.
func TestIncRows_Targets(t *testing.T) {
	s := &suite{cur: "inc64-hot"}
	hot := s.newIncRows(incHot)
	if hot.vsHot != nil {
		t.Error("inc64-hot has a row against itself")
	}
	if tg := hot.cpu.Target; tg == nil || *tg != (Target{AtMost: true, Bound: 1.6, Ref: "trivial/cpu", Desc: tg.Desc}) {
		t.Errorf("inc64-hot/cpu target %+v", tg)
	}
	s.cur = "inc64-wide"
	wide := s.newIncRows(incWide)
	if wide.vsHot == nil || wide.vsHot.Key != "inc64-wide/vs-hot" {
		t.Fatalf("inc64-wide: no vs-hot row")
	}
	if tg := wide.vsHot.Target; *tg != (Target{Bound: 0.9, Ref: "inc64-hot", Desc: tg.Desc}) {
		t.Errorf("inc64-wide/vs-hot target %+v", tg)
	}
	if wide.cpu.Target != nil {
		t.Errorf("inc64-wide/cpu target %+v", wide.cpu.Target)
	}
	// Every reference names a row some scenario makes.
	for _, k := range []incKind{incOne, incAsync} {
		s.cur = "x"
		s.newIncRows(k)
	}
	s.cur = "trivial"
	s.row("trivial/cpu", "", "µs")
	keys := map[string]bool{}
	for _, r := range s.rows {
		keys[r.Key] = true
	}
	for _, r := range s.rows {
		if r.Target != nil && r.Target.Ref != "" && !strings.HasPrefix(r.Target.Ref, "redis-") && !keys[r.Target.Ref] {
			t.Errorf("%s refers to %s, which no row has", r.Key, r.Target.Ref)
		}
	}
}

// TestLoads_ScaleSizes: the scale scenarios hold about 1,000,000 and
// 10,000,000 slots; --quick keeps them small.
func TestLoads_ScaleSizes(t *testing.T) {
	slots := func(counters int) int64 {
		to := 1795429815.0 // as in TestSlotsOf
		return slotsOf(counters, to-2879*60, to)
	}
	var full config
	full.setLoads()
	if got := slots(full.scaleCounters); got < 1_000_000 || got > 1_100_000 {
		t.Errorf("scale: %d slots", got)
	}
	if got := slots(full.scale10mCounters); got < 10_000_000 || got > 11_000_000 {
		t.Errorf("scale-10m: %d slots", got)
	}
	quick := config{quick: true}
	quick.setLoads()
	if got := slots(quick.scale10mCounters); got > 250_000 || quick.scaleCounters > quick.scale10mCounters {
		t.Errorf("quick: scale %d counters, scale-10m %d counters (%d slots)", quick.scaleCounters, quick.scale10mCounters, got)
	}
}

// TestPairedRows_RatiosWithinARound: the paired rows hold each round's
// ratios, so a machine that slows down between rounds moves both figures of
// a round and not their ratio; the verdict is on the median ratio.
func TestPairedRows_RatiosWithinARound(t *testing.T) {
	s := &suite{cur: "paired"}
	p := s.newPairedRows()
	if tg := p.wideVsHot.Target; *tg != (Target{Bound: 0.9, Desc: tg.Desc}) {
		t.Errorf("paired/wide-vs-hot target %+v", tg)
	}
	if tg := p.cpuVsTrivial.Target; *tg != (Target{AtMost: true, Bound: 1.6, Desc: tg.Desc}) {
		t.Errorf("paired/hot-cpu-vs-trivial target %+v", tg)
	}
	// The machine halves its speed after the first round: the medians of
	// the rates (hot 100, wide 50) would say 0.5×.
	for _, r := range [][4]float64{{20, 100, 30, 95}, {40, 50, 70, 46}, {40, 50, 56, 45}} {
		if err := p.addRound(r[0], r[1], r[2], r[3]); err != nil {
			t.Fatal(err)
		}
	}
	rows := map[string]*Row{}
	for _, r := range s.rows {
		rows[r.Key] = r
	}
	if got, want := median(p.wideVsHot.Values), 0.92; math.Abs(got-want) > 1e-9 {
		t.Errorf("wide-vs-hot median %v, want %v", got, want)
	}
	if text, missed := verdict(p.wideVsHot, rows); text != "met" || missed {
		t.Errorf("wide-vs-hot verdict %q, missed %v", text, missed)
	}
	if got, want := median(p.cpuVsTrivial.Values), 1.5; math.Abs(got-want) > 1e-9 {
		t.Errorf("hot-cpu-vs-trivial median %v, want %v", got, want)
	}
	if text, missed := verdict(p.cpuVsTrivial, rows); text != "met" || missed {
		t.Errorf("hot-cpu-vs-trivial verdict %q, missed %v", text, missed)
	}
	for range 3 {
		if err := p.addRound(20, 100, 40, 80); err != nil {
			t.Fatal(err)
		}
	}
	if text, missed := verdict(p.wideVsHot, rows); text != "NOT MET" || !missed {
		t.Errorf("wide-vs-hot verdict %q after three more rounds at 0.8, want NOT MET", text)
	}
	if text, missed := verdict(p.cpuVsTrivial, rows); text != "NOT MET" || !missed {
		t.Errorf("hot-cpu-vs-trivial verdict %q after three more rounds at 2.0, want NOT MET", text)
	}
	// A round with nothing answered would add an infinite or NaN ratio.
	n := len(p.wideVsHot.Values)
	if err := p.addRound(20, 0, math.NaN(), 80); err == nil || len(p.wideVsHot.Values) != n {
		t.Errorf("a round that measured nothing: err %v, %d ratios (had %d)", err, len(p.wideVsHot.Values), n)
	}
}
