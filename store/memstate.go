package store

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/window"
)

// memState is the store's part in memory: everything committed and not yet
// checkpointed, and where each replica stands, under one lock. The committer
// changes it (install), the checkpointer empties it (evict, checkpointed,
// expire), reads and gossip read it. Its fields are this file's alone: the
// rest of the store calls its methods, each of which takes mu for as long as
// what it reads or changes must hold together (TestMemStateBoundary keeps
// other files from the fields).
type memState struct {
	mu sync.RWMutex // guards the fields below
	// table holds every slot changed since the last checkpoint, as complete
	// counters (state.db's entries merged with the changes): mem. A counter
	// in mem is never modified: the committer replaces it, so the
	// checkpointer can compare pointers to see whether a slot changed while
	// it was writing.
	table memtable
	idem  map[string][]crdt.KeyRecord // committed key records not yet checkpointed
	// comps holds every compensation this store has (they are few: one per
	// slot a duplicate raised), so that reads never look for them on disk.
	// compsDirty are the slots whose set changed since the last checkpoint;
	// compNames counts the slots with compensations per counter name.
	comps      map[crdt.Slot]crdt.Comps
	compsDirty map[crdt.Slot]bool
	compNames  map[string]int
	vv         map[crdt.ReplicaID]uint64 // other replicas: complete up to seq
	seq        uint64                    // this replica's last committed seq
	jlast      uint64                    // last journal record whose effects are in mem
	// pubSeq and pubVV publish seq and vv for Digest, which gossip calls
	// from memberlist's callbacks: those never wait for mu. pubVV is
	// replaced, never modified.
	pubSeq atomic.Uint64
	pubVV  atomic.Pointer[map[crdt.ReplicaID]uint64]
	// evictGen counts evictions from mem. A read transaction on state.db
	// opened before an eviction may miss the value that eviction wrote.
	evictGen uint64
	// idemGen counts the checkpoints that moved key records from mem to
	// state.db (see idemLookup).
	idemGen uint64
	// failed is set by the first commit or checkpoint that fails: the store
	// refuses writes from then on.
	failed error
	// roomCond wakes a committer waiting for a checkpoint to shrink mem.
	roomCond *sync.Cond
}

// init makes m empty. Open calls it before anything else uses m.
func (m *memState) init() {
	m.table = newMemtable()
	m.idem = make(map[string][]crdt.KeyRecord)
	m.comps = make(map[crdt.Slot]crdt.Comps)
	m.compsDirty = make(map[crdt.Slot]bool)
	m.compNames = make(map[string]int)
	m.vv = make(map[crdt.ReplicaID]uint64)
	m.roomCond = sync.NewCond(&m.mu)
}

// Opening. Open calls these alone, before the committer and the
// checkpointer start: they take no lock.

// loadSeq sets this replica's last committed seq as state.db holds it.
func (m *memState) loadSeq(seq uint64) { m.seq = seq }

// loadVV sets replica id's version vector entry as state.db holds it.
func (m *memState) loadVV(id crdt.ReplicaID, seq uint64) { m.vv[id] = seq }

// loadComps sets slot's compensations as state.db holds them.
func (m *memState) loadComps(slot crdt.Slot, cs crdt.Comps) { m.setComps(slot, cs) }

// replay merges journal record n into mem. load reads a slot mem does not
// hold from state.db; self is this replica, the origin of version 1 records.
func (m *memState) replay(n uint64, r *record, self crdt.ReplicaID, w window.Config, now time.Time, load func(crdt.Slot) (*crdt.GCounter, error)) error {
	m.seq = max(m.seq, r.seq)
	for _, d := range r.deltas {
		if !retained(w, d.Slot, now) {
			continue
		}
		g := m.table.get(d.Slot)
		if g == nil {
			loaded, err := load(d.Slot)
			if err != nil {
				return err
			}
			g = loaded
			m.table.put(d.Slot, g)
		}
		g.MergeEntry(d.Entry)
	}
	for _, x := range r.records {
		if x.Origin.IsZero() {
			x.Origin = self // a version 1 record: this replica's
		}
		if retainUntil(&x) > now.UnixNano() {
			m.idem[x.Key] = addRecord(m.idem[x.Key], x)
		}
	}
	for _, c := range r.covers {
		m.vv[c.Origin] = max(m.vv[c.Origin], c.Seq)
	}
	for _, c := range r.comps {
		if !retained(w, c.Slot, now) {
			continue
		}
		if cs, added := m.comps[c.Slot].Add(c.Comp); added {
			m.setComps(c.Slot, cs)
			m.compsDirty[c.Slot] = true
		}
	}
	m.jlast = n
	return nil
}

