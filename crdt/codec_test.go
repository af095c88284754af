package crdt_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
)

func TestCodec_DeltaRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := crdt.Delta{
			Slot: slotGen.Draw(t, "slot"),
			Entry: crdt.Entry{
				Replica: crdt.ReplicaID(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "id")),
				Value:   rapid.Uint64().Draw(t, "value"),
				Seq:     rapid.Uint64().Draw(t, "seq"),
			},
		}
		b := crdt.AppendDelta(nil, d)
		dec := crdt.NewDecoder(b)
		got := dec.Delta()
		if err := dec.Err(); err != nil {
			t.Fatal(err)
		}
		if got != d || dec.Len() != 0 {
			t.Fatalf("round trip: got %+v (rest %d), want %+v", got, dec.Len(), d)
		}
	})
}

func TestDecoder_RejectsMalformed(t *testing.T) {
	valid := crdt.AppendDelta(nil, crdt.Delta{Slot: crdt.Slot{Name: "a", Res: 60, Start: 120}, Entry: crdt.Entry{Value: 1, Seq: 1}})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, crdt.ErrTruncated},
		{"truncated", valid[:len(valid)-1], crdt.ErrTruncated},
		{"bad name", crdt.AppendDelta(nil, crdt.Delta{Slot: crdt.Slot{Name: "a b"}}), crdt.ErrMalformed},
		{"empty name", crdt.AppendDelta(nil, crdt.Delta{Slot: crdt.Slot{Name: ""}}), crdt.ErrMalformed},
		{"misaligned window", crdt.AppendDelta(nil, crdt.Delta{Slot: crdt.Slot{Name: "a", Res: 60, Start: 61}}), crdt.ErrMalformed},
		{"total with start", crdt.AppendDelta(nil, crdt.Delta{Slot: crdt.Slot{Name: "a", Start: 60}}), crdt.ErrMalformed},
		{"overlong varint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, crdt.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := crdt.NewDecoder(tt.in)
			dec.Delta()
			if err := dec.Err(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecoder_CountRefusesHostileLength(t *testing.T) {
	dec := crdt.NewDecoder([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3})
	if n := dec.Count(crdt.MinDeltaSize); n != 0 || !errors.Is(dec.Err(), crdt.ErrMalformed) {
		t.Fatalf("Count = %d, %v; want 0, ErrMalformed", n, dec.Err())
	}
}

// FuzzDecoder checks that no input makes the decoder panic, and that whatever
// it accepts re-encodes to the bytes it read.
func FuzzDecoder(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "deltas", "*.bin"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(crdt.AppendDelta(nil, crdt.Delta{Slot: crdt.TotalSlot("x"), Entry: crdt.Entry{Value: 3, Seq: 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := crdt.NewDecoder(b)
		d := dec.Delta()
		if dec.Err() != nil {
			return
		}
		if !d.Slot.Valid() {
			t.Fatalf("decoder accepted an invalid slot %+v", d.Slot)
		}
		used := len(b) - dec.Len()
		if again := crdt.AppendDelta(nil, d); len(again) > used {
			t.Fatalf("re-encoding is longer (%d) than the input read (%d)", len(again), used)
		}
	})
}

// TestDecoder_SlotsShareAName: a counter's slots, listed one after another,
// decode to the slots encoded, with one string for their name.
func TestDecoder_SlotsShareAName(t *testing.T) {
	slots := []crdt.Slot{
		{Name: "signups"},
		{Name: "signups", Res: 60, Start: 1_764_000_000},
		{Name: "signups", Res: 3600, Start: 1_764_000_000},
		{Name: "logins", Res: 60, Start: 1_764_000_000},
		{Name: "signups"},
	}
	var b []byte
	for _, s := range slots {
		b = crdt.AppendSlot(b, s)
	}
	d := crdt.NewDecoder(b)
	for i, want := range slots {
		if got := d.Slot(); got != want {
			t.Fatalf("slot %d = %+v, want %+v", i, got, want)
		}
	}
	if d.Err() != nil || d.Len() != 0 {
		t.Fatalf("decoder: err %v, %d bytes left", d.Err(), d.Len())
	}
	// Five slots of one name take one string; of five names, five. The
	// difference does not depend on whether the Decoder itself escapes.
	decodeAll := func(b []byte, n int) float64 {
		return testing.AllocsPerRun(100, func() {
			d := crdt.NewDecoder(b)
			for range n {
				d.Slot()
			}
		})
	}
	var same, different []byte
	for i := range 5 {
		same = crdt.AppendSlot(same, crdt.Slot{Name: "signups", Res: 60, Start: int64(1_764_000_000 + 60*i)})
		different = crdt.AppendSlot(different, crdt.Slot{Name: fmt.Sprintf("signups%d", i), Res: 60, Start: 1_764_000_000})
	}
	if got := decodeAll(different, 5) - decodeAll(same, 5); got != 4 {
		t.Fatalf("five names took %v allocations more than one name, want 4", got)
	}
}

// TestDecoder_SlotOf: a slot's window read for a name the decoder just
// read, and a name it did not read (and so did not check) is checked.
func TestDecoder_SlotOf(t *testing.T) {
	b := crdt.AppendWindowOf(crdt.AppendName(nil, "a"), crdt.Slot{Res: 60, Start: 120})
	d := crdt.NewDecoder(b)
	if got := d.SlotOf(d.Name()); got != (crdt.Slot{Name: "a", Res: 60, Start: 120}) || d.Err() != nil {
		t.Fatalf("SlotOf(Name()) = %+v, %v", got, d.Err())
	}
	d = crdt.NewDecoder(crdt.AppendWindowOf(nil, crdt.Slot{Res: 60, Start: 120}))
	if d.SlotOf("a b"); !errors.Is(d.Err(), crdt.ErrMalformed) {
		t.Fatalf("SlotOf of a name that is not one: %v, want %v", d.Err(), crdt.ErrMalformed)
	}
}
