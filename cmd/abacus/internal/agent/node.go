package agent

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// counters adapts the store to api.Counters.
type counters struct {
	a *Agent
}

var _ api.Counters = counters{}

func (c counters) Now() time.Time { return c.a.store.Now() }

func (c counters) Apply(ctx context.Context, req *api.WriteRequest) (api.WriteResult, error) {
	if err := c.a.writeBlocked(); err != nil {
		return api.WriteResult{}, api.Unavailable(err.Error())
	}
	sr := &store.Request{
		Increments:     make([]store.Increment, len(req.Increments)),
		IdempotencyKey: req.IdempotencyKey,
		Fingerprint:    req.Fingerprint,
	}
	for i, inc := range req.Increments {
		sr.Increments[i] = store.Increment(inc)
	}
	if req.Render != nil {
		sr.Render = func(r store.Result) []byte { return req.Render(r.Totals) }
	}
	res, err := c.a.store.Apply(ctx, sr)
	if err != nil {
		return api.WriteResult{}, apiError(err)
	}
	return api.WriteResult{Totals: res.Totals, Replayed: res.Replayed, Response: res.Response}, nil
}

// damaged says in words for clients that a data file is damaged, or "".
func damaged(err error) string {
	if err == nil {
		return "" // every write asks: no allocation for errors.As's target then
	}
	var de *store.DamagedError
	if !errors.As(err, &de) {
		return ""
	}
	return "data file " + filepath.Base(de.File) + " is damaged; this node refuses writes until an operator runs abacus recover (its log says what was found)"
}

// readError maps a read's error: damage is a 503 with the reason.
func readError(err error) error {
	if why := damaged(err); why != "" {
		return api.Unavailable(why)
	}
	return err
}

// apiError maps store errors onto the errors api knows.
func apiError(err error) error {
	if why := damaged(err); why != "" {
		return api.Unavailable(why)
	}
	switch {
	case errors.Is(err, store.ErrOverflow):
		return api.ErrOverflow
	case errors.Is(err, store.ErrIdempotencyMismatch):
		return api.ErrIdempotencyMismatch
	case errors.Is(err, store.ErrFuture):
		return api.ErrFutureTime
	case errors.Is(err, store.ErrClosed):
		return api.Unavailable("shutting down")
	case errors.Is(err, store.ErrFailed):
		return api.Unavailable("a disk write failed; restart the node (the log says why)")
	}
	return err
}

func (c counters) Total(name string) (uint64, error) {
	n, err := c.a.store.Total(name)
	return n, readError(err)
}

func (c counters) Replicas(name string) ([]api.ReplicaCount, error) {
	rs, err := c.a.store.Replicas(name)
	if err != nil {
		return nil, readError(err)
	}
	out := make([]api.ReplicaCount, len(rs))
	for i, r := range rs {
		out[i] = api.ReplicaCount{Replica: r.ID.String(), Node: r.Node, DC: r.DC, Count: r.Count}
	}
	return out, nil
}

func (c counters) Range(name string, plan window.Plan) ([]uint64, error) {
	points, err := c.a.store.Range(name, plan)
	return points, readError(err)
}

func (c counters) List(prefix, after string, limit int) ([]api.NameTotal, string, error) {
	page, next, err := c.a.store.List(prefix, after, limit)
	if err != nil {
		return nil, "", readError(err)
	}
	out := make([]api.NameTotal, len(page))
	for i, p := range page {
		out[i] = api.NameTotal(p)
	}
	return out, next, nil
}

// replicator adapts the store to gossip.Store.
type replicator struct {
	st *store.Store
}

var _ gossip.Store = replicator{}

func (r replicator) Replica() crdt.ReplicaID           { return r.st.Replica() }
func (r replicator) Digest() map[crdt.ReplicaID]uint64 { return r.st.Digest() }

func (r replicator) ChainChunk(origin crdt.ReplicaID, base, after uint64, maxBytes int) (gossip.Chunk, error) {
	c, err := r.st.ChainChunk(origin, base, after, maxBytes)
	return gossip.Chunk{After: c.After, Next: c.Next, Top: c.Top, Deltas: c.Deltas, Done: c.Done, Records: c.Records, Comps: c.Comps}, err
}

func (r replicator) Merge(ctx context.Context, c gossip.Changes) ([]crdt.Delta, error) {
	sc := make([]store.Cover, len(c.Covers))
	for i, cv := range c.Covers {
		sc[i] = store.Cover(cv)
	}
	return r.st.MergeChanges(ctx, store.Changes{Deltas: c.Deltas, Covers: sc, Records: c.Records, Comps: c.Comps})
}

func (r replicator) SetReplicaInfo(id crdt.ReplicaID, node, dc string) {
	r.st.SetReplicaInfo(store.ReplicaInfo{ID: id, Node: node, DC: dc})
}

func (r replicator) ReplicaInfo(id crdt.ReplicaID) (string, string, bool) {
	info, ok := r.st.ReplicaInfo(id)
	return info.Node, info.DC, ok && info.Node != ""
}
