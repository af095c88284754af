package store

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/window"
)

// Increment adds Amount to counter Name at event time TS.
type Increment struct {
	Name   string
	Amount uint64
	TS     time.Time
}

// Request is one client request: one or more increments applied all or
// nothing in one commit.
type Request struct {
	Increments []Increment
	// IdempotencyKey, if set, makes the request apply at most once within
	// Config.IdempotencyTTL: a later request with the same key gets the first
	// one's stored response instead.
	IdempotencyKey string
	// Fingerprint identifies the request's content, so that reusing a key for
	// a different request is refused.
	Fingerprint [32]byte
	// Render builds the response stored with the idempotency key. It is called
	// once, from the committer once the request is staged (no read of
	// state.db is open then), and must be quick and must not call the store.
	Render func(Result) []byte
}

// Result is the outcome of a Request.
type Result struct {
	// Totals holds, per increment, its counter's total on this node once the
	// request applied.
	Totals []uint64
	// Replayed is true when the idempotency key had been seen: nothing was
	// applied and Response is the first request's response.
	Replayed bool
	// Response is what Render returned, when there is an idempotency key.
	Response []byte
}

// Cover claims that a merge carries every change of Origin with a seq in
// (From, To]: the receiver's version vector may then rise to To, if it had
// reached From.
type Cover struct {
	Origin   crdt.ReplicaID
	From, To uint64
}

type opKind uint8

const (
	opApply opKind = iota
	opMerge
	opFlush // answered once everything before it is committed
)

type op struct {
	kind    opKind
	req     *Request
	deltas  []crdt.Delta
	covers  []Cover
	records []crdt.KeyRecord
	comps   []crdt.CompDelta
	look    idemLookup // opApply with a key: what idemBegin saw of state.db

	// done receives one value when the op is decided. It is buffered, so the
	// committer never blocks on a caller that stopped waiting, and reusable,
	// so ops can be pooled.
	done    chan struct{}
	res     Result
	learned []crdt.Delta
	err     error
}

var opPool = sync.Pool{New: func() any { return &op{done: make(chan struct{}, 1)} }}

func getOp() *op { return opPool.Get().(*op) }

// putOp recycles o; only a caller that received from o.done may call it.
func putOp(o *op) {
	*o = op{done: o.done}
	opPool.Put(o)
}

// lingerMinBatch is the smallest previous batch that makes the committer
// linger: below it, concurrency is too low for waiting to pay.
const lingerMinBatch = 4

// maxSeq is the largest seq an entry may carry: a million commits a second
// reach it in 146,000 years. Merged entries above it are corrupt and
// dropped, so that no peer can push this replica's seq to overflow.
const maxSeq = 1 << 62

// maxOwnSeen bounds the seqs of this replica's entries, held by peers, that
// move this replica's numbering past them (see stage): far above any real
// seq, and far enough below maxSeq that commits numbered after it are still
// accepted by every peer.
const maxOwnSeen = maxSeq >> 1

// Limits on one commit, so that a commit, its journal record and one seq's
// entries stay bounded (a seq's entries are never split across catch-up chunks).
const (
	maxOpsPerCommit     = 1024
	maxChangesPerCommit = 50_000
)

// Apply validates and applies req, and returns once it is durable (Fsync) or
// staged for the next commit (Async; reads and peers see it after that
// commit). Cancelling ctx stops the wait, not the commit: a request
// that reached the committer may still apply.
func (s *Store) Apply(ctx context.Context, req *Request) (Result, error) {
	if err := s.validate(req); err != nil {
		return Result{}, err
	}
	var look idemLookup
	if req.IdempotencyKey != "" {
		res, l, replayed, err := s.idemBegin(ctx, req)
		if err != nil || replayed {
			return res, err
		}
		look = l
	}
	o := getOp()
	o.kind, o.req, o.look = opApply, req, look
	if submitted, err := s.run(ctx, o); err != nil {
		if !submitted && req.IdempotencyKey != "" {
			s.idemEnd(req.IdempotencyKey) // else the committer releases it
		}
		return Result{}, err
	}
	res, err := o.res, o.err
	putOp(o)
	return res, err
}