// opened publishes seq and vv for Digest once the journal is replayed.
func (m *memState) opened() { m.publishDigestLocked(true) }

// The committer.

// committedSeq is this replica's last committed seq.
func (m *memState) committedSeq() uint64 {
	m.mu.RLock()
	seq := m.seq
	m.mu.RUnlock()
	return seq
}

// waitForRoom returns once mem holds fewer than maxSlots slots, the store
// has failed, or stop reports true; meanwhile it calls kick, then waits for
// a checkpoint (or Close, or a failure) to wake it. stop and kick run under
// mu.
func (m *memState) waitForRoom(maxSlots int, stop func() bool, kick func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.table.len() >= maxSlots && m.failed == nil && !stop() {
		kick()
		m.roomCond.Wait()
	}
}

// wakeCommitter wakes a committer waiting in waitForRoom to look again.
func (m *memState) wakeCommitter() {
	m.mu.Lock()
	m.roomCond.Broadcast()
	m.mu.Unlock()
}

// copySlots sets the counter of each of slots, slots of counter name that
// staging meets for the first time in this commit, to a private copy of
// mem's (nil where mem holds none), and returns the eviction generation
// read with mem: what mem did not hold is in state.db as of that generation.
func (m *memState) copySlots(name string, slots []stagedSlot) (evictGen uint64) {
	m.mu.RLock()
	mc := m.table.counter(name)
	for i := range slots {
		if slots[i].g != nil {
			continue // the staging found it newer elsewhere
		}
		if g := mc.get(slots[i].slot); g != nil {
			slots[i].g = g.Clone()
		}
	}
	gen := m.evictGen
	m.mu.RUnlock()
	return gen
}

// stagingRecords adds to recs the records of key in mem, and returns the
// eviction generation and idemGen read with them.
func (m *memState) stagingRecords(key string, recs []crdt.KeyRecord) (_ []crdt.KeyRecord, evictGen, idemGen uint64) {
	m.mu.RLock()
	for _, r := range m.idem[key] {
		recs = addRecord(recs, r)
	}
	evictGen, idemGen = m.evictGen, m.idemGen
	m.mu.RUnlock()
	return recs, evictGen, idemGen
}

// slotComps returns the compensations of slot.
func (m *memState) slotComps(slot crdt.Slot) crdt.Comps {
	m.mu.RLock()
	cs := m.comps[slot]
	m.mu.RUnlock()
	return cs
}

// vvEntry returns replica id's version vector entry.
func (m *memState) vvEntry(id crdt.ReplicaID) uint64 {
	m.mu.RLock()
	v := m.vv[id]
	m.mu.RUnlock()
	return v
}

// install publishes st's changes, committed in journal record n, to mem,
// where reads, gossip and later stagings see them.
// It returns the slots mem holds then.
func (m *memState) install(st *staging, n uint64) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jlast = n // every record up to n is now in mem
	// A request's slots are staged one after another: look each counter up
	// once per run of its slots.
	var mc *memCounter
	var name string
	for _, i := range st.dirty {
		ss := &st.arena[i]
		if mc == nil || ss.slot.Name != name {
			mc, name = m.table.counterFor(ss.slot.Name), ss.slot.Name
		}
		m.table.putIn(mc, ss.slot, ss.g)
	}
	for _, x := range st.idem {
		m.idem[x.Key] = append(m.idem[x.Key], x)
	}
	for slot, cs := range st.compSet {
		m.setComps(slot, cs)
		m.compsDirty[slot] = true
	}
	for o, v := range st.vv {
		m.vv[o] = max(m.vv[o], v)
	}
	m.seq = max(m.seq, st.lastSeq)
	m.publishDigestLocked(len(st.vv) > 0)
	return m.table.len()
}

