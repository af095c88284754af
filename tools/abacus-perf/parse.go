package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// This file holds the pure parsers of what the tools print; perf_test.go
// checks them against recorded outputs in testdata/.

// wrkMarker starts the line our Lua done function prints.
const wrkMarker = "ABACUS-PERF-WRK"

// wrkResult is what wrk's done function reports: counts over the whole run,
// latencies in microseconds.
type wrkResult struct {
	Requests   int64   `json:"requests"` // responses received, any status
	DurationUS int64   `json:"duration_us"`
	Connect    int64   `json:"errors_connect"`
	Read       int64   `json:"errors_read"`
	Write      int64   `json:"errors_write"`
	Status     int64   `json:"errors_status"` // responses with status above 399
	Timeout    int64   `json:"errors_timeout"`
	P50us      float64 `json:"p50_us"`
	P90us      float64 `json:"p90_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	MaxUS      float64 `json:"max_us"`
}

// OK is the number of successful (below 400) responses.
func (w wrkResult) OK() int64 { return w.Requests - w.Status }

// Rate is successful responses per second.
func (w wrkResult) Rate() float64 {
	if w.DurationUS <= 0 {
		return 0
	}
	return float64(w.OK()) / (float64(w.DurationUS) / 1e6)
}

// SocketErrors counts requests that may have reached the server without an
// answer being counted.
func (w wrkResult) SocketErrors() int64 { return w.Read + w.Write + w.Timeout }

// wrkDoneLua is the done function every wrk script of the suite ends with:
// one line of key=value pairs, latencies in microseconds.
const wrkDoneLua = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("` + wrkMarker + ` requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`

// parseWrk finds the done function's line in wrk's output.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, wrkMarker+" ") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(line)[1:] {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return r, fmt.Errorf("wrk: bad field %q in %q", f, line)
			}
			kv[k] = v
		}
		ints := map[string]*int64{"requests": &r.Requests, "duration_us": &r.DurationUS, "connect": &r.Connect,
			"read": &r.Read, "write": &r.Write, "status": &r.Status, "timeout": &r.Timeout}
		floats := map[string]*float64{"p50_us": &r.P50us, "p90_us": &r.P90us, "p99_us": &r.P99us, "p999_us": &r.P999us, "max_us": &r.MaxUS}
		for k, p := range ints {
			v, err := strconv.ParseInt(kv[k], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk: field %s in %q: %v", k, line, err)
			}
			*p = v
		}
		for k, p := range floats {
			v, err := strconv.ParseFloat(kv[k], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: field %s in %q: %v", k, line, err)
			}
			*p = v
		}
		if r.DurationUS <= 0 {
			return r, fmt.Errorf("wrk: no duration in %q", line)
		}
		return r, nil
	}
	return r, fmt.Errorf("wrk: no %s line in its output (did the Lua script load?)", wrkMarker)
}

