package store

import "github.com/abacus-counter/abacus/crdt"

// memtable holds every slot changed since the last checkpoint, as complete
// counters, keyed per counter name: an increment looks its counter up once,
// then its total and windows under it, and a read of one counter finds its
// windows without scanning the others. memState's lock guards it.
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

// put sets slot's counter.
func (m *memtable) put(slot crdt.Slot, g *crdt.GCounter) {
	m.putIn(m.counterFor(slot.Name), slot, g)
}

// counterFor returns name's slots, adding an empty entry if there is none.
// The caller puts a slot in it before it lets go of memState's lock.
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