// fail makes the store refuse writes for err, unless it already does. It
// returns the error writes are refused with, and whether err is the first.
func (m *memState) fail(err error) (failed error, first bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failed == nil {
		m.failed = fmt.Errorf("%w: %v", ErrFailed, err)
		first = true
		m.roomCond.Broadcast() // a committer waiting for room waits for nothing now
	}
	return m.failed, first
}

// failure is the error of the commit or checkpoint that failed, or nil.
func (m *memState) failure() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.failed
}

// The checkpointer.

// snapshot returns what a checkpoint writes: mem's slots, in no order, and
// the key records, dirty compensations, version vector, seq and last
// journal record with them. failed is the store's failure, or nil.
func (m *memState) snapshot() (snap checkpointSnap, failed error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	snap = checkpointSnap{
		mem:   make([]memSlot, 0, m.table.len()),
		idem:  make(map[string][]crdt.KeyRecord, len(m.idem)),
		comps: make(map[crdt.Slot]crdt.Comps, len(m.compsDirty)),
		vv:    make(map[crdt.ReplicaID]uint64, len(m.vv)),
		seq:   m.seq,
		jlast: m.jlast,
	}
	m.table.each(func(slot crdt.Slot, g *crdt.GCounter) { snap.mem = append(snap.mem, memSlot{slot, g}) })
	for key, r := range m.idem {
		snap.idem[key] = r[:len(r):len(r)]
	}
	for slot := range m.compsDirty {
		snap.comps[slot] = m.comps[slot]
	}
	for id, v := range m.vv {
		snap.vv[id] = v
	}
	return snap, m.failed
}

// evict removes from mem the slots of chunk, which state.db now holds,
// unless a commit replaced them meanwhile, and wakes a committer waiting
// for room.
func (m *memState) evict(chunk []memSlot) {
	m.mu.Lock()
	for _, x := range chunk {
		if m.table.get(x.slot) == x.g {
			m.deleteMem(x.slot)
		}
	}
	m.roomCond.Broadcast()
	m.mu.Unlock()
}

// checkpointed forgets the key records and dirty marks of compensations
// that snap's metadata transaction wrote to state.db, keeping what came
// after the snapshot.
func (m *memState) checkpointed(snap *checkpointSnap) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, written := range snap.idem {
		// Records only append to a key's list in mem; keep what came after.
		if cur := m.idem[k]; len(cur) > len(written) {
			m.idem[k] = append([]crdt.KeyRecord(nil), cur[len(written):]...)
		} else {
			delete(m.idem, k)
		}
	}
	if len(snap.idem) > 0 {
		m.evictGen++ // a staging's read transaction may predate these records
		m.idemGen++  // and so may idemBegin's
	}
	for slot, cs := range snap.comps {
		// A set only grows, but Add may also raise a held value: compare
		// the sets, not their lengths, or that change never reaches disk.
		if slices.Equal(m.comps[slot], cs) {
			delete(m.compsDirty, slot)
		}
	}
}

// slots is the number of slots mem holds.
func (m *memState) slots() int {
	m.mu.RLock()
	n := m.table.len()
	m.mu.RUnlock()
	return n
}

// expired returns what has expired at now: mem's windows past retention
// under w, the keys with a record past its retention, and the slots with
// compensations past retention.
func (m *memState) expired(w window.Config, now time.Time) (slots []crdt.Slot, idemKeys []string, compSlots []crdt.Slot) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.table.each(func(slot crdt.Slot, _ *crdt.GCounter) {
		if !retained(w, slot, now) {
			slots = append(slots, slot)
		}
	})
	for k, rs := range m.idem {
		for _, r := range rs {
			if retainUntil(&r) <= now.UnixNano() {
				idemKeys = append(idemKeys, k)
				break
			}
		}
	}
	for slot := range m.comps {
		if !retained(w, slot, now) {
			compSlots = append(compSlots, slot)
		}
	}
	return slots, idemKeys, compSlots
}

// dropComps forgets the compensations of the expired slots.
func (m *memState) dropComps(slots []crdt.Slot) {
	m.mu.Lock()
	for _, slot := range slots {
		m.deleteComps(slot)
	}
	m.mu.Unlock()
}

