//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client behaviour. Short timeouts make pauses and lost answers produce
// retries; a bounded number of retries with the same key (about 18 s in all)
// rides out restarts, and longer pauses leave ops indeterminate.
const (
	attemptTimeout = 3 * time.Second
	maxAttempts    = 5
	maxBackoff     = 2 * time.Second
	// pastWindow is how far back event times reach.
	pastWindow = 40 * time.Minute
)

// workload drives the clients and records every op.
type workload struct {
	runID    string
	counters []string
	clients  int
	seed     uint64
	cl       *cluster
	hist     *historyWriter
	logf     func(string, ...any)

	nextID atomic.Int64
	stats  struct {
		ok, failed, indet, retried, replayed atomic.Int64
	}
	mu         sync.Mutex
	minTS      time.Time // event time bounds of everything sent
	maxTS      time.Time
	stopped    chan struct{}
	wg         sync.WaitGroup
	clientNode []*node
}

func newWorkload(runID string, counters []string, clients int, seed uint64, cl *cluster, hist *historyWriter, logf func(string, ...any)) *workload {
	w := &workload{runID: runID, counters: counters, clients: clients, seed: seed, cl: cl, hist: hist, logf: logf, stopped: make(chan struct{})}
	// Client c talks to node c mod N, always: the node of its datacenter.
	for c := 0; c < clients; c++ {
		w.clientNode = append(w.clientNode, cl.nodes[c%len(cl.nodes)])
	}
	return w
}

// start runs the clients until stop is called (they then finish the op in
// hand, retries included) or abort is cancelled (they give up at once and
// record what they had as indeterminate).
func (w *workload) start(abort context.Context) {
	for c := 0; c < w.clients; c++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.client(abort, c)
		}()
	}
}

// stop asks the clients to finish and waits for them.
func (w *workload) stop() {
	select {
	case <-w.stopped:
	default:
		close(w.stopped)
	}
	w.wg.Wait()
}

func (w *workload) noteTS(lo, hi time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.minTS.IsZero() || lo.Before(w.minTS) {
		w.minTS = lo
	}
	if hi.After(w.maxTS) {
		w.maxTS = hi
	}
}

func (w *workload) tsBounds() (time.Time, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.minTS, w.maxTS
}

// request is one op as it goes on the wire; every attempt resends the same
// bytes with the same key.
type request struct {
	method, path, body string
	op                 Op
}

func (w *workload) client(abort context.Context, c int) {
	r := rand.New(rand.NewPCG(w.seed, uint64(c)+1))
	n := w.clientNode[c]
	hc := &http.Client{
		Timeout:   attemptTimeout,
		Transport: &http.Transport{DialContext: w.cl.nw.DialContext, MaxIdleConnsPerHost: 2, DisableCompression: true},
	}
	defer hc.CloseIdleConnections()
	seq := 0
	for {
		select {
		case <-w.stopped:
			return
		case <-abort.Done():
			return
		default:
		}
		seq++
		req := w.build(r, c, seq, n)
		n.gate.RLock()
		op := w.do(abort, hc, n, req)
		n.gate.RUnlock()
		w.hist.write(op)
		// Think time keeps the history and the CPU bounded.
		select {
		case <-time.After(time.Duration(5+r.IntN(30)) * time.Millisecond):
		case <-abort.Done():
			return
		}
	}
}

// build makes op seq of client c: a single increment (a third without ts, so
// that the node's clock, skewed or not, picks it) or a batch of 2–12 with
// explicit event times, half of them in the last 40 minutes.
func (w *workload) build(r *rand.Rand, c, seq int, n *node) request {
	now := time.Now().UTC()
	evTime := func() time.Time {
		if r.IntN(2) == 0 {
			return now.Truncate(time.Millisecond)
		}
		return now.Add(-time.Duration(r.Int64N(int64(pastWindow)))).Truncate(time.Second)
	}
	op := Op{Type: "op", ID: w.nextID.Add(1), Client: c, Node: n.name, Key: fmt.Sprintf("%s-c%d-%d", w.runID, c, seq)}
	if r.IntN(4) == 0 {
		op.Kind = "batch"
		var b strings.Builder
		b.WriteString(`{"increments":[`)
		for i := 0; i < 2+r.IntN(11); i++ {
			it := Item{Name: w.counters[r.IntN(len(w.counters))], Amount: uint64(1 + r.IntN(9)), TS: evTime()}
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":%q,"amount":%d,"ts":%q}`, it.Name, it.Amount, it.TS.Format(time.RFC3339Nano))
			op.Items = append(op.Items, it)
			w.noteTS(it.TS, it.TS)
		}
		b.WriteString(`]}`)
		return request{method: "POST", path: "/v1/increments", body: b.String(), op: op}
	}
	op.Kind = "single"
	it := Item{Name: w.counters[r.IntN(len(w.counters))], Amount: uint64(1 + r.IntN(9))}
	path := fmt.Sprintf("/v1/counters/%s/increment?amount=%d", it.Name, it.Amount)
	if r.IntN(3) == 0 {
		it.DefaultTS = true
	} else {
		it.TS = evTime()
		path += fmt.Sprintf("&ts=%d.%03d", it.TS.Unix(), it.TS.Nanosecond()/1e6)
		w.noteTS(it.TS, it.TS)
	}
	op.Items = []Item{it}
	return request{method: "POST", path: path, op: op}
}

