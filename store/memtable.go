package store

import (
	"sync"
	"sync/atomic"

	"github.com/abacus-counter/abacus/crdt"
)

// memtable holds every slot changed since the last checkpoint, as complete
// counters, keyed per counter name: an increment looks its counter up once,
// then its total and windows under it, and a read of one counter finds its
// windows without scanning the others. The store's mu guards it.
type memtable struct {
	counters map[string]*memCounter
	slots    int
}

// memCounter is one counter's slots in mem.
type memCounter struct {
	total   *crdt.GCounter
	windows map[memWin]*crdt.GCounter
}

// memWin names a window of a counter.
type memWin struct {
	res   uint32
	start int64
}

func newMemtable() memtable {
	return memtable{counters: make(map[string]*memCounter)}
}

// len is the number of slots held.
func (m *memtable) len() int { return m.slots }

// counter returns name's slots, or nil.
func (m *memtable) counter(name string) *memCounter { return m.counters[name] }

// get returns slot's counter, or nil.
func (m *memtable) get(slot crdt.Slot) *crdt.GCounter {
	return m.counters[slot.Name].get(slot)
}

// get returns slot's counter, or nil; slot is one of c's counter's.
func (c *memCounter) get(slot crdt.Slot) *crdt.GCounter {
	switch {
	case c == nil:
		return nil
	case slot.IsTotal():
		return c.total
	}
	return c.windows[memWin{slot.Res, slot.Start}]
}

// window returns the counter of the window of res seconds at start, or nil.
func (c *memCounter) window(res uint32, start int64) *crdt.GCounter {
	if c == nil {
		return nil
	}
	return c.windows[memWin{res, start}]
}

// put sets slot's counter.
func (m *memtable) put(slot crdt.Slot, g *crdt.GCounter) {
	m.putIn(m.counterFor(slot.Name), slot, g)
}

// counterFor returns name's slots, adding an empty entry if there is none.
// The caller puts a slot in it before it lets go of mu.
func (m *memtable) counterFor(name string) *memCounter {
	c := m.counters[name]
	if c == nil {
		c = &memCounter{}
		m.counters[name] = c
	}
	return c
}

// putIn sets slot's counter in c, the memCounter of slot's counter.
func (m *memtable) putIn(c *memCounter, slot crdt.Slot, g *crdt.GCounter) {
	if slot.IsTotal() {
		if c.total == nil {
			m.slots++
		}
		c.total = g
		return
	}
	if c.windows == nil {
		c.windows = make(map[memWin]*crdt.GCounter, 4)
	}
	n := len(c.windows)
	c.windows[memWin{slot.Res, slot.Start}] = g
	m.slots += len(c.windows) - n
}

// delete removes slot and reports whether it was there.
func (m *memtable) delete(slot crdt.Slot) bool {
	c := m.counters[slot.Name]
	if c == nil {
		return false
	}
	if slot.IsTotal() {
		if c.total == nil {
			return false
		}
		c.total = nil
	} else {
		k := memWin{slot.Res, slot.Start}
		if _, ok := c.windows[k]; !ok {
			return false
		}
		delete(c.windows, k)
	}
	m.slots--
	if c.total == nil && len(c.windows) == 0 {
		delete(m.counters, slot.Name)
	}
	return true
}

// memSlot is a slot of mem and its counter.
type memSlot struct {
	slot crdt.Slot
	g    *crdt.GCounter
}

// each calls fn for every slot held, in no order.
func (m *memtable) each(fn func(slot crdt.Slot, g *crdt.GCounter)) {
	for name, c := range m.counters {
		if c.total != nil {
			fn(crdt.TotalSlot(name), c.total)
		}
		for w, g := range c.windows {
			fn(crdt.Slot{Name: name, Res: w.res, Start: w.start}, g)
		}
	}
}

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
	mem  memtable
	idem map[string][]crdt.KeyRecord // committed key records not yet checkpointed
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

func newMemState() memState {
	return memState{
		mem:        newMemtable(),
		idem:       make(map[string][]crdt.KeyRecord),
		comps:      make(map[crdt.Slot]crdt.Comps),
		compsDirty: make(map[crdt.Slot]bool),
		compNames:  make(map[string]int),
		vv:         make(map[crdt.ReplicaID]uint64),
	}
}