// expire removes the expired slots from mem, and from the records of each
// of idemKeys those past their retention at now, and wakes a committer
// waiting for room.
func (m *memState) expire(slots []crdt.Slot, idemKeys []string, now time.Time) {
	m.mu.Lock()
	for _, slot := range slots {
		m.deleteMem(slot)
	}
	for _, k := range idemKeys {
		live := m.idem[k][:0:0]
		for _, r := range m.idem[k] {
			if retainUntil(&r) > now.UnixNano() {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			m.idem[k] = live
		} else {
			delete(m.idem, k)
		}
	}
	m.roomCond.Broadcast()
	m.mu.Unlock()
}

// Reads.

// lookup returns slot's counter in mem (nil if mem holds none) and its
// compensations.
func (m *memState) lookup(slot crdt.Slot) (*crdt.GCounter, crdt.Comps) {
	m.mu.RLock()
	g := m.table.get(slot)
	cs := m.comps[slot]
	m.mu.RUnlock()
	return g, cs
}

// windows returns, for counter name's windows of res seconds starting in
// [from, to) (from a multiple of res), the count of each that mem holds, net
// of its compensations, and the compensations of each that has some.
func (m *memState) windows(name string, res uint32, from, to int64) (inMem map[int64]uint64, comps map[int64]crdt.Comps) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.compNames[name] > 0 {
		comps = make(map[int64]crdt.Comps)
		for slot, cs := range m.comps {
			if slot.Name == name && slot.Res == res && slot.Start >= from && slot.Start < to {
				comps[slot.Start] = cs
			}
		}
	}
	if mc := m.table.counter(name); mc != nil {
		inMem = make(map[int64]uint64)
		mc.eachWindow(res, from, to, func(start int64, g *crdt.GCounter) {
			inMem[start] = comps[start].Value(g)
		})
	}
	return inMem, comps
}

// totals returns the totals in mem of the counters whose names match, net
// of their compensations, those names (seen), and the compensations of every
// matching counter's total.
func (m *memState) totals(match func(name string) bool) (out []NameTotal, seen map[string]bool, totalComps map[string]crdt.Comps) {
	seen = make(map[string]bool)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for name, c := range m.table.counters {
		if c.total != nil && match(name) {
			out = append(out, NameTotal{name, m.comps[crdt.TotalSlot(name)].Value(c.total)})
			seen[name] = true
		}
	}
	totalComps = make(map[string]crdt.Comps)
	for slot, cs := range m.comps {
		if slot.IsTotal() && match(slot.Name) {
			totalComps[slot.Name] = cs
		}
	}
	return out, seen, totalComps
}

// lookupRecords returns a copy of key's records in mem, and idemGen read
// with them.
func (m *memState) lookupRecords(key string) ([]crdt.KeyRecord, uint64) {
	m.mu.RLock()
	recs := append([]crdt.KeyRecord(nil), m.idem[key]...)
	gen := m.idemGen
	m.mu.RUnlock()
	return recs, gen
}

// memView reads mem for a function that viewWithTx runs under mu. It is
// valid only during that call.
type memView struct{ m *memState }

// counter returns name's slots in mem, or nil.
func (v memView) counter(name string) *memCounter { return v.m.table.counter(name) }

// slotComps returns the compensations of slot.
func (v memView) slotComps(slot crdt.Slot) crdt.Comps { return v.m.comps[slot] }

// errEvicting: viewWithTx gave up, checkpoints evicting meanwhile each time.
var errEvicting = errors.New("checkpoints kept evicting slots meanwhile")

// viewWithTx calls fn with a read transaction on db and a view of mem that
// agree: mem is read under mu, held for the whole call, and no eviction
// from mem happened since the transaction began, so what mem does not hold
// the transaction sees. fn must not call m's methods (mu is held), and
// delays the publication of commits for as long as it runs.
//
// Lock order as everywhere else in the store: the state.db transaction
// first, then mu. A transaction opened before an eviction may miss the value
// that eviction wrote, so the eviction generation is read before the
// transaction opens and checked once mu is held; a read that lost the race
// (a checkpoint evicted meanwhile: rare, once a second at most) starts again.
// The transaction is opened with Begin: the caller runs under db's guard.
func (m *memState) viewWithTx(db *boltDB, fn func(v memView, tx *bolt.Tx) error) error {
	var tx *bolt.Tx
	for attempt := 0; ; attempt++ {
		m.mu.RLock()
		gen := m.evictGen
		m.mu.RUnlock()
		var err error
		if tx, err = db.Begin(false); err != nil {
			return err
		}
		m.mu.RLock()
		if m.evictGen == gen {
			break
		}
		m.mu.RUnlock()
		tx.Rollback()
		if attempt == 100 {
			return errEvicting
		}
	}
	defer tx.Rollback()
	defer m.mu.RUnlock()
	return fn(memView{m}, tx)
}

