package gossip

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-counter/abacus/crdt"
)

// Outbox is where this node's commits wait for gossip: fresh entries for the
// broadcasts, key records for the pushes, and when each seq committed (for
// the lag of each peer). Whoever wires a node makes it first and hands it to
// both sides: to the store as its sink (store.Config.Sink), which fills it
// after each commit, and to New (Config.Outbox), whose Gossip drains it. The
// store needs nothing of gossip. While no other member is alive (a lone
// node, or before gossip starts) nothing is queued: a node that joins later
// gets everything by anti-entropy.
type Outbox struct {
	entries *outbox
	recs    *recordbox
	now     func() time.Time

	mu      sync.Mutex // guards commits
	commits commitLog

	// transmits is how often each broadcast value is sent: 0 while no other
	// member is alive. Set by the Gossip that drains the outbox.
	transmits atomic.Int32
	committed atomic.Uint64 // this replica's entries queued for broadcast
}

// NewOutbox returns an empty outbox holding up to limit entries and limit
// key records (0: Config.OutboxLimit's default); now is the clock (nil:
// time.Now).
func NewOutbox(limit int, now func() time.Time) *Outbox {
	if limit == 0 {
		limit = defaultOutboxLimit
	}
	if now == nil {
		now = time.Now
	}
	o := &Outbox{entries: newOutbox(limit), recs: newRecordbox(limit), now: now}
	o.commits.init(1 << 16)
	return o
}

// Committed queues this replica's freshly committed entries for broadcast and
// notes when each seq committed. The store calls it after each commit; it
// does not block.
func (o *Outbox) Committed(ds []crdt.Delta) {
	var top uint64
	for _, d := range ds {
		top = max(top, d.Entry.Seq)
	}
	o.mu.Lock()
	o.commits.add(top, o.now())
	o.mu.Unlock()
	if o.queue(ds) {
		o.committed.Add(uint64(len(ds)))
	}
}

// queue adds entries to broadcast (this replica's, or relayed), unless
// nobody is there to get them, and reports whether it did.
func (o *Outbox) queue(ds []crdt.Delta) bool {
	t := o.transmits.Load()
	if t == 0 {
		return false
	}
	o.entries.add(ds, int(t))
	return true
}

// CommittedRecords queues this replica's freshly committed key records for
// the next push to every peer, so that a retry at another node finds them.
// The store calls it after each commit that stored some; it does not block.
func (o *Outbox) CommittedRecords(rs []crdt.KeyRecord) {
	if o.transmits.Load() == 0 {
		return // nobody to push them to
	}
	o.recs.add(rs)
}

// committedSince returns when the first seq at or after seq committed.
func (o *Outbox) committedSince(seq uint64) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	t, _ := o.commits.since(seq)
	return t
}
