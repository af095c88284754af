package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
)

// Digest returns this store's version vector: for each replica it has heard
// of, the seq up to which it holds every change of that replica. Its own entry
// is its last committed seq. It takes no lock.
func (s *Store) Digest() map[crdt.ReplicaID]uint64 {
	vv := *s.pubVV.Load()
	d := make(map[crdt.ReplicaID]uint64, len(vv)+1)
	for id, v := range vv {
		d[id] = v
	}
	d[s.replica] = s.pubSeq.Load()
	return d
}

// Seq is this replica's last committed seq.
func (s *Store) Seq() uint64 { return s.pubSeq.Load() }

// publishDigestLocked publishes seq, and vv if it changed, for Digest. The
// caller holds mu for writing.
func (s *Store) publishDigestLocked(vvChanged bool) {
	s.pubSeq.Store(s.seq)
	if vvChanged || s.pubVV.Load() == nil {
		vv := maps.Clone(s.vv)
		s.pubVV.Store(&vv)
	}
}

// SetReplicaInfo records where a replica lives, for per-replica detail.
func (s *Store) SetReplicaInfo(info ReplicaInfo) {
	if !info.ID.IsZero() && s.reps.setInfo(info) {
		s.kickCheckpoint()
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

// EntriesSince returns the entries of origin with a seq above after, in seq
// order, stopping once about maxBytes are gathered. The entries of one seq are
// never split across chunks.
//
// One chunk alone proves nothing about coverage: a slot whose entry moved
// past Next since it changed in (After, Next] is in no chunk up to Next. A
// chain of chunks does: a receiver that merges chunks from After = a, each
// asked from the previous one's Next, through a Done chunk, holds every
// change of origin in (a, T], T the smallest Top of the chain. (A change up
// to T was here when the first chunk was read; its slot's entry then had a
// seq above a and only moves up, so some chunk of the chain took it.)
func (s *Store) EntriesSince(origin crdt.ReplicaID, after uint64, maxBytes int) (Chunk, error) {
	c := Chunk{Origin: origin, After: after}
	// mem first: a slot that leaves mem after this is in state.db by then.
	var fromMem []crdt.Delta
	inMem := make(map[crdt.Slot]bool)
	s.mu.RLock()
	top := s.vv[origin]
	if origin == s.replica {
		top = s.seq
	}
	for slot, g := range s.mem {
		if e, ok := g.Get(origin); ok {
			inMem[slot] = true
			if e.Seq > after {
				fromMem = append(fromMem, crdt.Delta{Slot: slot, Entry: e})
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(fromMem, func(a, b crdt.Delta) int {
		switch {
		case a.Entry.Seq < b.Entry.Seq:
			return -1
		case a.Entry.Seq > b.Entry.Seq:
			return 1
		}
		return a.Slot.Compare(b.Slot)
	})

	size := 0
	lastSeq := after
	full := func(seq uint64) bool { return size >= maxBytes && seq > lastSeq }
	take := func(d crdt.Delta) {
		c.Deltas = append(c.Deltas, d)
		size += deltaSize(d)
		lastSeq = d.Entry.Seq
	}
	exhausted := true
	idx, known := s.reps.table().lookup(origin)
	err := s.state.View(func(tx *bolt.Tx) error {
		if !known {
			for _, d := range fromMem {
				if full(d.Entry.Seq) {
					exhausted = false
					break
				}
				take(d)
			}
			return nil
		}
		prefix := binary.BigEndian.AppendUint32(nil, idx)
		cur := tx.Bucket(bucketSeqIdx).Cursor()
		k, _ := cur.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), after+1))
		mi := 0
		for {
			// Next from state.db, skipping slots that mem supersedes.
			var dbDelta crdt.Delta
			dbOK := false
			for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
				_, seq, slot, err := parseSeqIdxKey(k)
				if err != nil {
					return err
				}
				if inMem[slot] {
					continue
				}
				e, ok, err := s.storedEntry(tx, slot, idx, origin)
				if err != nil {
					return err
				}
				if !ok || e.Seq != seq {
					continue // the index lags the slot; the slot's own seq is found elsewhere
				}
				dbDelta, dbOK = crdt.Delta{Slot: slot, Entry: e}, true
				break
			}
			memOK := mi < len(fromMem)
			if !dbOK && !memOK {
				return nil
			}
			next := dbDelta
			if !dbOK || (memOK && fromMem[mi].Entry.Seq <= dbDelta.Entry.Seq) {
				next = fromMem[mi]
				mi++
			} else {
				k, _ = cur.Next()
			}
			if full(next.Entry.Seq) {
				exhausted = false
				return nil
			}
			take(next)
		}
	})
	if err != nil {
		return Chunk{}, fmt.Errorf("entries of %s after %d: %w", origin, after, err)
	}
	c.Next, c.Done, c.Top = lastSeq, exhausted, top
	if exhausted {
		c.Next = max(lastSeq, top)
	}
	if err := s.addKeyRecords(&c, maxBytes-size); err != nil {
		return Chunk{}, fmt.Errorf("key records of %s after %d: %w", origin, after, err)
	}
	s.mu.RLock()
	for _, d := range c.Deltas {
		for _, cp := range s.comps[d.Slot].Of(origin) {
			c.Comps = append(c.Comps, crdt.CompDelta{Slot: d.Slot, Comp: cp})
		}
	}
	s.mu.RUnlock()
	return c, nil
}

// addKeyRecords adds to c the records of c.Origin with a seq in (c.After,
// c.Next]. If they take more than room bytes, it ends the chunk earlier, at
// the last seq whose records fit (at least one seq's), and drops the entries
// past it: the chunk still holds every entry and record in (After, Next].
func (s *Store) addKeyRecords(c *Chunk, room int) error {
	if c.Next <= c.After {
		return nil
	}
	var recs []crdt.KeyRecord
	s.mu.RLock()
	for _, rs := range s.idem {
		for _, r := range rs {
			if r.Origin == c.Origin && r.Seq > c.After && r.Seq <= c.Next {
				recs = append(recs, r)
			}
		}
	}
	s.mu.RUnlock()
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
			for _, d := range c.Deltas {
				if d.Entry.Seq <= cut {
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

// storedEntry reads origin's entry of slot from state.db.
func (s *Store) storedEntry(tx *bolt.Tx, slot crdt.Slot, idx uint32, origin crdt.ReplicaID) (crdt.Entry, bool, error) {
	b, key := tx.Bucket(bucketTotals), []byte(slot.Name)
	if !slot.IsTotal() {
		b, key = tx.Bucket(bucketWindows), windowKey(nil, slot.Name, slot.Res, slot.Start)
	}
	v := b.Get(key)
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