// carriers returns the carriers of origin's entries that mem holds: the
// entries of origin with a seq above both after and base, at their seq, in
// no order; every slot mem holds (inMem: state.db's copy of those is older);
// and, read with them, how far this store holds origin's changes (top). own
// says origin is this replica.
func (m *memState) carriers(origin crdt.ReplicaID, own bool, after, base uint64) (top uint64, inMem map[crdt.Slot]*crdt.GCounter, fromMem []carried) {
	inMem = make(map[crdt.Slot]*crdt.GCounter)
	m.mu.RLock()
	defer m.mu.RUnlock()
	top = m.vv[origin]
	if own {
		top = m.seq
	}
	m.table.each(func(slot crdt.Slot, g *crdt.GCounter) {
		inMem[slot] = g
		if e, ok := g.Get(origin); ok && e.Seq > after && e.Seq > base {
			fromMem = append(fromMem, carried{pos: e.Seq, d: crdt.Delta{Slot: slot, Entry: e}})
		}
	})
	return top, inMem, fromMem
}

// appendOriginComps appends to out the compensations of origin's copies in
// the slots of deltas.
func (m *memState) appendOriginComps(out []crdt.CompDelta, deltas []crdt.Delta, origin crdt.ReplicaID) []crdt.CompDelta {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, d := range deltas {
		for _, cp := range m.comps[d.Slot].Of(origin) {
			out = append(out, crdt.CompDelta{Slot: d.Slot, Comp: cp})
		}
	}
	return out
}

// originRecords returns the records in mem of origin with a seq in
// (after, upto], in no order.
func (m *memState) originRecords(origin crdt.ReplicaID, after, upto uint64) []crdt.KeyRecord {
	var recs []crdt.KeyRecord
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, rs := range m.idem {
		for _, r := range rs {
			if r.Origin == origin && r.Seq > after && r.Seq <= upto {
				recs = append(recs, r)
			}
		}
	}
	return recs
}

// publishedVV is the version vector as last published, without taking mu.
// It is never modified.
func (m *memState) publishedVV() map[crdt.ReplicaID]uint64 { return *m.pubVV.Load() }

// publishedSeq is this replica's last committed seq as last published,
// without taking mu.
func (m *memState) publishedSeq() uint64 { return m.pubSeq.Load() }

// figures fills in st's figures about mem and returns the last journal
// record whose effects are in mem, read with them.
func (m *memState) figures(st *Stats) (jlast uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st.PendingSlots = m.table.len()
	st.Seq = m.seq
	st.IdempotencyKeys = len(m.idem)
	st.CompensatedSlots = len(m.comps)
	return m.jlast
}

// Helpers; the caller holds mu for writing, or owns m alone (opening).

// setComps replaces the compensations of slot.
func (m *memState) setComps(slot crdt.Slot, cs crdt.Comps) {
	if _, ok := m.comps[slot]; !ok {
		m.compNames[slot.Name]++
	}
	m.comps[slot] = cs
}

// deleteComps forgets the compensations of an expired slot.
func (m *memState) deleteComps(slot crdt.Slot) {
	if _, ok := m.comps[slot]; !ok {
		return
	}
	delete(m.comps, slot)
	delete(m.compsDirty, slot)
	if n := m.compNames[slot.Name] - 1; n > 0 {
		m.compNames[slot.Name] = n
	} else {
		delete(m.compNames, slot.Name)
	}
}

// deleteMem removes slot from mem; a state.db read transaction opened
// before may miss what replaced it there.
func (m *memState) deleteMem(slot crdt.Slot) {
	if m.table.delete(slot) {
		m.evictGen++
	}
}

// publishDigestLocked publishes seq, and vv if it changed, for Digest.
func (m *memState) publishDigestLocked(vvChanged bool) {
	m.pubSeq.Store(m.seq)
	if vvChanged || m.pubVV.Load() == nil {
		vv := maps.Clone(m.vv)
		m.pubVV.Store(&vv)
	}
}
