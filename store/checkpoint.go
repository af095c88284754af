package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
)

// checkpointer is the goroutine that writes state.db, and the only one: it
// folds mem into it, runs the retention janitor, and runs the jobs others
// hand it (Checkpoint, Expire, snapshots). It owns the journal's trim point.
type checkpointer struct {
	s       *Store
	req     chan job
	kick    chan struct{}
	stopped chan struct{} // closed when the checkpointer has stopped
	// truncated: journal records up to here are deleted (truncatedSeen
	// publishes it for Stats); burst: slots written since mem was last
	// empty (releaseAfterBurst).
	truncated     uint64
	truncatedSeen atomic.Uint64
	burst         int
	// journaledAt is committer.journaled as of the last checkpoint's
	// snapshot: the committer asks for a checkpoint once it is far behind.
	journaledAt atomic.Int64
}

// run folds mem into state.db every CheckpointInterval, sooner when mem
// grows past CheckpointSlots, and runs the retention janitor.
func (k *checkpointer) run(ctx context.Context) {
	s := k.s
	defer s.wg.Done()
	var tick, janitor <-chan time.Time
	if s.cfg.CheckpointInterval > 0 {
		t := time.NewTicker(s.cfg.CheckpointInterval)
		defer t.Stop()
		tick = t.C
	}
	if s.cfg.JanitorInterval > 0 {
		t := time.NewTicker(s.cfg.JanitorInterval)
		defer t.Stop()
		janitor = t.C
	}
	run := func() {
		defer func() {
			// A kick that came while this checkpoint ran asked for what it
			// just did; the committer asks again if a bound is still passed.
			select {
			case <-k.kick:
			default:
			}
		}()
		if err := k.checkpoint(); err != nil {
			s.log.Error("checkpoint failed", "err", err)
			// A committer waiting for room waits for nothing now: wake
			// it to see the refusal (it holds mem's lock until it waits).
			s.mem.wakeCommitter()
		}
	}
	defer close(k.stopped)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			run()
		case <-k.kick:
			run()
		case job := <-k.req:
			job.reply <- job.fn()
		case <-janitor:
			if err := k.expire(); err != nil {
				s.log.Error("expiring old windows failed", "err", err)
			}
		}
	}
}

// kickNow asks for a checkpoint without waiting for it.
func (k *checkpointer) kickNow() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// job is work for the checkpointer goroutine, the only writer of state.db.
type job struct {
	fn    func() error
	reply chan error
}

