package gossip

import (
	"sync"

	"github.com/abacus-counter/abacus/crdt"
)

// outbox holds the entries waiting to be broadcast. It replaces memberlist's
// TransmitLimitedQueue, which keeps everything queued (unbounded) and can lose
// a message to a same-length replacement (upstream PR #263). An entry is kept
// under its (slot, origin) key as its value, seq and transmissions left, in
// the map itself (no allocation per entry): a newer value replaces the
// waiting one in place, so a hot counter costs one entry however often it
// changes. Each value is handed out transmits times (one per gossip target),
// then dropped. GetBroadcasts drains it into messages that fit the size it is
// given. (It keeps values rather than reading them from the store when a
// message is built: GetBroadcasts runs on memberlist's packet path, which
// must never wait on state.db.)
type outbox struct {
	mu      sync.Mutex
	entries map[outKey]outVal
	queue   []outKey // round-robin order: each waiting key once
	limit   int
	dropped uint64 // entries dropped for the limit
}

// outVal is a waiting entry's value and the transmissions it has left.
type outVal struct {
	value, seq uint64
	left       int32
}

type outKey struct {
	slot   crdt.Slot
	origin crdt.ReplicaID
}

func newOutbox(limit int) *outbox {
	return &outbox{entries: make(map[outKey]outVal), limit: limit}
}

// add queues deltas to be sent transmits times each.
func (o *outbox) add(ds []crdt.Delta, transmits int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, d := range ds {
		k := outKey{d.Slot, d.Entry.Replica}
		v := outVal{value: d.Entry.Value, seq: d.Entry.Seq, left: int32(transmits)}
		cur, ok := o.entries[k]
		if !ok {
			o.queue = append(o.queue, k)
		} else if cur.value > v.value || (cur.value == v.value && cur.seq > v.seq) {
			v.value, v.seq = cur.value, cur.seq // a stale value never replaces a newer one
		}
		o.entries[k] = v
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
		v, ok := o.entries[k]
		if !ok {
			continue
		}
		e := entry{slot: k.slot, value: v.value, seq: v.seq}
		n := entrySize(e)
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
		groups[g].entries = append(groups[g].entries, e)
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
		v := o.entries[k]
		if v.left--; v.left <= 0 {
			delete(o.entries, k)
			continue
		}
		o.entries[k] = v
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
	for k, v := range o.entries {
		out = append(out, crdt.Delta{Slot: k.slot, Entry: crdt.Entry{Replica: k.origin, Value: v.value, Seq: v.seq}})
	}
	clear(o.entries)
	o.queue = o.queue[:0]
	return out
}
