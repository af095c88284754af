package crdt_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
)

func rid(b byte) crdt.ReplicaID { return crdt.ReplicaID{b} }

func TestGCounter_Add(t *testing.T) {
	var g crdt.GCounter
	if _, err := g.Add(rid(1), 5, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(rid(2), 3, 1); err != nil {
		t.Fatal(err)
	}
	e, err := g.Add(rid(1), 2, 7)
	if err != nil {
		t.Fatal(err)
	}
	if e.Value != 7 || e.Seq != 7 {
		t.Fatalf("entry = %+v, want value 7 seq 7", e)
	}
	if got := g.Value(); got != 10 {
		t.Fatalf("Value = %d, want 10", got)
	}
	if g.Len() != 2 {
		t.Fatalf("Len = %d, want 2", g.Len())
	}
}

func TestGCounter_Add_Overflow(t *testing.T) {
	var g crdt.GCounter
	if _, err := g.Add(rid(1), math.MaxUint64-1, 1); err != nil {
		t.Fatal(err)
	}
	if err := g.CanAdd(rid(1), 2); !errors.Is(err, crdt.ErrOverflow) {
		t.Fatalf("CanAdd = %v, want ErrOverflow", err)
	}
	if _, err := g.Add(rid(1), 2, 2); !errors.Is(err, crdt.ErrOverflow) {
		t.Fatalf("Add = %v, want ErrOverflow", err)
	}
	if e, _ := g.Get(rid(1)); e.Value != math.MaxUint64-1 || e.Seq != 1 {
		t.Fatalf("entry changed by a refused increment: %+v", e)
	}
	if _, err := g.Add(rid(1), 1, 2); err != nil {
		t.Fatalf("exact fit refused: %v", err)
	}
	if _, err := g.Add(rid(1), 0, 3); !errors.Is(err, crdt.ErrZeroAmount) {
		t.Fatalf("zero amount = %v, want ErrZeroAmount", err)
	}
}

func TestGCounter_Value_Saturates(t *testing.T) {
	var g crdt.GCounter
	g.MergeEntry(crdt.Entry{Replica: rid(1), Value: math.MaxUint64, Seq: 1})
	g.MergeEntry(crdt.Entry{Replica: rid(2), Value: 1, Seq: 1})
	if got := g.Value(); got != math.MaxUint64 {
		t.Fatalf("Value = %d, want saturation at MaxUint64", got)
	}
}

func TestGCounter_MergeEntry(t *testing.T) {
	tests := []struct {
		name    string
		have    crdt.Entry
		in      crdt.Entry
		changed bool
		want    crdt.Entry
	}{
		{"higher value wins", crdt.Entry{Value: 3, Seq: 3}, crdt.Entry{Value: 5, Seq: 9}, true, crdt.Entry{Value: 5, Seq: 9}},
		{"lower value ignored", crdt.Entry{Value: 5, Seq: 9}, crdt.Entry{Value: 3, Seq: 3}, false, crdt.Entry{Value: 5, Seq: 9}},
		{"same entry ignored", crdt.Entry{Value: 5, Seq: 9}, crdt.Entry{Value: 5, Seq: 9}, false, crdt.Entry{Value: 5, Seq: 9}},
		{"equal value higher seq", crdt.Entry{Value: 5, Seq: 9}, crdt.Entry{Value: 5, Seq: 10}, true, crdt.Entry{Value: 5, Seq: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g crdt.GCounter
			tt.have.Replica, tt.in.Replica, tt.want.Replica = rid(1), rid(1), rid(1)
			g.MergeEntry(tt.have)
			if got := g.MergeEntry(tt.in); got != tt.changed {
				t.Fatalf("changed = %v, want %v", got, tt.changed)
			}
			if got, _ := g.Get(rid(1)); got != tt.want {
				t.Fatalf("entry = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestGCounter_Merge_ReturnsDelta(t *testing.T) {
	var a, b crdt.GCounter
	a.MergeEntry(crdt.Entry{Replica: rid(1), Value: 4, Seq: 4})
	a.MergeEntry(crdt.Entry{Replica: rid(2), Value: 9, Seq: 2})
	b.MergeEntry(crdt.Entry{Replica: rid(1), Value: 6, Seq: 6})
	b.MergeEntry(crdt.Entry{Replica: rid(2), Value: 1, Seq: 1})
	b.MergeEntry(crdt.Entry{Replica: rid(3), Value: 2, Seq: 1})
	raised := a.Merge(&b)
	want := []crdt.Entry{{Replica: rid(1), Value: 6, Seq: 6}, {Replica: rid(3), Value: 2, Seq: 1}}
	if len(raised) != len(want) {
		t.Fatalf("raised = %+v, want %+v", raised, want)
	}
	for i := range want {
		if raised[i] != want[i] {
			t.Fatalf("raised = %+v, want %+v", raised, want)
		}
	}
	if got := a.Value(); got != 17 {
		t.Fatalf("Value = %d, want 17", got)
	}
}

func TestReplicaID_RoundTrip(t *testing.T) {
	id := crdt.ReplicaID{0xde, 0xad, 0xbe, 0xef, 15: 0x01}
	got, err := crdt.ParseReplicaID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseReplicaID(%s) = %v, %v", id, got, err)
	}
	for _, bad := range []string{"", "zz", id.String() + "00", "g" + id.String()[1:]} {
		if _, err := crdt.ParseReplicaID(bad); err == nil {
			t.Errorf("ParseReplicaID(%q) succeeded", bad)
		}
	}
}

func TestValidName(t *testing.T) {
	long := make([]byte, 129)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "signups", true},
		{"all classes", "A-z_0.9:x", true},
		{"max length", string(long[:128]), true},
		{"empty", "", false},
		{"too long", string(long), false},
		{"space", "a b", false},
		{"slash", "a/b", false},
		{"nul", "a\x00", false},
		{"unicode", "zähler", false},
		{"percent", "a%20b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := crdt.ValidName(tt.in); got != tt.ok {
				t.Fatalf("ValidName(%q) = %v, want %v", tt.in, got, tt.ok)
			}
		})
	}
}

func TestReplicaID_Compare_IsBytewise(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Often equal in a prefix, so that every byte gets to decide.
		a := crdt.ReplicaID(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "a"))
		b := a
		for _, i := range rapid.SliceOfN(rapid.IntRange(0, 15), 0, 3).Draw(t, "changed") {
			b[i] = rapid.Byte().Draw(t, "b")
		}
		if got, want := a.Compare(b), bytes.Compare(a[:], b[:]); got != want {
			t.Fatalf("%x.Compare(%x) = %d, bytes.Compare says %d", a, b, got, want)
		}
	})
}

