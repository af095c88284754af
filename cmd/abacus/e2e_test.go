package main_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ledger records what clients were told: acknowledged amounts, and amounts
// whose fate is unknown (the request was in flight when the node died).
type ledger struct {
	mu      sync.Mutex
	acked   map[string]uint64 // by counter, and by "counter@res@start" window
	unknown map[string]uint64
}

func newLedger() *ledger {
	return &ledger{acked: map[string]uint64{}, unknown: map[string]uint64{}}
}

type sent struct {
	name   string
	amount uint64
	ts     time.Time
}

func (l *ledger) record(items []sent, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.unknown
	if ok {
		m = l.acked
	}
	for _, it := range items {
		m[it.name] += it.amount
		for _, res := range []time.Duration{time.Minute, time.Hour} {
			m[fmt.Sprintf("%s@%v@%d", it.name, res, it.ts.Truncate(res).Unix())] += it.amount
		}
	}
}

// load runs clients that increment counters until stop is closed, recording
// every outcome in l. Requests mix single increments and batches, with event
// times spread over the last few minutes.
func load(base string, clients int, names []string, l *ledger, stop <-chan struct{}) (wait func() (ok, unknown int64)) {
	var wg sync.WaitGroup
	var nOK, nUnknown atomic.Int64
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				now := time.Now().Truncate(time.Second)
				var items []sent
				var req *http.Request
				if r.IntN(4) == 0 {
					var b bytes.Buffer
					b.WriteString(`{"increments":[`)
					for i := 0; i < 1+r.IntN(20); i++ {
						it := sent{names[r.IntN(len(names))], uint64(1 + r.IntN(9)), now.Add(-time.Duration(r.IntN(240)) * time.Second)}
						items = append(items, it)
						if i > 0 {
							b.WriteByte(',')
						}
						fmt.Fprintf(&b, `{"name":%q,"amount":%d,"ts":%d}`, it.name, it.amount, it.ts.Unix())
					}
					b.WriteString(`]}`)
					req, _ = http.NewRequest("POST", base+"/v1/increments", &b)
				} else {
					it := sent{names[r.IntN(len(names))], uint64(1 + r.IntN(9)), now.Add(-time.Duration(r.IntN(240)) * time.Second)}
					items = append(items, it)
					req, _ = http.NewRequest("POST", fmt.Sprintf("%s/v1/counters/%s/increment?amount=%d&ts=%d", base, it.name, it.amount, it.ts.Unix()), nil)
				}
				resp, err := httpClient.Do(req)
				if err != nil {
					// The node died with this request in flight: it may or may
					// not have applied. Stop this client; its node is gone.
					l.record(items, false)
					nUnknown.Add(1)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					l.record(items, true)
					nOK.Add(1)
				case resp.StatusCode >= 500:
					l.record(items, false)
					nUnknown.Add(1)
					return
				default:
					panic(fmt.Sprintf("unexpected status %d", resp.StatusCode))
				}
			}
		}()
	}
	return func() (int64, int64) {
		wg.Wait()
		return nOK.Load(), nUnknown.Load()
	}
}

// counts reads every counter's total and its minute and hour windows of the
// last half hour from the node, keyed as the ledger keys them.
func counts(t *testing.T, base string, names []string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, name := range names {
		var c struct{ Total uint64 }
		getJSON(t, base+"/v1/counters/"+name, &c)
		out[name] = c.Total
		for _, res := range []time.Duration{time.Minute, time.Hour} {
			var rg struct {
				Points []struct {
					Start time.Time
					Count uint64
				}
			}
			step := map[time.Duration]string{time.Minute: "1m", time.Hour: "1h"}[res]
			getJSON(t, fmt.Sprintf("%s/v1/counters/%s/range?from=%d&step=%s", base, name, time.Now().Add(-30*time.Minute).Unix(), step), &rg)
			for _, p := range rg.Points {
				out[fmt.Sprintf("%s@%v@%d", name, res, p.Start.Unix())] = p.Count
			}
		}
	}
	return out
}

// checkLedger checks, for every total and window the ledger touched,
// base + acked ≤ count ≤ base + acked + unknown.
func checkLedger(t *testing.T, got, base map[string]uint64, l *ledger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := map[string]bool{}
	for k := range l.acked {
		keys[k] = true
	}
	for k := range l.unknown {
		keys[k] = true
	}
	for k := range keys {
		lo := base[k] + l.acked[k]
		hi := lo + l.unknown[k]
		if v, ok := got[k]; !ok && lo > 0 {
			t.Errorf("%s: not reported, want at least %d", k, lo)
		} else if v < lo || v > hi {
			t.Errorf("%s = %d, want %d ≤ it ≤ %d (acked %d, in flight %d)", k, v, lo, hi, l.acked[k], l.unknown[k])
		}
	}
}

// TestE2E_KillDuringLoad drives concurrent clients against the real binary,
// SIGKILLs it mid-load, restarts it on the same data directory, and checks
// that every acknowledged increment survived and nothing counted twice.
func TestE2E_KillDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	dir := t.TempDir()
	n := startNode(t, dir)
	names := []string{"e2e.a", "e2e.b", "e2e.c", "e2e.d", "e2e.e", "e2e.f", "e2e.g", "e2e.h"}
	l := newLedger()

	// Round 1: kill in the middle of the load.
	stop := make(chan struct{})
	wait := load(n.url, 48, names, l, stop)
	time.Sleep(3 * time.Second)
	n.kill()
	close(stop)
	ok, unknown := wait()
	t.Logf("round 1: %d acknowledged, %d in flight at SIGKILL", ok, unknown)
	if ok < 100 {
		t.Fatalf("only %d requests acknowledged before the kill: the load did not run", ok)
	}
	n.restart()
	checkLedger(t, counts(t, n.url, names), nil, l)

	// Round 2: a clean stop of the load, then SIGKILL with nothing in flight:
	// every count must be exact.
	before := counts(t, n.url, names)
	l2 := newLedger()
	stop = make(chan struct{})
	wait = load(n.url, 48, names, l2, stop)
	time.Sleep(2 * time.Second)
	close(stop)
	ok, unknown = wait()
	if unknown != 0 {
		t.Fatalf("%d requests failed without a kill", unknown)
	}
	t.Logf("round 2: %d acknowledged, then SIGKILL while idle", ok)
	n.kill()
	n.restart()
	checkLedger(t, counts(t, n.url, names), before, l2)
}
