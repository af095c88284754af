package crdt

import "strings"

// MaxNameLen is the longest counter name, in bytes.
const MaxNameLen = 128

// ValidName reports whether s is a counter name: 1 to 128 bytes of
// [A-Za-z0-9_.:-].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameByte[s[i]] {
			return false
		}
	}
	return true
}

var nameByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_.:-" {
		t[c] = true
	}
	return t
}()

// Slot names one G-Counter: the all-time total of a counter (Res == 0), or the
// window of Res seconds starting at Start (Unix seconds, a multiple of Res) of
// that counter.
type Slot struct {
	Name  string
	Res   uint32
	Start int64
}

// TotalSlot is the all-time total of counter name.
func TotalSlot(name string) Slot { return Slot{Name: name} }

// IsTotal reports whether s is an all-time total.
func (s Slot) IsTotal() bool { return s.Res == 0 }

// Valid reports whether s is well formed: a valid name, and either a total
// (Res and Start zero) or a window whose non-negative Start is a multiple of Res.
func (s Slot) Valid() bool {
	return ValidName(s.Name) && s.validWindow()
}

// validWindow reports whether s's resolution and start name a total or a
// window.
func (s Slot) validWindow() bool {
	if s.Res == 0 {
		return s.Start == 0
	}
	return s.Start >= 0 && s.Start%int64(s.Res) == 0
}

// Compare orders slots by name, then resolution, then start.
func (s Slot) Compare(o Slot) int {
	if c := strings.Compare(s.Name, o.Name); c != 0 {
		return c
	}
	switch {
	case s.Res < o.Res:
		return -1
	case s.Res > o.Res:
		return 1
	case s.Start < o.Start:
		return -1
	case s.Start > o.Start:
		return 1
	}
	return 0
}

// Delta is one entry of one slot: the unit of replication and of the journal.
// It carries an absolute value, so it can be applied any number of times.
type Delta struct {
	Slot  Slot
	Entry Entry
}
