package store

import (
	"encoding/binary"
	"fmt"

	"github.com/abacus-counter/abacus/crdt"
)

// A journal record is everything one commit changed, as absolute values:
//
//	version byte (2)
//	seq           uvarint: this replica's last committed seq after the record
//	origins       uvarint n, n × replica ID (16): the replicas the entries name
//	deltas        uvarint n, n × (slot, origin number, value, seq)
//	records       uvarint n, n × key record (crdt.AppendKeyRecord)
//	covers        uvarint n, n × (origin ID (16), seq): vv[origin] rises to seq
//	comps         uvarint n, n × (slot, compensation (crdt.AppendComp))
//
// Version 1 records (before key records replicated) hold, in place of the
// records, n × (key, expires Unix ns varint, fingerprint (32), response) of
// this replica's keys, and no compensations; they are still read.
//
// Replaying a record merges its entries by max, its records and compensations
// by set union, and raises the version vector, so replaying a record whose
// effects are already in state.db changes nothing.
const recordVersion = 2

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
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, r.seq)
	var origins []crdt.ReplicaID
	originNum := func(id crdt.ReplicaID) int {
		for i, o := range origins {
			if o == id {
				return i
			}
		}
		origins = append(origins, id)
		return len(origins) - 1
	}
	nums := make([]int, len(r.deltas))
	for i, d := range r.deltas {
		nums[i] = originNum(d.Entry.Replica)
	}
	b = binary.AppendUvarint(b, uint64(len(origins)))
	for _, o := range origins {
		b = append(b, o[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.deltas)))
	for i, d := range r.deltas {
		b = crdt.AppendSlot(b, d.Slot)
		b = binary.AppendUvarint(b, uint64(nums[i]))
		b = binary.AppendUvarint(b, d.Entry.Value)
		b = binary.AppendUvarint(b, d.Entry.Seq)
	}
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
	d := crdt.NewDecoder(b)
	version := d.Byte()
	if d.Err() == nil && version != 1 && version != recordVersion {
		return record{}, fmt.Errorf("journal record version %d: %w", version, ErrIncompatible)
	}
	r.seq = d.Uvarint()
	origins := make([]crdt.ReplicaID, d.Count(16))
	for i := range origins {
		origins[i] = d.Replica()
	}
	n := d.Count(crdt.MinSlotSize + 3)
	r.deltas = make([]crdt.Delta, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		slot := d.Slot()
		o := d.Uvarint()
		e := crdt.Entry{Value: d.Uvarint(), Seq: d.Uvarint()}
		if o >= uint64(len(origins)) {
			d.Fail(crdt.ErrMalformed)
			break
		}
		e.Replica = origins[o]
		r.deltas = append(r.deltas, crdt.Delta{Slot: slot, Entry: e})
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
