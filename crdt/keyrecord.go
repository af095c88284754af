package crdt

import (
	"encoding/binary"
	"math"
)

// KeyRecord is what one replica's application of a keyed request leaves
// behind: enough to answer a retry anywhere with the original response, to
// tell two applications of one request apart from two requests, and to
// compute, from the record alone, every slot it raised and by how much.
type KeyRecord struct {
	Key         string
	Fingerprint [32]byte
	Origin      ReplicaID // the replica that applied it
	Seq         uint64    // the seq of the origin's commit that applied it
	Accepted    int64     // Unix ns: the origin's clock when it applied it
	Expires     int64     // Unix ns: dropped everywhere after this
	Increments  []KeyedIncrement
	Response    []byte
}

// KeyedIncrement is one increment of a keyed request, its event time resolved.
type KeyedIncrement struct {
	Name   string
	Amount uint64
	TS     int64 // Unix ns
}

// Before orders the records of one request: the earliest accepted wins, then
// the smaller origin, then the smaller seq. It is a total order on records of
// distinct (Origin, Seq), and depends on nothing but the records, so every
// node holding the same records picks the same winner.
func (r *KeyRecord) Before(o *KeyRecord) bool {
	if r.Accepted != o.Accepted {
		return r.Accepted < o.Accepted
	}
	if c := r.Origin.Compare(o.Origin); c != 0 {
		return c < 0
	}
	return r.Seq < o.Seq
}

// SameCopy reports whether r and o are the same application of a request.
func (r *KeyRecord) SameCopy(o *KeyRecord) bool {
	return r.Origin == o.Origin && r.Seq == o.Seq && r.Key == o.Key
}

// Losers returns the indexes of the records of group that lose: every record
// that shares its fingerprint with an earlier one and was accepted before that
// one expired (after its TTL a key is free again, and the same request is a
// new one). Records of one key with different fingerprints are different
// requests. The verdict depends on the records alone, never on when a node
// looks, and a record that loses keeps losing whatever records join the group.
func Losers(group []KeyRecord) []int {
	var out []int
	for i := range group {
		for j := range group {
			if i != j && group[j].Fingerprint == group[i].Fingerprint && group[j].Before(&group[i]) && group[i].Accepted < group[j].Expires {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// MaxKeyLen is the longest idempotency key.
const MaxKeyLen = 255

// maxResponse bounds a record's stored response.
const maxResponse = 1 << 16

// AppendKeyRecord appends the encoding of r to b.
func AppendKeyRecord(b []byte, r *KeyRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = append(b, r.Fingerprint[:]...)
	b = append(b, r.Origin[:]...)
	b = binary.AppendUvarint(b, r.Seq)
	b = binary.AppendVarint(b, r.Accepted)
	b = binary.AppendVarint(b, r.Expires-r.Accepted)
	b = binary.AppendUvarint(b, uint64(len(r.Increments)))
	for _, inc := range r.Increments {
		b = binary.AppendUvarint(b, uint64(len(inc.Name)))
		b = append(b, inc.Name...)
		b = binary.AppendUvarint(b, inc.Amount)
		b = binary.AppendVarint(b, inc.TS-r.Accepted)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Response)))
	return append(b, r.Response...)
}

// MinKeyRecordSize is the fewest bytes an encoded record takes, for Count.
const MinKeyRecordSize = 1 + 1 + 32 + 16 + 1 + 1 + 1 + 1 + 1

// KeyRecord reads a record and checks that it is well formed: a key of 1 to
// MaxKeyLen bytes, increments of valid names and positive amounts (none for a
// record kept from before records carried them).
func (d *Decoder) KeyRecord() KeyRecord {
	var r KeyRecord
	r.Key = d.String(MaxKeyLen)
	copy(r.Fingerprint[:], d.Bytes(32))
	r.Origin = d.Replica()
	r.Seq = d.Uvarint()
	r.Accepted = d.Varint()
	ttl := d.Varint()
	n := d.Count(1 + 1 + 1 + 1)
	if d.err == nil && (r.Key == "" || ttl < 0 || r.Accepted > math.MaxInt64-ttl) {
		d.Fail(ErrMalformed)
	}
	r.Expires = r.Accepted + ttl
	if d.err == nil {
		r.Increments = make([]KeyedIncrement, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		inc := KeyedIncrement{Name: d.String(MaxNameLen), Amount: d.Uvarint()}
		off := d.Varint()
		if d.err == nil && (!ValidName(inc.Name) || inc.Amount == 0 || (off > 0 && r.Accepted > math.MaxInt64-off) || (off < 0 && r.Accepted < math.MinInt64-off)) {
			d.Fail(ErrMalformed)
		}
		inc.TS = r.Accepted + off
		r.Increments = append(r.Increments, inc)
	}
	r.Response = append([]byte(nil), d.Bytes(int(min(d.Uvarint(), maxResponse+1)))...)
	if d.err != nil {
		return KeyRecord{}
	}
	return r
}

// AppendComp appends the encoding of c to b.
func AppendComp(b []byte, c Comp) []byte {
	b = append(b, c.Loser[:]...)
	b = binary.AppendUvarint(b, c.Seq)
	b = binary.AppendUvarint(b, c.Key)
	return binary.AppendUvarint(b, c.Value)
}

// MinCompSize is the fewest bytes an encoded Comp takes.
const MinCompSize = 16 + 3

// Comp reads a compensation.
func (d *Decoder) Comp() Comp {
	c := Comp{Loser: d.Replica(), Seq: d.Uvarint(), Key: d.Uvarint(), Value: d.Uvarint()}
	if d.err != nil {
		return Comp{}
	}
	return c
}
