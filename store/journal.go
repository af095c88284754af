package store

import (
	"encoding/binary"
	"fmt"

	"github.com/abacus-counter/abacus/crdt"
)

// A journal record is everything one commit changed, as absolute values:
//
//	version byte (3)
//	seq           uvarint: this replica's last committed seq after the record
//	origins       uvarint n, n × replica ID (16): the replicas the entries name
//	deltas        uvarint n, then the n deltas in runs, each of one counter's
//	              deltas listed together: name, uvarint k (at least 1), then
//	              k × (res, start, uvarint origin number×2 + same, value,
//	              seq unless same); same is 1 when the delta's seq is the
//	              seq of the delta before it in the record (0 before the first)
//	records       uvarint n, n × key record (crdt.AppendKeyRecord)
//	covers        uvarint n, n × (origin ID (16), seq): vv[origin] rises to seq
//	comps         uvarint n, n × (slot, compensation (crdt.AppendComp))
//	sum           CRC-32C (Castagnoli) of every byte before it, big-endian
//
// Every version from 4 on ends with that sum. Version 3 records are version
// 4's without it. Version 2 records list the deltas as n × (slot, origin number, value,
// seq), each with its counter's name. Version 1 records (before key records
// replicated) are version 2's, but hold, in place of the records, n × (key,
// expires Unix ns varint, fingerprint (32), response) of this replica's
// keys, and no compensations. Both are still read.
//
// Replaying a record merges its entries by max, its records and compensations
// by set union, and raises the version vector, so replaying a record whose
// effects are already in state.db changes nothing.
const recordVersion = 4

// namedRunsVersion is the first record version that lists the deltas in
// runs of one counter's, its name written once.
const namedRunsVersion = 3

// summedVersion is the first record version that ends with a checksum.
const summedVersion = 4

type record struct {
	seq     uint64
	deltas  []crdt.Delta
	records []crdt.KeyRecord
	covers  []cover
	comps   []crdt.CompDelta
}

// cover says that every change of Origin up to Seq is in the store.
type cover struct {
	Origin crdt.ReplicaID
	Seq    uint64
}

const maxIdemKeyLen = 255

func (r *record) empty() bool {
	return len(r.deltas) == 0 && len(r.records) == 0 && len(r.covers) == 0 && len(r.comps) == 0
}

func (r *record) appendTo(b []byte) []byte {
	start := len(b)
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.seq)
	var origins []crdt.ReplicaID
	originNum := func(id crdt.ReplicaID) uint64 {
		for i, o := range origins {
			if o == id {
				return uint64(i)
			}
		}
		origins = append(origins, id)
		return uint64(len(origins) - 1)
	}
	for _, d := range r.deltas {
		originNum(d.Entry.Replica)
	}
	b = binary.AppendUvarint(b, uint64(len(origins)))
	for _, o := range origins {
		b = append(b, o[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.deltas)))
	var seq uint64
	for i := 0; i < len(r.deltas); {
		name := r.deltas[i].Slot.Name
		k := 1
		for i+k < len(r.deltas) && r.deltas[i+k].Slot.Name == name {
			k++
		}
		b = crdt.AppendName(b, name)
		b = binary.AppendUvarint(b, uint64(k))
		for _, d := range r.deltas[i : i+k] {
			b = crdt.AppendWindowOf(b, d.Slot)
			o := originNum(d.Entry.Replica) << 1
			if d.Entry.Seq == seq {
				o |= 1
			}
			b = binary.AppendUvarint(b, o)
			b = binary.AppendUvarint(b, d.Entry.Value)
			if d.Entry.Seq != seq {
				b = binary.AppendUvarint(b, d.Entry.Seq)
				seq = d.Entry.Seq
			}
		}
		i += k
	}
	return appendSum(nil, r.appendAfterDeltas(b), start)
}

