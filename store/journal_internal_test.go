package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
)

// recordGen makes journal records whose deltas come in runs of a few
// counters' slots, from up to three replicas, with seqs that often repeat:
// the shapes the version 3 encoding shortens, and the ones it must not.
var recordGen = rapid.Custom(func(t *rapid.T) record {
	origins := []crdt.ReplicaID{{1}, {2, 7}, {0xff, 3}}
	names := []string{"a", "signups", "bench.123", "x.y-z_9"}
	var r record
	r.seq = rapid.Uint64Range(0, 1<<40).Draw(t, "seq")
	for range rapid.IntRange(0, 40).Draw(t, "deltas") {
		slot := crdt.TotalSlot(rapid.SampledFrom(names).Draw(t, "name"))
		if res := rapid.SampledFrom([]uint32{0, 60, 3600, 86400}).Draw(t, "res"); res != 0 {
			slot.Res = res
			slot.Start = int64(res) * rapid.Int64Range(0, 1<<30).Draw(t, "window")
		}
		e := crdt.Entry{
			Replica: rapid.SampledFrom(origins).Draw(t, "origin"),
			Value:   rapid.Uint64().Draw(t, "value"),
			Seq:     rapid.SampledFrom([]uint64{0, 1, r.seq, r.seq + 1, 1 << 63}).Draw(t, "entrySeq"),
		}
		r.deltas = append(r.deltas, crdt.Delta{Slot: slot, Entry: e})
	}
	for range rapid.IntRange(0, 2).Draw(t, "records") {
		accepted := rapid.Int64Range(0, 1<<61).Draw(t, "accepted")
		r.records = append(r.records, crdt.KeyRecord{
			Key:        rapid.StringMatching(`[a-z0-9]{1,20}`).Draw(t, "key"),
			Origin:     rapid.SampledFrom(origins).Draw(t, "recOrigin"),
			Seq:        rapid.Uint64().Draw(t, "recSeq"),
			Accepted:   accepted,
			Expires:    accepted + rapid.Int64Range(0, 1<<61).Draw(t, "ttl"),
			Increments: []crdt.KeyedIncrement{{Name: rapid.SampledFrom(names).Draw(t, "incName"), Amount: 1, TS: 1}},
			Response:   []byte(`{"total":1}`),
		})
	}
	for range rapid.IntRange(0, 2).Draw(t, "covers") {
		r.covers = append(r.covers, cover{Origin: rapid.SampledFrom(origins).Draw(t, "coverOrigin"), Seq: rapid.Uint64().Draw(t, "coverSeq")})
	}
	for range rapid.IntRange(0, 2).Draw(t, "comps") {
		r.comps = append(r.comps, crdt.CompDelta{
			Slot: crdt.TotalSlot(rapid.SampledFrom(names).Draw(t, "compName")),
			Comp: crdt.Comp{Loser: rapid.SampledFrom(origins).Draw(t, "loser"), Seq: 1, Key: rapid.Uint64().Draw(t, "compKey"), Value: 1},
		})
	}
	return r
})

// sameRecord reports whether decoding gave back what was encoded; empty and
// nil lists are the same.
func sameRecord(a, b record) bool {
	norm := func(r record) record {
		if len(r.deltas) == 0 {
			r.deltas = nil
		}
		if len(r.records) == 0 {
			r.records = nil
		}
		if len(r.covers) == 0 {
			r.covers = nil
		}
		if len(r.comps) == 0 {
			r.comps = nil
		}
		return r
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// decodesTo fails t unless b decodes to want.
func decodesTo(t interface {
	Helper()
	Fatalf(string, ...any)
}, b []byte, want record) {
	t.Helper()
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !sameRecord(got, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
	}
}

func TestRecord_RoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := recordGen.Draw(t, "record")
		decodesTo(t, r.appendTo(nil), r)
	})
}

// version4Record and version4Bytes pin version 4's layout: records already
// on disk must read the same after any change to the encoder and decoder
// together.
func version4Record() record {
	a, b := crdt.ReplicaID{1}, crdt.ReplicaID{2}
	return record{seq: 5, deltas: []crdt.Delta{
		{Slot: crdt.TotalSlot("ab"), Entry: crdt.Entry{Replica: a, Value: 7, Seq: 5}},
		{Slot: crdt.Slot{Name: "ab", Res: 60, Start: 120}, Entry: crdt.Entry{Replica: a, Value: 7, Seq: 5}},
		{Slot: crdt.TotalSlot("c"), Entry: crdt.Entry{Replica: b, Value: 3, Seq: 9}},
	}}
}

