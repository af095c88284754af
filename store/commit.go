package store

import (
	"context"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"abacus/crdt"
	"abacus/window"
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
	// once, from the committer, and must be quick and must not call the store.
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
)

type op struct {
	kind   opKind
	req    *Request
	deltas []crdt.Delta
	covers []Cover

	done    chan struct{}
	res     Result
	learned int
	err     error
}

// Limits on one commit, so that a commit, its journal record and one seq's
// entries stay bounded (a seq's entries are never split across catch-up chunks).
const (
	maxOpsPerCommit     = 1024
	maxChangesPerCommit = 50_000
)

// Apply validates and applies req, and returns once it is durable (Fsync) or
// in memory (Async). Cancelling ctx stops the wait, not the commit: a request
// that reached the committer may still apply.
func (s *Store) Apply(ctx context.Context, req *Request) (Result, error) {
	if err := s.validate(req); err != nil {
		return Result{}, err
	}
	o := &op{kind: opApply, req: req, done: make(chan struct{})}
	if req.IdempotencyKey != "" {
		res, replayed, err := s.idemBegin(ctx, req)
		if err != nil || replayed {
			return res, err
		}
	}
	if err := s.submit(ctx, o); err != nil {
		if req.IdempotencyKey != "" {
			s.idemEnd(req.IdempotencyKey)
		}
		return Result{}, err
	}
	select {
	case <-o.done:
		return o.res, o.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Merge applies entries learned from peers and the covers that come with them,
// and returns once they are durable, with the number of entries that raised
// something here.
func (s *Store) Merge(ctx context.Context, deltas []crdt.Delta, covers []Cover) (int, error) {
	o := &op{kind: opMerge, deltas: deltas, covers: covers, done: make(chan struct{})}
	if err := s.submit(ctx, o); err != nil {
		return 0, err
	}
	select {
	case <-o.done:
		return o.learned, o.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
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

func (s *Store) submit(ctx context.Context, o *op) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.mu.RLock()
	failed := s.failed
	s.mu.RUnlock()
	if failed != nil {
		return failed
	}
	select {
	case s.ops <- o:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runCommitter is the only goroutine that writes journal.db records and
// changes mem. It takes every op waiting, stages them together, and commits
// them in one transaction: group commit.
func (s *Store) runCommitter() {
	defer s.wg.Done()
	var (
		batch   []*op
		pending *staging // Async: acknowledged, not yet committed
		flush   *time.Timer
		flushC  <-chan time.Time
	)
	flushPending := func() {
		if pending != nil {
			s.commit(pending)
			pending = nil
		}
		if flush != nil {
			flush.Stop()
			flush, flushC = nil, nil
		}
	}
	defer flushPending()
	for {
		select {
		case o, ok := <-s.ops:
			if !ok {
				return
			}
			batch = append(batch[:0], o)
			changes := o.size()
		drain:
			for len(batch) < maxOpsPerCommit && changes < maxChangesPerCommit {
				select {
				case o, ok := <-s.ops:
					if !ok {
						break drain
					}
					batch = append(batch, o)
					changes += o.size()
				default:
					break drain
				}
			}
			s.waitForRoom()
			st := s.stage(batch, pending)
			if s.cfg.Durability == Fsync {
				s.commit(st)
				continue
			}
			s.install(st)
			st.ack()
			pending = st
			if flush == nil {
				flush = time.NewTimer(s.cfg.AsyncFlushInterval)
				flushC = flush.C
			}
			if len(pending.deltas) >= maxChangesPerCommit {
				flushPending()
			}
		case <-flushC:
			flush, flushC = nil, nil
			flushPending()
		}
	}
}

func (o *op) size() int {
	if o.kind == opApply {
		return 4 * len(o.req.Increments)
	}
	return len(o.deltas)
}

// waitForRoom holds the committer while too many slots wait for a checkpoint.
func (s *Store) waitForRoom() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.mem) >= s.cfg.MaxPendingSlots && s.failed == nil && !s.stopping.Load() {
		s.kickCheckpoint()
		s.roomCond.Wait()
	}
}

// staging is one group commit being assembled. Counters are private copies
// until install publishes them.
type staging struct {
	s   *Store
	now time.Time
	ops []*op
	tx  *bolt.Tx // state.db read transaction, opened on first need

	slots   map[crdt.Slot]*crdt.GCounter
	changed map[deltaKey]int // index into deltas
	deltas  []crdt.Delta
	idem    []idemRecord
	covers  []cover
	vv      map[crdt.ReplicaID]uint64 // staged version vector changes
	seq     uint64                    // seq of this replica's changes in this commit
	lastSeq uint64                    // this replica's last seq once committed
	ownSeen uint64                    // highest seq of this replica's entries met in merges
	err     error                     // a read of state.db failed
	nops    int                       // ops staged, across Async batches
}

type deltaKey struct {
	slot    crdt.Slot
	replica crdt.ReplicaID
}

// stage computes the effect of ops. With Async, prev is the acknowledged but
// uncommitted staging this one extends.
func (s *Store) stage(ops []*op, prev *staging) *staging {
	st := prev
	if st == nil {
		st = &staging{
			s:       s,
			slots:   make(map[crdt.Slot]*crdt.GCounter),
			changed: make(map[deltaKey]int),
			vv:      make(map[crdt.ReplicaID]uint64),
		}
	} else {
		// Async: the counters of prev are installed in mem; further changes
		// must go to fresh copies so that mem's counters never change.
		clear(st.slots)
	}
	st.now = s.cfg.Now()
	st.ops = append(st.ops[:0], ops...)
	st.nops += len(ops)
	s.mu.RLock()
	st.seq = s.seq + 1
	st.lastSeq = max(st.lastSeq, s.seq)
	s.mu.RUnlock()
	for _, o := range ops {
		if o.kind != opMerge {
			continue
		}
		for _, d := range o.deltas {
			if d.Entry.Replica == s.replica {
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
	return st
}

func (st *staging) counter(slot crdt.Slot) (*crdt.GCounter, error) {
	if g, ok := st.slots[slot]; ok {
		return g, nil
	}
	s := st.s
	s.mu.RLock()
	g := s.mem[slot]
	s.mu.RUnlock()
	if g != nil {
		g = g.Clone()
	} else {
		if st.tx == nil {
			tx, err := s.state.Begin(false)
			if err != nil {
				return nil, err
			}
			st.tx = tx
		}
		var err error
		if g, err = s.loadCounter(st.tx, slot); err != nil {
			return nil, err
		}
	}
	st.slots[slot] = g
	return g, nil
}

func (st *staging) raise(slot crdt.Slot, e crdt.Entry) {
	k := deltaKey{slot, e.Replica}
	if i, ok := st.changed[k]; ok {
		st.deltas[i].Entry = e
		return
	}
	st.changed[k] = len(st.deltas)
	st.deltas = append(st.deltas, crdt.Delta{Slot: slot, Entry: e})
}

type slotAmount struct {
	slot   crdt.Slot
	amount uint64
}

func (st *staging) apply(o *op) error {
	s, req := st.s, o.req
	// Sum the request's amounts per slot, refusing a sum that overflows.
	var wins [8]window.Window
	adds := make([]slotAmount, 0, 4*len(req.Increments))
	var index map[crdt.Slot]int
	if len(req.Increments) > 4 {
		index = make(map[crdt.Slot]int, 4*len(req.Increments))
	}
	add := func(slot crdt.Slot, amount uint64) bool {
		i := -1
		if index != nil {
			if j, ok := index[slot]; ok {
				i = j
			}
		} else {
			for j := range adds {
				if adds[j].slot == slot {
					i = j
					break
				}
			}
		}
		if i < 0 {
			if index != nil {
				index[slot] = len(adds)
			}
			adds = append(adds, slotAmount{slot, amount})
			return true
		}
		if adds[i].amount > math.MaxUint64-amount {
			return false
		}
		adds[i].amount += amount
		return true
	}
	for _, inc := range req.Increments {
		if !add(crdt.TotalSlot(inc.Name), inc.Amount) {
			return ErrOverflow
		}
		for _, w := range s.cfg.Windows.AppendWindows(wins[:0], inc.TS, st.now) {
			if !add(crdt.Slot{Name: inc.Name, Res: w.Res, Start: w.Start}, inc.Amount) {
				return ErrOverflow
			}
		}
	}
	for _, a := range adds {
		g, err := st.counter(a.slot)
		if err != nil {
			st.err = err
			return err
		}
		if err := g.CanAdd(s.replica, a.amount); err != nil {
			return err
		}
	}
	for _, a := range adds {
		e, _ := st.slots[a.slot].Add(s.replica, a.amount, st.seq)
		st.raise(a.slot, e)
	}
	st.lastSeq = max(st.lastSeq, st.seq)
	o.res.Totals = make([]uint64, len(req.Increments))
	for i, inc := range req.Increments {
		o.res.Totals[i] = st.slots[crdt.TotalSlot(inc.Name)].Value()
	}
	if req.IdempotencyKey != "" {
		if req.Render != nil {
			o.res.Response = req.Render(o.res)
		}
		st.idem = append(st.idem, idemRecord{
			Key:         req.IdempotencyKey,
			Expires:     st.now.Add(s.cfg.IdempotencyTTL).UnixNano(),
			Fingerprint: req.Fingerprint,
			Response:    o.res.Response,
		})
	}
	return nil
}

func (st *staging) merge(o *op) (int, error) {
	s := st.s
	learned := 0
	for _, d := range o.deltas {
		if !d.Slot.Valid() || !s.keep(d.Slot, st.now) || d.Entry.Replica.IsZero() {
			continue
		}
		g, err := st.counter(d.Slot)
		if err != nil {
			st.err = err
			return learned, err
		}
		if g.MergeEntry(d.Entry) {
			st.raise(d.Slot, d.Entry)
			learned++
		}
	}
	for _, c := range o.covers {
		if c.Origin == s.replica || c.To <= c.From {
			continue
		}
		cur, ok := st.vv[c.Origin]
		if !ok {
			s.mu.RLock()
			cur = s.vv[c.Origin]
			s.mu.RUnlock()
		}
		if cur >= c.From && c.To > cur {
			st.vv[c.Origin] = c.To
			st.covers = append(st.covers, cover{Origin: c.Origin, Seq: c.To})
		}
	}
	return learned, nil
}

func (st *staging) record() *record {
	return &record{seq: st.lastSeq, deltas: st.deltas, idem: st.idem, covers: st.covers}
}

// commit writes st's journal record, publishes it (Fsync) and calls OnCommit.
func (s *Store) commit(st *staging) {
	if st.err != nil {
		err := s.fail(st.err)
		st.failAll(err)
		return
	}
	r := st.record()
	if !r.empty() {
		n := s.jnext
		start := time.Now()
		err := s.journal.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketJournal).Put(u64(n), r.appendTo(nil))
		})
		s.stats.commits.Add(1)
		s.stats.commitNanos.Add(uint64(time.Since(start)))
		s.stats.committedOps.Add(uint64(st.nops))
		if err != nil {
			err = s.fail(fmt.Errorf("commit journal record %d: %w", n, err))
			st.failAll(err)
			return
		}
		s.jnext++
		if s.cfg.Durability == Fsync {
			s.install(st)
		}
		s.mu.Lock()
		s.jlast = n // every record up to n is now in mem
		s.mu.Unlock()
	}
	if s.cfg.Durability == Fsync {
		st.ack()
	}
	if len(st.deltas) > 0 && s.cfg.OnCommit != nil {
		s.cfg.OnCommit(st.deltas)
	}
}

// install publishes st's changes to mem, where reads and later stagings see
// them.
func (s *Store) install(st *staging) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range st.changed {
		if g, ok := st.slots[k.slot]; ok {
			s.putMem(k.slot, g)
		}
	}
	for _, x := range st.idem {
		s.idem[x.Key] = x
	}
	for o, v := range st.vv {
		s.vv[o] = max(s.vv[o], v)
	}
	s.seq = max(s.seq, st.lastSeq)
}

// ack answers every op of st and releases their idempotency keys.
func (st *staging) ack() {
	for _, o := range st.ops {
		if o.kind == opApply && o.req.IdempotencyKey != "" {
			st.s.idemEnd(o.req.IdempotencyKey)
		}
		close(o.done)
	}
	st.ops = st.ops[:0]
}

func (st *staging) failAll(err error) {
	for _, o := range st.ops {
		if o.err == nil {
			o.err = err
		}
	}
	st.ack()
}
