// Command abacus-bench drives concurrent HTTP clients against a running Abacus
// node and reports throughput and latency percentiles.
//
//	abacus-bench --mode inc --clients 64 --duration 10s --runs 5
//	abacus-bench --mode batch --batch 1000 --clients 8
//	abacus-bench --mode range --write-clients 16
//	abacus-bench --mode inc --rate 10000 --clients 16   # paced: 10,000 increments/s
//	abacus-bench --mode load --increments 1008000 --counters 350 --spread 48h
//	abacus-bench --mode inc --keys idempotency     # each increment with its own Idempotency-Key
//	abacus-bench --mode replay --addr A --peer C --retry-after 0   # A→C: when is a retry at C a replay?
//	abacus-bench trivial --listen 127.0.0.1:4100   # a trivial chi server, for a ceiling
//	abacus-bench trivial --wait 1ms                # the same, each request waiting for a group release
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
)

type options struct {
	addr         string
	mode         string
	clients      int
	writeClients int
	duration     time.Duration
	warmup       time.Duration
	counters     int
	batch        int
	runs         int
	prefix       string
	jsonOut      bool
	verify       bool
	pid          int
	peer         string
	trials       int
	rate         float64
	increments   int64
	spread       time.Duration
	keys         string
	retryAfter   time.Duration
}