// do runs fn on the checkpointer goroutine and waits for it.
func (k *checkpointer) do(ctx context.Context, fn func() error) error {
	j := job{fn: fn, reply: make(chan error, 1)}
	select {
	case k.req <- j:
	case <-k.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-j.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Checkpoint folds every change committed so far into state.db and trims the
// journal. The background checkpointer does this on its own; tests and
// snapshots call it to reach a known state.
func (s *Store) Checkpoint(ctx context.Context) error {
	return s.ckpt.do(ctx, s.ckpt.checkpoint)
}

// Expire deletes expired windows and idempotency keys now. The janitor does
// this every JanitorInterval.
func (s *Store) Expire(ctx context.Context) error {
	return s.ckpt.do(ctx, s.ckpt.expire)
}

type checkpointSnap struct {
	mem   []memSlot // mem's slots, sorted by key once taken
	idem  map[string][]crdt.KeyRecord
	comps map[crdt.Slot]crdt.Comps
	vv    map[crdt.ReplicaID]uint64
	seq   uint64
	jlast uint64
}

// checkpoint runs on the checkpointer goroutine, or in Close once that has
// stopped: never twice at once.
func (k *checkpointer) checkpoint() error {
	s := k.s
	// What the journal holds now is what this checkpoint covers (changes
	// that the committer counts a little later are covered too, and only
	// bring the next checkpoint early): the committer asks for the next one
	// once as much again is in.
	k.journaledAt.Store(s.com.journaled.Load())
	snap, failed := s.mem.snapshot()
	if err := s.refusal(failed); err != nil {
		return err
	}
	if len(snap.mem) == 0 && len(snap.idem) == 0 && len(snap.comps) == 0 && snap.jlast == k.truncated && !s.reps.pending() {
		return nil
	}
	// Writing in key order keeps bbolt's page splits and dirty pages down.
	slices.SortFunc(snap.mem, func(a, b memSlot) int { return a.slot.Compare(b.slot) })
	now := s.cfg.Now()
	start := time.Now()
	// Slots go in transactions of at most checkpointTxSlots: one huge
	// transaction makes bbolt hold every page it touches in memory at once.
	// The metadata — seq, version vector, idempotency keys, replicas — goes
	// in the last, so state.db never claims more than it holds; the journal
	// is trimmed only after that, and replaying it over a checkpoint cut
	// short changes nothing.
	txSlots := s.cfg.hooks.checkpointTxSlots
	for i := 0; i < len(snap.mem); {
		// A block is written whole in one transaction: a chunk that ended
		// inside one would read and write it twice.
		end := min(i+txSlots, len(snap.mem))
		for end < len(snap.mem) && sameBlock(snap.mem[end-1].slot, snap.mem[end].slot) {
			end++
		}
		chunk := snap.mem[i:end]
		i = end
		var repsDone func()
		err := s.state.Update(func(tx *bolt.Tx) error {
			w := newSlotWriter(s, tx, now)
			for _, m := range chunk {
				if err := w.write(m.slot, m.g, now); err != nil {
					return err
				}
			}
			if err := w.flush(); err != nil {
				return err
			}
			// The counters just written name replicas by local index: the
			// index must be on disk with them, or a crash before the
			// metadata transaction leaves indexes nothing can resolve.
			var err error
			repsDone, err = s.reps.persist(tx)
			return err
		})
		if err != nil {
			return s.fail(fmt.Errorf("checkpoint: %w", err))
		}
		repsDone()
		if f := s.cfg.hooks.afterSlotTx; f != nil {
			f()
		}
		s.mem.evict(chunk)
	}
	var repsDone func()
	err := s.state.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(metaSeq, u64(snap.seq)); err != nil {
			return err
		}
		vvb := tx.Bucket(bucketVV)
		for id, v := range snap.vv {
			if err := vvb.Put(bytes.Clone(id[:]), u64(v)); err != nil {
				return err
			}
		}
		if err := writeKeyRecords(tx, snap.idem); err != nil {
			return err
		}
		cb := tx.Bucket(bucketComps)
		for slot, cs := range snap.comps {
			if err := cb.Put(crdt.AppendSlot(nil, slot), appendComps(nil, cs)); err != nil {
				return err
			}
		}
		var err error
		repsDone, err = s.reps.persist(tx)
		return err
	})
	if err != nil {
		return s.fail(fmt.Errorf("checkpoint: %w", err))
	}
	repsDone()

	s.mem.checkpointed(&snap)

	if err := k.truncateJournal(snap.jlast); err != nil {
		return s.fail(err)
	}
	k.releaseAfterBurst(len(snap.mem))
	s.stats.checkpoints.Add(1)
	if s.cfg.ObserveCheckpoint != nil {
		s.cfg.ObserveCheckpoint(len(snap.mem), time.Since(start))
	}
	s.log.Debug("checkpoint", "slots", len(snap.mem), "idempotency_keys", len(snap.idem), "journal_upto", snap.jlast, "took", time.Since(start))
	return nil
}

// burstSlots is how many slots checkpoints must have written since mem was
// last empty for releaseAfterBurst to hand memory back.
const burstSlots = 50_000

// releaseAfterBurst returns the memory a burst of writes used to the
// operating system once the checkpoint that ends it leaves mem empty. Go
// keeps freed heap for reuse and gives it back only slowly; after a burst,
// mem's counters, staging and the journal's buffers (hundreds of megabytes
// under a load of batches) would otherwise stay resident while the node
// idles. Checkpointer only.
func (k *checkpointer) releaseAfterBurst(written int) {
	s := k.s
	k.burst += written
	empty := s.mem.slots() == 0
	if !empty || k.burst < burstSlots {
		return
	}
	k.burst = 0
	go debug.FreeOSMemory()
}

// trimmed notes that the journal holds no record up to n.
func (k *checkpointer) trimmed(n uint64) {
	k.truncated = n
	k.truncatedSeen.Store(n)
}

