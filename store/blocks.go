package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
)

// Schema 3 keeps windows in blocks of block.Width consecutive windows of one
// counter and resolution (docs/ARCHITECTURE.md, "Storage engine v2").

// blockSpan is how many seconds a block of res-second windows spans.
func blockSpan(res uint32) int64 { return int64(res) * block.Width }

// blockOf returns the start of the block holding the window of res seconds
// starting at start, and the window's place in it.
func blockOf(res uint32, start int64) (bstart int64, i int) {
	span := blockSpan(res)
	bstart = start - start%span
	if start%span < 0 {
		bstart -= span
	}
	return bstart, int((start - bstart) / int64(res))
}

// sameBlock reports whether windows a and b are in one block.
func sameBlock(a, b crdt.Slot) bool {
	if a.IsTotal() || b.IsTotal() || a.Name != b.Name || a.Res != b.Res {
		return false
	}
	ab, _ := blockOf(a.Res, a.Start)
	bb, _ := blockOf(b.Res, b.Start)
	return ab == bb
}

// blockRef names a block in the seq index: the slot of its first window.
func blockRef(name string, res uint32, bstart int64) crdt.Slot {
	return crdt.Slot{Name: name, Res: res, Start: bstart}
}

// blockKey is the blocks-bucket key of a block: the layout of a windows key,
// with the block's start.
func blockKey(dst []byte, name string, res uint32, bstart int64) []byte {
	return windowKey(dst, name, res, bstart)
}

// encodeBlock is a block's state.db value under key, with its checksum.
func encodeBlock(key []byte, b *block.Block) []byte {
	v := block.Append(nil, b)
	return appendSum(key, v, 0)
}

// decodeBlock checks and decodes the state.db block v under key into b.
func (s *Store) decodeBlock(key, v []byte, b *block.Block) error {
	if len(v) < 4 {
		return s.state.damaged("block %s: value of %d bytes", counterLabel(key), len(v))
	}
	body, ok := splitSum(key, v)
	if !ok {
		return s.state.damaged("block %s: checksum mismatch", counterLabel(key))
	}
	if err := block.Decode(body, b); err != nil {
		return s.state.damaged("block %s: %v", counterLabel(key), err)
	}
	return nil
}

// blockWindow returns the counter of window i of b.
func (s *Store) blockWindow(b *block.Block, i int, t *replicaTable) (*crdt.GCounter, error) {
	g := &crdt.GCounter{}
	bit := uint64(1) << uint(i)
	for k := range b.Columns {
		c := &b.Columns[k]
		if c.Present&bit == 0 {
			continue
		}
		id, ok := t.id(c.Replica)
		if !ok {
			return nil, fmt.Errorf("unknown replica index %d: %w", c.Replica, ErrIncompatible)
		}
		g.MergeEntry(crdt.Entry{Replica: id, Value: c.Entries[i].Value, Seq: c.Entries[i].Seq})
	}
	return g, nil
}

// loadWindow reads the counter of window slot from state.db; a missing window
// is empty. tx must be guarded (see boltDB.guard).
func (s *Store) loadWindow(tx *bolt.Tx, slot crdt.Slot) (*crdt.GCounter, error) {
	bstart, i := blockOf(slot.Res, slot.Start)
	var kb [160]byte
	key := blockKey(kb[:0], slot.Name, slot.Res, bstart)
	v := tx.Bucket(bucketBlocks).Get(key)
	if v == nil {
		return &crdt.GCounter{}, nil
	}
	var b block.Block
	if err := s.decodeBlock(key, v, &b); err != nil {
		return nil, err
	}
	return s.blockWindow(&b, i, s.reps.table())
}

