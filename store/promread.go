package store

import (
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
)

// This file holds the reads behind the Prometheus query API: a counter's
// total and windows split by datacenter, taken at one instant, so that a
// cumulative series built from them (total minus the windows after t) never
// sees a window that its total does not include.

// Span asks for the windows of one resolution starting in [From, To), Unix
// seconds; From is a multiple of Res.
type Span struct {
	Res      uint32 // window length in seconds
	From, To int64
}

// DCCounts is one datacenter's share of a counter.
type DCCounts struct {
	// DC is the datacenter of the contributing replicas; empty when this
	// node has not learnt where a replica lives.
	DC    string
	Total uint64
	// Windows holds, per span asked for, the datacenter's count of each
	// window of the span: Windows[i][k] is the window starting at
	// spans[i].From + k×Res.
	Windows [][]uint64
}

// CountsByDC returns counter name's total and its windows in each span, per
// datacenter, sorted by datacenter. Everything is read at one instant: mem
// and a state.db transaction are read under one hold of the read lock, with
// no eviction from mem since the transaction began, so no commit lands
// between the total and the windows. The read lock delays the publication
// of commits (not their fsync) for as long as the read takes: callers keep
// spans short (a few thousand windows).
func (s *Store) CountsByDC(name string, spans []Span) (out []DCCounts, err error) {
	// countsByDC reads on a transaction opened with Begin, outside View.
	err = s.state.guard(func() (err error) {
		out, err = s.countsByDC(name, spans)
		return err
	})
	return out, err
}

func (s *Store) countsByDC(name string, spans []Span) ([]DCCounts, error) {
	for _, sp := range spans {
		if sp.Res == 0 || sp.From%int64(sp.Res) != 0 || sp.To < sp.From || (sp.To-sp.From)/int64(sp.Res) > maxSpanWindows {
			return nil, fmt.Errorf("read %q by datacenter: bad span %+v", name, sp)
		}
	}
	t := s.reps.table()
	byDC := map[string]*DCCounts{}
	get := func(id crdt.ReplicaID) *DCCounts {
		dc := ""
		if i, ok := t.lookup(id); ok {
			dc = t.infos[i].DC
		}
		c := byDC[dc]
		if c == nil {
			c = &DCCounts{DC: dc, Windows: make([][]uint64, len(spans))}
			for i, sp := range spans {
				c.Windows[i] = make([]uint64, (sp.To-sp.From+int64(sp.Res)-1)/int64(sp.Res))
			}
			byDC[dc] = c
		}
		return c
	}
	// add counts one replica's entry of a slot, net of the compensations of
	// that replica's duplicate copies in the slot (see crdt.Comps).
	add := func(e crdt.Entry, cs crdt.Comps, span int, start int64) {
		c, v := get(e.Replica), cs.Count(e)
		if span < 0 {
			c.Total = satAdd(c.Total, v)
		} else {
			k := (start - spans[span].From) / int64(spans[span].Res)
			c.Windows[span][k] = satAdd(c.Windows[span][k], v)
		}
	}
	// mv is mem as the read below sees it, valid during that read only.
	var mv memView
	compsOf := func(span int, start int64) crdt.Comps {
		if span < 0 {
			return mv.slotComps(crdt.TotalSlot(name))
		}
		return mv.slotComps(crdt.Slot{Name: name, Res: spans[span].Res, Start: start})
	}
	addGC := func(g *crdt.GCounter, span int, start int64) {
		cs := compsOf(span, start)
		g.Each(func(e crdt.Entry) { add(e, cs, span, start) })
	}
	// byIdx caches the replica of each local replica index state.db stores:
	// a read decodes hundreds of windows naming the same few replicas.
	var byIdx []crdt.ReplicaID
	replicaOf := func(idx uint32) (crdt.ReplicaID, error) {
		if int(idx) < len(byIdx) && !byIdx[idx].IsZero() {
			return byIdx[idx], nil
		}
		id, ok := t.id(idx)
		if !ok {
			return id, fmt.Errorf("counter %q names unknown replica index %d: %w", name, idx, ErrIncompatible)
		}
		if int(idx) >= len(byIdx) {
			byIdx = append(byIdx, make([]crdt.ReplicaID, int(idx)+1-len(byIdx))...)
		}
		byIdx[idx] = id
		return id, nil
	}
	// addStoredTotal counts the total as state.db stores it (key and value).
	addStoredTotal := func(key, v []byte) error {
		es, err := s.decodeCounter(key, v, nil)
		if err != nil {
			return err
		}
		cs := compsOf(-1, 0)
		for _, e := range es {
			id, err := replicaOf(e.idx)
			if err != nil {
				return err
			}
			add(crdt.Entry{Replica: id, Value: e.value, Seq: e.seq}, cs, -1, 0)
		}
		return nil
	}

	// mem and a state.db transaction that agree, under one hold of mem's
	// read lock (memState.viewWithTx).
	err := s.mem.viewWithTx(s.state, func(v memView, tx *bolt.Tx) error {
		mv = v
		defer func() { mv = memView{} }() // no use of mem after the lock
		mc := v.counter(name)
		inMem := mc != nil
		totalInMem := false
		if inMem {
			if g := mc.total; g != nil {
				addGC(g, -1, 0)
				totalInMem = true
			}
		}
		// memStarts[i] holds the window starts of span i found in mem:
		// state.db's copy of those is older.
		memStarts := make([]map[int64]bool, len(spans))
		for i, sp := range spans {
			memStarts[i] = map[int64]bool{}
			if !inMem || sp.From >= sp.To {
				continue
			}
			mc.eachWindow(sp.Res, sp.From, sp.To, func(start int64, g *crdt.GCounter) {
				addGC(g, i, start)
				memStarts[i][start] = true
			})
		}
		if !totalInMem {
			if v := tx.Bucket(bucketTotals).Get([]byte(name)); v != nil {
				if err := addStoredTotal([]byte(name), v); err != nil {
					return err
				}
			}
		}
		now := s.cfg.Now()
		for i, sp := range spans {
			if sp.From >= sp.To {
				continue
			}
			err := s.eachStoredWindow(tx, name, sp.Res, max(sp.From, 0), sp.To, now, func(start int64, b *block.Block, w int) error {
				if memStarts[i][start] {
					return nil
				}
				cs := compsOf(i, start)
				bit := uint64(1) << uint(w)
				for k := range b.Columns {
					col := &b.Columns[k]
					if col.Present&bit == 0 {
						continue
					}
					id, err := replicaOf(col.Replica)
					if err != nil {
						return err
					}
					add(crdt.Entry{Replica: id, Value: col.Entries[w].Value, Seq: col.Entries[w].Seq}, cs, i, start)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %q by datacenter: %w", name, err)
	}
	out := make([]DCCounts, 0, len(byDC))
	for _, c := range byDC {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b DCCounts) int { return strings.Compare(a.DC, b.DC) })
	return out, nil
}

// DCs returns the datacenters of every replica this node knows, sorted,
// without duplicates; a replica whose datacenter is unknown adds "".
func (s *Store) DCs() []string {
	t := s.reps.table()
	var out []string
	for _, info := range t.infos {
		out = append(out, info.DC)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// maxSpanWindows bounds one span: the read holds the store's read lock.
const maxSpanWindows = 1 << 20

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}