// result is one run's figures.
type result struct {
	Mode        string  `json:"mode"`
	Keys        string  `json:"keys,omitempty"`
	Clients     int     `json:"clients"`
	Counters    int     `json:"counters"`
	Batch       int     `json:"batch,omitempty"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	ReqPerSec   float64 `json:"requests_per_second"`
	IncPerSec   float64 `json:"increments_per_second,omitempty"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
	ServerCPUus float64 `json:"server_cpu_us_per_request,omitempty"`
	Verified    *bool   `json:"verified,omitempty"`
	VerifyNote  string  `json:"verify_note,omitempty"`
	// With --mode load: the event times of the first and last increment
	// (Unix seconds).
	TSFrom float64 `json:"ts_from,omitempty"`
	TSTo   float64 `json:"ts_to,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "trivial" {
		trivial(os.Args[2:])
		return
	}
	var o options
	flag.StringVar(&o.addr, "addr", "http://127.0.0.1:4000", "node to load")
	flag.StringVar(&o.mode, "mode", "inc", "inc (single increments), batch, total (reads), range (48h at 1m: 2,880 points), trivial (GET / of a trivial server), visibility, load (--increments through the batch API, event times spread over --spread)")
	flag.IntVar(&o.clients, "clients", 64, "concurrent clients, one keep-alive connection each")
	flag.IntVar(&o.writeClients, "write-clients", 0, "with total or range: clients sending increments meanwhile")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time per run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured time before each run")
	flag.IntVar(&o.counters, "counters", 1, "distinct counters to spread increments over")
	flag.IntVar(&o.batch, "batch", 1000, "increments per batch request")
	flag.IntVar(&o.runs, "runs", 1, "runs; with more than one, the median run is reported too")
	flag.StringVar(&o.prefix, "prefix", "bench", "counter name prefix")
	flag.BoolVar(&o.jsonOut, "json", false, "print results as JSON lines")
	flag.BoolVar(&o.verify, "verify", true, "for inc and batch: check the node's totals rose by exactly the increments acknowledged")
	flag.IntVar(&o.pid, "pid", 0, "the server's process ID: report its CPU time per request (steadier than throughput on a shared machine)")
	flag.StringVar(&o.peer, "peer", "", "with --mode visibility: the node to watch for increments acknowledged by --addr")
	flag.IntVar(&o.trials, "trials", 200, "with --mode visibility: how many increments to time")
	flag.Float64Var(&o.rate, "rate", 0, "requests per second over all clients, warm-up included (0: as fast as they go)")
	flag.Int64Var(&o.increments, "increments", 0, "with --mode load: how many increments to send, in batches of --batch over --counters names")
	flag.DurationVar(&o.spread, "spread", 0, "with --mode load: spread the increments' event times evenly over this much time before now (0: all now)")
	flag.StringVar(&o.keys, "keys", "none", "with --mode inc: none; idempotency (every request carries its own Idempotency-Key); decoy (the same unique value in a header the server ignores: the same bytes and client work as idempotency, for an unkeyed baseline)")
	flag.DurationVar(&o.retryAfter, "retry-after", 0, "with --mode replay: send the retry at --peer this long after --addr acknowledged; 0: as soon as --peer shows the increment")
	flag.Parse()
	u, err := url.Parse(o.addr)
	if err != nil || u.Host == "" {
		fmt.Fprintf(os.Stderr, "abacus-bench: bad --addr %q\n", o.addr)
		os.Exit(2)
	}
	switch o.keys {
	case "none", "idempotency", "decoy":
	default:
		fmt.Fprintf(os.Stderr, "abacus-bench: --keys %q: want none, idempotency or decoy\n", o.keys)
		os.Exit(2)
	}
	if o.keys != "none" && o.mode != "inc" {
		fmt.Fprintf(os.Stderr, "abacus-bench: --keys works with --mode inc only\n")
		os.Exit(2)
	}
	if o.mode == "replay" {
		if err := replay(o); err != nil {
			fmt.Fprintf(os.Stderr, "abacus-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.mode == "visibility" {
		if err := visibility(o); err != nil {
			fmt.Fprintf(os.Stderr, "abacus-bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if o.mode == "load" {
		r, err := load(o, u.Host)
		if err != nil {
			fmt.Fprintf(os.Stderr, "abacus-bench: %v\n", err)
			os.Exit(1)
		}
		print(o, "run", r)
		if r.Verified != nil && !*r.Verified {
			os.Exit(1)
		}
		return
	}
	var results []result
	for i := 0; i < o.runs; i++ {
		r, err := run(o, u.Host)
		if err != nil {
			fmt.Fprintf(os.Stderr, "abacus-bench: %v\n", err)
			os.Exit(1)
		}
		results = append(results, r)
		print(o, "run", r)
	}
	if len(results) > 1 {
		med, lo, hi := summarize(results)
		print(o, "median", med)
		if !o.jsonOut {
			fmt.Printf("  range over %d runs: %.0f–%.0f req/s, p99 %.2f–%.2f ms\n", len(results), lo.ReqPerSec, hi.ReqPerSec, lo.P99ms, hi.P99ms)
		}
	}
	for _, r := range results {
		if r.Verified != nil && !*r.Verified {
			os.Exit(1)
		}
	}
}

func print(o options, label string, r result) {
	if o.jsonOut {
		b, _ := json.Marshal(struct {
			Label string `json:"label"`
			result
		}{label, r})
		fmt.Println(string(b))
		return
	}
	line := fmt.Sprintf("%-6s mode=%s clients=%d counters=%d", label, r.Mode, r.Clients, r.Counters)
	if r.Mode == "batch" || r.Mode == "load" {
		line += fmt.Sprintf(" batch=%d", r.Batch)
	}
	line += fmt.Sprintf(": %.0f req/s", r.ReqPerSec)
	if r.IncPerSec > 0 {
		line += fmt.Sprintf(", %.0f increments/s", r.IncPerSec)
	}
	line += fmt.Sprintf(", p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, errors %d", r.P50ms, r.P99ms, r.P999ms, r.Errors)
	if r.ServerCPUus > 0 {
		line += fmt.Sprintf(", server CPU %.1f µs/request", r.ServerCPUus)
	}
	if r.Verified != nil {
		line += ", " + r.VerifyNote
	}
	fmt.Println(line)
}

// summarize returns the run with the median throughput, and the lowest and
// highest figures seen.
func summarize(rs []result) (med, lo, hi result) {
	byRate := slices.Clone(rs)
	slices.SortFunc(byRate, func(a, b result) int {
		switch {
		case a.ReqPerSec < b.ReqPerSec:
			return -1
		case a.ReqPerSec > b.ReqPerSec:
			return 1
		}
		return 0
	})
	med = byRate[len(byRate)/2]
	lo, hi = byRate[0], byRate[len(byRate)-1]
	p99s := make([]float64, len(rs))
	for i, r := range rs {
		p99s[i] = r.P99ms
	}
	slices.Sort(p99s)
	med.P99ms = p99s[len(p99s)/2]
	lo.P99ms, hi.P99ms = p99s[0], p99s[len(p99s)-1]
	return med, lo, hi
}

func (o options) name(i int) string { return fmt.Sprintf("%s.%d", o.prefix, i%o.counters) }

// requests builds the request variants each client cycles through.
func requests(o options, host string) (reqs [][]byte, incsPer int, err error) {
	switch o.mode {
	case "inc":
		for i := 0; i < o.counters; i++ {
			reqs = append(reqs, request("POST", host, "/v1/counters/"+o.name(i)+"/increment", nil))
		}
		return reqs, 1, nil
	case "batch":
		variants := min(16, max(1, o.counters))
		for v := 0; v < variants; v++ {
			var b bytes.Buffer
			b.WriteString(`{"increments":[`)
			for i := 0; i < o.batch; i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"name":%q}`, o.name(v*o.batch+i))
			}
			b.WriteString(`]}`)
			reqs = append(reqs, request("POST", host, "/v1/increments", b.Bytes(), "Content-Type", "application/json"))
		}
		return reqs, o.batch, nil
	case "total":
		for i := 0; i < o.counters; i++ {
			reqs = append(reqs, request("GET", host, "/v1/counters/"+o.name(i), nil))
		}
		return reqs, 0, nil
	case "range":
		from := time.Now().Add(-48 * time.Hour).Add(time.Minute).Truncate(time.Minute).Unix()
		for i := 0; i < o.counters; i++ {
			reqs = append(reqs, request("GET", host, fmt.Sprintf("/v1/counters/%s/range?from=%d&step=1m", o.name(i), from), nil))
		}
		return reqs, 0, nil
	case "trivial":
		return [][]byte{request("GET", host, "/", nil)}, 0, nil
	}
	return nil, 0, fmt.Errorf("unknown --mode %q", o.mode)
}

