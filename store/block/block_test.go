package block_test

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/store/block"
)

type cell struct {
	replica uint32
	window  int
}

// model is the plain map of windows the block is checked against, with each
// replica's column seq: the largest seq it held since it last had no entry.
type model struct {
	w   map[cell]block.Entry
	seq map[uint32]uint64
}

func newModel() model { return model{map[cell]block.Entry{}, map[uint32]uint64{}} }

func (m model) raise(c cell, e block.Entry) bool {
	cur, ok := m.w[c]
	if ok && (cur.Value > e.Value || (cur.Value == e.Value && cur.Seq >= e.Seq)) {
		return false
	}
	m.w[c] = e
	m.seq[c.replica] = max(m.seq[c.replica], e.Seq)
	return true
}

func (m model) dropBefore(i int) {
	for c := range m.w {
		if c.window < i {
			delete(m.w, c)
		}
	}
	for r := range m.seq {
		empty := true
		for c := range m.w {
			if c.replica == r {
				empty = false
			}
		}
		if empty {
			delete(m.seq, r)
		}
	}
}

// check compares every read of b with the model.
func (m model) check(t *rapid.T, b *block.Block, replicas []uint32) {
	for _, r := range replicas {
		any := false
		for i := 0; i < block.Width; i++ {
			want, wok := m.w[cell{r, i}]
			got, gok := b.Get(r, i)
			if wok != gok || want != got {
				t.Fatalf("replica %d window %d: got %+v %v, want %+v %v", r, i, got, gok, want, wok)
			}
			if wok {
				any = true
				if want.Seq > m.seq[r] {
					t.Fatalf("model: seq %d above its column's %d", want.Seq, m.seq[r])
				}
			}
		}
		c := b.Column(r)
		if (c != nil) != any {
			t.Fatalf("replica %d: column %v, model has entries %v", r, c != nil, any)
		}
		if c != nil && c.Seq != m.seq[r] {
			t.Fatalf("replica %d: column seq %d, want %d", r, c.Seq, m.seq[r])
		}
	}
	for i := 0; i < block.Width; i++ {
		var sum uint64
		has := false
		for _, r := range replicas {
			if e, ok := m.w[cell{r, i}]; ok {
				has = true
				if sum > math.MaxUint64-e.Value {
					sum = math.MaxUint64
				} else {
					sum += e.Value
				}
			}
		}
		if b.Sum(i) != sum || b.Has(i) != has {
			t.Fatalf("window %d: sum %d has %v, want %d %v", i, b.Sum(i), b.Has(i), sum, has)
		}
	}
	for k := 1; k < len(b.Columns); k++ {
		if b.Columns[k-1].Replica >= b.Columns[k].Replica {
			t.Fatalf("columns out of order: %d then %d", b.Columns[k-1].Replica, b.Columns[k].Replica)
		}
	}
}