// appendAfterDeltas appends what follows the deltas, the same from version 2
// on: records, covers and compensations.
func (r *record) appendAfterDeltas(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.records)))
	for i := range r.records {
		b = crdt.AppendKeyRecord(b, &r.records[i])
	}
	b = binary.AppendUvarint(b, uint64(len(r.covers)))
	for _, c := range r.covers {
		b = append(b, c.Origin[:]...)
		b = binary.AppendUvarint(b, c.Seq)
	}
	b = binary.AppendUvarint(b, uint64(len(r.comps)))
	for _, c := range r.comps {
		b = crdt.AppendSlot(b, c.Slot)
		b = crdt.AppendComp(b, c.Comp)
	}
	return b
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) > 0 && b[0] >= summedVersion {
		// Checked before the version is believed: a flipped version byte
		// is damage, not a newer build's record.
		body, ok := splitSum(nil, b)
		if !ok || len(body) < 1 {
			return record{}, fmt.Errorf("journal record: checksum mismatch: %w", crdt.ErrMalformed)
		}
		b = body
	}
	d := crdt.NewDecoder(b)
	version := d.Byte()
	switch {
	case d.Err() == nil && version == 0:
		return record{}, fmt.Errorf("journal record version 0: %w", crdt.ErrMalformed)
	case d.Err() == nil && version > recordVersion:
		// A newer build's: this build cannot read it, which is not damage.
		return record{}, fmt.Errorf("journal record version %d: %w", version, ErrIncompatible)
	}
	r.seq = d.Uvarint()
	origins := make([]crdt.ReplicaID, d.Count(16))
	for i := range origins {
		origins[i] = d.Replica()
	}
	var n int
	if version < namedRunsVersion {
		r.deltas = decodeDeltasV2(d, origins)
	} else {
		r.deltas = decodeDeltas(d, origins)
	}
	if version == 1 {
		// This replica's keys, before records carried their origin and
		// increments: they answer retries here and nowhere else.
		n = d.Count(1 + 1 + 32 + 1)
		for i := 0; i < n && d.Err() == nil; i++ {
			x := crdt.KeyRecord{Seq: r.seq}
			x.Key = d.String(maxIdemKeyLen)
			x.Expires = d.Varint()
			x.Accepted = x.Expires
			copy(x.Fingerprint[:], d.Bytes(32))
			x.Response = append([]byte(nil), d.Bytes(int(min(d.Uvarint(), uint64(d.Len())+1)))...)
			r.records = append(r.records, x)
		}
	} else {
		n = d.Count(crdt.MinKeyRecordSize)
		for i := 0; i < n && d.Err() == nil; i++ {
			r.records = append(r.records, d.KeyRecord())
		}
	}
	n = d.Count(17)
	for i := 0; i < n && d.Err() == nil; i++ {
		r.covers = append(r.covers, cover{Origin: d.Replica(), Seq: d.Uvarint()})
	}
	if version != 1 {
		n = d.Count(crdt.MinSlotSize + crdt.MinCompSize)
		for i := 0; i < n && d.Err() == nil; i++ {
			r.comps = append(r.comps, crdt.CompDelta{Slot: d.Slot(), Comp: d.Comp()})
		}
	}
	if d.Err() == nil && d.Len() != 0 {
		d.Fail(crdt.ErrMalformed)
	}
	if err := d.Err(); err != nil {
		return record{}, fmt.Errorf("journal record: %w", err)
	}
	return r, nil
}

// decodeDeltas reads the deltas of a version 3 or 4 record.
func decodeDeltas(d *crdt.Decoder, origins []crdt.ReplicaID) []crdt.Delta {
	// Each delta takes at least res, start, origin and value: 4 bytes.
	n := d.Count(4)
	deltas := make([]crdt.Delta, 0, n)
	var seq uint64
	for len(deltas) < n && d.Err() == nil {
		name := d.Name()
		k := d.Uvarint()
		if d.Err() == nil && (k == 0 || k > uint64(n-len(deltas))) {
			d.Fail(crdt.ErrMalformed)
		}
		for range k {
			slot := d.SlotOf(name)
			o := d.Uvarint()
			e := crdt.Entry{Value: d.Uvarint(), Seq: seq}
			if o&1 == 0 {
				e.Seq = d.Uvarint()
				seq = e.Seq
			}
			if d.Err() != nil {
				return nil
			}
			if o>>1 >= uint64(len(origins)) {
				d.Fail(crdt.ErrMalformed)
				return nil
			}
			e.Replica = origins[o>>1]
			deltas = append(deltas, crdt.Delta{Slot: slot, Entry: e})
		}
	}
	return deltas
}

// decodeDeltasV2 reads the deltas of a version 1 or 2 record.
func decodeDeltasV2(d *crdt.Decoder, origins []crdt.ReplicaID) []crdt.Delta {
	n := d.Count(crdt.MinSlotSize + 3)
	deltas := make([]crdt.Delta, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		slot := d.Slot()
		o := d.Uvarint()
		e := crdt.Entry{Value: d.Uvarint(), Seq: d.Uvarint()}
		if o >= uint64(len(origins)) {
			d.Fail(crdt.ErrMalformed)
			break
		}
		e.Replica = origins[o]
		deltas = append(deltas, crdt.Delta{Slot: slot, Entry: e})
	}
	return deltas
}