// truncateJournal deletes the records up to n, whose effects are in state.db.
func (k *checkpointer) truncateJournal(n uint64) error {
	s := k.s
	if n <= k.truncated {
		return nil
	}
	s.jmu.Lock()
	defer s.jmu.Unlock()
	empty := false
	err := s.journal.Update(func(tx *bolt.Tx) error {
		// The keys are listed first and deleted after: a cursor's First
		// after each delete walks past every leaf emptied so far, which made
		// a trim of thousands of records take a third of a second.
		b := tx.Bucket(bucketJournal)
		var trim [][8]byte
		c := b.Cursor()
		k, _ := c.First()
		for ; k != nil && binary.BigEndian.Uint64(k) <= n; k, _ = c.Next() {
			if len(k) != 8 {
				return s.journal.damaged("journal key %x", k)
			}
			trim = append(trim, [8]byte(k))
		}
		empty = k == nil
		for i := range trim {
			if err := b.Delete(trim[i][:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim journal to %d: %w", n, err)
	}
	k.trimmed(n)
	if empty && fileSize(s.journal.path) > s.cfg.hooks.journalRotateSize {
		return k.rotateJournal()
	}
	return nil
}

// rotateJournal replaces the journal, which holds no record, with a new
// file: bbolt never shrinks a file, and a burst of writes leaves the journal
// as big as the most it ever held between two checkpoints (tens of megabytes
// under a load of batches). A crash at any point leaves either file, each
// holding no record. The caller holds jmu.
func (k *checkpointer) rotateJournal() error {
	s := k.s
	path := s.journal.path
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotate journal: %w", err)
	}
	fresh, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
	err = fresh.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketJournal); err != nil {
			return err
		}
		return meta.Put(metaReplica, s.replica[:])
	})
	if cerr := fresh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rotate journal: %w", err)
	}
	if err := s.journal.Close(); err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
	j, err := s.openBolt(path, true)
	if err != nil {
		return fmt.Errorf("rotate journal: %w", err)
	}
	j.onDamage = s.noteDamage
	s.journal = j
	s.stats.journalRotations.Add(1)
	return nil
}

// fillPercent is how full bbolt fills a page before splitting it. Its default
// (50%) suits random inserts; here inserts come in key order within each
// transaction, mostly at the end of a key range, and half-empty pages would
// double the file and the memory its mapped pages take.
const fillPercent = 0.9

// blockFillPercent is how full bbolt fills a page of blocks before splitting
// it. A block grows in place as its windows fill, minute by minute: a page
// split at 90 % leaves a piece that soon outgrows its page again and splits
// into slivers (a quarter full on average, measured on a million slots),
// while halves leave room to grow (two thirds full).
const blockFillPercent = 0.5

func newSlotWriter(s *Store, tx *bolt.Tx, now time.Time) *slotWriter {
	w := &slotWriter{s: s, tx: tx, now: now, totals: tx.Bucket(bucketTotals), blocks: tx.Bucket(bucketBlocks),
		expiry: tx.Bucket(bucketExpiry), seqidx: tx.Bucket(bucketSeqIdx)}
	for _, b := range []*bolt.Bucket{w.totals, w.expiry, w.seqidx} {
		b.FillPercent = fillPercent
	}
	w.blocks.FillPercent = blockFillPercent
	w.bw.w = w
	return w
}

// slotWriter writes counters into state.db and keeps the seq and expiry
// indexes in step: totals one by one, windows into their blocks (blockWriter).
// Index changes are collected and applied in key order at the end: bbolt
// splits nodes only at commit, so keys inserted out of order into one leaf
// would shift an ever longer slice on every insert.
type slotWriter struct {
	s                              *Store
	tx                             *bolt.Tx
	now                            time.Time
	totals, blocks, expiry, seqidx *bolt.Bucket
	bw                             blockWriter
	old                            []storedEntry
	seqDel, seqPut, expPut, expDel [][]byte
}