// TestBlock_Model runs random raises, merges, expiries and encode/decode
// round trips on a block and on a plain map of windows, and compares every
// read after each step.
func TestBlock_Model(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		replicas := []uint32{0, 1, 7, 300, math.MaxUint32}
		genReplica := rapid.SampledFrom(replicas)
		genWindow := rapid.IntRange(0, block.Width-1)
		genValue := rapid.OneOf(rapid.Uint64Range(0, 1000), rapid.Uint64())
		genSeq := rapid.OneOf(rapid.Uint64Range(0, 100_000), rapid.Uint64())

		var b block.Block
		m := newModel()
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for s := 0; s < steps; s++ {
			switch rapid.IntRange(0, 9).Draw(t, "op") {
			case 0, 1, 2, 3, 4:
				c := cell{genReplica.Draw(t, "replica"), genWindow.Draw(t, "window")}
				e := block.Entry{Value: genValue.Draw(t, "value"), Seq: genSeq.Draw(t, "seq")}
				if got, want := b.Raise(c.replica, c.window, e), m.raise(c, e); got != want {
					t.Fatalf("raise %+v %+v: changed %v, model %v", c, e, got, want)
				}
			case 5:
				// A merge of another block: every entry of o raised into b.
				var o block.Block
				om := newModel()
				for n := rapid.IntRange(0, 20).Draw(t, "n"); n > 0; n-- {
					c := cell{genReplica.Draw(t, "replica"), genWindow.Draw(t, "window")}
					e := block.Entry{Value: genValue.Draw(t, "value"), Seq: genSeq.Draw(t, "seq")}
					o.Raise(c.replica, c.window, e)
					om.raise(c, e)
				}
				for _, c := range o.Columns {
					for i := 0; i < block.Width; i++ {
						if c.Present&(1<<uint(i)) != 0 {
							b.Raise(c.Replica, i, c.Entries[i])
							m.raise(cell{c.Replica, i}, c.Entries[i])
						}
					}
				}
			case 6:
				i := rapid.IntRange(0, block.Width+1).Draw(t, "expire before")
				b.DropBefore(i)
				m.dropBefore(i)
			default:
				enc := block.Append(nil, &b)
				var d block.Block
				if err := block.Decode(enc, &d); err != nil {
					t.Fatalf("decode of an encoded block: %v", err)
				}
				if re := block.Append(nil, &d); !bytes.Equal(re, enc) {
					t.Fatalf("re-encoding differs:\n%x\n%x", re, enc)
				}
				b = d
			}
			m.check(t, &b, replicas)
		}
	})
}

// TestBlock_Size pins what the layout promises: a single-replica window of
// live traffic (neighbouring seqs, small values) costs a few bytes.
func TestBlock_Size(t *testing.T) {
	var b block.Block
	for i := 0; i < block.Width; i++ {
		b.Raise(3, i, block.Entry{Value: uint64(50 + i), Seq: uint64(10_000 + 900*i)})
	}
	enc := block.Append(nil, &b)
	// 1 (columns) + 1 (index) + 8 (bitmap) + 3 (max seq) + 64 × 1 (values)
	// + 1 (the last window's seq is the max) + 63 × 2 (differences of 900,
	// zigzagged: 1,800): 3.2 bytes a window.
	if want := 1 + 1 + 8 + 3 + 64 + 1 + 63*2; len(enc) != want {
		t.Fatalf("encoded %d bytes, want %d", len(enc), want)
	}
}

func TestBlock_DecodeRefuses(t *testing.T) {
	var b block.Block
	b.Raise(1, 0, block.Entry{Value: 5, Seq: 9})
	b.Raise(1, 3, block.Entry{Value: 6, Seq: 4})
	b.Raise(2, 63, block.Entry{Value: 7, Seq: 12})
	good := block.Append(nil, &b)
	var d block.Block
	if err := block.Decode(good, &d); err != nil {
		t.Fatalf("good block: %v", err)
	}
	twice := block.Block{Columns: []block.Column{b.Columns[0], b.Columns[0]}}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		// one column: index 0, no window present, max seq 0
		"empty column":  {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"huge count":    {0xff, 0xff, 0xff, 0x0f},
		"columns equal": block.Append(nil, &twice),
		// one column, window 0 present, column seq 5, value 1, seq 5 − (−1) = 6
		"seq above column's": {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 1, 1},
	} {
		if err := block.Decode(bad, &d); !errors.Is(err, block.ErrMalformed) {
			t.Errorf("%s (%x): err %v, want ErrMalformed", name, bad, err)
		}
	}
}

// FuzzDecode: no input makes Decode panic, and what it accepts encodes to
// bytes that decode to the same block.
func FuzzDecode(f *testing.F) {
	var b block.Block
	b.Raise(0, 5, block.Entry{Value: 1, Seq: 1})
	b.Raise(4, 60, block.Entry{Value: 1 << 40, Seq: 77})
	f.Add(block.Append(nil, &b))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		var d block.Block
		if block.Decode(in, &d) != nil {
			return
		}
		enc := block.Append(nil, &d)
		var d2 block.Block
		if err := block.Decode(enc, &d2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !bytes.Equal(block.Append(nil, &d2), enc) {
			t.Fatal("not stable")
		}
	})
}
