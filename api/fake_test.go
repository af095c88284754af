package api_test

import (
	"context"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/window"
)

// fakeCounters is an in-memory api.Counters: enough behaviour to test the HTTP
// layer on its own (the agent tests run the real store behind it).
type fakeCounters struct {
	mu      sync.Mutex
	now     time.Time
	totals  map[string]uint64
	keys    map[string]fakeKey
	applied []api.WriteRequest
	err     error // returned by Apply when set
}

type fakeKey struct {
	fp   [32]byte
	resp []byte
}

func newFake() *fakeCounters {
	now, _ := time.Parse(time.RFC3339, "2026-11-23T12:00:00Z")
	return &fakeCounters{now: now, totals: map[string]uint64{}, keys: map[string]fakeKey{}}
}

func (f *fakeCounters) Now() time.Time { return f.now }

func (f *fakeCounters) Apply(ctx context.Context, req *api.WriteRequest) (api.WriteResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return api.WriteResult{}, f.err
	}
	if req.IdempotencyKey != "" {
		if k, ok := f.keys[req.IdempotencyKey]; ok {
			if k.fp != req.Fingerprint {
				return api.WriteResult{}, api.ErrIdempotencyMismatch
			}
			return api.WriteResult{Replayed: true, Response: k.resp}, nil
		}
	}
	next := map[string]uint64{}
	for _, inc := range req.Increments {
		cur, ok := next[inc.Name]
		if !ok {
			cur = f.totals[inc.Name]
		}
		if cur > math.MaxUint64-inc.Amount {
			return api.WriteResult{}, api.ErrOverflow
		}
		next[inc.Name] = cur + inc.Amount
	}
	for k, v := range next {
		f.totals[k] = v
	}
	res := api.WriteResult{Totals: make([]uint64, len(req.Increments))}
	for i, inc := range req.Increments {
		res.Totals[i] = f.totals[inc.Name]
	}
	if req.IdempotencyKey != "" {
		res.Response = req.Render(res.Totals)
		f.keys[req.IdempotencyKey] = fakeKey{req.Fingerprint, res.Response}
	}
	f.applied = append(f.applied, *req)
	return res, nil
}

func (f *fakeCounters) Total(name string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.totals[name], nil
}

func (f *fakeCounters) Replicas(name string) ([]api.ReplicaCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []api.ReplicaCount{{Replica: "r1", Node: "n1", DC: "dc1", Count: f.totals[name]}}, nil
}

func (f *fakeCounters) Range(name string, p window.Plan) ([]uint64, error) {
	pts := make([]uint64, p.Points)
	if p.Points > 0 {
		pts[p.Points-1] = f.totals[name]
	}
	return pts, nil
}

func (f *fakeCounters) List(prefix, after string, limit int) ([]api.NameTotal, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range f.totals {
		if strings.HasPrefix(n, prefix) && n > after {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	next := ""
	if len(names) > limit {
		names, next = names[:limit], names[limit-1]
	}
	out := make([]api.NameTotal, len(names))
	for i, n := range names {
		out[i] = api.NameTotal{Name: n, Total: f.totals[n]}
	}
	return out, next, nil
}

type fakeCluster struct{ ready error }

func (c fakeCluster) Self() api.Member {
	return api.Member{Name: "n1", Replica: "r1", DC: "dc1", Addr: "127.0.0.1:4000"}
}
func (c fakeCluster) Members() []api.Member {
	m := c.Self()
	m.State = "alive"
	return []api.Member{m}
}
func (c fakeCluster) Ready() error { return c.ready }
