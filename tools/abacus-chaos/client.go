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
	// maxResendPause bounds the pause before a roaming client re-sends an
	// acknowledged request at another node: within it the key has usually
	// not replicated yet, so the re-send races the key's replication.
	maxResendPause = 300 * time.Millisecond
)

// workload drives the clients and records every op.
type workload struct {
	runID    string
	counters []string
	clients  int
	// roaming is how many clients (the last ones) roam: each retry of an
	// op goes to the next node, and resend is the share of their
	// acknowledged ops sent once more, same key and bytes, at another node
	// after a pause of up to maxResendPause (an answer lost on its way
	// back, retried through a load balancer).
	roaming int
	resend  float64
	seed    uint64
	cl      *cluster
	hist    *historyWriter
	logf    func(string, ...any)

	nextID atomic.Int64
	stats  struct {
		ok, failed, indet, retried, replayed  atomic.Int64
		resent, resentReplayed, resentApplied atomic.Int64
	}
	mu         sync.Mutex
	minTS      time.Time // event time bounds of everything sent
	maxTS      time.Time
	stopped    chan struct{}
	wg         sync.WaitGroup
	clientNode []*node
}

func newWorkload(runID string, counters []string, clients, roaming int, resend float64, seed uint64, cl *cluster, hist *historyWriter, logf func(string, ...any)) *workload {
	w := &workload{runID: runID, counters: counters, clients: clients, roaming: roaming, resend: resend, seed: seed, cl: cl, hist: hist, logf: logf, stopped: make(chan struct{})}
	// Client c talks to node c mod N (the node of its datacenter), always,
	// unless it roams: then that is where each op starts.
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

// roams says whether client c roams: the last w.roaming clients do.
func (w *workload) roams(c int) bool { return c >= w.clients-w.roaming }

// gates holds, shared, the wipe gate of every node an op has touched, until
// the op ends: no attempt or re-send of an op crosses a wipe of a node it
// reached. Wipes run one at a time, so holding several gates cannot
// deadlock: a client waits only for the one node being wiped, and the wipe
// waits only for the clients holding that node.
type gates struct{ held []*node }

func (g *gates) enter(n *node) {
	for _, h := range g.held {
		if h == n {
			return
		}
	}
	n.gate.RLock()
	g.held = append(g.held, n)
}

func (g *gates) release() {
	for _, h := range g.held {
		h.gate.RUnlock()
	}
	g.held = nil
}

func (w *workload) client(abort context.Context, c int) {
	r := rand.New(rand.NewPCG(w.seed, uint64(c)+1))
	n := w.clientNode[c]
	hc := &http.Client{
		Timeout:   attemptTimeout,
		Transport: &http.Transport{DialContext: w.cl.nw.DialContext, MaxIdleConnsPerHost: 2, DisableCompression: true},
	}
	defer hc.CloseIdleConnections()
	roam := w.roams(c)
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
		req := w.build(r, c, seq, n, roam)
		var g gates
		op := w.do(abort, hc, n, req, roam, &g)
		if roam && op.Outcome == OutcomeOK && r.Float64() < w.resend {
			w.resendOp(abort, r, hc, req, &op, &g)
		}
		g.release()
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
// explicit event times, half of them in the last 40 minutes. A roaming
// client always names the ts: a request that two nodes apply before they
// meet is resolved to one of them, and with node-chosen times the checker
// could not tell which windows it is in.
func (w *workload) build(r *rand.Rand, c, seq int, n *node, roam bool) request {
	now := time.Now().UTC()
	evTime := func() time.Time {
		if r.IntN(2) == 0 {
			return now.Truncate(time.Millisecond)
		}
		return now.Add(-time.Duration(r.Int64N(int64(pastWindow)))).Truncate(time.Second)
	}
	op := Op{Type: "op", ID: w.nextID.Add(1), Client: c, Node: n.name, Key: fmt.Sprintf("%s-c%d-%d", w.runID, c, seq), Roaming: roam}
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
	if r.IntN(3) == 0 && !roam {
		it.DefaultTS = true
	} else {
		it.TS = evTime()
		path += fmt.Sprintf("&ts=%d.%03d", it.TS.Unix(), it.TS.Nanosecond()/1e6)
		w.noteTS(it.TS, it.TS)
	}
	op.Items = []Item{it}
	return request{method: "POST", path: path, op: op}
}

// send makes one attempt of req at n and records it in op.Tries. err is
// the transport error, if any; resp's body is read and closed.
func (w *workload) send(abort context.Context, hc *http.Client, n *node, req request, op *Op, resend bool) (status int, replayed bool, body []byte, err error) {
	hreq, _ := http.NewRequestWithContext(abort, req.method, n.url+req.path, strings.NewReader(req.body))
	hreq.Header.Set("Idempotency-Key", op.Key)
	if req.body != "" {
		hreq.Header.Set("Content-Type", "application/json")
	}
	try := Try{Node: n.name, Resend: resend}
	resp, err := hc.Do(hreq)
	if err == nil {
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		status = resp.StatusCode
		replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	}
	try.Status, try.Replayed = status, replayed
	switch {
	case err != nil:
		try.Err = err.Error()
	case status >= 200 && status < 300 && op.Roaming:
		// Roaming ops may have several answers; the checker compares a
		// replay with the answer it replays.
		try.Body = string(bytes.TrimSpace(body))
	case status >= 300:
		try.Err = string(bytes.TrimSpace(body))
	}
	op.Tries = append(op.Tries, try)
	return status, replayed, body, err
}

// do sends req until it gets a definite answer or runs out of attempts:
// every attempt to home, or, for a roaming client, each retry to the next
// node.
func (w *workload) do(abort context.Context, hc *http.Client, home *node, req request, roam bool, g *gates) Op {
	op := req.op
	op.Start = time.Now().UTC()
	backoff := 200 * time.Millisecond
	var lastErr string
	var lastNoAnswer time.Time
	n := home
	for op.Attempts < maxAttempts {
		op.Attempts++
		if op.Attempts > 1 {
			w.stats.retried.Add(1)
		}
		if roam {
			n = w.cl.nodes[(home.idx+op.Attempts-1)%len(w.cl.nodes)]
		}
		g.enter(n)
		status, replayed, body, err := w.send(abort, hc, n, req, &op, false)
		switch {
		case err != nil:
			lastErr = err.Error()
			lastNoAnswer = time.Now()
		case status >= 200 && status < 300:
			op.Status, op.Outcome = status, OutcomeOK
			op.Replayed = replayed
			if op.Replayed {
				w.stats.replayed.Add(1)
			}
			w.stats.ok.Add(1)
			w.settleTS(&op, n, body)
			op.End = time.Now().UTC()
			return op
		case status >= 500 || status == http.StatusTooManyRequests:
			op.Status = status
			lastErr = fmt.Sprintf("%d: %s", status, bytes.TrimSpace(body))
			lastNoAnswer = time.Now()
		default:
			// A definite refusal: nothing was applied.
			op.Status, op.Outcome = status, OutcomeFailed
			op.Error = string(bytes.TrimSpace(body))
			w.stats.failed.Add(1)
			w.settleTS(&op, n, nil)
			op.End = time.Now().UTC()
			w.logf("client %d: op %d got %d at %s: %s", op.Client, op.ID, status, n.name, op.Error)
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

// resendOp sends an acknowledged op once more, same key and bytes, at a node
// other than the one that acknowledged it, after a random pause of up to
// maxResendPause. Whatever the answer, the op stays acknowledged and must
// count once; the try is recorded for the checker (a 4xx is a failure, a
// replay must carry the original answer).
func (w *workload) resendOp(abort context.Context, r *rand.Rand, hc *http.Client, req request, op *Op, g *gates) {
	acked := op.Tries[len(op.Tries)-1].Node
	var others []*node
	for _, n := range w.cl.nodes {
		if n.name != acked {
			others = append(others, n)
		}
	}
	n := others[r.IntN(len(others))]
	select {
	case <-time.After(time.Duration(r.Int64N(int64(maxResendPause) + 1))):
	case <-abort.Done():
		return
	}
	g.enter(n)
	w.stats.resent.Add(1)
	op.Resent = true
	status, replayed, _, err := w.send(abort, hc, n, req, op, true)
	switch {
	case err != nil || status >= 300:
		if status >= 400 && status < 500 && status != http.StatusTooManyRequests {
			w.logf("client %d: op %d re-sent at %s got %d: %s", op.Client, op.ID, n.name, status, op.Tries[len(op.Tries)-1].Err)
		}
	case replayed:
		w.stats.resentReplayed.Add(1)
	default:
		w.stats.resentApplied.Add(1)
	}
	op.End = time.Now().UTC()
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