// TestGCounter_ManyReplicas checks a counter against a map of entries with
// few and many replicas: entries are found by a scan while few, by a binary
// search beyond.
func TestGCounter_ManyReplicas(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var g crdt.GCounter
		model := map[crdt.ReplicaID]uint64{}
		for range rapid.IntRange(1, 60).Draw(t, "n") {
			r := crdt.ReplicaID{15: rapid.ByteRange(0, 20).Draw(t, "replica"), 3: rapid.ByteRange(0, 1).Draw(t, "high")}
			amount := rapid.Uint64Range(1, 9).Draw(t, "amount")
			if err := g.CanAdd(r, amount); err != nil {
				t.Fatal(err)
			}
			e, err := g.Add(r, amount, 1)
			if err != nil {
				t.Fatal(err)
			}
			model[r] += amount
			if e.Value != model[r] {
				t.Fatalf("Add(%x) = %d, want %d", r, e.Value, model[r])
			}
		}
		entries := g.Entries()
		if len(entries) != len(model) {
			t.Fatalf("%d entries, want %d", len(entries), len(model))
		}
		for i, e := range entries {
			if i > 0 && entries[i-1].Replica.Compare(e.Replica) >= 0 {
				t.Fatalf("entries out of order at %d", i)
			}
			if got, ok := g.Get(e.Replica); !ok || got.Value != model[e.Replica] {
				t.Fatalf("Get(%x) = %d, %v; want %d", e.Replica, got.Value, ok, model[e.Replica])
			}
		}
	})
}