// redisResult is one redis-benchmark test's line of --csv output.
type redisResult struct {
	Test  string  `json:"test"`
	RPS   float64 `json:"rps"`
	AvgMS float64 `json:"avg_ms"`
	P50ms float64 `json:"p50_ms"`
	P95ms float64 `json:"p95_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

// parseRedisCSV reads redis-benchmark --csv output. Redis 7 prints a header
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
// "p95_latency_ms","p99_latency_ms","max_latency_ms" and one line per test;
// older versions print only "test","rps", which is refused here because the
// suite needs the percentiles.
func parseRedisCSV(out string, test string) (redisResult, error) {
	rd := csv.NewReader(strings.NewReader(out))
	rd.FieldsPerRecord = -1
	var header []string
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return redisResult{}, fmt.Errorf("redis-benchmark csv: %v", err)
		}
		if len(rec) > 0 && rec[0] == "test" {
			header = rec
			continue
		}
		if header == nil || len(rec) != len(header) || !strings.EqualFold(rec[0], test) {
			continue
		}
		col := map[string]string{}
		for i, h := range header {
			col[h] = rec[i]
		}
		r := redisResult{Test: rec[0]}
		for k, p := range map[string]*float64{"rps": &r.RPS, "avg_latency_ms": &r.AvgMS, "p50_latency_ms": &r.P50ms,
			"p95_latency_ms": &r.P95ms, "p99_latency_ms": &r.P99ms, "max_latency_ms": &r.MaxMS} {
			s, ok := col[k]
			if !ok {
				return r, fmt.Errorf("redis-benchmark csv: no column %q (header %q); this version does not print percentiles", k, header)
			}
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return r, fmt.Errorf("redis-benchmark csv: column %s: %v", k, err)
			}
			*p = v
		}
		return r, nil
	}
	return redisResult{}, fmt.Errorf("redis-benchmark csv: no %s line in %q", test, out)
}

// benchResult is one abacus-bench --json line.
type benchResult struct {
	Label       string  `json:"label"`
	Mode        string  `json:"mode"`
	Clients     int     `json:"clients"`
	Counters    int     `json:"counters"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	ReqPerSec   float64 `json:"requests_per_second"`
	IncPerSec   float64 `json:"increments_per_second"`
	P50ms       float64 `json:"p50_ms"`
	P90ms       float64 `json:"p90_ms"`
	P99ms       float64 `json:"p99_ms"`
	ServerCPUus float64 `json:"server_cpu_us_per_request"`
	Verified    *bool   `json:"verified"`
	VerifyNote  string  `json:"verify_note"`
	TSFrom      float64 `json:"ts_from"`
	TSTo        float64 `json:"ts_to"`
	Trials      int     `json:"trials"`
	// With --mode replay: retries at the peer answered as replays, and
	// those applied again; the percentiles are -1 where they fall on a
	// retry that was applied again.
	Replayed      int     `json:"replayed"`
	Missed        int     `json:"missed"`
	ReplayedShare float64 `json:"replayed_share"`
	CountedOnce   *bool   `json:"counted_once"`
}

// parseBench returns the last "run" line of abacus-bench --json output, and
// refuses a run whose verification failed.
func parseBench(out string) (benchResult, error) {
	var last *benchResult
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r benchResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return r, fmt.Errorf("abacus-bench: %v in %q", err, line)
		}
		if r.Label == "run" {
			last = &r
		}
	}
	if last == nil {
		return benchResult{}, fmt.Errorf("abacus-bench printed no result")
	}
	if last.Verified != nil && !*last.Verified {
		return *last, fmt.Errorf("abacus-bench verification failed: %s", last.VerifyNote)
	}
	return *last, nil
}

// parseGoBench reads `go test -bench` output into benchmark name (without
// the -GOMAXPROCS suffix) → unit → value.
func parseGoBench(out string) map[string]map[string]float64 {
	res := map[string]map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue // not a result line
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		res[name] = m
	}
	return res
}

// metricSum adds up every series of a metric in Prometheus text format whose
// labels include all of want (name="value" pairs).
func metricSum(text, name string, want ...string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer name with this one as a prefix
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(","+labels+",", ","+w+",") {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// parseProcStatus reads the kB fields of /proc/<pid>/status (VmRSS, RssAnon,
// RssFile, …) as bytes.
func parseProcStatus(text string) map[string]int64 {
	m := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil {
			m[k] = n * 1024
		}
	}
	return m
}

// parseProcStatTicks returns utime+stime from /proc/<pid>/stat, in clock
// ticks (100 a second on Linux).
func parseProcStatTicks(text string) (int64, error) {
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc stat %q", text)
	}
	// After the command name: state is field 3; utime and stime are fields
	// 14 and 15, so the 12th and 13th after the name.
	f := strings.Fields(text[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc stat %q", text)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc stat %q", text)
	}
	return ut + st, nil
}