func (w *slotWriter) write(slot crdt.Slot, g *crdt.GCounter, now time.Time) error {
	s := w.s
	if !s.keep(slot, now) {
		return nil // expired while waiting; the janitor removes what state.db has
	}
	if !slot.IsTotal() {
		return w.bw.add(slot, g)
	}
	b, key := w.totals, []byte(slot.Name)
	oldVal := b.Get(key)
	var err error
	w.old = w.old[:0]
	if oldVal != nil {
		if w.old, err = s.decodeCounter(key, oldVal, w.old); err != nil {
			return fmt.Errorf("slot %+v: %w", slot, err)
		}
	}
	entries := make([]storedEntry, 0, g.Len())
	g.Each(func(e crdt.Entry) {
		idx := s.reps.ensure(e.Replica)
		entries = append(entries, storedEntry{idx: idx, value: e.Value, seq: e.Seq})
		for _, o := range w.old {
			if o.idx == idx {
				if o.seq == e.Seq {
					return
				}
				w.seqDel = append(w.seqDel, seqIdxKey(idx, o.seq, slot))
				break
			}
		}
		w.seqPut = append(w.seqPut, seqIdxKey(idx, e.Seq, slot))
	})
	return b.Put(key, s.encodeCounter(key, entries))
}

// flush writes the open block and applies the collected index changes in key
// order.
func (w *slotWriter) flush() error {
	if err := w.bw.finish(); err != nil {
		return err
	}
	for _, ks := range [][][]byte{w.seqDel, w.seqPut, w.expPut, w.expDel} {
		slices.SortFunc(ks, bytes.Compare)
	}
	for _, k := range w.expDel {
		if err := w.expiry.Delete(k); err != nil {
			return err
		}
	}
	for _, k := range w.seqDel {
		if err := w.seqidx.Delete(k); err != nil {
			return err
		}
	}
	for _, k := range w.seqPut {
		if err := w.seqidx.Put(k, []byte{}); err != nil {
			return err
		}
	}
	for _, k := range w.expPut {
		if err := w.expiry.Put(k, []byte{}); err != nil {
			return err
		}
	}
	return nil
}

