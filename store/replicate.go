package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
)

// Digest returns this store's version vector: for each replica it has heard
// of, the seq up to which it holds every change of that replica. Its own entry
// is its last committed seq. It takes no lock.
func (s *Store) Digest() map[crdt.ReplicaID]uint64 {
	vv := s.mem.publishedVV()
	d := make(map[crdt.ReplicaID]uint64, len(vv)+1)
	for id, v := range vv {
		d[id] = v
	}
	d[s.replica] = s.mem.publishedSeq()
	return d
}

// Seq is this replica's last committed seq.
func (s *Store) Seq() uint64 { return s.mem.publishedSeq() }

// SetReplicaInfo records where a replica lives, for per-replica detail.
func (s *Store) SetReplicaInfo(info ReplicaInfo) {
	if !info.ID.IsZero() && s.reps.setInfo(info) {
		s.ckpt.kickNow()
	}
}

// ReplicaInfo returns what this store knows of replica id.
func (s *Store) ReplicaInfo(id crdt.ReplicaID) (ReplicaInfo, bool) {
	t := s.reps.table()
	i, ok := t.lookup(id)
	if !ok {
		return ReplicaInfo{ID: id}, false
	}
	return t.infos[i], true
}

// Chunk is a piece of one replica's entries, in seq order, for a peer that is
// behind.
type Chunk struct {
	Origin crdt.ReplicaID
	// After is the cursor the chunk was asked from; Next is the cursor to ask
	// the following chunk from.
	After, Next uint64
	// Deltas holds the current entry of Origin of every slot whose entry has a
	// seq in (After, Next].
	Deltas []crdt.Delta
	// Top is this store's version vector entry for Origin as the chunk was
	// read: the store then held every change of Origin up to Top.
	Top uint64
	// Done is true when no entry of Origin has a seq above Next.
	Done bool
	// Records holds Origin's key records with a seq in (After, Next], and
	// Comps the compensations of Origin's copies in the slots of Deltas: a
	// chain that holds Origin's entries holds its records and the
	// corrections of its duplicates too.
	Records []crdt.KeyRecord
	Comps   []crdt.CompDelta
}

// deltaSize is roughly what one delta costs on the wire.
func deltaSize(d crdt.Delta) int { return len(d.Slot.Name) + 28 }

// EntriesSince returns the first chunk of a chain of origin's entries after
// after: ChainChunk(origin, after, after, maxBytes).
func (s *Store) EntriesSince(origin crdt.ReplicaID, after uint64, maxBytes int) (Chunk, error) {
	return s.ChainChunk(origin, after, after, maxBytes)
}

// ChainChunk returns a chunk of a chain that pulls origin's entries with a
// seq above base: the one after cursor after, stopping once about maxBytes
// are gathered.
//
// Entries are found through carriers, each at a position: a total's entry
// and a window's entry in mem at the entry's seq, and a block's column of
// origin in state.db at the column's seq (with mem's windows laid over it).
// Every entry has a carrier at or above its seq, and the largest position
// carrying an entry never goes down (a column's seq is never lowered; a
// window that moves between mem and state.db is carried by both meanwhile).
// A chunk visits the carriers with a position in (After, Next], in position
// order, never splitting a position, and takes their entries with a seq
// above base.
//
// One chunk alone proves nothing about coverage. A chain does: a receiver
// that merges chunks from After = base, each asked from the previous one's
// Next with the same base, through a Done chunk, holds every change of
// origin in (base, T], T the smallest Top of the chain. (A change up to T was
// here when the first chunk was read, in an entry with a seq above base; the
// entry's largest carrier position was above the cursor then and only moves
// up, so some chunk of the chain visited it and took the entry.) See
// docs/ARCHITECTURE.md, "Storage engine v2".
func (s *Store) ChainChunk(origin crdt.ReplicaID, base, after uint64, maxBytes int) (Chunk, error) {
	base = min(base, after)
	c := Chunk{Origin: origin, After: after}
	if after == math.MaxUint64 {
		c.Next, c.Done = after, true // nothing can lie above (and after+1 would wrap)
		return c, nil
	}
	// mem first: a slot that leaves mem after this is in state.db by then.
	top, inMem, fromMem := s.mem.carriers(origin, origin == s.replica, after, base)
	slices.SortFunc(fromMem, func(a, b carried) int {
		if a.pos != b.pos {
			return cmp.Compare(a.pos, b.pos)
		}
		return a.d.Slot.Compare(b.d.Slot)
	})

	size := 0
	lastPos := after
	full := func(pos uint64) bool { return size >= maxBytes && pos > lastPos }
	var positions []uint64 // of each delta taken
	take := func(pos uint64, d crdt.Delta) {
		c.Deltas = append(c.Deltas, d)
		positions = append(positions, pos)
		size += deltaSize(d)
		lastPos = pos
	}
	exhausted := true
	idx, known := s.reps.table().lookup(origin)
	err := s.state.View(func(tx *bolt.Tx) error {
		var b block.Block
		var fromDB []crdt.Delta
		// next returns the next carrier in state.db: a total's entry, or a
		// block column's entries laid under mem's windows.
		prefix := binary.BigEndian.AppendUint32(nil, idx)
		var cur *bolt.Cursor
		var k []byte
		if known {
			cur = tx.Bucket(bucketSeqIdx).Cursor()
			k, _ = cur.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), after+1))
		}
		nextDB := func() (uint64, []crdt.Delta, bool, error) {
			for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
				_, seq, ref, err := parseSeqIdxKey(k)
				if err != nil {
					return 0, nil, false, err
				}
				if ref.IsTotal() {
					if inMem[ref] != nil {
						continue
					}
					e, ok, err := s.storedTotalEntry(tx, ref.Name, idx, origin)
					if err != nil {
						return 0, nil, false, err
					}
					if !ok || e.Seq != seq || e.Seq <= base {
						continue // the index lags the total; its own seq is found elsewhere
					}
					k, _ = cur.Next()
					return seq, []crdt.Delta{{Slot: ref, Entry: e}}, true, nil
				}
				key := blockKey(nil, ref.Name, ref.Res, ref.Start)
				v := tx.Bucket(bucketBlocks).Get(key)
				if v == nil {
					continue
				}
				if err := s.decodeBlock(key, v, &b); err != nil {
					return 0, nil, false, err
				}
				col := b.Column(idx)
				if col == nil || col.Seq != seq {
					continue // the index lags the block
				}
				fromDB = fromDB[:0]
				now := s.cfg.Now()
				for i := 0; i < block.Width; i++ {
					slot := crdt.Slot{Name: ref.Name, Res: ref.Res, Start: ref.Start + int64(i)*int64(ref.Res)}
					var e crdt.Entry
					var ok bool
					if g := inMem[slot]; g != nil {
						e, ok = g.Get(origin)
					} else if col.Present&(1<<uint(i)) != 0 {
						e, ok = crdt.Entry{Replica: origin, Value: col.Entries[i].Value, Seq: col.Entries[i].Seq}, true
					}
					if ok && e.Seq > base && s.keep(slot, now) {
						fromDB = append(fromDB, crdt.Delta{Slot: slot, Entry: e})
					}
				}
				if len(fromDB) == 0 {
					continue // nothing above base left, or only expired windows
				}
				k, _ = cur.Next()
				return seq, fromDB, true, nil
			}
			return 0, nil, false, nil
		}
		dbPos, dbDeltas, dbOK, err := nextDB()
		if err != nil {
			return err
		}
		mi := 0
		for dbOK || mi < len(fromMem) {
			if dbOK && (mi == len(fromMem) || dbPos < fromMem[mi].pos) {
				if full(dbPos) {
					exhausted = false
					return nil
				}
				for _, d := range dbDeltas {
					take(dbPos, d)
				}
				if dbPos, dbDeltas, dbOK, err = nextDB(); err != nil {
					return err
				}
				continue
			}
			m := fromMem[mi]
			if full(m.pos) {
				exhausted = false
				return nil
			}
			take(m.pos, m.d)
			mi++
		}
		return nil
	})
	if err != nil {
		return Chunk{}, fmt.Errorf("entries of %s after %d: %w", origin, after, err)
	}
	c.Next, c.Done, c.Top = lastPos, exhausted, top
	if exhausted {
		c.Next = max(lastPos, top)
	}
	if err := s.addKeyRecords(&c, positions, maxBytes-size); err != nil {
		return Chunk{}, fmt.Errorf("key records of %s after %d: %w", origin, after, err)
	}
	c.Comps = s.mem.appendOriginComps(c.Comps, c.Deltas, origin)
	return c, nil
}

