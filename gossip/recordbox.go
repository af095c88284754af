package gossip

import (
	"encoding/binary"
	"sync"

	"github.com/abacus-counter/abacus/crdt"
)

// recordbox holds key records waiting to be broadcast, oldest first. Each is
// handed out transmits times, then dropped; at the limit the oldest go. A
// record too big for a gossip packet (a large keyed batch) is not queued:
// anti-entropy carries it, in the chunks of its origin's changes.
type recordbox struct {
	mu      sync.Mutex
	queue   []outRecord
	limit   int
	dropped uint64
}

type outRecord struct {
	b    []byte // crdt.AppendKeyRecord
	left int
}

// maxBroadcastRecord is the largest record worth queueing: memberlist's
// packet budget is about 1,360 bytes with a key and a label.
const maxBroadcastRecord = 1100

func newRecordbox(limit int) *recordbox { return &recordbox{limit: limit} }

func (o *recordbox) add(rs []crdt.KeyRecord, transmits int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range rs {
		b := crdt.AppendKeyRecord(nil, &rs[i])
		if len(b) > maxBroadcastRecord {
			continue
		}
		o.queue = append(o.queue, outRecord{b: b, left: transmits})
	}
	if n := len(o.queue) - o.limit; n > 0 {
		o.dropped += uint64(n)
		o.queue = append(o.queue[:0:0], o.queue[n:]...)
	}
}

func (o *recordbox) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// take builds one records message of at most size bytes from the front of
// the queue, counts a transmission for each record in it and sends those with
// transmissions left to the back. It returns nil when nothing fits.
func (o *recordbox) take(size int) []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	const header = 2 + 2 // type, version, count (two bytes for up to 16,383)
	used, n := header, 0
	for n < len(o.queue) && used+len(o.queue[n].b) <= size {
		used += len(o.queue[n].b)
		n++
	}
	if n == 0 {
		return nil
	}
	b := append(make([]byte, 0, used), byte(msgRecords), wireVersion)
	b = binary.AppendUvarint(b, uint64(n))
	taken := o.queue[:n]
	rest := append(o.queue[:0:0], o.queue[n:]...)
	for _, r := range taken {
		b = append(b, r.b...)
		if r.left--; r.left > 0 {
			rest = append(rest, r)
		}
	}
	o.queue = rest
	return b
}

// drain returns every waiting record's encoding and empties the box.
func (o *recordbox) drain() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([][]byte, len(o.queue))
	for i, r := range o.queue {
		out[i] = r.b
	}
	o.queue = nil
	return out
}
