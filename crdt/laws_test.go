package crdt_test

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
)

// replicaGen draws from a few replicas so that entries collide often.
var replicaGen = rapid.Custom(func(t *rapid.T) crdt.ReplicaID {
	return crdt.ReplicaID{rapid.ByteRange(1, 4).Draw(t, "replica")}
})

var slotGen = rapid.Custom(func(t *rapid.T) crdt.Slot {
	name := rapid.SampledFrom([]string{"a", "b", "signups"}).Draw(t, "name")
	switch rapid.IntRange(0, 2).Draw(t, "res") {
	case 0:
		return crdt.TotalSlot(name)
	case 1:
		return crdt.Slot{Name: name, Res: 60, Start: 60 * rapid.Int64Range(0, 3).Draw(t, "start")}
	default:
		return crdt.Slot{Name: name, Res: 3600, Start: 3600 * rapid.Int64Range(0, 3).Draw(t, "start")}
	}
})

// stateGen builds a state as replicas would: each replica raises its own
// entries with increasing seq; the state holds an arbitrary subset of what
// every replica produced, as a replica that has heard part of the news would.
func stateGen(t *rapid.T, label string) *crdt.State {
	s := crdt.NewState()
	n := rapid.IntRange(0, 20).Draw(t, label+"-n")
	for i := 0; i < n; i++ {
		s.Merge(crdt.Delta{
			Slot: slotGen.Draw(t, label+"-slot"),
			Entry: crdt.Entry{
				Replica: replicaGen.Draw(t, label+"-replica"),
				Value:   rapid.Uint64Range(0, 1000).Draw(t, label+"-value"),
				Seq:     rapid.Uint64Range(0, 50).Draw(t, label+"-seq"),
			},
		})
	}
	return s
}

func merged(states ...*crdt.State) *crdt.State {
	out := crdt.NewState()
	for _, s := range states {
		out.MergeState(s)
	}
	return out
}

func TestMerge_Commutative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := stateGen(t, "a"), stateGen(t, "b")
		if ab, ba := merged(a, b), merged(b, a); !ab.Equal(ba) {
			t.Fatalf("a⊔b != b⊔a")
		}
	})
}

func TestMerge_Associative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := stateGen(t, "a"), stateGen(t, "b"), stateGen(t, "c")
		left := merged(merged(a, b), c)
		right := merged(a, merged(b, c))
		if !left.Equal(right) {
			t.Fatalf("(a⊔b)⊔c != a⊔(b⊔c)")
		}
	})
}

func TestMerge_Idempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := stateGen(t, "a")
		aa := a.Clone()
		if learned := aa.MergeState(a); len(learned) != 0 {
			t.Fatalf("merging a state into itself learned %d deltas", len(learned))
		}
		if !aa.Equal(a) {
			t.Fatalf("a⊔a != a")
		}
	})
}

// TestMerge_NoIncrementLost plays several replicas that each take increments
// and exchange deltas in an arbitrary order, with duplicates, drops that are
// later repaired, and stale messages. Once everyone has seen everything, every
// replica's value of every slot must equal the sum of all increments to it.
func TestMerge_NoIncrementLost(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const n = 3
		replicas := make([]*crdt.State, n)
		seqs := make([]uint64, n)
		for i := range replicas {
			replicas[i] = crdt.NewState()
		}
		want := map[crdt.Slot]uint64{}
		// inflight holds messages in the network: deltas from one replica to another.
		type msg struct {
			to int
			d  crdt.Delta
		}
		var inflight []msg
		steps := rapid.IntRange(1, 60).Draw(t, "steps")
		for i := 0; i < steps; i++ {
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0: // a replica takes an increment and gossips the raised entry
				r := rapid.IntRange(0, n-1).Draw(t, "r")
				slot := slotGen.Draw(t, "slot")
				amount := rapid.Uint64Range(1, 100).Draw(t, "amount")
				seqs[r]++
				e, err := replicas[r].Add(slot, crdt.ReplicaID{byte(r + 1)}, amount, seqs[r])
				if err != nil {
					t.Fatal(err)
				}
				want[slot] += amount
				for to := 0; to < n; to++ {
					if to != r {
						inflight = append(inflight, msg{to, crdt.Delta{Slot: slot, Entry: e}})
					}
				}
			case 1: // deliver some message, possibly keeping a duplicate in flight
				if len(inflight) == 0 {
					continue
				}
				k := rapid.IntRange(0, len(inflight)-1).Draw(t, "k")
				m := inflight[k]
				replicas[m.to].Merge(m.d)
				if !rapid.Bool().Draw(t, "dup") {
					inflight = append(inflight[:k], inflight[k+1:]...)
				}
			case 2: // drop a message; anti-entropy below repairs it
				if len(inflight) > 0 {
					k := rapid.IntRange(0, len(inflight)-1).Draw(t, "drop")
					inflight = append(inflight[:k], inflight[k+1:]...)
				}
			}
		}
		// Anti-entropy: every replica merges every other's full state, in a
		// drawn order, then stale in-flight messages arrive late.
		order := rapid.Permutation([]int{0, 1, 2}).Draw(t, "order")
		for _, i := range order {
			for _, j := range order {
				replicas[i].MergeState(replicas[j])
			}
		}
		for _, i := range order {
			for _, j := range order {
				replicas[i].MergeState(replicas[j])
			}
		}
		for _, m := range inflight {
			replicas[m.to].Merge(m.d)
		}
		for slot, w := range want {
			for i, r := range replicas {
				if got := r.Value(slot); got != w {
					t.Fatalf("replica %d slot %+v = %d, want %d", i, slot, got, w)
				}
			}
		}
	})
}