// version4Body is version4Record's bytes before the sum, with the version
// byte given: version 3 is the same without the sum.
func version4Body(version byte) []byte {
	a, b := crdt.ReplicaID{1}, crdt.ReplicaID{2}
	want := []byte{version, 5, 2}           // version, seq, two origins
	want = append(want, a[:]...)            // origin 0
	want = append(want, b[:]...)            // origin 1
	want = append(want, 3)                  // three deltas
	want = append(want, 2, 'a', 'b', 2)     // a run of "ab": two deltas
	want = append(want, 0, 0, 0<<1|0, 7, 5) // total, origin 0, value 7, seq 5
	want = append(want, 60, 120, 0<<1|1, 7) // minute 120, origin 0, value 7, seq as before
	want = append(want, 1, 'c', 1)          // a run of "c": one delta
	want = append(want, 0, 0, 1<<1|0, 3, 9) // total, origin 1, value 3, seq 9
	return append(want, 0, 0, 0)            // no records, covers or compensations
}

func TestRecord_Version4Bytes(t *testing.T) {
	want := version4Body(4)
	want = binary.BigEndian.AppendUint32(want, crc32.Checksum(want, crc32.MakeTable(crc32.Castagnoli)))
	r := version4Record()
	if got := r.appendTo(nil); !bytes.Equal(got, want) {
		t.Errorf("encoded\n% x\nwant\n% x", got, want)
	}
	decodesTo(t, want, r)
}

// TestRecord_ReadsVersion3: journals written before version 4 replay as
// they were written, without a sum.
func TestRecord_ReadsVersion3(t *testing.T) {
	decodesTo(t, version4Body(3), version4Record())
}

// TestRecord_EveryBitFlipIsRefused: a record with any one bit flipped, the
// version byte's included, is refused as damage, never read as another
// record or as a newer build's.
func TestRecord_EveryBitFlipIsRefused(t *testing.T) {
	g := groupRecord(2)
	g.records = []crdt.KeyRecord{{Key: "k", Origin: crdt.ReplicaID{9, 9, 9}, Seq: 3, Accepted: 1, Expires: 2,
		Increments: []crdt.KeyedIncrement{{Name: "bench.0", Amount: 1, TS: 1}}}}
	for _, r := range []record{version4Record(), g} {
		b := r.appendTo(nil)
		decodesTo(t, b, r)
		for i := range len(b) * 8 {
			flipped := bytes.Clone(b)
			flipped[i/8] ^= 1 << (i % 8)
			if _, err := decodeRecord(flipped); !errors.Is(err, crdt.ErrMalformed) {
				t.Fatalf("bit %d of byte %d flipped: got %v, want %v", i%8, i/8, err, crdt.ErrMalformed)
			}
		}
	}
}

// appendV2 encodes r as the version 2 records that journals written before
// version 3 hold: every delta with its counter's name and its seq.
func appendV2(r *record) []byte {
	b := []byte{2}
	b = binary.AppendUvarint(b, r.seq)
	var origins []crdt.ReplicaID
	nums := make([]uint64, len(r.deltas))
	for i, d := range r.deltas {
		nums[i] = uint64(len(origins))
		for j, o := range origins {
			if o == d.Entry.Replica {
				nums[i] = uint64(j)
			}
		}
		if nums[i] == uint64(len(origins)) {
			origins = append(origins, d.Entry.Replica)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(origins)))
	for _, o := range origins {
		b = append(b, o[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.deltas)))
	for i, d := range r.deltas {
		b = crdt.AppendSlot(b, d.Slot)
		b = binary.AppendUvarint(b, nums[i])
		b = binary.AppendUvarint(b, d.Entry.Value)
		b = binary.AppendUvarint(b, d.Entry.Seq)
	}
	return r.appendAfterDeltas(b)
}

// TestRecord_ReadsVersion2: journals written before version 3 replay as
// they were written.
func TestRecord_ReadsVersion2(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r := recordGen.Draw(t, "record")
		decodesTo(t, appendV2(&r), r)
	})
}

// groupRecord is the record of a group commit of a batch of n increments,
// one to each of n counters, each raising a total and three windows.
func groupRecord(n int) record {
	self := crdt.ReplicaID{9, 9, 9}
	r := record{seq: 1_234_567}
	for i := range n {
		name := fmt.Sprintf("bench.%d", i)
		for _, res := range []uint32{0, 60, 3600, 86400} {
			slot := crdt.TotalSlot(name)
			if res != 0 {
				slot.Res, slot.Start = res, 1_796_300_000/int64(res)*int64(res)
			}
			r.deltas = append(r.deltas, crdt.Delta{Slot: slot, Entry: crdt.Entry{Replica: self, Value: uint64(1000 + i), Seq: r.seq}})
		}
	}
	return r
}