// expire deletes windows past retention and idempotency keys past their TTL,
// from mem and from state.db.
func (k *checkpointer) expire() error {
	s := k.s
	now := s.cfg.Now()
	// Find what expired under the read lock, which commits and reads share;
	// take the write lock only to delete it, a bounded group at a time.
	slots, idemKeys, compSlots := s.mem.expired(s.cfg.Windows, now)
	if len(compSlots) > 0 {
		s.mem.dropComps(compSlots)
		err := s.state.Update(func(tx *bolt.Tx) error {
			for _, slot := range compSlots {
				if err := tx.Bucket(bucketComps).Delete(crdt.AppendSlot(nil, slot)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return s.fail(fmt.Errorf("expire compensations: %w", err))
		}
	}
	for len(slots) > 0 || len(idemKeys) > 0 {
		n, m := min(len(slots), 4096), min(len(idemKeys), 4096)
		s.mem.expire(slots[:n], idemKeys[:m], now)
		slots, idemKeys = slots[n:], idemKeys[m:]
	}

	var blocks, keys int
	for _, r := range s.cfg.Windows.Resolutions {
		// A block ending at or before the cutoff has no window left.
		upto := expiryKey(r.Seconds(), r.Cutoff(now)+1, "")
		for {
			n, more, err := k.expireBatch(bucketExpiry, upto[:4], upto, s.deleteBlock)
			blocks += n
			if err != nil {
				return err
			}
			if !more {
				break
			}
		}
	}
	upto := idemExpKey(now.UnixNano()+1, "")
	for {
		n, more, err := k.expireBatch(bucketIdemExp, nil, upto, s.deleteIdem)
		keys += n
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if blocks+keys > 0 {
		s.log.Debug("expired", "blocks", blocks, "idempotency_keys", keys)
	}
	return nil
}

const expireBatchSize = 10_000

// expireBatch deletes up to expireBatchSize keys in [from, upto) from the
// index bucket, calling del for each, in one transaction, so that one janitor
// run never holds the writer for long.
func (cp *checkpointer) expireBatch(index, from, upto []byte, del func(tx *bolt.Tx, k []byte) error) (n int, more bool, err error) {
	s := cp.s
	err = s.state.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(index).Cursor()
		for k, _ := c.Seek(from); k != nil && bytes.Compare(k, upto) < 0; k, _ = c.Seek(from) {
			if n == expireBatchSize {
				more = true
				return nil
			}
			kc := bytes.Clone(k)
			if err := del(tx, kc); err != nil {
				return err
			}
			if err := tx.Bucket(index).Delete(kc); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, more, err
}

// deleteBlock removes the block an expiry key names, with its seqidx keys.
func (s *Store) deleteBlock(tx *bolt.Tx, k []byte) error {
	if len(k) < 12 || binary.BigEndian.Uint32(k) == 0 {
		return fmt.Errorf("expiry key %x: %w", k, ErrIncompatible)
	}
	res, end, name := binary.BigEndian.Uint32(k), int64(binary.BigEndian.Uint64(k[4:])), string(k[12:])
	bstart := end - blockSpan(res)
	bb := tx.Bucket(bucketBlocks)
	key := blockKey(nil, name, res, bstart)
	v := bb.Get(key)
	if v == nil {
		return nil
	}
	var b block.Block
	if err := s.decodeBlock(key, v, &b); err != nil {
		return err
	}
	ref := blockRef(name, res, bstart)
	for _, c := range b.Columns {
		if err := tx.Bucket(bucketSeqIdx).Delete(seqIdxKey(c.Replica, c.Seq, ref)); err != nil {
			return err
		}
	}
	return bb.Delete(key)
}

// deleteIdem removes the key records an idemexp key names: those of the key
// that expired by then, with their seq index keys.
func (s *Store) deleteIdem(tx *bolt.Tx, k []byte) error {
	if len(k) < 8 {
		return fmt.Errorf("idemexp key %x: %w", k, ErrIncompatible)
	}
	expires, key := int64(binary.BigEndian.Uint64(k)), k[8:]
	b := tx.Bucket(bucketIdem)
	if v := b.Get(key); len(v) >= 8 && int64(binary.BigEndian.Uint64(v)) <= expires {
		if err := b.Delete(key); err != nil {
			return err
		}
	}
	rb := tx.Bucket(bucketKeyRecs)
	v := rb.Get(key)
	if v == nil {
		return nil
	}
	recs, err := decodeKeyRecords(v)
	if err != nil {
		return fmt.Errorf("key %q: %w", key, err)
	}
	live := recs[:0]
	for _, r := range recs {
		if until := retainUntil(&r); until > expires {
			live = append(live, r)
			// Records indexed at their expiry (before they were retained
			// past it) are indexed again at the end of their retention.
			if err := tx.Bucket(bucketIdemExp).Put(idemExpKey(until, string(key)), []byte{}); err != nil {
				return err
			}
			continue
		}
		if err := tx.Bucket(bucketKeySeq).Delete(keySeqKey(r.Origin, r.Seq, r.Key)); err != nil {
			return err
		}
	}
	if len(live) == 0 {
		return rb.Delete(key)
	}
	return rb.Put(bytes.Clone(key), appendKeyRecords(nil, live))
}

// writeKeyRecords adds records to state.db, with their seq and expiry index
// keys.
func writeKeyRecords(tx *bolt.Tx, byKey map[string][]crdt.KeyRecord) error {
	rb, seq, exp := tx.Bucket(bucketKeyRecs), tx.Bucket(bucketKeySeq), tx.Bucket(bucketIdemExp)
	// Each bucket gets its keys in order: bbolt inserts into a node's sorted
	// slice, so keys in random order (idempotency keys are random) cost a
	// copy of half the node each, quadratic in a checkpoint's keys.
	keys := slices.Sorted(maps.Keys(byKey))
	var seqKeys, expKeys [][]byte
	for _, k := range keys {
		var recs []crdt.KeyRecord
		if v := rb.Get([]byte(k)); v != nil {
			var err error
			if recs, err = decodeKeyRecords(v); err != nil {
				return fmt.Errorf("key %q: %w", k, err)
			}
		}
		n := len(recs)
		for _, r := range byKey[k] {
			if r.Origin.IsZero() {
				continue
			}
			if recs = addRecord(recs, r); len(recs) == n {
				continue
			}
			n = len(recs)
			seqKeys = append(seqKeys, keySeqKey(r.Origin, r.Seq, r.Key))
			expKeys = append(expKeys, idemExpKey(retainUntil(&r), k))
		}
		if n > 0 {
			if err := rb.Put([]byte(k), appendKeyRecords(nil, recs)); err != nil {
				return err
			}
		}
	}
	for _, idx := range []struct {
		b    *bolt.Bucket
		keys [][]byte
	}{{seq, seqKeys}, {exp, expKeys}} {
		slices.SortFunc(idx.keys, bytes.Compare)
		for _, k := range idx.keys {
			if err := idx.b.Put(k, []byte{}); err != nil {
				return err
			}
		}
	}
	return nil
}
