package gossip

import (
	"sync"

	"github.com/abacus-counter/abacus/crdt"
)

// outbox holds fresh entries waiting to be broadcast. It replaces memberlist's
// TransmitLimitedQueue, which keeps everything queued (unbounded) and can lose
// a message to a same-length replacement (upstream PR #263). Here an entry is
// keyed by (slot, origin): a newer value replaces the waiting one in place, so
// a hot counter costs one entry, however often it changes. Each value is handed
// out transmits times (one per gossip target), then dropped. GetBroadcasts
// drains it into messages that fit the size it is given.
type outbox struct {
	mu      sync.Mutex
	entries map[outKey]*outEntry
	queue   []outKey // round-robin order; may hold keys already gone
	limit   int
	dropped uint64 // entries dropped for the limit
}

type outKey struct {
	slot   crdt.Slot
	origin crdt.ReplicaID
}

type outEntry struct {
	e    entry
	left int // transmissions left
}

func newOutbox(limit int) *outbox {
	return &outbox{entries: make(map[outKey]*outEntry), limit: limit}
}

// add queues deltas to be sent transmits times each.
func (o *outbox) add(ds []crdt.Delta, transmits int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range ds {
		k := outKey{d.Slot, d.Entry.Replica}
		e := entry{slot: d.Slot, value: d.Entry.Value, seq: d.Entry.Seq}
		if cur, ok := o.entries[k]; ok {
			if e.value > cur.e.value || (e.value == cur.e.value && e.seq > cur.e.seq) {
				cur.e = e
			}
			cur.left = transmits
			continue
		}
		o.entries[k] = &outEntry{e: e, left: transmits}
		o.queue = append(o.queue, k)
	}
	// The queue holds each waiting key once, oldest first.
	for len(o.entries) > o.limit {
		delete(o.entries, o.queue[0])
		o.queue = o.queue[1:]
		o.dropped++
	}
}

func (o *outbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.entries)
}

// maxSkipped bounds the entries take passes over when they are too big alone
// for the room it is given.
const maxSkipped = 16

// take builds one deltas message of at most size bytes from the front of the
// queue, counts a transmission for each entry in it, and rotates them to the
// back. It returns nil when nothing waits or nothing fits.
func (o *outbox) take(size int) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	const header = 2 + 1 // type, version, group count (fits a byte for < 128 groups)
	if size <= header+16+1+minEntrySize || len(o.entries) == 0 {
		return nil
	}
	var (
		groups  []originGroup
		used    = header
		taken   []outKey
		skipped []outKey // alive but too big for any message of this size
		i       int
	)
	for i = 0; i < len(o.queue); i++ {
		k := o.queue[i]
		oe, ok := o.entries[k]
		if !ok {
			continue
		}
		n := entrySize(oe.e)
		g := -1
		for j := range groups {
			if groups[j].origin == k.origin {
				g = j
				break
			}
		}
		cost := n + 2 // the group's entry count may grow a byte
		if g < 0 {
			cost += 16 + 1
		}
		if used+cost > size {
			if len(groups) == 0 {
				// Too big alone for this size: try a few more, not the
				// whole queue (memberlist asks with every packet it sends,
				// often with little room left).
				skipped = append(skipped, k)
				if len(skipped) >= maxSkipped {
					i++
					break
				}
				continue
			}
			break
		}
		used += cost
		if g < 0 {
			groups = append(groups, originGroup{origin: k.origin})
			g = len(groups) - 1
		}
		groups[g].entries = append(groups[g].entries, oe.e)
		taken = append(taken, k)
		if len(groups) >= 127 {
			i++
			break
		}
	}
	// Rotate: what was looked at goes to the back, without copying the rest
	// of the queue (appending reallocates only when the array is used up).
	o.queue = append(o.queue[i:], skipped...)
	if len(taken) == 0 {
		return nil
	}
	for _, k := range taken {
		oe := o.entries[k]
		oe.left--
		if oe.left <= 0 {
			delete(o.entries, k)
			continue
		}
		o.queue = append(o.queue, k)
	}
	m := deltasMsg{groups: groups}
	return m.appendTo(make([]byte, 0, used))
}

// drain returns every waiting entry as deltas and empties the outbox (for the
// last send before leaving).
func (o *outbox) drain() []crdt.Delta {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]crdt.Delta, 0, len(o.entries))
	for k, oe := range o.entries {
		out = append(out, crdt.Delta{Slot: oe.e.slot, Entry: crdt.Entry{Replica: k.origin, Value: oe.e.value, Seq: oe.e.seq}})
	}
	clear(o.entries)
	o.queue = o.queue[:0]
	return out
}
