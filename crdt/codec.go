package crdt

import (
	"encoding/binary"
	"math"
)

// The binary encodings below are shared by the journal (package store) and the
// gossip messages (package gossip): varints for numbers, length-prefixed names,
// raw 16-byte replica IDs. They carry no version byte of their own; the
// enclosing record or message has one.

// AppendSlot appends the encoding of s to b: its name, then its window.
func AppendSlot(b []byte, s Slot) []byte {
	return AppendWindowOf(AppendName(b, s.Name), s)
}

// AppendName appends the encoding of a counter name to b, as Decoder.Name
// reads it.
func AppendName(b []byte, name string) []byte {
	b = binary.AppendUvarint(b, uint64(len(name)))
	return append(b, name...)
}

// AppendWindowOf appends the encoding of s's resolution and start to b, as
// Decoder.SlotOf reads them.
func AppendWindowOf(b []byte, s Slot) []byte {
	b = binary.AppendUvarint(b, uint64(s.Res))
	return binary.AppendUvarint(b, uint64(s.Start))
}

// AppendEntry appends the encoding of e to b.
func AppendEntry(b []byte, e Entry) []byte {
	b = append(b, e.Replica[:]...)
	b = binary.AppendUvarint(b, e.Value)
	return binary.AppendUvarint(b, e.Seq)
}

// AppendDelta appends the encoding of d to b.
func AppendDelta(b []byte, d Delta) []byte {
	return AppendEntry(AppendSlot(b, d.Slot), d.Entry)
}

// Decoder reads the encodings above from a byte slice. The first error sticks:
// later reads return zero values, and Err reports it. A Decoder never panics and
// never allocates more than the input it was given justifies.
type Decoder struct {
	b   []byte
	err error
	// name is the last valid counter name read: a message lists a
	// counter's slots one after another, and they share one string.
	name string
}

// NewDecoder returns a Decoder over b. It does not copy b; strings it returns
// are copies.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

// Err is the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Len is the number of bytes not yet read.
func (d *Decoder) Len() int { return len(d.b) }

// Fail records err as the decoder's error unless it has one.
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.Fail(ErrTruncated)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// Uvarint reads an unsigned varint.
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		if n == 0 {
			d.Fail(ErrTruncated)
		} else {
			d.Fail(ErrMalformed)
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Varint reads a signed varint.
func (d *Decoder) Varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		if n == 0 {
			d.Fail(ErrTruncated)
		} else {
			d.Fail(ErrMalformed)
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

// Count reads a uvarint that counts items of at least minSize bytes each, and
// refuses a count the remaining input cannot hold, so that a hostile count
// cannot make the caller allocate.
func (d *Decoder) Count(minSize int) int {
	n := d.Uvarint()
	if d.err != nil {
		return 0
	}
	if minSize < 1 {
		minSize = 1
	}
	if n > uint64(len(d.b)/minSize) {
		d.Fail(ErrMalformed)
		return 0
	}
	return int(n)
}

// Bytes reads n raw bytes. The result aliases the input.
func (d *Decoder) Bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.Fail(ErrTruncated)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// String reads a uvarint length and that many bytes, refusing more than max.
func (d *Decoder) String(max int) string { return string(d.lenBytes(max)) }

// lenBytes reads a uvarint length of at most max and that many bytes. The
// result aliases the input.
func (d *Decoder) lenBytes(max int) []byte {
	n := d.Uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.Fail(ErrMalformed)
		return nil
	}
	return d.Bytes(int(n))
}

// Replica reads a 16-byte replica ID.
func (d *Decoder) Replica() ReplicaID {
	var id ReplicaID
	copy(id[:], d.Bytes(len(id)))
	return id
}

// Slot reads a slot and checks that it is well formed.
func (d *Decoder) Slot() Slot {
	name := d.Name()
	if d.err != nil {
		return Slot{}
	}
	return d.SlotOf(name)
}

// Name reads a counter name and checks that it is valid. A name equal to the
// last one read is returned as that same string, unchecked again: a message
// lists a counter's slots one after another.
func (d *Decoder) Name() string {
	b := d.lenBytes(MaxNameLen)
	switch {
	case d.err != nil:
		return ""
	case d.name != "" && string(b) == d.name:
		return d.name
	}
	name := string(b)
	if !ValidName(name) {
		d.Fail(ErrMalformed)
		return ""
	}
	d.name = name
	return name
}

// SlotOf reads the resolution and start of a slot of counter name, a name
// that Name returned, and checks that they and the name are well formed.
func (d *Decoder) SlotOf(name string) Slot {
	if name != d.name && !ValidName(name) {
		d.Fail(ErrMalformed)
		return Slot{}
	}
	res := d.Uvarint()
	start := d.Uvarint()
	if d.err != nil {
		return Slot{}
	}
	if res > math.MaxUint32 || start > math.MaxInt64 {
		d.Fail(ErrMalformed)
		return Slot{}
	}
	s := Slot{Name: name, Res: uint32(res), Start: int64(start)}
	if !s.validWindow() {
		d.Fail(ErrMalformed)
		return Slot{}
	}
	return s
}

// Entry reads an entry.
func (d *Decoder) Entry() Entry {
	e := Entry{Replica: d.Replica()}
	e.Value = d.Uvarint()
	e.Seq = d.Uvarint()
	if d.err != nil {
		return Entry{}
	}
	return e
}

// Delta reads a delta.
func (d *Decoder) Delta() Delta {
	s := d.Slot()
	e := d.Entry()
	if d.err != nil {
		return Delta{}
	}
	return Delta{Slot: s, Entry: e}
}

// MinSlotSize and MinEntrySize are the fewest bytes an encoded slot or entry
// takes, for Count.
const (
	MinSlotSize  = 1 + 1 + 1 + 1
	MinEntrySize = 16 + 1 + 1
	MinDeltaSize = MinSlotSize + MinEntrySize
)