// TestRecord_NamesAndSeqsWrittenOnce: a group's record names each counter
// once and its seq once, not once per delta.
func TestRecord_NamesAndSeqsWrittenOnce(t *testing.T) {
	r := groupRecord(1000)
	v2, v3 := len(appendV2(&r)), len(r.appendTo(nil))
	t.Logf("1,000 counters × 4 slots: version 2 %d bytes, version %d %d bytes (%.2f×)", v2, recordVersion, v3, float64(v3)/float64(v2))
	// Each counter's name ("bench.N" and its length, 8–10 bytes) is written
	// once instead of four times, and its slots' seq (3 bytes each) only
	// once in the record. So each counter saves three names (9.9 bytes on
	// average) and four seqs: want at least 9 bytes a name, 2 a seq.
	const want = 1000 * (3*9 + 4*2)
	if saved := v2 - v3; saved < want {
		t.Errorf("version 3 is %d bytes, version 2 %d: saved %d, want at least %d", v3, v2, saved, want)
	}
}

// TestRecord_RefusesDamage: a cut or a count that lies is an error, never a
// panic or a record that is partly read.
func TestRecord_RefusesDamage(t *testing.T) {
	r := groupRecord(3)
	r.deltas[5].Entry.Replica = crdt.ReplicaID{4}
	b := r.appendTo(nil)
	for n := range len(b) {
		if _, err := decodeRecord(b[:n]); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", n, len(b))
		}
	}
	if _, err := decodeRecord(append(b[:len(b):len(b)], 0)); err == nil {
		t.Errorf("a record with a byte after it decoded")
	}

	// Records built by hand, each well formed but for one thing, so that
	// nothing else refuses them: version 3, seq 5, one origin, n deltas,
	// then the runs given, then no records, covers or compensations.
	origin := crdt.ReplicaID{1}
	v3 := func(n byte, runs ...byte) []byte {
		b := append([]byte{3, 5, 1}, origin[:]...)
		b = append(append(b, n), runs...)
		return append(b, 0, 0, 0)
	}
	total := []byte{0, 0, 0, 7, 5} // res, start, origin 0, value 7, seq 5
	if _, err := decodeRecord(v3(1, append([]byte{2, 'a', 'b', 1}, total...)...)); err != nil {
		t.Fatalf("the well-formed record the cases start from: %v", err)
	}
	v2 := appendV2(&record{seq: 5, deltas: []crdt.Delta{{Slot: crdt.TotalSlot("ab"), Entry: crdt.Entry{Replica: origin, Value: 7, Seq: 5}}}})
	if _, err := decodeRecord(v2); err != nil {
		t.Fatalf("the well-formed version 2 record: %v", err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"a run of no deltas", v3(1, append([]byte{2, 'a', 'b', 0, 2, 'a', 'b', 1}, total...)...)},
		{"a run of more deltas than the record holds", v3(1, append(append([]byte{2, 'a', 'b', 2}, total...), 60, 0, 1, 1)...)},
		{"an origin the record does not list", v3(1, 2, 'a', 'b', 1, 0, 0, 1<<1, 7, 5)},
		{"a name that is not one", v3(1, append([]byte{2, 'a', '/', 1}, total...)...)},
		{"an empty name", v3(1, append([]byte{0, 1}, total...)...)},
		{"version 0", append([]byte{0}, v2[1:]...)},
		{"a sum that does not match", append(version4Body(4), 0, 0, 0, 0)},
		{"no room for a sum", []byte{4, 0, 0}},
		{"a version past this build's with a sum that does not match", append([]byte{recordVersion + 1}, 1, 2, 3, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeRecord(tc.b); !errors.Is(err, crdt.ErrMalformed) {
				t.Errorf("got %v, want %v", err, crdt.ErrMalformed)
			}
		})
	}
	// Its sum right, a version past this build's is a newer build's record:
	// not readable here, and not damage.
	if _, err := decodeRecord(appendSum(nil, []byte{recordVersion + 1, 1, 2}, 0)); !errors.Is(err, ErrIncompatible) {
		t.Errorf("a newer build's record: got %v, want %v", err, ErrIncompatible)
	}
}

// FuzzRecord: any bytes decode to a record or an error, never a panic, and a
// record that decodes encodes to bytes that decode to it again.
func FuzzRecord(f *testing.F) {
	g := groupRecord(3)
	f.Add(g.appendTo(nil))
	f.Add(appendV2(&g))
	f.Add(version4Body(3))
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		decodesTo(t, r.appendTo(nil), r)
	})
}

// TestStore_CleanStopLeavesNoJournalRecords: a node stopped cleanly leaves
// every change in state.db and none in the journal, so a build that cannot
// read this build's journal records can still open its directory.
func TestStore_CleanStopLeavesNoJournalRecords(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig(dir)
	cfg.CheckpointInterval, cfg.JanitorInterval = -1, -1
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 10 {
		if _, err := s.Apply(ctx, &Request{Increments: []Increment{{Name: fmt.Sprintf("c%d", i%3), Amount: 1, TS: time.Now()}}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().JournalRecords; n == 0 {
		t.Fatalf("no journal records before the stop: the test checks nothing")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, JournalFile), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketJournal).Stats().KeyN; n != 0 {
			t.Errorf("journal holds %d records after a clean stop", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