// run hands o to the committer and waits for its answer. On success the
// caller reads o's results and recycles it. On an error it reports whether o
// reached the committer: if not, o is recycled; if so (ctx ended the wait),
// o is still the committer's and is not.
func (s *Store) run(ctx context.Context, o *op) (submitted bool, err error) {
	if err := s.submit(ctx, o); err != nil {
		putOp(o)
		return false, err
	}
	select {
	case <-o.done:
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// Flush returns once every request answered before it is committed. With
// Fsync that is already so; with Async it commits at once what is pending.
func (s *Store) Flush(ctx context.Context) error {
	o := getOp()
	o.kind = opFlush
	if _, err := s.run(ctx, o); err != nil {
		return err
	}
	err := o.err
	putOp(o)
	return err
}

// Merge applies entries learned from peers and the covers that come with them,
// and returns once they are durable (Fsync) or staged for the next commit
// (Async), with the entries that raised something here (news worth passing
// on).
func (s *Store) Merge(ctx context.Context, deltas []crdt.Delta, covers []Cover) ([]crdt.Delta, error) {
	return s.MergeChanges(ctx, Changes{Deltas: deltas, Covers: covers})
}

// Changes is what a peer sends: entries, the covers a chain of chunks proves,
// key records, and compensations.
type Changes struct {
	Deltas  []crdt.Delta
	Covers  []Cover
	Records []crdt.KeyRecord
	Comps   []crdt.CompDelta
}

// MergeChanges merges c in one commit, so that covers never reach the disk
// without the records and compensations that came with them, and returns the
// entries that raised something here (news worth passing on; key records are
// not passed on: their origin pushes them to every peer).
func (s *Store) MergeChanges(ctx context.Context, c Changes) ([]crdt.Delta, error) {
	o := getOp()
	o.kind, o.deltas, o.covers, o.records, o.comps = opMerge, c.Deltas, c.Covers, c.Records, c.Comps
	if _, err := s.run(ctx, o); err != nil {
		return nil, err
	}
	learned, err := o.learned, o.err
	putOp(o)
	return learned, err
}

func (s *Store) validate(req *Request) error {
	if len(req.Increments) == 0 {
		return fmt.Errorf("%w: no increments", ErrInvalid)
	}
	if len(req.IdempotencyKey) > maxIdemKeyLen {
		return fmt.Errorf("%w: idempotency key longer than %d bytes", ErrInvalid, maxIdemKeyLen)
	}
	now := s.cfg.Now()
	for _, inc := range req.Increments {
		switch {
		case !crdt.ValidName(inc.Name):
			return fmt.Errorf("%w: counter name %q", ErrInvalid, inc.Name)
		case inc.Amount == 0:
			return fmt.Errorf("%w: zero amount", ErrInvalid)
		case inc.TS.IsZero():
			return fmt.Errorf("%w: no event time", ErrInvalid)
		case window.CheckEventTime(inc.TS, now) != nil:
			return ErrFuture
		case inc.TS.Unix() < 0:
			return fmt.Errorf("%w: event time before 1970", ErrInvalid)
		}
	}
	return nil
}

// committer is the goroutine that writes journal.db records and changes
// mem's counters: it owns the request channel, the staging and the journal's
// record numbers. Everything else reaches it through submit.
type committer struct {
	s   *Store
	ops chan *op
	// closeMu guards sends against close: a sender holds it for reading,
	// close takes it for writing and then closes ops.
	closeMu sync.RWMutex
	closed  bool
	jnext   uint64 // next journal record number
	// journaled counts the entry changes written to the journal since open
	// (checkpointer.journaledAt: as of the last checkpoint).
	journaled atomic.Int64
	// With Fsync, the committer's goroutine stages a group while the writer
	// goroutine commits the one before (write): toWrite hands it a staged
	// group, written says that group is committed (or failed), and inflight
	// is the group handed over and not yet reported written.
	toWrite  chan *staging
	written  chan struct{}
	inflight *staging
}

func (s *Store) submit(ctx context.Context, o *op) error { return s.com.submit(ctx, o) }

// submit hands o to the committer, unless the store is closed or refuses
// writes.
func (c *committer) submit(ctx context.Context, o *op) error {
	s := c.s
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	if failed := s.refusal(s.mem.failure()); failed != nil {
		return failed
	}
	select {
	case c.ops <- o:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops taking ops; the committer drains those sent and ends.
func (c *committer) close() {
	c.closeMu.Lock()
	c.closed = true
	close(c.ops)
	c.closeMu.Unlock()
}

func (c *committer) isClosed() bool {
	c.closeMu.RLock()
	defer c.closeMu.RUnlock()
	return c.closed
}

// run is the committer's goroutine. It takes every op waiting, stages them
// together, and commits them in one transaction: group commit. With Fsync
// the commit runs on the writer goroutine (write), so that the next group is
// staged while the last one's record is written and fsynced.
func (c *committer) run() {
	s := c.s
	defer s.wg.Done()
	st := newStaging(s)
	if s.cfg.Durability == Fsync {
		c.toWrite, c.written = make(chan *staging), make(chan struct{})
		writerDone := make(chan struct{})
		go c.write(writerDone)
		defer func() {
			c.awaitWritten()
			close(c.toWrite)
			<-writerDone
		}()
	}
	var (
		batch   []*op
		pending bool // Async: st holds acknowledged changes not yet committed
		flush   *time.Timer
		flushC  <-chan time.Time
	)
	flushPending := func() {
		if pending {
			c.commit(st)
			st.reset()
			pending = false
		}
		if flush != nil {
			flush.Stop()
			flush, flushC = nil, nil
		}
	}
	defer flushPending()
	prevBatch := 0
	var linger *time.Timer
	for {
		select {
		case o, ok := <-c.ops:
			if !ok {
				return
			}
			batch = append(batch[:0], o)
			changes := o.size()
		drain:
			for len(batch) < maxOpsPerCommit && changes < maxChangesPerCommit {
				select {
				case o, ok := <-c.ops:
					if !ok {
						break drain
					}
					batch = append(batch, o)
					changes += o.size()
				default:
					break drain
				}
			}
			// Linger: when the last commit was shared by several requests,
			// more are on their way; wait a little for as many again, so that
			// one commit (two fsyncs, a few hundred µs of CPU) serves them
			// all. Few clients never wait.
			if s.cfg.CommitLinger > 0 && prevBatch >= lingerMinBatch && len(batch) < prevBatch && s.cfg.Durability == Fsync {
				if linger == nil {
					linger = time.NewTimer(s.cfg.CommitLinger)
				} else {
					linger.Reset(s.cfg.CommitLinger)
				}
			wait:
				for len(batch) < prevBatch && changes < maxChangesPerCommit {
					select {
					case o, ok := <-c.ops:
						if !ok {
							break wait
						}
						batch = append(batch, o)
						changes += o.size()
					case <-linger.C:
						break wait
					}
				}
				linger.Stop()
			}
			prevBatch = len(batch)
			c.waitForRoom()
			if s.cfg.Durability == Fsync {
				// Staged over the group last handed to the writer, if any,
				// whether or not it is committed yet (reading it first is
				// right either way), then handed to the writer once that
				// one is.
				st.prev = c.inflight
				c.stage(st, batch)
				if f := s.cfg.hooks.stagedOver; f != nil && st.prev != nil {
					f()
				}
				st = c.handOver(st)
				continue
			}
			c.stage(st, batch)
			if hasFlush(batch) {
				c.commit(st)
				st.reset()
				pending = false
				continue
			}
			// Answered now, published to reads and peers at the commit.
			st.ack()
			pending = true
			if flush == nil {
				flush = time.NewTimer(s.cfg.AsyncFlushInterval)
				flushC = flush.C
			}
			if len(st.deltas) >= maxChangesPerCommit {
				flushPending()
			}
		case <-flushC:
			flush, flushC = nil, nil
			flushPending()
		}
	}
}

// handOver waits until the group being written, if any, is committed, then
// hands st to the writer and returns a staging for the next group. Nothing
// is handed over once the store refuses writes, and requests queued before
// that are answered with the refusal: a failed commit fails the store, so a
// group staged over it, whose absolute values hold its changes, fails too.
func (c *committer) handOver(st *staging) *staging {
	prev := c.awaitWritten()
	st.prev = nil
	if failed := c.s.refusal(c.s.mem.failure()); failed != nil {
		st.failAll(failed)
		st.reset()
		if prev != nil {
			prev.reset()
		}
		return st
	}
	c.toWrite <- st
	c.inflight = st
	if prev == nil {
		return newStaging(c.s)
	}
	prev.reset()
	return prev
}

// awaitWritten waits until the group handed to the writer, if any, is
// committed, and returns it.
func (c *committer) awaitWritten() *staging {
	prev := c.inflight
	if prev != nil {
		<-c.written
		c.inflight = nil
	}
	return prev
}

// write is the writer goroutine: it commits the groups handed to it, in
// order, and reports each.
func (c *committer) write(done chan<- struct{}) {
	defer close(done)
	for st := range c.toWrite {
		c.commit(st)
		c.written <- struct{}{}
	}
}

func hasFlush(batch []*op) bool {
	for _, o := range batch {
		if o.kind == opFlush {
			return true
		}
	}
	return false
}

func (o *op) size() int {
	if o.kind == opApply {
		return 4 * len(o.req.Increments)
	}
	n := len(o.deltas) + len(o.comps)
	for _, r := range o.records {
		n += 1 + len(r.Increments)
	}
	return n
}

// waitForRoom holds the committer while too many slots wait for a checkpoint.
func (c *committer) waitForRoom() {
	s := c.s
	s.mem.waitForRoom(s.cfg.MaxPendingSlots, func() bool { return s.damage.Load() != nil || s.stopping.Load() }, s.ckpt.kickNow)
}

// staging is one group commit being assembled: with Async, several batches
// acknowledged in memory and committed together. Counters are private copies
// until install publishes them. The committer reuses one staging.
type staging struct {
	s *Store
	// prev is the group the writer is committing while this one is
	// staged (Fsync), or nil: its slots, key records, compensations,
	// version vector and seq are newer than mem's until it is installed,
	// and this staging reads them before mem. The writer only reads what
	// prev staged.
	prev  *staging
	now   time.Time
	ops   []*op // of the current batch
	tx    *bolt.Tx
	txGen uint64 // mem's eviction generation when tx was opened

	// The windows of event time winTS at now, if winsValid: they depend on
	// now too, so stage forgets them when it sets now.
	wins      []window.Window
	winTS     time.Time
	winsValid bool

	// Per commit: with Async, across the batches it gathers.
	counters map[string]int32 // the staged slots of each counter: index into staged
	staged   []stagedCounter  // reused across commits, with their slices
	arena    []stagedSlot
	dirty    []int32          // arena entries raised
	other    map[deltaKey]int // merged entries of other replicas: index into deltas
	touched  []int32          // per request: arena entries it adds to
	idx      []int32          // per increment: arena entries of its slots
	render   []pendingRender  // per batch: responses to render once staged
	totalAt  []int32          // per request: arena entry of each increment's total
	reqNo    uint32           // the request apply stages: 1, 2, … from each reset (arena entries start at 0)
	deltas   []crdt.Delta     // raised entries, absolute values
	idem     []crdt.KeyRecord // key records new in this commit
	idemAt   map[string][]int // their indexes in idem, by key
	// compSet holds the staged compensation sets of slots this commit adds
	// to; compAdds lists the additions, for the journal.
	compSet  map[crdt.Slot]crdt.Comps
	compAdds []crdt.CompDelta
	// Counted once the commit is installed: records learned, and how long
	// ago each copy compensated here was accepted.
	recsMerged int
	resolved   []time.Duration
	held       []string // Async: idempotency keys of answered requests, released at commit
	covers     []cover
	vv         map[crdt.ReplicaID]uint64 // staged version vector changes
	seq        uint64                    // seq of this replica's changes in this commit
	lastSeq    uint64                    // this replica's last seq once committed
	ownSeen    uint64                    // highest seq of this replica's entries met in merges
	err        error                     // a read of state.db failed
	nops       int
	buf        []byte       // journal record encoding
	ownBuf     []crdt.Delta // this replica's deltas, for the sink
	ownRecs    []crdt.KeyRecord
}

// stagedCounter indexes one counter's staged slots in the arena. An
// increment stages a few windows of a counter, looked up by a scan; a merge
// may stage many, looked up in a map once there are more than scanMax.
type stagedCounter struct {
	total int32 // or -1
	wins  []stagedWin
	many  map[memWin]int32 // every window, once wins holds more than scanMax
}

type stagedWin struct {
	w memWin
	i int32
}

const scanMax = 16

func (sc *stagedCounter) find(slot crdt.Slot) (int32, bool) {
	if slot.IsTotal() {
		return sc.total, sc.total >= 0
	}
	w := memWin{slot.Res, slot.Start}
	if sc.many != nil {
		i, ok := sc.many[w]
		return i, ok
	}
	for _, x := range sc.wins {
		if x.w == w {
			return x.i, true
		}
	}
	return -1, false
}

func (sc *stagedCounter) set(slot crdt.Slot, i int32) {
	if slot.IsTotal() {
		sc.total = i
		return
	}
	w := memWin{slot.Res, slot.Start}
	if sc.many != nil {
		sc.many[w] = i
		return
	}
	sc.wins = append(sc.wins, stagedWin{w, i})
	if len(sc.wins) > scanMax {
		sc.many = make(map[memWin]int32, 2*len(sc.wins))
		for _, x := range sc.wins {
			sc.many[x.w] = x.i
		}
	}
}

type stagedSlot struct {
	slot  crdt.Slot
	g     *crdt.GCounter
	dirty bool
	own   int    // index into deltas of this replica's entry in this commit, or -1
	req   uint32 // request whose amount pend holds
	pend  uint64 // that request's amount for this slot
}

type deltaKey struct {
	slot    crdt.Slot
	replica crdt.ReplicaID
}

func newStaging(s *Store) *staging {
	return &staging{
		s:        s,
		counters: make(map[string]int32),
		other:    make(map[deltaKey]int),
		vv:       make(map[crdt.ReplicaID]uint64),
		compSet:  make(map[crdt.Slot]crdt.Comps),
		idemAt:   make(map[string][]int),
	}
}

// reset empties st after a commit.
func (st *staging) reset() {
	clear(st.counters)
	st.staged = st.staged[:0]
	clear(st.other)
	st.arena = st.arena[:0]
	st.dirty = st.dirty[:0]
	st.deltas = st.deltas[:0]
	st.idem = st.idem[:0]
	clear(st.idemAt)
	clear(st.compSet)
	st.compAdds = st.compAdds[:0]
	st.recsMerged, st.resolved = 0, st.resolved[:0]
	st.covers = st.covers[:0]
	st.held = st.held[:0]
	clear(st.vv)
	st.seq, st.lastSeq, st.ownSeen, st.err, st.nops = 0, 0, 0, nil, 0
	// Request numbers restart with the arena: run on from commit to commit,
	// they would wrap to the 0 that new arena entries carry.
	st.reqNo = 0
	st.prev = nil
}

// stage computes the effect of ops on top of what st already holds: with
// Async, the batches acknowledged since the last commit, which live only in
// st until they commit together, under one seq.
func (c *committer) stage(st *staging, ops []*op) {
	s := c.s
	st.now, st.winsValid = s.cfg.Now(), false
	st.ops = append(st.ops[:0], ops...)
	st.nops += len(ops)
	seq := s.mem.committedSeq()
	if st.prev != nil {
		seq = max(seq, st.prev.lastSeq)
	}
	st.seq = max(st.seq, seq+1)
	st.lastSeq = max(st.lastSeq, seq)
	for _, o := range ops {
		if o.kind != opMerge {
			continue
		}
		for _, d := range o.deltas {
			if d.Entry.Replica == s.replica && d.Entry.Seq <= maxOwnSeen {
				st.ownSeen = max(st.ownSeen, d.Entry.Seq)
			}
		}
	}
	if st.ownSeen >= st.seq {
		// Peers hold entries of this replica newer than this disk: the data
		// directory was restored from an older copy. Number new commits past
		// everything peers have, so that nothing of ours is taken as old news.
		s.log.Warn("peers hold newer entries of this replica; continuing after them", "seq", st.seq-1, "peer_seq", st.ownSeen)
		st.seq = st.ownSeen + 1
	}
	st.lastSeq = max(st.lastSeq, st.ownSeen)
	for _, o := range ops {
		if st.err != nil {
			// A read of state.db failed: this commit fails whole, and a slot
			// whose read failed is in the arena without its counter, which
			// no later op may touch.
			o.err = st.err
			continue
		}
		switch o.kind {
		case opApply:
			o.err = st.apply(o)
		case opMerge:
			o.learned, o.err = st.merge(o)
		}
	}
	if st.tx != nil {
		st.tx.Rollback()
		st.tx = nil
	}
	// Responses are rendered with no read of state.db open: the API's code
	// never holds a transaction that a checkpoint's remap would wait for.
	for _, p := range st.render {
		if p.o.err != nil {
			continue
		}
		p.o.res.Response = p.o.req.Render(p.o.res)
		if p.rec >= 0 {
			st.idem[p.rec].Response = p.o.res.Response
		}
	}
	st.render = st.render[:0]
}

// stageSlot returns the arena index of slot's private counter, loading it
// from mem or state.db on first use in this commit.
func (st *staging) stageSlot(slot crdt.Slot) (int32, error) {
	var out [1]int32
	err := st.stageSlots(slot.Name, []crdt.Slot{slot}, out[:])
	return out[0], err
}

// stageSlots sets idx[k] to the arena index of slots[k]'s private counter,
// loading those not staged yet from mem or state.db. Every slot is one of
// counter name's: its name is hashed once here and once in mem.
func (st *staging) stageSlots(name string, slots []crdt.Slot, idx []int32) error {
	var sc *stagedCounter
	if j, ok := st.counters[name]; ok {
		sc = &st.staged[j]
	} else {
		st.counters[name] = int32(len(st.staged))
		if len(st.staged) < cap(st.staged) {
			st.staged = st.staged[:len(st.staged)+1]
			sc = &st.staged[len(st.staged)-1]
			*sc = stagedCounter{total: -1, wins: sc.wins[:0]}
		} else {
			st.staged = append(st.staged, stagedCounter{total: -1})
			sc = &st.staged[len(st.staged)-1]
		}
	}
	missing := false
	for k, slot := range slots {
		i, ok := sc.find(slot)
		if !ok {
			i, missing = -1, true
		}
		idx[k] = i
	}
	if !missing {
		return nil
	}
	// The slots met for the first time get arena entries, which take mem's
	// counters, copied under one hold of mem's lock.
	s := st.s
	first := int32(len(st.arena))
	for k, slot := range slots {
		if idx[k] >= 0 {
			continue
		}
		if i, ok := sc.find(slot); ok { // slot twice in slots
			idx[k] = i
			continue
		}
		i := int32(len(st.arena))
		st.arena = append(st.arena, stagedSlot{slot: slot, own: -1})
		sc.set(slot, i)
		idx[k] = i
	}
	if p := st.prev; p != nil {
		// The group handed to the writer holds these slots newer than
		// mem does until it is published, and the same after.
		if j, ok := p.counters[name]; ok {
			psc := &p.staged[j]
			all := true
			for i := first; i < int32(len(st.arena)); i++ {
				if k, ok := psc.find(st.arena[i].slot); ok && p.arena[k].g != nil {
					st.arena[i].g = p.arena[k].g.Clone()
				} else {
					all = false
				}
			}
			if all {
				return nil // mem holds nothing newer: no need to look there
			}
		}
	}
	gen := s.mem.copySlots(name, st.arena[first:])
	// What mem did not hold is in state.db, as of the eviction generation
	// read with mem.
	for i := first; i < int32(len(st.arena)); i++ {
		ss := &st.arena[i]
		if ss.g != nil {
			continue
		}
		err := st.read(gen, func(tx *bolt.Tx) (err error) {
			ss.g, err = s.loadCounter(tx, ss.slot)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readTx returns a read transaction on state.db that sees everything mem held
// when its eviction generation was gen. Something absent from mem is in
// state.db as of the checkpoint that evicted it; a transaction opened before
// that eviction does not see it, so it is reopened. (The generation is read before the
// transaction opens, so a transaction never claims to be newer than it is.)
func (st *staging) readTx(gen uint64) (*bolt.Tx, error) {
	if st.tx != nil && st.txGen != gen {
		st.tx.Rollback()
		st.tx = nil
	}
	if st.tx == nil {
		tx, err := st.s.state.Begin(false)
		if err != nil {
			return nil, err
		}
		st.tx, st.txGen = tx, gen
	}
	return st.tx, nil
}

// read runs fn on the read transaction of readTx(gen). That transaction
// is opened with Begin, outside View, so fn runs under the guard View gives:
// a damaged page is an error, not a panic on the committer.
func (st *staging) read(gen uint64, fn func(*bolt.Tx) error) error {
	return st.s.state.guard(func() error {
		tx, err := st.readTx(gen)
		if err != nil {
			return err
		}
		return fn(tx)
	})
}

// records returns every record of key: staged in this commit, in mem, and in
// state.db. With look of a lookup that found no record of key in state.db,
// state.db is read only if records have moved there from mem since.
func (st *staging) records(key string, look *idemLookup) ([]crdt.KeyRecord, error) {
	var recs []crdt.KeyRecord
	for _, i := range st.idemAt[key] {
		recs = append(recs, st.idem[i])
	}
	if p := st.prev; p != nil {
		for _, i := range p.idemAt[key] {
			recs = addRecord(recs, p.idem[i])
		}
	}
	s := st.s
	recs, gen, idemGen := s.mem.stagingRecords(key, recs)
	skip := look != nil && look.storedNone && look.gen == idemGen
	if skip {
		s.stats.storedReadsSkipped.Add(1)
		return recs, nil
	}
	err := st.read(gen, func(tx *bolt.Tx) (err error) {
		recs, _, err = s.storedRecords(tx, key, recs)
		return err
	})
	return recs, err
}

// comps returns the compensations of slot as this commit stages them.
func (st *staging) comps(slot crdt.Slot) crdt.Comps {
	if cs, ok := st.compSet[slot]; ok {
		return cs
	}
	if p := st.prev; p != nil {
		if cs, ok := p.compSet[slot]; ok {
			return cs
		}
	}
	return st.s.mem.slotComps(slot)
}

// addComp stages compensation c of slot and reports whether it was new.
func (st *staging) addComp(slot crdt.Slot, c crdt.Comp) bool {
	if !st.s.keep(slot, st.now) {
		return false
	}
	cs, added := st.comps(slot).Add(c)
	if added {
		st.compSet[slot] = cs
		st.compAdds = append(st.compAdds, crdt.CompDelta{Slot: slot, Comp: c})
	}
	return added
}

// addRecord stages a key record new to this store and settles which copies
// of its request lose: every node holding the same records settles the same
// (see docs/ARCHITECTURE.md, "Idempotency keys across the cluster"). look,
// if not nil, is what idemBegin saw of state.db for r's request.
func (st *staging) addRecord(r crdt.KeyRecord, look *idemLookup) error {
	group, err := st.records(r.Key, look)
	if err != nil {
		return err
	}
	for i := range group {
		if group[i].SameCopy(&r) {
			return nil
		}
	}
	st.idemAt[r.Key] = append(st.idemAt[r.Key], len(st.idem))
	st.idem = append(st.idem, r)
	group = append(group, r)
	if len(group) < 2 {
		return nil
	}
	now := st.now
	for _, i := range crdt.Losers(group) {
		added := false
		for _, c := range compsOf(st.s.cfg.Windows, &group[i]) {
			if st.addComp(c.Slot, c.Comp) {
				added = true
			}
		}
		if added {
			st.resolved = append(st.resolved, now.Sub(time.Unix(0, group[i].Accepted)))
			st.s.log.Debug("resolved a duplicate of a keyed request", "key", group[i].Key, "loser", group[i].Origin.String(), "seq", group[i].Seq)
		}
	}
	return nil
}

// raise records that e is the new entry of arena slot i.
func (st *staging) raise(i int32, e crdt.Entry) {
	ss := &st.arena[i]
	if !ss.dirty {
		ss.dirty = true
		st.dirty = append(st.dirty, i)
	}
	if e.Replica == st.s.replica {
		if ss.own >= 0 {
			st.deltas[ss.own].Entry = e
			return
		}
		ss.own = len(st.deltas)
	} else {
		k := deltaKey{ss.slot, e.Replica}
		if j, ok := st.other[k]; ok {
			st.deltas[j].Entry = e
			return
		}
		st.other[k] = len(st.deltas)
	}
	st.deltas = append(st.deltas, crdt.Delta{Slot: ss.slot, Entry: e})
}

func (st *staging) apply(o *op) error {
	s, req := st.s, o.req
	// First pass: sum the request's amount per slot on the staged slots,
	// stamped with this request's number, refusing a sum that overflows.
	st.reqNo++
	touched := st.touched[:0]
	totals := st.totalAt[:0]
	var slots [9]crdt.Slot
	defer func() { st.touched, st.totalAt = touched, totals }()
	for _, inc := range req.Increments {
		// The increment's total and windows, staged in one go. A batch's
		// increments usually share one event time (the node's clock when
		// the request came): its windows are worked out once.
		if !st.winsValid || !inc.TS.Equal(st.winTS) {
			st.wins = s.cfg.Windows.AppendWindows(st.wins[:0], inc.TS, st.now)
			st.winTS, st.winsValid = inc.TS, true
		}
		ss := append(slots[:0], crdt.TotalSlot(inc.Name))
		for _, w := range st.wins {
			ss = append(ss, crdt.Slot{Name: inc.Name, Res: w.Res, Start: w.Start})
		}
		idx := slices.Grow(st.idx[:0], len(ss))[:len(ss)]
		st.idx = idx
		if err := st.stageSlots(inc.Name, ss, idx); err != nil {
			st.err = err
			return err
		}
		totals = append(totals, idx[0])
		for _, i := range idx {
			a := &st.arena[i]
			if a.req != st.reqNo {
				a.req, a.pend = st.reqNo, 0
				touched = append(touched, i)
			}
			if a.pend > math.MaxUint64-inc.Amount {
				return ErrOverflow
			}
			a.pend += inc.Amount
		}
	}
	// Second pass: refuse the whole request if any slot would overflow.
	for _, i := range touched {
		if err := st.arena[i].g.CanAdd(s.replica, st.arena[i].pend); err != nil {
			return err
		}
	}
	// Third pass: apply.
	for _, i := range touched {
		e, _ := st.arena[i].g.Add(s.replica, st.arena[i].pend, st.seq)
		st.raise(i, e)
	}
	st.lastSeq = max(st.lastSeq, st.seq)
	o.res.Totals = make([]uint64, len(req.Increments))
	for k, i := range totals {
		o.res.Totals[k] = st.comps(st.arena[i].slot).Value(st.arena[i].g)
	}
	if req.IdempotencyKey != "" {
		r := crdt.KeyRecord{
			Key:         req.IdempotencyKey,
			Fingerprint: req.Fingerprint,
			Origin:      s.replica,
			Seq:         st.seq,
			Accepted:    st.now.UnixNano(),
			Expires:     st.now.Add(s.cfg.IdempotencyTTL).UnixNano(),
			Increments:  make([]crdt.KeyedIncrement, len(req.Increments)),
		}
		for k, inc := range req.Increments {
			r.Increments[k] = crdt.KeyedIncrement{Name: inc.Name, Amount: inc.Amount, TS: inc.TS.UnixNano()}
		}
		// A record of this key from a peer may have arrived since idemBegin
		// looked: then this copy is a duplicate, settled like any other.
		rec := len(st.idem)
		if err := st.addRecord(r, &o.look); err != nil {
			st.err = err
			return err
		}
		if len(st.idem) == rec {
			rec = -1
		}
		if req.Render != nil {
			st.render = append(st.render, pendingRender{o: o, rec: rec})
		}
	}
	return nil
}

// pendingRender is a keyed request whose response is rendered once the batch
// is staged: the response goes into its record, at st.idem[rec] (if any).
type pendingRender struct {
	o   *op
	rec int
}

func (st *staging) merge(o *op) ([]crdt.Delta, error) {
	s := st.s
	var learned []crdt.Delta
	for _, d := range o.deltas {
		if !d.Slot.Valid() || !s.keep(d.Slot, st.now) || d.Entry.Replica.IsZero() || d.Entry.Seq > maxSeq {
			continue
		}
		i, err := st.stageSlot(d.Slot)
		if err != nil {
			st.err = err
			return learned, err
		}
		if st.arena[i].g.MergeEntry(d.Entry) {
			st.raise(i, d.Entry)
			learned = append(learned, d)
		}
	}
	for _, c := range o.comps {
		if c.Slot.Valid() && !c.Comp.Loser.IsZero() && c.Comp.Value > 0 {
			st.addComp(c.Slot, c.Comp)
		}
	}
	for _, r := range o.records {
		if r.Origin.IsZero() || r.Key == "" || retainUntil(&r) <= st.now.UnixNano() || r.Seq > maxSeq {
			continue // records past their retention are dropped, as expired windows are
		}
		n := len(st.idem)
		if err := st.addRecord(r, nil); err != nil {
			st.err = err
			return learned, err
		}
		if len(st.idem) > n {
			st.recsMerged++
		}
	}
	for _, c := range o.covers {
		if c.Origin == s.replica || c.To <= c.From {
			continue
		}
		cur, ok := st.vv[c.Origin]
		if !ok && st.prev != nil {
			cur, ok = st.prev.vv[c.Origin]
		}
		if !ok {
			cur = s.mem.vvEntry(c.Origin)
		}
		if cur >= c.From && c.To > cur {
			st.vv[c.Origin] = c.To
			st.covers = append(st.covers, cover{Origin: c.Origin, Seq: c.To})
		}
	}
	return learned, nil
}

func (st *staging) record() *record {
	return &record{seq: st.lastSeq, deltas: st.deltas, records: st.idem, covers: st.covers, comps: st.compAdds}
}

// commit writes st's journal record, publishes it to mem and hands this
// replica's news to the sink.
func (c *committer) commit(st *staging) {
	s := c.s
	if st.err != nil {
		st.failAll(s.fail(st.err))
		return
	}
	r := st.record()
	if !r.empty() {
		n := c.jnext
		start := time.Now()
		st.buf = r.appendTo(st.buf[:0])
		s.jmu.Lock()
		err := s.journal.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketJournal).Put(u64(n), st.buf)
		})
		s.jmu.Unlock()
		took := time.Since(start)
		s.stats.commits.Add(1)
		s.stats.commitNanos.Add(uint64(took))
		s.stats.committedOps.Add(uint64(st.nops))
		if s.cfg.ObserveCommit != nil {
			s.cfg.ObserveCommit(st.nops, took)
		}
		if err != nil {
			st.failAll(s.fail(fmt.Errorf("commit journal record %d: %w", n, err)))
			return
		}
		c.jnext++
		pending := s.mem.install(st, n)
		journaled := c.journaled.Add(int64(len(st.deltas)))
		if s.cfg.CheckpointInterval > 0 && (pending >= s.cfg.CheckpointSlots || journaled-s.ckpt.journaledAt.Load() >= int64(s.cfg.CheckpointDeltas)) {
			s.ckpt.kickNow()
		}
		s.stats.recordsMerged.Add(uint64(st.recsMerged))
		s.stats.duplicates.Add(uint64(len(st.resolved)))
		if s.cfg.ObserveResolution != nil {
			for _, d := range st.resolved {
				s.cfg.ObserveResolution(d)
			}
		}
	}
	if s.cfg.Sink != nil {
		own := st.ownBuf[:0]
		for _, d := range st.deltas {
			if d.Entry.Replica == s.replica {
				own = append(own, d)
			}
		}
		st.ownBuf = own
		if len(own) > 0 {
			s.cfg.Sink.Committed(own) // it must not keep the slice: st reuses it
		}
		recs := st.ownRecs[:0]
		for _, r := range st.idem {
			if r.Origin == s.replica {
				recs = append(recs, r)
			}
		}
		st.ownRecs = recs
		if len(recs) > 0 {
			s.cfg.Sink.CommittedRecords(recs)
		}
	}
	// Answer last: an acknowledged increment is already on its way to peers.
	st.ack()
	st.release()
}

// ack answers the ops of st's current batch. Their idempotency keys stay
// held until release: a retry waits for the commit rather than applying
// again.
func (st *staging) ack() {
	for _, o := range st.ops {
		if o.kind == opApply && o.req.IdempotencyKey != "" {
			if o.err != nil {
				st.s.idemEnd(o.req.IdempotencyKey) // refused: nothing to wait for
			} else {
				st.held = append(st.held, o.req.IdempotencyKey)
			}
		}
		o.done <- struct{}{}
	}
	st.ops = st.ops[:0]
}

// release lets go of the idempotency keys of every request st answered: they
// are committed, or the store has failed.
func (st *staging) release() {
	for _, k := range st.held {
		st.s.idemEnd(k)
	}
	st.held = st.held[:0]
}

func (st *staging) failAll(err error) {
	for _, o := range st.ops {
		if o.err == nil {
			o.err = err
		}
	}
	st.ack()
	st.release()
}