// eachStoredWindow calls fn for each retained window of counter name at
// resolution res starting in [from, to) that state.db holds, in order, with
// its block and place in it. fn must not keep b.
func (s *Store) eachStoredWindow(tx *bolt.Tx, name string, res uint32, from, to int64, now time.Time, fn func(start int64, b *block.Block, i int) error) error {
	if from >= to {
		return nil
	}
	prefix := windowPrefix(name, res)
	bfrom, _ := blockOf(res, from)
	var b block.Block
	c := tx.Bucket(bucketBlocks).Cursor()
	for k, v := c.Seek(blockKey(nil, name, res, bfrom)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		bstart := int64(binary.BigEndian.Uint64(k[len(prefix):]))
		if bstart >= to {
			break
		}
		if err := s.decodeBlock(k, v, &b); err != nil {
			return err
		}
		var present uint64
		for _, col := range b.Columns {
			present |= col.Present
		}
		for p := present; p != 0; p &= p - 1 {
			i := bits.TrailingZeros64(p)
			start := bstart + int64(i)*int64(res)
			if start < from || start >= to || !s.cfg.Windows.Retained(res, start, now) {
				continue
			}
			if err := fn(start, &b, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// blockWriter folds windows into their blocks during a checkpoint: the
// windows of one block come one after another (slots are written in order),
// so each block is read, changed and written once.
type blockWriter struct {
	w       *slotWriter
	open    bool
	name    string
	res     uint32
	bstart  int64
	key     []byte
	existed bool
	b       block.Block
	oldSeqs map[uint32]uint64 // column seqs as state.db had them
}

// add merges window slot's counter into its block, opening the block first.
func (bw *blockWriter) add(slot crdt.Slot, g *crdt.GCounter) error {
	bstart, i := blockOf(slot.Res, slot.Start)
	if !bw.open || bw.name != slot.Name || bw.res != slot.Res || bw.bstart != bstart {
		if err := bw.finish(); err != nil {
			return err
		}
		if err := bw.load(slot.Name, slot.Res, bstart); err != nil {
			return err
		}
	}
	s := bw.w.s
	g.Each(func(e crdt.Entry) {
		bw.b.Raise(s.reps.ensure(e.Replica), i, block.Entry{Value: e.Value, Seq: e.Seq})
	})
	return nil
}

func (bw *blockWriter) load(name string, res uint32, bstart int64) error {
	bw.open, bw.name, bw.res, bw.bstart = true, name, res, bstart
	bw.key = blockKey(bw.key[:0], name, res, bstart)
	clear(bw.oldSeqs)
	if bw.oldSeqs == nil {
		bw.oldSeqs = make(map[uint32]uint64)
	}
	v := bw.w.blocks.Get(bw.key)
	bw.existed = v != nil
	if v == nil {
		bw.b.Reset()
		return nil
	}
	if err := bw.w.s.decodeBlock(bw.key, v, &bw.b); err != nil {
		return err
	}
	for _, c := range bw.b.Columns {
		bw.oldSeqs[c.Replica] = c.Seq
	}
	return nil
}

// finish writes the open block, without the windows past retention, and
// queues its index changes.
func (bw *blockWriter) finish() error {
	if !bw.open {
		return nil
	}
	bw.open = false
	w, s := bw.w, bw.w.s
	// Windows before the cutoff are past retention: drop them.
	first := 0
	for first < block.Width && !s.cfg.Windows.Retained(bw.res, bw.bstart+int64(first)*int64(bw.res), w.now) {
		first++
	}
	bw.b.DropBefore(first)
	ref := blockRef(bw.name, bw.res, bw.bstart)
	for _, c := range bw.b.Columns {
		old, had := bw.oldSeqs[c.Replica]
		if had && old == c.Seq {
			continue
		}
		if had {
			w.seqDel = append(w.seqDel, seqIdxKey(c.Replica, old, ref))
		}
		w.seqPut = append(w.seqPut, seqIdxKey(c.Replica, c.Seq, ref))
	}
	for idx, old := range bw.oldSeqs {
		if bw.b.Column(idx) == nil {
			w.seqDel = append(w.seqDel, seqIdxKey(idx, old, ref))
		}
	}
	key := bytes.Clone(bw.key)
	if bw.b.Empty() {
		if !bw.existed {
			return nil
		}
		w.expDel = append(w.expDel, expiryKey(bw.res, bw.bstart+blockSpan(bw.res), bw.name))
		return w.blocks.Delete(key)
	}
	if !bw.existed {
		w.expPut = append(w.expPut, expiryKey(bw.res, bw.bstart+blockSpan(bw.res), bw.name))
	}
	return w.blocks.Put(key, encodeBlock(key, &bw.b))
}
