// Package block is the encoding of a block: the entries of Width consecutive
// windows of one counter and resolution, kept under one state.db key (schema
// 3; see docs/ARCHITECTURE.md, "Storage engine v2").
//
// A block holds one column per replica that has an entry in it, sorted by the
// replica's local index. A column is a presence bitmap, then the values of
// the windows present, then their seqs, each as the zigzag difference from
// the previous one (the first from the column's max seq):
//
//	uvarint columns
//	per column:  uvarint local index
//	             uint64 BE presence bitmap (bit i: window i has an entry)
//	             uvarint the column's seq (see Column.Seq)
//	             per present window, in order: uvarint value
//	             per present window, last first: varint (previous seq − seq),
//	                                             the first from the column's seq
//
// Seqs go last window first because the last window is usually the newest:
// its difference from the column's seq is then 0, and those of the windows
// before it are the few commits between them. Differences are taken modulo
// 2^64, so any seq up to the column's has one.
//
// The package is pure: no I/O, no clock. Its merge rule is crdt's: of two
// entries of one replica and window, the one with the larger (value, seq).
package block

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// Width is the number of windows a block spans.
const Width = 64

// ErrMalformed is returned by Decode for bytes that are not a block.
var ErrMalformed = errors.New("block: malformed")

// Entry is one replica's entry of one window.
type Entry struct {
	Value, Seq uint64
}

// covers reports whether e makes o redundant: crdt.Entry.Covers.
func (e Entry) covers(o Entry) bool {
	return e.Value > o.Value || (e.Value == o.Value && e.Seq >= o.Seq)
}

// Column is one replica's entries in a block. Entries[i] means something
// only when bit i of Present is set.
type Column struct {
	Replica uint32 // the replica's local index
	Present uint64
	// Seq is the largest seq any entry of the column has had since the
	// column was created: at least every present entry's seq, and never
	// lowered, not even when DropBefore removes the entry that had it. The
	// seq index files the column under it, and anti-entropy relies on a
	// column's place in that index only ever moving up.
	Seq     uint64
	Entries [Width]Entry
}

// Block is a decoded block. The zero value is an empty block.
type Block struct {
	Columns []Column // sorted by Replica, none empty
}

// Reset empties b, keeping its memory.
func (b *Block) Reset() { b.Columns = b.Columns[:0] }

// Empty reports whether b holds no entry.
func (b *Block) Empty() bool { return len(b.Columns) == 0 }