// do sends req to n until it gets a definite answer or runs out of attempts.
func (w *workload) do(abort context.Context, hc *http.Client, n *node, req request) Op {
	op := req.op
	op.Start = time.Now().UTC()
	backoff := 200 * time.Millisecond
	var lastErr string
	var lastNoAnswer time.Time
	for op.Attempts < maxAttempts {
		op.Attempts++
		if op.Attempts > 1 {
			w.stats.retried.Add(1)
		}
		hreq, _ := http.NewRequestWithContext(abort, req.method, n.url+req.path, strings.NewReader(req.body))
		hreq.Header.Set("Idempotency-Key", op.Key)
		if req.body != "" {
			hreq.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(hreq)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		switch {
		case err != nil:
			lastErr = err.Error()
			lastNoAnswer = time.Now()
		case resp.StatusCode >= 200 && resp.StatusCode < 300:
			op.Status, op.Outcome = resp.StatusCode, OutcomeOK
			op.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
			if op.Replayed {
				w.stats.replayed.Add(1)
			}
			w.stats.ok.Add(1)
			w.settleTS(&op, n, body)
			op.End = time.Now().UTC()
			return op
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			op.Status = resp.StatusCode
			lastErr = fmt.Sprintf("%d: %s", resp.StatusCode, bytes.TrimSpace(body))
			lastNoAnswer = time.Now()
		default:
			// A definite refusal: nothing was applied.
			op.Status, op.Outcome = resp.StatusCode, OutcomeFailed
			op.Error = string(bytes.TrimSpace(body))
			w.stats.failed.Add(1)
			w.settleTS(&op, n, nil)
			op.End = time.Now().UTC()
			w.logf("client %d: op %d got %d: %s", op.Client, op.ID, resp.StatusCode, op.Error)
			return op
		}
		if abort.Err() != nil || op.Attempts >= maxAttempts {
			break
		}
		select {
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)/2))):
		case <-abort.Done():
		}
		backoff = min(2*backoff, maxBackoff)
	}
	op.Outcome, op.Error = OutcomeIndeterminate, lastErr
	w.stats.indet.Add(1)
	if lastNoAnswer.IsZero() {
		lastNoAnswer = time.Now()
	}
	op.End = time.Now().UTC()
	w.settleTSRange(&op, n, lastNoAnswer)
	return op
}

// settleTS fills in the event time of a single increment sent without ts from
// the node's answer ({"name","amount","ts","total"}).
func (w *workload) settleTS(op *Op, n *node, body []byte) {
	it := &op.Items[0]
	if op.Kind != "single" || !it.DefaultTS {
		return
	}
	var resp struct {
		TS time.Time `json:"ts"`
	}
	if body != nil && json.Unmarshal(body, &resp) == nil && !resp.TS.IsZero() {
		it.TS = resp.TS.UTC()
		w.noteTS(it.TS, it.TS)
		return
	}
	w.settleTSRange(op, n, time.Now())
}

// settleTSRange bounds the event time of a single increment sent without ts
// that got no usable answer: the node's clock at some moment between the
// first attempt and the last one, with the node's clock offset and a second
// of slack on either side.
func (w *workload) settleTSRange(op *Op, n *node, last time.Time) {
	it := &op.Items[0]
	if op.Kind != "single" || !it.DefaultTS {
		return
	}
	// A restart with another clock offset may come between attempts; every
	// offset used is at most maxSkew either way.
	lo := op.Start.Add(-maxSkew - time.Second)
	hi := last.Add(maxSkew + time.Second)
	it.TSLo, it.TSHi = lo.UTC(), hi.UTC()
	w.noteTS(it.TSLo, it.TSHi)
}
