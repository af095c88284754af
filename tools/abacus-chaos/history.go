//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Outcomes of a request, as the client saw it after its retries.
const (
	// OutcomeOK: a 2xx answer (fresh, or replayed for a retried key). The
	// increments are acknowledged: they must be counted, once.
	OutcomeOK = "ok"
	// OutcomeFailed: a definite 4xx. Nothing was applied. The workload never
	// sends a request that deserves one, so the checker treats it as a bug.
	OutcomeFailed = "failed"
	// OutcomeIndeterminate: no answer after every retry (timeouts, refused
	// connections, 5xx). The increments may or may not count, at most once.
	OutcomeIndeterminate = "indeterminate"
)

// Item is one increment of a request.
type Item struct {
	Name   string `json:"name"`
	Amount uint64 `json:"amount"`
	// TS is the event time the node used, when known: the ts the client sent,
	// or for a single increment sent without ts, the ts of the node's answer.
	TS time.Time `json:"ts,omitzero"`
	// TSLo and TSHi bound the event time when TS is unknown (a request sent
	// without ts that got no answer): the node's clock, offset included, at
	// some moment between the first attempt and the last answer-less one.
	TSLo time.Time `json:"ts_lo,omitzero"`
	TSHi time.Time `json:"ts_hi,omitzero"`
	// DefaultTS: the request did not name a ts; the node's clock chose it.
	DefaultTS bool `json:"default_ts,omitempty"`
}

// Op is one client request and its final outcome, one line of the history.
type Op struct {
	Type   string `json:"type"` // "op"
	ID     int64  `json:"id"`
	Client int    `json:"client"`
	// Node is where the op was first sent (the client's node); Tries says
	// where each attempt went.
	Node    string `json:"node"`
	Key     string `json:"key"`
	Kind    string `json:"kind"` // "single" or "batch"
	Items   []Item `json:"items"`
	Outcome string `json:"outcome"`
	// Status is the status that decided the outcome (the last one seen if
	// none did), 0 if none; Replayed is that answer's Idempotent-Replayed.
	Status   int  `json:"status,omitempty"`
	Replayed bool `json:"replayed,omitempty"`
	// Attempts counts the attempts before the outcome, re-send excluded.
	Attempts int       `json:"attempts"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Error    string    `json:"error,omitempty"` // last error or problem body
	// Roaming: each retry went to the next node, not back to Node.
	Roaming bool `json:"roaming,omitempty"`
	// Resent: after its acknowledgement the op was sent once more (same
	// key, same bytes) at another node; the last of Tries is that re-send.
	Resent bool `json:"resent,omitempty"`
	// Tries is every attempt in order, the re-send included.
	Tries []Try `json:"tries,omitempty"`
}

// Try is one attempt of an op at one node.
type Try struct {
	Node string `json:"node"`
	// Status is the HTTP status, 0 when there was no answer.
	Status   int  `json:"status,omitempty"`
	Replayed bool `json:"replayed,omitempty"`
	// Resend marks the re-send of an acknowledged op.
	Resend bool `json:"resend,omitempty"`
	// Body is a 2xx answer of a roaming op: a replay must repeat the
	// answer it replays.
	Body string `json:"body,omitempty"`
	// Err is the transport error or the body of a non-2xx answer.
	Err string `json:"err,omitempty"`
}

// fresh says whether the try was answered 2xx without Idempotent-Replayed:
// the node that answered applied the request.
func (t Try) fresh() bool { return t.Status >= 200 && t.Status < 300 && !t.Replayed }

// Event is a fault or phase change, recorded between the ops.
type Event struct {
	Type   string    `json:"type"` // "event"
	At     time.Time `json:"at"`
	What   string    `json:"what"` // e.g. "fault-start", "fault-end", "heal", "load-start"
	Fault  string    `json:"fault,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

// historyWriter appends ops and events to a JSONL file; safe for concurrent
// use.
type historyWriter struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	err error
}

func newHistoryWriter(path string) (*historyWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return &historyWriter{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (h *historyWriter) write(v any) {
	b, err := json.Marshal(v)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		return
	}
	if err == nil {
		b = append(b, '\n')
		_, err = h.w.Write(b)
	}
	if err != nil && h.err == nil {
		h.err = err
	}
}

func (h *historyWriter) event(what, fault, detail string) {
	h.write(Event{Type: "event", At: time.Now().UTC(), What: what, Fault: fault, Detail: detail})
}

func (h *historyWriter) flush() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		return h.err
	}
	if err := h.w.Flush(); err != nil && h.err == nil {
		h.err = err
	}
	return h.err
}

// close flushes and closes the file; safe to call twice.
func (h *historyWriter) close() error {
	h.flush()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f != nil {
		if err := h.f.Close(); err != nil && h.err == nil {
			h.err = err
		}
		h.f, h.w = nil, nil
	}
	return h.err
}

// readHistory reads the ops and events of a JSONL history.
func readHistory(r io.Reader) ([]Op, []Event, error) {
	var ops []Op
	var events []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var head struct{ Type string }
		if err := json.Unmarshal(sc.Bytes(), &head); err != nil {
			return nil, nil, fmt.Errorf("history line %d: %v", line, err)
		}
		switch head.Type {
		case "op":
			var op Op
			if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
				return nil, nil, fmt.Errorf("history line %d: %v", line, err)
			}
			ops = append(ops, op)
		case "event":
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				return nil, nil, fmt.Errorf("history line %d: %v", line, err)
			}
			events = append(events, ev)
		default:
			return nil, nil, fmt.Errorf("history line %d: unknown type %q", line, head.Type)
		}
	}
	return ops, events, sc.Err()
}