// find returns the position of replica's column, or where it would go.
func (b *Block) find(replica uint32) (int, bool) {
	lo, hi := 0, len(b.Columns)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if b.Columns[m].Replica < replica {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(b.Columns) && b.Columns[lo].Replica == replica
}

// Column returns replica's column, or nil.
func (b *Block) Column(replica uint32) *Column {
	if i, ok := b.find(replica); ok {
		return &b.Columns[i]
	}
	return nil
}

// Get returns replica's entry of window i.
func (b *Block) Get(replica uint32, i int) (Entry, bool) {
	c := b.Column(replica)
	if c == nil || c.Present&(1<<uint(i)) == 0 {
		return Entry{}, false
	}
	return c.Entries[i], true
}

// Raise merges e into replica's entry of window i and reports whether it
// changed anything.
func (b *Block) Raise(replica uint32, i int, e Entry) bool {
	if i < 0 || i >= Width {
		panic("block: window out of range")
	}
	k, ok := b.find(replica)
	if !ok {
		b.Columns = append(b.Columns, Column{})
		copy(b.Columns[k+1:], b.Columns[k:])
		b.Columns[k] = Column{Replica: replica}
	}
	c := &b.Columns[k]
	bit := uint64(1) << uint(i)
	if c.Present&bit != 0 && c.Entries[i].covers(e) {
		return false
	}
	c.Present |= bit
	c.Entries[i] = e
	c.Seq = max(c.Seq, e.Seq)
	return true
}

// Sum is the value of window i: the sum of its entries, saturating at the
// largest uint64 as crdt.GCounter.Value does.
func (b *Block) Sum(i int) uint64 {
	var sum uint64
	bit := uint64(1) << uint(i)
	for k := range b.Columns {
		c := &b.Columns[k]
		if c.Present&bit == 0 {
			continue
		}
		s, carry := bits.Add64(sum, c.Entries[i].Value, 0)
		if carry != 0 {
			return ^uint64(0)
		}
		sum = s
	}
	return sum
}

// Has reports whether window i has an entry of any replica.
func (b *Block) Has(i int) bool {
	bit := uint64(1) << uint(i)
	for k := range b.Columns {
		if b.Columns[k].Present&bit != 0 {
			return true
		}
	}
	return false
}

// DropBefore removes the entries of windows before i (expired ones), and the
// columns left empty.
func (b *Block) DropBefore(i int) {
	if i <= 0 {
		return
	}
	keep := ^uint64(0)
	if i < Width {
		keep <<= uint(i)
	} else {
		keep = 0
	}
	out := b.Columns[:0]
	for _, c := range b.Columns {
		c.Present &= keep
		if c.Present != 0 {
			out = append(out, c)
		}
	}
	b.Columns = out
}

// Append appends b's encoding to dst.
func Append(dst []byte, b *Block) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b.Columns)))
	for k := range b.Columns {
		c := &b.Columns[k]
		dst = binary.AppendUvarint(dst, uint64(c.Replica))
		dst = binary.BigEndian.AppendUint64(dst, c.Present)
		prev := c.Seq
		dst = binary.AppendUvarint(dst, prev)
		for p := c.Present; p != 0; p &= p - 1 {
			dst = binary.AppendUvarint(dst, c.Entries[bits.TrailingZeros64(p)].Value)
		}
		for p := c.Present; p != 0; {
			i := 63 - bits.LeadingZeros64(p)
			p &^= 1 << uint(i)
			seq := c.Entries[i].Seq
			dst = binary.AppendVarint(dst, int64(prev-seq))
			prev = seq
		}
	}
	return dst
}

// Decode decodes src into b, reusing b's memory. It refuses what is not a
// block: a truncated one, columns out of order or empty, an entry's seq above
// its column's, trailing bytes.
func Decode(src []byte, b *Block) error {
	b.Reset()
	n, src, ok := uvarint(src)
	// A column takes at least 1 + 8 + 1 + 2 bytes.
	if !ok || n > uint64(len(src)/12) {
		return ErrMalformed
	}
	for k := uint64(0); k < n; k++ {
		var rep uint64
		if rep, src, ok = uvarint(src); !ok || rep > 1<<32-1 {
			return ErrMalformed
		}
		if len(src) < 8 {
			return ErrMalformed
		}
		present := binary.BigEndian.Uint64(src)
		src = src[8:]
		if present == 0 {
			return ErrMalformed
		}
		if l := len(b.Columns); l > 0 && b.Columns[l-1].Replica >= uint32(rep) {
			return ErrMalformed
		}
		b.Columns = append(b.Columns, Column{Replica: uint32(rep), Present: present})
		c := &b.Columns[len(b.Columns)-1]
		if c.Seq, src, ok = uvarint(src); !ok {
			return ErrMalformed
		}
		for p := present; p != 0; p &= p - 1 {
			if c.Entries[bits.TrailingZeros64(p)].Value, src, ok = uvarint(src); !ok {
				return ErrMalformed
			}
		}
		prev := c.Seq
		for p := present; p != 0; {
			i := 63 - bits.LeadingZeros64(p)
			p &^= 1 << uint(i)
			d, m := binary.Varint(src)
			if m <= 0 {
				return ErrMalformed
			}
			src = src[m:]
			seq := prev - uint64(d)
			if seq > c.Seq {
				return ErrMalformed
			}
			c.Entries[i].Seq = seq
			prev = seq
		}
	}
	if len(src) != 0 {
		return ErrMalformed
	}
	return nil
}

func uvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}
