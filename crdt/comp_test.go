package crdt_test

import (
	"bytes"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
)

var compGen = rapid.Custom(func(t *rapid.T) crdt.Comp {
	return crdt.Comp{
		Loser: replicaGen.Draw(t, "loser"),
		Seq:   rapid.Uint64Range(1, 5).Draw(t, "seq"),
		Key:   rapid.Uint64Range(1, 3).Draw(t, "key"),
		Value: rapid.Uint64Range(1, 10).Draw(t, "value"),
	}
})

// TestComps_SetLaws: adding compensations in any order, any number of times,
// gives the same set.
func TestComps_SetLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cs := rapid.SliceOf(compGen).Draw(t, "comps")
		var a crdt.Comps
		for _, c := range cs {
			a, _ = a.Add(c)
		}
		perm := rapid.Permutation(cs).Draw(t, "perm")
		var b crdt.Comps
		for _, c := range append(perm, perm...) {
			b, _ = b.Add(c)
		}
		if !slices.Equal(a, b) {
			t.Fatalf("order or repetition changed the set: %v vs %v", a, b)
		}
		for _, c := range cs {
			if _, added := a.Add(c); added {
				t.Fatalf("adding %v again changed the set", c)
			}
		}
	})
}

// TestComps_Value: a compensation subtracts only once its loser's entry holds
// the copy it corrects, and a replica's count never goes below zero.
func TestComps_Value(t *testing.T) {
	r1, r2 := crdt.ReplicaID{1}, crdt.ReplicaID{2}
	var g crdt.GCounter
	g.MergeEntry(crdt.Entry{Replica: r1, Value: 5, Seq: 3})
	g.MergeEntry(crdt.Entry{Replica: r2, Value: 2, Seq: 1})
	cs, _ := crdt.Comps(nil).Add(crdt.Comp{Loser: r1, Seq: 3, Key: 9, Value: 4})
	cs, _ = cs.Add(crdt.Comp{Loser: r2, Seq: 2, Key: 9, Value: 2}) // r2's entry is older
	if got := cs.Value(&g); got != 1+2 {
		t.Fatalf("value = %d, want 3", got)
	}
	g.MergeEntry(crdt.Entry{Replica: r2, Value: 4, Seq: 2})
	if got := cs.Value(&g); got != 1+2 {
		t.Fatalf("value once r2's copy arrived = %d, want 3", got)
	}
	cs, _ = cs.Add(crdt.Comp{Loser: r1, Seq: 2, Key: 8, Value: 9}) // forged: more than r1 has
	if got := cs.Count(crdt.Entry{Replica: r1, Value: 5, Seq: 3}); got != 0 {
		t.Fatalf("count = %d, want 0 (floored)", got)
	}
	if got := crdt.Comps(nil).Value(&g); got != g.Value() {
		t.Fatalf("no compensations: %d, want %d", got, g.Value())
	}
}

func TestKeyRecord_Losers(t *testing.T) {
	rec := func(origin byte, accepted int64, fp byte) crdt.KeyRecord {
		return crdt.KeyRecord{Key: "k", Origin: crdt.ReplicaID{origin}, Seq: 1, Accepted: accepted, Fingerprint: [32]byte{fp}}
	}
	group := []crdt.KeyRecord{rec(3, 10, 1), rec(1, 20, 1), rec(2, 10, 1), rec(4, 5, 2)}
	for i := range group {
		group[i].Expires = group[i].Accepted + 100
	}
	if got := crdt.Losers(group); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("losers = %v, want [0 1]: (10, replica 2) wins the first request, the other body is its own", got)
	}
	// A copy accepted after the earlier ones expired is a new request.
	late := rec(5, 200, 1)
	late.Expires = 300
	if got := crdt.Losers(append(group, late)); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("losers with a copy after the TTL = %v, want [0 1]", got)
	}
}

func TestKeyRecord_Codec(t *testing.T) {
	r := crdt.KeyRecord{
		Key: "order-17", Fingerprint: [32]byte{1, 2}, Origin: crdt.ReplicaID{9}, Seq: 42,
		Accepted: 1795428000_123456789, Expires: 1795428000_123456789 + 86400e9,
		Increments: []crdt.KeyedIncrement{{Name: "signups", Amount: 3, TS: 1795427999e9}, {Name: "b", Amount: 1, TS: 1795428000_123456789}},
		Response:   []byte(`{"total":3}`),
	}
	b := crdt.AppendKeyRecord(nil, &r)
	d := crdt.NewDecoder(b)
	got := d.KeyRecord()
	if d.Err() != nil || d.Len() != 0 {
		t.Fatalf("decode: %v, %d left", d.Err(), d.Len())
	}
	if got.Key != r.Key || got.Seq != r.Seq || got.Accepted != r.Accepted || got.Expires != r.Expires || !slices.Equal(got.Increments, r.Increments) || !bytes.Equal(got.Response, r.Response) || got.Origin != r.Origin || got.Fingerprint != r.Fingerprint {
		t.Fatalf("round trip: %+v, want %+v", got, r)
	}
	t.Logf("a single keyed increment's record: %d bytes", len(b))
}

// FuzzKeyRecord: no input makes the decoder panic or return a record that
// does not survive encoding and decoding again.
func FuzzKeyRecord(f *testing.F) {
	r := crdt.KeyRecord{Key: "k", Origin: crdt.ReplicaID{1}, Seq: 1, Accepted: 5, Expires: 10, Increments: []crdt.KeyedIncrement{{Name: "a", Amount: 1, TS: 4}}}
	f.Add(crdt.AppendKeyRecord(nil, &r))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := crdt.NewDecoder(b)
		got := d.KeyRecord()
		if d.Err() != nil {
			return
		}
		re := crdt.AppendKeyRecord(nil, &got)
		d2 := crdt.NewDecoder(re)
		again := d2.KeyRecord()
		if d2.Err() != nil || d2.Len() != 0 || !bytes.Equal(crdt.AppendKeyRecord(nil, &again), re) {
			t.Fatalf("a decoded record does not round-trip: %+v (%v)", got, d2.Err())
		}
	})
}
