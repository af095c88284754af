package store

import (
	"maps"
	"sync"
	"sync/atomic"

	"github.com/abacus-counter/abacus/crdt"
)

// memState is the store's part in memory: everything committed and not yet
// checkpointed, and where each replica stands, under one lock. The committer
// changes it (install), the checkpointer empties it (eviction), reads and
// gossip read it; each holds mu while it does.
type memState struct {
	mu sync.RWMutex // guards the fields below
	// mem holds every slot changed since the last checkpoint, as complete
	// counters (state.db's entries merged with the changes). A counter in mem
	// is never modified: the committer replaces it, so the checkpointer can
	// compare pointers to see whether a slot changed while it was writing.
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
	failed  error
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

// setComps replaces the compensations of slot. The caller holds mu for
// writing, or owns the store alone (load).
func (m *memState) setComps(slot crdt.Slot, cs crdt.Comps) {
	if _, ok := m.comps[slot]; !ok {
		m.compNames[slot.Name]++
	}
	m.comps[slot] = cs
}

// deleteComps forgets the compensations of an expired slot. The caller holds
// mu for writing.
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

func (m *memState) putMem(slot crdt.Slot, g *crdt.GCounter) { m.table.put(slot, g) }

func (m *memState) deleteMem(slot crdt.Slot) {
	if m.table.delete(slot) {
		m.evictGen++
	}
}

// publishDigestLocked publishes seq, and vv if it changed, for Digest. The
// caller holds mu for writing.
func (m *memState) publishDigestLocked(vvChanged bool) {
	m.pubSeq.Store(m.seq)
	if vvChanged || m.pubVV.Load() == nil {
		vv := maps.Clone(m.vv)
		m.pubVV.Store(&vv)
	}
}
