package crdt

import (
	"math"
	"slices"
)

// Entry is one replica's contribution to a GCounter: its absolute count and the
// sequence number of that replica's commit that last raised it.
type Entry struct {
	Replica ReplicaID
	Value   uint64
	Seq     uint64
}

// Covers reports whether e is at least as new as o, which must belong to the
// same replica. A replica raises Value and Seq together, so (Value, Seq) in
// lexicographic order is the order in which a replica produced its entries.
func (e Entry) Covers(o Entry) bool {
	return e.Value > o.Value || (e.Value == o.Value && e.Seq >= o.Seq)
}

// GCounter is a grow-only counter. The zero value is an empty counter ready to
// use. Entries are kept sorted by replica, so two counters holding the same
// entries are equal element by element.
type GCounter struct {
	entries []Entry
}

// Value is the counter's value: the sum of all entries. The sum saturates at
// the largest uint64 rather than wrapping; each entry is overflow-checked on
// increment, so only a sum across many replicas can reach that.
func (g *GCounter) Value() uint64 {
	var sum uint64
	for _, e := range g.entries {
		if sum > math.MaxUint64-e.Value {
			return math.MaxUint64
		}
		sum += e.Value
	}
	return sum
}

// Len is the number of replicas with an entry.
func (g *GCounter) Len() int { return len(g.entries) }

// Entries returns a copy of the entries, sorted by replica.
func (g *GCounter) Entries() []Entry { return slices.Clone(g.entries) }

// Each calls fn for every entry in replica order without copying.
func (g *GCounter) Each(fn func(Entry)) {
	for _, e := range g.entries {
		fn(e)
	}
}

// Get returns the entry of replica r, if it has one.
func (g *GCounter) Get(r ReplicaID) (Entry, bool) {
	i, ok := g.find(r)
	if !ok {
		return Entry{Replica: r}, false
	}
	return g.entries[i], true
}

// find returns the index of r's entry, or where it would be inserted.
func (g *GCounter) find(r ReplicaID) (int, bool) {
	if len(g.entries) <= 8 {
		// A counter has an entry per replica that counted it: a few.
		for i := range g.entries {
			if c := g.entries[i].Replica.Compare(r); c >= 0 {
				return i, c == 0
			}
		}
		return len(g.entries), false
	}
	return slices.BinarySearchFunc(g.entries, r, func(e Entry, r ReplicaID) int {
		return e.Replica.Compare(r)
	})
}

// Add raises replica r's own entry by amount and stamps it with seq, returning
// the new entry. It refuses a zero amount and an entry that would overflow,
// changing nothing.
func (g *GCounter) Add(r ReplicaID, amount, seq uint64) (Entry, error) {
	if amount == 0 {
		return Entry{}, ErrZeroAmount
	}
	i, ok := g.find(r)
	if !ok {
		e := Entry{Replica: r, Value: amount, Seq: seq}
		g.entries = slices.Insert(g.entries, i, e)
		return e, nil
	}
	cur := &g.entries[i]
	if cur.Value > math.MaxUint64-amount {
		return Entry{}, ErrOverflow
	}
	cur.Value += amount
	cur.Seq = seq
	return *cur, nil
}

// CanAdd reports whether Add(r, amount, _) would succeed.
func (g *GCounter) CanAdd(r ReplicaID, amount uint64) error {
	if amount == 0 {
		return ErrZeroAmount
	}
	if e, ok := g.Get(r); ok && e.Value > math.MaxUint64-amount {
		return ErrOverflow
	}
	return nil
}

// MergeEntry raises the entry of e.Replica to e if e is newer, and reports
// whether anything changed.
func (g *GCounter) MergeEntry(e Entry) bool {
	i, ok := g.find(e.Replica)
	if !ok {
		g.entries = slices.Insert(g.entries, i, e)
		return true
	}
	cur := &g.entries[i]
	if cur.Covers(e) {
		return false
	}
	*cur = e
	return true
}

// Merge folds o into g and returns the entries of g that o raised: the delta
// that g learned. o is not modified.
func (g *GCounter) Merge(o *GCounter) []Entry {
	var raised []Entry
	for _, e := range o.entries {
		if g.MergeEntry(e) {
			raised = append(raised, e)
		}
	}
	return raised
}

// Clone returns an independent copy of g.
func (g *GCounter) Clone() *GCounter {
	if len(g.entries) == 1 {
		// The usual counter, one replica's: one allocation, not two.
		c := &oneEntry{}
		c.e[0] = g.entries[0]
		c.g.entries = c.e[:]
		return &c.g
	}
	return &GCounter{entries: slices.Clone(g.entries)}
}

// oneEntry is a counter and the room for its only entry, allocated together.
type oneEntry struct {
	g GCounter
	e [1]Entry
}

// Equal reports whether g and o hold the same entries.
func (g *GCounter) Equal(o *GCounter) bool {
	return slices.Equal(g.entries, o.entries)
}
