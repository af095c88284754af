package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
	"github.com/abacus-counter/abacus/window"
)

// Total is counter name's all-time total on this node; a counter never
// incremented is 0.
func (s *Store) Total(name string) (uint64, error) {
	slot := crdt.TotalSlot(name)
	g, cs := s.mem.lookup(slot)
	if g != nil {
		return cs.Value(g), nil
	}
	var total uint64
	err := s.state.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTotals).Get([]byte(name))
		if v == nil {
			return nil
		}
		var err error
		total, err = s.storedValue([]byte(name), v, cs)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read total of %q: %w", name, err)
	}
	return total, nil
}

// ReplicaCount is one replica's share of a counter.
type ReplicaCount struct {
	ReplicaInfo
	Count uint64
}

// Replicas returns counter name's total per replica, largest share first.
func (s *Store) Replicas(name string) ([]ReplicaCount, error) {
	slot := crdt.TotalSlot(name)
	g, cs := s.mem.lookup(slot)
	if g == nil {
		var err error
		err = s.state.View(func(tx *bolt.Tx) error {
			g, err = s.loadCounter(tx, slot)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("read replicas of %q: %w", name, err)
		}
	}
	t := s.reps.table()
	out := make([]ReplicaCount, 0, g.Len())
	g.Each(func(e crdt.Entry) {
		info := ReplicaInfo{ID: e.Replica}
		if i, ok := t.lookup(e.Replica); ok {
			info = t.infos[i]
		}
		out = append(out, ReplicaCount{ReplicaInfo: info, Count: cs.Count(e)})
	})
	slices.SortFunc(out, func(a, b ReplicaCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return a.ID.Compare(b.ID)
	})
	return out, nil
}

// Range returns the count of each point of plan for counter name.
func (s *Store) Range(name string, plan window.Plan) ([]uint64, error) {
	points := make([]uint64, plan.Points)
	res := plan.Resolution.Seconds()
	size := int64(res)
	now := s.cfg.Now()
	// Windows before the cutoff are not kept; windows far past now cannot
	// exist. Only [from, to) between them can hold anything.
	from := max(plan.From.Unix(), plan.Resolution.Cutoff(now))
	to := min(plan.To.Unix(), plan.Resolution.Start(now.Add(window.MaxFuture))+size)
	if from >= to {
		return points, nil
	}
	// Slots in mem supersede state.db. Look them up first; a slot that leaves
	// mem after this is in state.db by then.
	// comps holds the windows with compensations: rare.
	inMem, comps := s.mem.windows(name, res, from, to)
	add := func(start int64, v uint64) {
		if i, ok := plan.PointOf(start); ok {
			if points[i]+v < points[i] {
				points[i] = ^uint64(0)
			} else {
				points[i] += v
			}
		}
	}
	for start, v := range inMem {
		add(start, v)
	}
	err := s.state.View(func(tx *bolt.Tx) error {
		t := s.reps.table()
		return s.eachStoredWindow(tx, name, res, from, to, now, func(start int64, b *block.Block, i int) error {
			if _, ok := inMem[start]; ok {
				return nil
			}
			cs := comps[start]
			if len(cs) == 0 {
				add(start, b.Sum(i))
				return nil
			}
			g, err := s.blockWindow(b, i, t)
			if err != nil {
				return err
			}
			add(start, cs.Value(g))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read range of %q: %w", name, err)
	}
	return points, nil
}

// eachWindow calls fn for each window of c at resolution res starting in
// [from, to), from a multiple of res; the caller holds mem's lock. It looks
// the windows up one by one or scans c's, whichever is fewer. (Slots in mem
// are aligned: merges refuse any other.)
func (c *memCounter) eachWindow(res uint32, from, to int64, fn func(start int64, g *crdt.GCounter)) {
	size := int64(res)
	if n := (to - from) / size; n <= int64(len(c.windows)) {
		for start := from; start < to; start += size {
			if g := c.windows[memWin{res, start}]; g != nil {
				fn(start, g)
			}
		}
		return
	}
	for w, g := range c.windows {
		if w.res == res && w.start >= from && w.start < to {
			fn(w.start, g)
		}
	}
}

// NameTotal is a counter and its total.
type NameTotal struct {
	Name  string
	Total uint64
}

// List returns up to limit counters whose names start with prefix and sort
// after after, in name order, and the name to pass as after for the next page
// ("" when there is none).
func (s *Store) List(prefix, after string, limit int) ([]NameTotal, string, error) {
	if limit <= 0 {
		return nil, "", nil
	}
	match := func(name string) bool { return strings.HasPrefix(name, prefix) && name > after }
	out, seen, totalComps := s.mem.totals(match)
	start := []byte(prefix)
	if after >= prefix {
		start = append([]byte(after), 0)
	}
	err := s.state.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTotals).Cursor()
		n := 0
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, []byte(prefix)) && n <= limit; k, v = c.Next() {
			if seen[string(k)] || string(k) <= after {
				continue
			}
			sum, err := s.storedValue(k, v, totalComps[string(k)])
			if err != nil {
				return err
			}
			out = append(out, NameTotal{string(k), sum})
			n++
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list counters: %w", err)
	}
	slices.SortFunc(out, func(a, b NameTotal) int { return strings.Compare(a.Name, b.Name) })
	if len(out) > limit {
		return out[:limit], out[limit-1].Name, nil
	}
	return out, "", nil
}

// storedValue is the count of the state.db counter v under key, less its
// compensations cs.
func (s *Store) storedValue(key, v []byte, cs crdt.Comps) (uint64, error) {
	if len(cs) == 0 {
		return s.sumCounter(key, v)
	}
	g, err := s.storedCounter(key, v)
	if err != nil {
		return 0, err
	}
	return cs.Value(g), nil
}
