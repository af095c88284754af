package gossip

import (
	"encoding/binary"
	"sync"

	"github.com/abacus-counter/abacus/crdt"
)

// recordbox holds this node's key records waiting to be pushed to its peers.
// They go over streams, not in memberlist's gossip packets: a record does not
// coalesce the way a hot counter's entry does, so at a thousand keyed
// requests a second they would queue behind a packet budget of a few records
// per gossip round. At the limit the oldest are dropped; anti-entropy
// carries them, in the chunks of their origin's changes.
type recordbox struct {
	mu      sync.Mutex
	queue   [][]byte // crdt.AppendKeyRecord
	limit   int
	dropped uint64
}

// maxRecordsMessage bounds one records message (one record may exceed it
// alone).
const maxRecordsMessage = 1 << 20

func newRecordbox(limit int) *recordbox { return &recordbox{limit: limit} }

func (o *recordbox) add(rs []crdt.KeyRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range rs {
		o.queue = append(o.queue, crdt.AppendKeyRecord(nil, &rs[i]))
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

// messages empties the box into records messages of at most size bytes each.
func (o *recordbox) messages(size int) [][]byte {
	o.mu.Lock()
	q := o.queue
	o.queue = nil
	o.mu.Unlock()
	var out [][]byte
	for len(q) > 0 {
		used, n := 2+binary.MaxVarintLen64, 0
		for n < len(q) && (n == 0 || used+len(q[n]) <= size) {
			used += len(q[n])
			n++
		}
		b := append(make([]byte, 0, used), byte(msgRecords), wireVersion)
		b = binary.AppendUvarint(b, uint64(n))
		for _, r := range q[:n] {
			b = append(b, r...)
		}
		out = append(out, b)
		q = q[n:]
	}
	return out
}
