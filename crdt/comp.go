package crdt

import (
	"cmp"
	"hash/fnv"
	"math"
	"slices"
)

// Comp is a compensation: it takes back, from one slot, the amount that one
// losing application of a keyed request added to it (see docs/ARCHITECTURE.md,
// "Idempotency keys across the cluster"). Its value is fixed by the request
// and the loser, so any node may write it and writing it twice changes
// nothing: compensations of a slot are a grow-only set keyed by
// (Loser, Seq, Key).
type Comp struct {
	Loser ReplicaID // the replica that applied the losing copy
	Seq   uint64    // the seq of Loser's commit that applied it
	Key   uint64    // KeyHash of the idempotency key
	Value uint64    // what that copy added to the slot
}

// KeyHash is the 64-bit hash of an idempotency key that names it in a Comp.
// Within one commit of one replica keys are distinct, so (Loser, Seq, Key)
// identifies a copy.
func KeyHash(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

func (c Comp) compareID(o Comp) int {
	return cmp.Or(c.Loser.Compare(o.Loser), cmp.Compare(c.Seq, o.Seq), cmp.Compare(c.Key, o.Key))
}

// Comps is the set of compensations of one slot, sorted by (Loser, Seq, Key).
// A nil Comps is empty.
type Comps []Comp

// Add returns cs with c in it, and whether c was new. For an ID already held
// the larger value is kept, so that the set is a join whatever arrives.
func (cs Comps) Add(c Comp) (Comps, bool) {
	i, ok := slices.BinarySearchFunc(cs, c, Comp.compareID)
	if ok {
		if c.Value > cs[i].Value {
			out := slices.Clone(cs)
			out[i].Value = c.Value
			return out, true
		}
		return cs, false
	}
	return slices.Insert(slices.Clone(cs), i, c), true
}

// Of returns the compensations of replica r's copies.
func (cs Comps) Of(r ReplicaID) Comps {
	var out Comps
	for _, c := range cs {
		if c.Loser == r {
			out = append(out, c)
		}
	}
	return out
}

// active reports whether c takes its amount back from entry e of c.Loser: only
// once e includes the copy it corrects, that is once e's seq reached c.Seq (a
// replica's entry at seq q holds every amount it added to the slot up to q).
func (c Comp) active(e Entry) bool { return e.Seq >= c.Seq }

// Count is replica e.Replica's share of a slot after its compensations: its
// entry's value less the active ones, never below zero.
func (cs Comps) Count(e Entry) uint64 {
	v := e.Value
	for _, c := range cs {
		if c.Loser != e.Replica || !c.active(e) {
			continue
		}
		if c.Value >= v {
			return 0
		}
		v -= c.Value
	}
	return v
}

// Value is g's value less the active compensations of cs: the slot's count.
// It saturates like GCounter.Value.
func (cs Comps) Value(g *GCounter) uint64 {
	if len(cs) == 0 {
		return g.Value()
	}
	var sum uint64
	for _, e := range g.entries {
		v := cs.Count(e)
		if sum > math.MaxUint64-v {
			return math.MaxUint64
		}
		sum += v
	}
	return sum
}

// CompDelta is one compensation of one slot.
type CompDelta struct {
	Slot Slot
	Comp Comp
}
