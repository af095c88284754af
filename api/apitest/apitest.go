// Package apitest has in-memory fakes of what package api needs from a node
// (api.Counters, api.Cluster, api.ForceLeaver), for tests of the HTTP layer
// and of its clients without a store or a network. The agent tests run the
// real node behind the same interfaces.
//
// The fakes are safe for concurrent use. They keep every increment with its
// event time, so ranges come out of real arithmetic; counts set with Set
// stand for history without a time and show in a range's last point.
package apitest

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/window"
)

// Now is a fixed clock for tests: 2026-11-23T12:00:00Z.
var Now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// Counters is an in-memory api.Counters. This node's increments are
// replica "r1" of node "n1" in dc1.
type Counters struct {
	mu      sync.Mutex
	now     time.Time
	base    map[string]uint64             // counts set with Set, no event time
	incs    []api.Increment               // applied increments, in order
	others  map[string][]api.ReplicaCount // other replicas' shares, by counter
	keys    map[string]key
	applied []api.WriteRequest
	err     error
}

type key struct {
	fp   [32]byte
	resp []byte
}

// NewCounters returns empty counters whose clock reads now.
func NewCounters(now time.Time) *Counters {
	return &Counters{now: now, base: map[string]uint64{}, others: map[string][]api.ReplicaCount{}, keys: map[string]key{}}
}

// Set makes this replica's count of name n, without an event time (it
// shows in a range's last point), dropping its increments so far.
func (f *Counters) Set(name string, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.incs = slices.DeleteFunc(f.incs, func(inc api.Increment) bool { return inc.Name == name })
	f.base[name] = n
}

// AddReplica adds another replica's share of name (for ?detail=true).
func (f *Counters) AddReplica(name string, rc api.ReplicaCount) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.others[name] = append(f.others[name], rc)
}

// SetErr makes Apply fail with err (nil: succeed again).
func (f *Counters) SetErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Count is name's total.
func (f *Counters) Count(name string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total(name)
}

// Applied lists the requests applied (replays and refused ones excluded).
func (f *Counters) Applied() []api.WriteRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied)
}

// Increments lists the increments applied, in order.
func (f *Counters) Increments() []api.Increment {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.incs)
}

func (f *Counters) mine(name string) uint64 {
	t := f.base[name]
	for _, inc := range f.incs {
		if inc.Name == name {
			t += inc.Amount
		}
	}
	return t
}

func (f *Counters) total(name string) uint64 {
	t := f.mine(name)
	for _, o := range f.others[name] {
		t += o.Count
	}
	return t
}

// Now implements api.Counters.
func (f *Counters) Now() time.Time { return f.now }

// Apply implements api.Counters: all or nothing, overflow refused,
// idempotency keys remembered with their fingerprint and response.
func (f *Counters) Apply(ctx context.Context, req *api.WriteRequest) (api.WriteResult, error) {
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
			cur = f.total(inc.Name)
		}
		if cur > math.MaxUint64-inc.Amount {
			return api.WriteResult{}, api.ErrOverflow
		}
		next[inc.Name] = cur + inc.Amount
	}
	f.incs = append(f.incs, req.Increments...)
	res := api.WriteResult{Totals: make([]uint64, len(req.Increments))}
	for i, inc := range req.Increments {
		res.Totals[i] = f.total(inc.Name)
	}
	if req.IdempotencyKey != "" {
		res.Response = req.Render(res.Totals)
		f.keys[req.IdempotencyKey] = key{req.Fingerprint, res.Response}
	}
	f.applied = append(f.applied, *req)
	return res, nil
}

// Total implements api.Counters.
func (f *Counters) Total(name string) (uint64, error) { return f.Count(name), nil }

// Replicas implements api.Counters.
func (f *Counters) Replicas(name string) ([]api.ReplicaCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []api.ReplicaCount{{Replica: "r1", Node: "n1", DC: "dc1", Count: f.mine(name)}}
	return append(out, f.others[name]...), nil
}

// Range implements api.Counters: each increment counts in the step holding
// its event time; counts from Set count in the last point.
func (f *Counters) Range(name string, p window.Plan) ([]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pts := make([]uint64, p.Points)
	for _, inc := range f.incs {
		if inc.Name != name || inc.TS.Before(p.From) || !inc.TS.Before(p.To) {
			continue
		}
		if i := int(inc.TS.Sub(p.From) / p.Step); i < len(pts) {
			pts[i] += inc.Amount
		}
	}
	if len(pts) > 0 {
		pts[len(pts)-1] += f.base[name]
	}
	return pts, nil
}

// List implements api.Counters.
func (f *Counters) List(prefix, after string, limit int) ([]api.NameTotal, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	var names []string
	add := func(n string) {
		if !seen[n] && strings.HasPrefix(n, prefix) && n > after {
			seen[n] = true
			names = append(names, n)
		}
	}
	for n := range f.base {
		add(n)
	}
	for _, inc := range f.incs {
		add(inc.Name)
	}
	slices.Sort(names)
	next := ""
	if len(names) > limit {
		names, next = names[:limit], names[limit-1]
	}
	out := make([]api.NameTotal, len(names))
	for i, n := range names {
		out[i] = api.NameTotal{Name: n, Total: f.total(n)}
	}
	return out, next, nil
}

var (
	_ api.Counters    = (*Counters)(nil)
	_ api.Cluster     = (*Cluster)(nil)
	_ api.ForceLeaver = (*Cluster)(nil)
)

// Cluster is an api.Cluster of node n1 (replica r1, dc1) and Peers. Its zero
// value is a ready node alone.
type Cluster struct {
	// NotReady, if set, is what Ready answers.
	NotReady error
	// Peers are the other members, in order.
	Peers []api.Member

	mu     sync.Mutex
	forced []string
}

// Self implements api.Cluster.
func (c *Cluster) Self() api.Member {
	return api.Member{Name: "n1", Replica: "r1", DC: "dc1", Addr: "127.0.0.1:7946", HTTP: "127.0.0.1:4000"}
}

// Members implements api.Cluster: Self, alive, then Peers not forced out.
func (c *Cluster) Members() []api.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	self := c.Self()
	self.State = "alive"
	out := []api.Member{self}
	for _, p := range c.Peers {
		if !slices.Contains(c.forced, p.Name) {
			out = append(out, p)
		}
	}
	return out
}

// Ready implements api.Cluster.
func (c *Cluster) Ready() error { return c.NotReady }

// ForceLeave implements api.ForceLeaver: a peer not alive is removed; it
// reports the alive peers as told.
func (c *Cluster) ForceLeave(name string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	told, found := 0, false
	for _, p := range c.Peers {
		switch {
		case slices.Contains(c.forced, p.Name):
		case p.Name == name && p.State == "alive":
			return 0, api.ErrMemberAlive
		case p.Name == name:
			found = true
		case p.State == "alive":
			told++
		}
	}
	if !found {
		if name == c.Self().Name {
			return 0, api.ErrMemberAlive
		}
		return 0, api.ErrUnknownMember
	}
	c.forced = append(c.forced, name)
	return told, nil
}
