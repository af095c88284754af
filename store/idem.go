package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/window"
)

// idemBegin looks req's idempotency key up. If a record of the key is known —
// from this replica or any other — it returns the original response
// (replayed) or ErrIdempotencyMismatch. Otherwise it leaves the key marked in
// flight, so that a concurrent retry here waits for this request instead of
// applying twice; the committer clears the mark once the request is decided.
// The mark is taken before the lookup, so lookups of different keys run in
// parallel rather than one at a time under idemMu.
//
// When the key is not known, the lookup it returns lets the committer skip
// reading state.db again (see idemLookup).
func (s *Store) idemBegin(ctx context.Context, req *Request) (Result, idemLookup, bool, error) {
	key := req.IdempotencyKey
	for {
		s.idemMu.Lock()
		if wait, ok := s.inflight[key]; ok {
			s.idemMu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return Result{}, idemLookup{}, false, ctx.Err()
			}
		}
		s.inflight[key] = make(chan struct{})
		s.idemMu.Unlock()
		break
	}
	recs, look, err := s.lookupIdem(key)
	if err != nil {
		s.idemEnd(key)
		return Result{}, idemLookup{}, false, err
	}
	if len(recs) > 0 {
		s.idemEnd(key)
		w, ok := winnerOf(recs, req.Fingerprint)
		if !ok {
			return Result{}, idemLookup{}, false, ErrIdempotencyMismatch
		}
		s.stats.replays.Add(1)
		return Result{Replayed: true, Response: w.Response}, idemLookup{}, true, nil
	}
	if f := s.cfg.hooks.afterIdemLookup; f != nil {
		f()
	}
	return Result{}, look, false, nil
}

// idemLookup is what lookupIdem learned about state.db: whether it held no
// record of the key at all (expired ones included), as of idemGen gen.
//
// state.db gains records only from mem, at a checkpoint, which moves them
// out of mem and bumps idemGen in one critical section after its write
// transaction committed. So while idemGen is still gen, every record of the
// key in state.db is either one that lookup's read transaction saw or one
// still in mem: if state.db had none, the committer needs to look only in
// mem for records of the key that arrived since.
type idemLookup struct {
	gen        uint64
	storedNone bool
}

func (s *Store) idemEnd(key string) {
	s.idemMu.Lock()
	defer s.idemMu.Unlock()
	if ch, ok := s.inflight[key]; ok {
		delete(s.inflight, key)
		close(ch)
	}
}

// winnerOf returns the record whose response a retry with fingerprint fp
// gets: the winner of the records of that request.
func winnerOf(recs []crdt.KeyRecord, fp [32]byte) (crdt.KeyRecord, bool) {
	var w *crdt.KeyRecord
	for i := range recs {
		if recs[i].Fingerprint == fp && (w == nil || recs[i].Before(w)) {
			w = &recs[i]
		}
	}
	if w == nil {
		return crdt.KeyRecord{}, false
	}
	return *w, true
}

// lookupIdem returns the unexpired records of key in mem and state.db.
func (s *Store) lookupIdem(key string) ([]crdt.KeyRecord, idemLookup, error) {
	now := s.cfg.Now().UnixNano()
	recs, gen := s.mem.lookupRecords(key)
	look := idemLookup{gen: gen}
	err := s.state.View(func(tx *bolt.Tx) error {
		var err error
		recs, look.storedNone, err = s.storedRecords(tx, key, recs)
		return err
	})
	if err != nil {
		return nil, idemLookup{}, fmt.Errorf("look up idempotency key: %w", err)
	}
	out := recs[:0]
	for _, r := range recs {
		if r.Expires > now {
			out = append(out, r)
		}
	}
	return out, look, nil
}

// storedRecords adds to recs the records of key in state.db that recs does
// not hold yet, and reports whether state.db held none.
func (s *Store) storedRecords(tx *bolt.Tx, key string, recs []crdt.KeyRecord) ([]crdt.KeyRecord, bool, error) {
	none := true
	if v := tx.Bucket(bucketKeyRecs).Get([]byte(key)); v != nil {
		none = false
		stored, err := decodeKeyRecords(v)
		if err != nil {
			return nil, false, fmt.Errorf("key %q: %w", key, err)
		}
		for _, r := range stored {
			recs = addRecord(recs, r)
		}
	}
	if v := tx.Bucket(bucketIdem).Get([]byte(key)); v != nil {
		none = false
		r, err := legacyIdemRecord(key, v, s.replica)
		if err != nil {
			return nil, false, err
		}
		recs = addRecord(recs, r)
	}
	return recs, none, nil
}

// retainUntil is when a store lets go of r: one TTL after it expires. Until
// it expires r answers retries; after that it is kept only to settle
// duplicates. A record that loses to r was accepted before r expired, so it
// expires before r is let go: every store that holds a live loser can still
// hold, or be sent, the record it loses to. (Dropping r at its expiry let a
// node that took the loser's copy before the verdict, and never met r while
// it lived, count the request twice for ever, while its peers compensated.)
func retainUntil(r *crdt.KeyRecord) int64 {
	ttl := r.Expires - r.Accepted
	if ttl < 0 || r.Expires > math.MaxInt64-ttl {
		return math.MaxInt64
	}
	return r.Expires + ttl
}

// addRecord adds r to recs unless recs holds that copy already.
func addRecord(recs []crdt.KeyRecord, r crdt.KeyRecord) []crdt.KeyRecord {
	for i := range recs {
		if recs[i].SameCopy(&r) {
			return recs
		}
	}
	return append(recs, r)
}

// legacyIdemRecord reads a record of the idem bucket, written before key
// records replicated: always this replica's.
func legacyIdemRecord(key string, v []byte, replica crdt.ReplicaID) (crdt.KeyRecord, error) {
	if len(v) < 40 {
		return crdt.KeyRecord{}, fmt.Errorf("idempotency record of %d bytes: %w", len(v), ErrIncompatible)
	}
	r := crdt.KeyRecord{Key: key, Origin: replica, Expires: int64(binary.BigEndian.Uint64(v))}
	r.Accepted = r.Expires
	copy(r.Fingerprint[:], v[8:40])
	r.Response = append([]byte(nil), v[40:]...)
	return r, nil
}

// compsOf returns the compensations of a losing record: for each slot it
// raised, what it added there. The slots are those its origin computed: the
// total of each counter, and the windows of each event time as they were at
// the time it was accepted. Nothing but the record decides them, so every
// node computes the same.
func compsOf(w window.Config, r *crdt.KeyRecord) []crdt.CompDelta {
	accepted := time.Unix(0, r.Accepted)
	key := crdt.KeyHash(r.Key)
	sums := make(map[crdt.Slot]uint64)
	var order []crdt.Slot
	add := func(slot crdt.Slot, amount uint64) {
		if _, ok := sums[slot]; !ok {
			order = append(order, slot)
		}
		sums[slot] += amount
	}
	var wins [8]window.Window
	for _, inc := range r.Increments {
		add(crdt.TotalSlot(inc.Name), inc.Amount)
		for _, win := range w.AppendWindows(wins[:0], time.Unix(0, inc.TS), accepted) {
			add(crdt.Slot{Name: inc.Name, Res: win.Res, Start: win.Start}, inc.Amount)
		}
	}
	out := make([]crdt.CompDelta, len(order))
	for i, slot := range order {
		out[i] = crdt.CompDelta{Slot: slot, Comp: crdt.Comp{Loser: r.Origin, Seq: r.Seq, Key: key, Value: sums[slot]}}
	}
	return out
}