// carried is an entry found in mem, at its position (its seq).
type carried struct {
	pos uint64
	d   crdt.Delta
}

// addKeyRecords adds to c the records of c.Origin with a seq in (c.After,
// c.Next]. If they take more than room bytes, it ends the chunk earlier, at
// the last seq whose records fit (at least one seq's), and drops the entries
// whose position (positions[i] for c.Deltas[i]) is past it: the chunk still
// holds every carrier and record in (After, Next].
func (s *Store) addKeyRecords(c *Chunk, positions []uint64, room int) error {
	if c.Next <= c.After {
		return nil
	}
	recs := s.mem.originRecords(c.Origin, c.After, c.Next)
	err := s.state.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketKeySeq).Cursor()
		from, to := keySeqKey(c.Origin, c.After+1, ""), keySeqKey(c.Origin, c.Next+1, "")
		for k, _ := cur.Seek(from); k != nil && bytes.Compare(k, to) < 0; k, _ = cur.Next() {
			if len(k) < 24 {
				return fmt.Errorf("keyseq key %x: %w", k, ErrIncompatible)
			}
			seq, key := binary.BigEndian.Uint64(k[16:]), string(k[24:])
			stored, _, err := s.storedRecords(tx, key, nil)
			if err != nil {
				return err
			}
			for _, r := range stored {
				if r.Origin == c.Origin && r.Seq == seq {
					recs = addRecord(recs, r)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(recs, func(a, b crdt.KeyRecord) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	used := 0
	for i, r := range recs {
		if used >= room && i > 0 && r.Seq > recs[i-1].Seq {
			cut := recs[i-1].Seq
			recs = recs[:i]
			c.Next, c.Done = cut, false
			kept := c.Deltas[:0]
			for i, d := range c.Deltas {
				if positions[i] <= cut {
					kept = append(kept, d)
				}
			}
			c.Deltas = kept
			break
		}
		used += len(crdt.AppendKeyRecord(nil, &r))
	}
	c.Records = recs
	return nil
}

// storedTotalEntry reads origin's entry of counter name's total from
// state.db.
func (s *Store) storedTotalEntry(tx *bolt.Tx, name string, idx uint32, origin crdt.ReplicaID) (crdt.Entry, bool, error) {
	key := []byte(name)
	v := tx.Bucket(bucketTotals).Get(key)
	if v == nil {
		return crdt.Entry{}, false, nil
	}
	var eb [8]storedEntry
	es, err := s.decodeCounter(key, v, eb[:0])
	if err != nil {
		return crdt.Entry{}, false, err
	}
	for _, e := range es {
		if e.idx == idx {
			return crdt.Entry{Replica: origin, Value: e.value, Seq: e.seq}, true, nil
		}
	}
	return crdt.Entry{}, false, nil
}