func run(o options, host string) (result, error) {
	reqs, incsPer, err := requests(o, host)
	if err != nil {
		return result{}, err
	}
	var before uint64
	verify := o.verify && incsPer > 0
	if verify {
		if before, err = sumTotals(o); err != nil {
			return result{}, err
		}
	}
	var (
		measuring atomic.Bool
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		lat       []time.Duration
		okAll     atomic.Int64 // every 200 to an increment request, warmup included
		requestsN atomic.Int64
		errorsN   atomic.Int64
		firstErr  atomic.Value
		paced     atomic.Int64
	)
	t0 := time.Now()
	// pace holds a request back until it is due: request k of the run is due
	// at t0 + k/rate, so the clients together send --rate requests a second.
	pace := func() {
		if o.rate <= 0 {
			return
		}
		k := paced.Add(1)
		if d := time.Until(t0.Add(time.Duration(float64(k) / o.rate * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
	}
	// With --keys, each request is built with its own key.
	keyHeader := map[string]string{"idempotency": "Idempotency-Key", "decoy": "X-Bench-Decoy"}[o.keys]
	keyTag := fmt.Sprintf("%016x", rand.Uint64())
	worker := func(id int, reqs [][]byte, record bool) {
		defer wg.Done()
		c, err := dial(host)
		if err != nil {
			firstErr.CompareAndSwap(nil, err.Error())
			errorsN.Add(1)
			return
		}
		defer c.Close()
		local := make([]time.Duration, 0, 1<<16)
		buf := make([]byte, 0, 256<<10)
		for i := id; !stop.Load(); i++ {
			if record {
				pace()
			}
			req := reqs[i%len(reqs)]
			if keyHeader != "" {
				req = request("POST", host, "/v1/counters/"+o.name(i)+"/increment", nil,
					keyHeader, keyTag+"-"+strconv.Itoa(id)+"-"+strconv.Itoa(i))
			}
			start := time.Now()
			status, body, err := c.do(req, buf)
			d := time.Since(start)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				errorsN.Add(1)
				return
			}
			if status == 200 && record && incsPer > 0 {
				okAll.Add(1)
			}
			if !record || !measuring.Load() {
				continue
			}
			requestsN.Add(1)
			if status != 200 {
				errorsN.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d: %s", status, body))
				continue
			}
			local = append(local, d)
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	}
	for i := 0; i < o.clients; i++ {
		wg.Add(1)
		go worker(i, reqs, true)
	}
	var writeAcked atomic.Int64
	if o.writeClients > 0 && incsPer == 0 {
		wreqs, _, _ := requests(options{mode: "inc", counters: o.counters, prefix: o.prefix}, host)
		for i := 0; i < o.writeClients; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := dial(host)
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 0, 4096)
				for j := i; !stop.Load(); j++ {
					if s, _, err := c.do(wreqs[j%len(wreqs)], buf); err != nil {
						return
					} else if s == 200 {
						writeAcked.Add(1)
					}
				}
			}()
		}
	}
	time.Sleep(o.warmup)
	cpu0 := processCPU(o.pid)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(o.duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	cpu1 := processCPU(o.pid)
	stop.Store(true)
	wg.Wait()
	if msg := firstErr.Load(); msg != nil {
		fmt.Fprintf(os.Stderr, "abacus-bench: first error: %v\n", msg)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	r := result{
		Mode: o.mode, Keys: strings.TrimPrefix(o.keys, "none"), Clients: o.clients, Counters: o.counters, Seconds: elapsed.Seconds(),
		Requests: requestsN.Load(), Errors: errorsN.Load(),
		P50ms: pct(0.50), P99ms: pct(0.99), P999ms: pct(0.999),
	}
	if o.mode == "batch" {
		r.Batch = o.batch
	}
	r.ReqPerSec = float64(r.Requests-r.Errors) / elapsed.Seconds()
	if o.pid != 0 && r.Requests > 0 {
		r.ServerCPUus = float64(cpu1-cpu0) / float64(time.Microsecond) / float64(r.Requests)
	}
	r.IncPerSec = r.ReqPerSec * float64(incsPer)
	if verify {
		after, err := sumTotals(o)
		if err != nil {
			return r, err
		}
		want := uint64(okAll.Load()) * uint64(incsPer)
		ok := after-before == want
		r.Verified = &ok
		if ok {
			r.VerifyNote = fmt.Sprintf("verified: totals rose by exactly the %d increments acknowledged", want)
		} else {
			r.VerifyNote = fmt.Sprintf("MISMATCH: totals rose by %d, %d increments acknowledged", after-before, want)
		}
	}
	return r, nil
}

// processCPU is the user and system CPU time process pid has used, from
// /proc/<pid>/stat (Linux); zero if unknown.
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields, in clock ticks (100 per second on Linux).
	rest := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// sumTotals adds up the totals of the counters the run uses.
func sumTotals(o options) (uint64, error) {
	var sum uint64
	after := ""
	for {
		u := fmt.Sprintf("%s/v1/counters?prefix=%s.&limit=1000", strings.TrimRight(o.addr, "/"), url.QueryEscape(o.prefix))
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		resp, err := http.Get(u)
		if err != nil {
			return 0, err
		}
		var page struct {
			Counters []struct{ Total uint64 }
			Next     *string
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("list counters: %w", err)
		}
		for _, c := range page.Counters {
			sum += c.Total
		}
		if page.Next == nil {
			return sum, nil
		}
		after = *page.Next
	}
}

// trivial serves a chi router whose only route answers "0\n": the cost of
// HTTP and routing alone on this machine, for comparison. With --wait, each
// request first waits for a group release like a durable write's: a group
// gathers from its first request for --wait (an fsync's time, with no disk
// and no CPU) and is then released whole, so that what a handler pays for
// waiting on a group commit is measured apart from the commit's own work.
func trivial(args []string) {
	fs := flag.NewFlagSet("trivial", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:4100", "address to serve on")
	wait := fs.Duration("wait", 0, "each request waits for the next group release; groups are released this far apart (0: no wait)")
	fs.Parse(args)
	var g *groups
	if *wait > 0 {
		g = newGroups(*wait)
	}
	r := chi.NewRouter()
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		if g != nil {
			g.await()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("0\n"))
	})
	fmt.Fprintf(os.Stderr, "trivial chi server on http://%s\n", *listen)
	if err := http.ListenAndServe(*listen, r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// dialPair connects to --addr (A) and --peer (B), which mode needs both of.
func dialPair(o options, mode string) (a, b *url.URL, ca, cb *conn, err error) {
	if a, err = url.Parse(o.addr); err != nil {
		return nil, nil, nil, nil, err
	}
	if b, err = url.Parse(o.peer); err != nil || b.Host == "" {
		return nil, nil, nil, nil, fmt.Errorf("--mode %s needs --peer http://host:port", mode)
	}
	if ca, err = dial(a.Host); err != nil {
		return nil, nil, nil, nil, err
	}
	if cb, err = dial(b.Host); err != nil {
		ca.Close()
		return nil, nil, nil, nil, err
	}
	return a, b, ca, cb, nil
}

// visibility times, over many trials, how long after node A acknowledges an
// increment node B reports it: A's answer carries the counter's new total,
// and B is polled every millisecond until its total reaches it. Trials are
// spaced by random pauses so that they fall at random points of the gossip
// cycle.
func visibility(o options) error {
	a, b, ca, cb, err := dialPair(o, "visibility")
	if err != nil {
		return err
	}
	defer ca.Close()
	defer cb.Close()
	name := fmt.Sprintf("%s.visibility.%d", o.prefix, time.Now().UnixNano())
	inc := request("POST", a.Host, "/v1/counters/"+name+"/increment", nil)
	get := request("GET", b.Host, "/v1/counters/"+name, nil)
	buf := make([]byte, 0, 4096)
	var lat []time.Duration
	for i := 0; i < o.trials; i++ {
		time.Sleep(time.Duration(20+rand.IntN(100)) * time.Millisecond)
		status, body, err := ca.do(inc, buf)
		if err != nil || status != 200 {
			return fmt.Errorf("increment at %s: %d %v", o.addr, status, err)
		}
		acked := time.Now()
		var r struct{ Total uint64 }
		if err := json.Unmarshal(body, &r); err != nil {
			return err
		}
		for {
			status, body, err := cb.do(get, buf)
			if err != nil || status != 200 {
				return fmt.Errorf("read at %s: %d %v", o.peer, status, err)
			}
			var v struct{ Total uint64 }
			if err := json.Unmarshal(body, &v); err != nil {
				return err
			}
			if v.Total >= r.Total {
				break
			}
			if time.Since(acked) > time.Minute {
				return fmt.Errorf("%s did not see total %d within a minute", o.peer, r.Total)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(acked))
	}
	slices.Sort(lat)
	p := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	maxMS := float64(lat[len(lat)-1]) / float64(time.Millisecond)
	if o.jsonOut {
		b, _ := json.Marshal(map[string]any{
			"label": "run", "mode": "visibility", "addr": o.addr, "peer": o.peer, "trials": len(lat),
			"p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99), "max_ms": maxMS,
		})
		fmt.Println(string(b))
		return nil
	}
	fmt.Printf("visibility %s -> %s over %d trials: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		o.addr, o.peer, len(lat), p(0.5), p(0.9), p(0.99), maxMS)
	return nil
}

// load sends --increments increments through the batch API as fast as
// --clients connections go, in batches of --batch, and checks afterwards
// that the node's totals rose by exactly that many. Increment i names
// counter i mod --counters; the increments are sent in rounds of one per
// counter, and round k of R carries the event time now − (R−1−k)·spread/R,
// so that with --spread 48h and 2,880 rounds every counter gets one
// increment in each minute window of the last 48 hours.
func load(o options, host string) (result, error) {
	if o.increments <= 0 || o.batch <= 0 {
		return result{}, fmt.Errorf("--mode load needs --increments and --batch above 0")
	}
	counters := int64(max(1, o.counters))
	rounds := (o.increments + counters - 1) / counters
	var step time.Duration
	if rounds > 1 {
		step = o.spread / time.Duration(rounds)
	}
	end := time.Now()
	ts := func(i int64) time.Time { return end.Add(-time.Duration(rounds-1-i/counters) * step) }
	var before uint64
	var err error
	if o.verify {
		if before, err = sumTotals(o); err != nil {
			return result{}, err
		}
	}
	batches := (o.increments + int64(o.batch) - 1) / int64(o.batch)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      []time.Duration
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		next.Store(batches) // the others stop at their next batch
	}
	start := time.Now()
	for w := 0; w < max(1, o.clients); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(host)
			if err != nil {
				fail(err)
				return
			}
			defer c.Close()
			var local []time.Duration
			buf := make([]byte, 0, 4096)
			var body bytes.Buffer
			for {
				b := next.Add(1) - 1
				if b >= batches {
					break
				}
				body.Reset()
				body.WriteString(`{"increments":[`)
				for i := b * int64(o.batch); i < min(o.increments, (b+1)*int64(o.batch)); i++ {
					if i > b*int64(o.batch) {
						body.WriteByte(',')
					}
					t := ts(i)
					fmt.Fprintf(&body, `{"name":%q,"ts":%d.%03d}`, o.name(int(i%counters)), t.Unix(), t.Nanosecond()/1e6)
				}
				body.WriteString(`]}`)
				t0 := time.Now()
				status, resp, err := c.do(request("POST", host, "/v1/increments", body.Bytes(), "Content-Type", "application/json"), buf)
				if err != nil {
					fail(err)
					break
				}
				if status != 200 {
					fail(fmt.Errorf("batch %d: status %d: %s", b, status, resp))
					break
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return result{}, firstErr
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	first, last := ts(0), ts(o.increments-1)
	r := result{
		Mode: "load", Clients: o.clients, Counters: int(counters), Batch: o.batch, Seconds: elapsed.Seconds(),
		Requests: int64(len(lat)), ReqPerSec: float64(len(lat)) / elapsed.Seconds(),
		IncPerSec: float64(o.increments) / elapsed.Seconds(),
		P50ms:     pct(0.5), P99ms: pct(0.99), P999ms: pct(0.999),
		TSFrom: float64(first.UnixNano()) / 1e9, TSTo: float64(last.UnixNano()) / 1e9,
	}
	if o.verify {
		after, err := sumTotals(o)
		if err != nil {
			return r, err
		}
		ok := after-before == uint64(o.increments)
		r.Verified = &ok
		if ok {
			r.VerifyNote = fmt.Sprintf("verified: totals rose by exactly the %d increments sent", o.increments)
		} else {
			r.VerifyNote = fmt.Sprintf("MISMATCH: totals rose by %d, %d increments sent", after-before, o.increments)
		}
	}
	return r, nil
}

// replay times, over many trials, how long after node A acknowledges a keyed
// increment a retry of it at node B (--peer) is a replay. A retry can only
// be sent once: at a node that does not know the key yet it is applied a
// second time (and the cluster must then resolve the duplicate), after
// which B knows the key from its own record. So B is never probed with the
// key; each trial uses a fresh counter and key, and:
//
//   - with --retry-after 0, B's total of the counter is polled every
//     millisecond (a read applies nothing) until it shows the increment,
//     and the retry is sent then. The spec has the key record replicate
//     with the commit that carries the increment; where it does, the time
//     until B shows the increment bounds (within the polling interval) the
//     time until a retry at B is a replay. The retry's answer checks that:
//     a retry answered fresh is a miss (the record came later than the
//     count), reported as such and never timed.
//   - with --retry-after D, the retry is sent D after A's answer, and the
//     share of retries that were replays is the measure (D = 300ms: what
//     share of retries are replays within 300 ms).
//
// At the end it waits (at most 30 s) until A and B count every trial's
// counter exactly once: the duplicates the misses made must resolve. Misses
// and unresolved duplicates are results (counted_once false), not errors:
// only a failed request or read is.
func replay(o options) error {
	a, b, ca, cb, err := dialPair(o, "replay")
	if err != nil {
		return err
	}
	defer ca.Close()
	defer cb.Close()
	prefix := fmt.Sprintf("%s.replay%d", o.prefix, time.Now().UnixNano())
	buf := make([]byte, 0, 4096)
	var lat []time.Duration // replays only
	missed := 0
	for i := 0; i < o.trials; i++ {
		time.Sleep(time.Duration(20+rand.IntN(100)) * time.Millisecond)
		name := fmt.Sprintf("%s.%d", prefix, i)
		key := fmt.Sprintf("%s-%d", prefix, i)
		path := "/v1/counters/" + name + "/increment"
		status, _, err := ca.do(request("POST", a.Host, path, nil, "Idempotency-Key", key), buf)
		if err != nil || status != 200 || ca.replayed {
			return fmt.Errorf("keyed increment at %s: status %d, replayed %v, %v", o.addr, status, ca.replayed, err)
		}
		acked := time.Now()
		if o.retryAfter > 0 {
			time.Sleep(time.Until(acked.Add(o.retryAfter)))
		} else {
			get := request("GET", b.Host, "/v1/counters/"+name, nil)
			for {
				status, body, err := cb.do(get, buf)
				if err != nil || status != 200 {
					return fmt.Errorf("read at %s: %d %v", o.peer, status, err)
				}
				var v struct{ Total uint64 }
				if err := json.Unmarshal(body, &v); err != nil {
					return err
				}
				if v.Total >= 1 {
					break
				}
				if time.Since(acked) > time.Minute {
					return fmt.Errorf("%s did not show %s within a minute", o.peer, name)
				}
				time.Sleep(time.Millisecond)
			}
		}
		seen := time.Since(acked)
		status, body, err := cb.do(request("POST", b.Host, path, nil, "Idempotency-Key", key), buf)
		if err != nil || status != 200 {
			return fmt.Errorf("retry at %s: status %d %v: %s", o.peer, status, err, body)
		}
		if cb.replayed {
			lat = append(lat, seen)
		} else {
			missed++
		}
	}
	// Every trial counter must end at exactly 1 on both nodes.
	want := uint64(o.trials)
	resolved := false
	var sums [2]uint64
	t0 := time.Now()
	for time.Since(t0) < 30*time.Second {
		for j, addr := range []string{o.addr, o.peer} {
			if sums[j], err = sumTotals(options{addr: addr, prefix: prefix}); err != nil {
				return err
			}
		}
		if sums[0] == want && sums[1] == want {
			resolved = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	slices.Sort(lat)
	// Percentiles over all trials, misses last (never a replay): -1 when
	// the percentile falls on a miss.
	p := func(q float64) float64 {
		k := min(o.trials-1, int(q*float64(o.trials)))
		if k >= len(lat) {
			return -1
		}
		return float64(lat[k]) / float64(time.Millisecond)
	}
	out := map[string]any{
		"label":          "run",
		"mode":           "replay",
		"addr":           o.addr,
		"peer":           o.peer,
		"trials":         o.trials,
		"retry_after_ms": float64(o.retryAfter) / float64(time.Millisecond),
		"replayed":       len(lat),
		"missed":         missed,
		"replayed_share": float64(len(lat)) / float64(o.trials),
		"counted_once":   resolved,
		"totals":         sums,
		"resolve_wait_s": time.Since(t0).Seconds(),
	}
	if o.retryAfter == 0 {
		out["p50_ms"], out["p90_ms"], out["p99_ms"], out["max_ms"] = p(0.5), p(0.9), p(0.99), p(1)
	}
	if o.jsonOut {
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	} else {
		fmt.Printf("replay %s -> %s over %d trials (retry after %v): %d replayed, %d applied again; counted once: %v (totals %v of %d)",
			o.addr, o.peer, o.trials, o.retryAfter, len(lat), missed, resolved, sums, want)
		if o.retryAfter == 0 {
			fmt.Printf("; until a retry is a replay: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (-1: a miss)", p(0.5), p(0.9), p(0.99), p(1))
		}
		fmt.Println()
	}
	return nil
}

// groups releases waiting requests together, each group a period after its
// first request came, the way group commit answers the requests that shared
// a commit.
type groups struct {
	mu      sync.Mutex
	next    chan struct{} // closed when the group now gathering is released
	waiting bool
	start   chan struct{} // signalled when a group starts gathering
}

func newGroups(period time.Duration) *groups {
	g := &groups{next: make(chan struct{}), start: make(chan struct{}, 1)}
	go func() {
		for range g.start {
			time.Sleep(period)
			g.mu.Lock()
			close(g.next)
			g.next, g.waiting = make(chan struct{}), false
			g.mu.Unlock()
		}
	}()
	return g
}

// await waits until the group it joins is released.
func (g *groups) await() {
	g.mu.Lock()
	ch := g.next
	if !g.waiting {
		g.waiting = true
		g.start <- struct{}{}
	}
	g.mu.Unlock()
	<-ch
}
