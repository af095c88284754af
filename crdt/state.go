package crdt

// State is a set of slots, each a GCounter: the counters of one replica's view.
// The zero value is not usable; call NewState.
type State struct {
	slots map[Slot]*GCounter
}

// NewState returns an empty state.
func NewState() *State { return &State{slots: make(map[Slot]*GCounter)} }

// Len is the number of slots.
func (s *State) Len() int { return len(s.slots) }

// Counter returns the counter of slot, or nil if the state has none.
func (s *State) Counter(slot Slot) *GCounter { return s.slots[slot] }

// Value is the value of slot; a slot the state does not hold counts zero.
func (s *State) Value(slot Slot) uint64 {
	if g := s.slots[slot]; g != nil {
		return g.Value()
	}
	return 0
}

func (s *State) counter(slot Slot) *GCounter {
	g := s.slots[slot]
	if g == nil {
		g = &GCounter{}
		s.slots[slot] = g
	}
	return g
}

// Add raises replica r's entry of slot by amount at seq. See GCounter.Add.
func (s *State) Add(slot Slot, r ReplicaID, amount, seq uint64) (Entry, error) {
	g := s.counter(slot)
	e, err := g.Add(r, amount, seq)
	if err != nil && g.Len() == 0 {
		delete(s.slots, slot)
	}
	return e, err
}

// Merge applies d and reports whether it raised anything.
func (s *State) Merge(d Delta) bool {
	return s.counter(d.Slot).MergeEntry(d.Entry)
}

// MergeState folds every slot of o into s and returns what s learned.
func (s *State) MergeState(o *State) []Delta {
	var learned []Delta
	for slot, g := range o.slots {
		for _, e := range s.counter(slot).Merge(g) {
			learned = append(learned, Delta{Slot: slot, Entry: e})
		}
	}
	return learned
}

// Deltas returns every entry of every slot, in no particular order.
func (s *State) Deltas() []Delta {
	var out []Delta
	for slot, g := range s.slots {
		for _, e := range g.entries {
			out = append(out, Delta{Slot: slot, Entry: e})
		}
	}
	return out
}

// Equal reports whether s and o hold the same slots with the same entries.
func (s *State) Equal(o *State) bool {
	if len(s.slots) != len(o.slots) {
		return false
	}
	for slot, g := range s.slots {
		h := o.slots[slot]
		if h == nil || !g.Equal(h) {
			return false
		}
	}
	return true
}

// Clone returns an independent copy of s.
func (s *State) Clone() *State {
	c := &State{slots: make(map[Slot]*GCounter, len(s.slots))}
	for slot, g := range s.slots {
		c.slots[slot] = g.Clone()
	}
	return c
}
