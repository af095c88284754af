package promapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/promapi"
	"github.com/abacus-counter/abacus/window"
)

// fakeSource is an in-memory Source: events per counter and datacenter,
// bucketed into every resolution as the store does.
type fakeSource struct {
	mu      sync.Mutex
	now     time.Time
	windows window.Config
	// counters[name][dc] → total and windows by resolution seconds → start → count.
	counters map[string]map[string]*fakeDC
	delay    time.Duration // per CountsByDC call, to make slow reads
	reads    int           // CountsByDC calls
	fail     error         // if set, what CountsByDC returns
}

type fakeDC struct {
	total   uint64
	windows map[uint32]map[int64]uint64
}

func newFakeSource(now time.Time) *fakeSource {
	return &fakeSource{now: now, windows: window.DefaultConfig(), counters: map[string]map[string]*fakeDC{}}
}

// add records amount events of counter name in dc at ts.
func (f *fakeSource) add(name, dc string, amount uint64, ts time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	byDC := f.counters[name]
	if byDC == nil {
		byDC = map[string]*fakeDC{}
		f.counters[name] = byDC
	}
	d := byDC[dc]
	if d == nil {
		d = &fakeDC{windows: map[uint32]map[int64]uint64{}}
		byDC[dc] = d
	}
	d.total += amount
	for _, w := range f.windows.AppendWindows(nil, ts, f.now) {
		if d.windows[w.Res] == nil {
			d.windows[w.Res] = map[int64]uint64{}
		}
		d.windows[w.Res][w.Start] += amount
	}
}

func (f *fakeSource) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeSource) CountsByDC(name string, spans []promapi.Span) ([]promapi.DCCounts, error) {
	time.Sleep(f.delay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.fail != nil {
		return nil, f.fail
	}
	var out []promapi.DCCounts
	for dc, d := range f.counters[name] {
		c := promapi.DCCounts{DC: dc, Total: d.total, Windows: make([][]uint64, len(spans))}
		for i, sp := range spans {
			size := int64(sp.Res)
			c.Windows[i] = make([]uint64, (sp.To-sp.From+size-1)/size)
			for start, v := range d.windows[sp.Res] {
				if start >= sp.From && start < sp.To {
					c.Windows[i][(start-sp.From)/size] = v
				}
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b promapi.DCCounts) int { return strings.Compare(a.DC, b.DC) })
	return out, nil
}

func (f *fakeSource) Names(prefix, after string, limit int) ([]string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []string
	for n := range f.counters {
		if strings.HasPrefix(n, prefix) && n > after {
			all = append(all, n)
		}
	}
	slices.Sort(all)
	if len(all) > limit {
		return all[:limit], all[limit-1], nil
	}
	return all, "", nil
}

func (f *fakeSource) DCs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, byDC := range f.counters {
		for dc := range byDC {
			out = append(out, dc)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func mustAPI(tb testing.TB, src *fakeSource, mutate ...func(*promapi.Config)) http.Handler {
	tb.Helper()
	cfg := promapi.DefaultConfig()
	cfg.Source = src
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := promapi.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close(context.Background()) })
	return a.Handler()
}

// envelope is Prometheus's answer.
type envelope struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

type matrix []struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type vector []struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// call sends one request and decodes the envelope.
func call(tb testing.TB, h http.Handler, method, path string, params url.Values) (int, envelope) {
	tb.Helper()
	var r *http.Request
	if method == http.MethodPost {
		r = httptest.NewRequest(method, path, strings.NewReader(params.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, path+"?"+params.Encode(), nil)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var env envelope
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		tb.Fatalf("%s %s: %d, not JSON: %q", method, path, w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("%s %s: Content-Type %q", method, path, ct)
	}
	return w.Code, env
}

func decode[T any](tb testing.TB, env envelope) T {
	tb.Helper()
	var out struct {
		ResultType string `json:"resultType"`
		Result     T      `json:"result"`
	}
	if err := json.Unmarshal(env.Data, &out); err != nil {
		tb.Fatalf("data %s: %v", env.Data, err)
	}
	return out.Result
}
