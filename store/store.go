package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/window"
)

// File names inside the data directory.
const (
	StateFile   = "state.db"
	JournalFile = "journal.db"
)

// Store is one replica's durable counter state. All methods are safe for
// concurrent use.
type Store struct {
	cfg     Config
	log     *slog.Logger
	state   *boltDB
	journal *boltDB
	replica crdt.ReplicaID
	// schema is state.db's schema; Open migrates older ones (migrate.go).
	// sums: counters in state.db carry checksums (schema 2 on).
	schema uint64
	sums   bool
	// unclean: the previous process did not close state.db (a crash, a
	// kill -9, or a snapshot taken while it ran).
	unclean bool
	// damage is the first damage found in a data file while running.
	damage atomic.Pointer[error]

	reps replicas

	// The two goroutines that write, each a type owning its state: the
	// committer (requests, staging, journal records) and the checkpointer
	// (the only writer of state.db).
	com      *committer
	ckpt     *checkpointer
	stopping atomic.Bool // set first thing in Close, read without locks

	stats  statCounters
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	// mem: the slots, key records and compensations not yet checkpointed,
	// the version vector and seq, under one lock (memstate.go).
	mem memState

	// jmu guards the journal handle: the committer appends under it, the
	// checkpointer trims and replaces the file under it (rotateJournal).
	jmu sync.Mutex

	// restored: state.db holds the restored marker (see Restored); restoredSeq
	// is this replica's seq in the snapshot.
	restored    atomic.Bool
	restoredSeq uint64

	idemMu   sync.Mutex
	inflight map[string]chan struct{}
}

// Open opens or creates the data directory cfg.Dir, replays its journal, and
// starts the committer and checkpointer.
func Open(cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg:      cfg,
		log:      cfg.Logger,
		inflight: make(map[string]chan struct{}),
	}
	s.mem.init()
	s.com = &committer{s: s, ops: make(chan *op, 4096)}
	s.ckpt = &checkpointer{s: s, req: make(chan job), stopped: make(chan struct{}), kick: make(chan struct{}, 1)}
	statePath, journalPath := filepath.Join(cfg.Dir, StateFile), filepath.Join(cfg.Dir, JournalFile)
	_, errState := os.Stat(statePath)
	_, errJournal := os.Stat(journalPath)
	if os.IsNotExist(errState) && errJournal == nil && fileSize(journalPath) > 0 {
		// A new state.db would be a new replica, which the journal does
		// not belong to.
		return nil, &DamagedError{File: statePath, Reason: "missing, while journal.db is there"}
	}
	// bbolt writes four pages when it creates a file: an empty journal was
	// cut, and holds nothing. It is as lost as a deleted one.
	emptyJournal := errState == nil && errJournal == nil && fileSize(journalPath) == 0
	if emptyJournal {
		errJournal = os.ErrNotExist
	}
	var err error
	if s.state, err = s.openBolt(statePath, false); err != nil {
		return nil, err
	}
	s.state.onDamage = s.noteDamage
	fresh, err := s.inspect()
	if err != nil {
		s.state.Close()
		return nil, err
	}
	if s.schema == 1 || s.schema == 2 {
		if err := s.migrate(); err != nil {
			s.state.Close()
			return nil, err
		}
	}
	if errState == nil && os.IsNotExist(errJournal) && s.unclean && cfg.RefuseLostJournal {
		s.state.Close()
		return nil, &DamagedError{File: journalPath, Reason: "missing or empty after an unclean shutdown: what this node acknowledged since its last checkpoint is gone, and no peer is configured to give it back"}
	}
	if emptyJournal {
		if err := os.Remove(journalPath); err != nil {
			s.state.Close()
			return nil, fmt.Errorf("remove empty %s: %w", journalPath, err)
		}
		s.log.Warn("journal.db was empty: treating it as lost", "file", journalPath)
	}
	if errState == nil && os.IsNotExist(errJournal) {
		// A restored snapshot, or a journal lost. Mark it before journal.db
		// exists, so that a restart before the node catches up still knows.
		if s.unclean {
			s.log.Warn("journal.db is missing after an unclean shutdown: what this node acknowledged since its last checkpoint is only on its peers now; treating the data directory like a restored snapshot", "file", journalPath)
		}
		if err := s.markRestored(); err != nil {
			s.state.Close()
			return nil, err
		}
	}
	if s.journal, err = s.openBolt(journalPath, true); err != nil {
		s.state.Close()
		return nil, err
	}
	s.journal.onDamage = s.noteDamage
	if err := s.load(fresh); err != nil {
		s.journal.Close()
		s.state.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go s.com.run()
	go s.ckpt.run(ctx)
	return s, nil
}

func (s *Store) openBolt(path string, journal bool) (*boltDB, error) {
	opts := &bolt.Options{
		Timeout:      time.Second,
		FreelistType: bolt.FreelistMapType,
		// The journal is small and rewritten constantly: rebuilding its
		// freelist on open is cheap, writing it on every commit is not.
		NoFreelistSync: journal,
	}
	// The journal's pages are walked whatever its size: a crash under load
	// leaves it big, and it is bounded by the checkpoint's triggers
	// (CheckpointDeltas). A big state.db is walked by inspect, after an
	// unclean shutdown only.
	checkMax := s.cfg.hooks.cleanCheckMax
	if journal {
		checkMax = math.MaxInt64
	}
	db, err := openChecked(path, opts, checkMax)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w", path, ErrInUse)
	}
	var de *DamagedError
	if errors.As(err, &de) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// bbolt grows a file in steps of AllocSize (16 MiB by default), and
	// never shrinks it: a small step keeps a file near what it holds.
	// Records are appended to the journal in key order; state.db grows by
	// checkpoints of a few megabytes.
	db.AllocSize = 1 << 20
	return db, nil
}

// Replica is this store's replica ID.
func (s *Store) Replica() crdt.ReplicaID { return s.replica }

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.cfg.Now() }

// Config returns the configuration the store runs with, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// load reads state.db's metadata and replays the journal. fresh is what
// inspect found: a state.db with no buckets at all (a new directory).
func (s *Store) load(fresh bool) error {
	// state.db is written to here only if it is fresh; the open mark waits
	// for the journal's replay, so that an open refused for a damaged
	// journal leaves state.db as it was.
	var err error
	if fresh {
		fresh, err = s.initState()
	}
	if err != nil {
		return fmt.Errorf("initialise %s: %w", StateFile, err)
	}
	err = s.state.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(metaSchema)
		if len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
			return schemaError(v)
		}
		s.schema, s.sums = schemaVersion, true
		if w := string(meta.Get(metaWindows)); w != s.cfg.Windows.String() {
			return fmt.Errorf("%s was created with windows %q, configured %q: %w", StateFile, w, s.cfg.Windows.String(), ErrIncompatible)
		}
		v = meta.Get(metaReplica)
		if len(v) != len(s.replica) {
			return fmt.Errorf("%s replica id: %w", StateFile, ErrIncompatible)
		}
		copy(s.replica[:], v)
		if v := meta.Get(metaSeq); len(v) == 8 {
			s.mem.loadSeq(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get(metaRestored); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("%s restored marker %x: %w", StateFile, v, ErrIncompatible)
			}
			s.restored.Store(true)
			s.restoredSeq = binary.BigEndian.Uint64(v)
		}
		t, err := loadReplicas(tx)
		if err != nil {
			return err
		}
		s.reps.cur.Store(t)
		s.reps.persisted = len(t.infos)
		err = tx.Bucket(bucketComps).ForEach(func(k, v []byte) error {
			d := crdt.NewDecoder(k)
			slot := d.Slot()
			if d.Err() != nil || d.Len() != 0 {
				return fmt.Errorf("comps key %x: %w", k, ErrIncompatible)
			}
			cs, err := decodeComps(v)
			if err != nil {
				return fmt.Errorf("comps of %+v: %w", slot, err)
			}
			s.mem.loadComps(slot, cs)
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketVV).ForEach(func(k, v []byte) error {
			if len(k) != 16 || len(v) != 8 {
				return fmt.Errorf("vv entry %x: %w", k, ErrIncompatible)
			}
			s.mem.loadVV(crdt.ReplicaID(k), binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load %s: %w", StateFile, err)
	}
	s.reps.ensure(s.replica)
	if fresh {
		s.log.Info("created data directory", "dir", s.cfg.Dir, "replica", s.replica.String())
	}
	if s.restored.Load() {
		s.log.Warn("restored from a snapshot and not yet caught up on this replica's entries", "replica", s.replica.String(), "snapshot_seq", s.restoredSeq)
	}
	if err := s.replay(); err != nil {
		return err
	}
	return s.markOpen()
}

// initState creates state.db's buckets and, in a new directory, its
// metadata with a new replica ID; it reports whether the directory was new.
func (s *Store) initState() (fresh bool, err error) {
	err = s.state.Update(func(tx *bolt.Tx) error {
		for _, b := range stateBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaSchema) == nil {
			fresh = true
			id, err := crdt.NewReplicaID(s.randReader())
			if err != nil {
				return err
			}
			for k, v := range map[string][]byte{
				string(metaSchema):  u64(schemaVersion),
				string(metaReplica): id[:],
				string(metaWindows): []byte(s.cfg.Windows.String()),
				string(metaSeq):     u64(0),
				string(metaCreated): u64(uint64(s.cfg.Now().Unix())),
			} {
				if err := meta.Put([]byte(k), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return fresh, err
}

// markOpen leaves the open mark in state.db, once the journal is replayed.
// Close clears it once everything is checkpointed: found on open, it says
// the previous process stopped without closing.
func (s *Store) markOpen() error {
	err := s.state.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaOpen, []byte{1}) })
	if err != nil {
		return fmt.Errorf("mark %s open: %w", StateFile, err)
	}
	return nil
}

func (s *Store) randReader() interface{ Read([]byte) (int, error) } {
	if s.cfg.Rand != nil {
		return s.cfg.Rand
	}
	return rand.Reader
}

// replay reads journal.db and applies every record to mem: the commits that
// were acknowledged but not yet checkpointed before the last stop.
func (s *Store) replay() error {
	// The journal is written to only when it lacks its buckets or this
	// replica's ID: a damaged one is refused below without a write, and one
	// of another replica by the Update, which then writes nothing.
	ready := false
	err := s.journal.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		ready = meta != nil && tx.Bucket(bucketJournal) != nil && bytes.Equal(meta.Get(metaReplica), s.replica[:])
		return nil
	})
	if err == nil && !ready {
		err = s.journal.Update(func(tx *bolt.Tx) error {
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			if _, err := tx.CreateBucketIfNotExists(bucketJournal); err != nil {
				return err
			}
			switch v := meta.Get(metaReplica); {
			case v == nil:
				if n := tx.Bucket(bucketJournal).Stats().KeyN; n != 0 {
					return fmt.Errorf("%s holds %d records but no replica id: %w", JournalFile, n, ErrIncompatible)
				}
				return meta.Put(metaReplica, s.replica[:])
			case !bytes.Equal(v, s.replica[:]):
				return fmt.Errorf("%s belongs to replica %x, %s to %s: %w", JournalFile, v, StateFile, s.replica, ErrIncompatible)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	// Each record is checked as it is replayed: one that does not decode
	// refuses the open, and mem, the only thing replay changes, goes with
	// the store that failed to open.
	var records int
	now := s.cfg.Now()
	err = s.state.View(func(stx *bolt.Tx) error {
		load := func(slot crdt.Slot) (*crdt.GCounter, error) { return s.loadCounter(stx, slot) }
		return s.journal.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketJournal).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if len(k) != 8 {
					return s.journal.damaged("journal key %x", k)
				}
				n := binary.BigEndian.Uint64(k)
				r, err := decodeRecord(v)
				if errors.Is(err, ErrIncompatible) {
					// Written by a newer build: not damage, and nothing to
					// recover from. That build, stopped cleanly, leaves none.
					return fmt.Errorf("%s record %d: %w; start the build that wrote it and stop it cleanly (SIGTERM) to empty the journal", JournalFile, n, err)
				}
				if err != nil {
					return s.journal.damaged("journal record %d: %v", n, err)
				}
				if err := s.mem.replay(n, &r, s.replica, s.cfg.Windows, now, load); err != nil {
					return fmt.Errorf("journal record %d: %w", n, err)
				}
				if records == 0 && n > 0 {
					// Records before the first were trimmed by a checkpoint.
					s.ckpt.trimmed(n - 1)
				}
				s.com.jnext = n + 1
				records++
			}
			return nil
		})
	})
	if de := (*DamagedError)(nil); errors.As(err, &de) {
		return de
	}
	if err != nil {
		return fmt.Errorf("replay journal: %w", err)
	}
	if s.com.jnext == 0 {
		s.com.jnext = 1
	}
	if records > 0 {
		s.log.Info("replayed journal", "records", records, "slots", s.mem.slots(), "seq", s.mem.committedSeq())
	}
	s.mem.opened()
	return nil
}

// keep reports whether slot is worth storing at now: totals always, windows
// while retained under this store's resolutions.
func (s *Store) keep(slot crdt.Slot, now time.Time) bool { return retained(s.cfg.Windows, slot, now) }

// retained reports whether slot is worth storing at now under windows w.
func retained(w window.Config, slot crdt.Slot, now time.Time) bool {
	return slot.IsTotal() || w.Retained(slot.Res, slot.Start, now)
}

// loadCounter reads slot's counter from state.db; a missing slot is empty.
// tx must be guarded (see boltDB.guard).
func (s *Store) loadCounter(tx *bolt.Tx, slot crdt.Slot) (*crdt.GCounter, error) {
	var g *crdt.GCounter
	var err error
	if slot.IsTotal() {
		g, err = s.storedCounter([]byte(slot.Name), tx.Bucket(bucketTotals).Get([]byte(slot.Name)))
	} else {
		g, err = s.loadWindow(tx, slot)
	}
	if err != nil {
		return nil, fmt.Errorf("slot %+v: %w", slot, err)
	}
	return g, nil
}

// storedCounter decodes the state.db counter value v under key; nil is an
// empty counter.
func (s *Store) storedCounter(key, v []byte) (*crdt.GCounter, error) {
	g := &crdt.GCounter{}
	if v == nil {
		return g, nil
	}
	var eb [8]storedEntry
	es, err := s.decodeCounter(key, v, eb[:0])
	if err != nil {
		return nil, err
	}
	t := s.reps.table()
	for _, e := range es {
		id, ok := t.id(e.idx)
		if !ok {
			return nil, fmt.Errorf("unknown replica index %d: %w", e.idx, ErrIncompatible)
		}
		g.MergeEntry(crdt.Entry{Replica: id, Value: e.value, Seq: e.seq})
	}
	return g, nil
}

// Close stops taking requests, finishes the commits in flight, checkpoints,
// and closes the files. It is safe to call more than once; ctx bounds the wait.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		// Release a committer waiting for room first: senders may be blocked
		// on a full ops channel while holding closeMu for reading.
		s.stopping.Store(true)
		s.mem.wakeCommitter()
		s.com.close()

		done := make(chan struct{})
		go func() {
			s.wg.Wait() // the committer drains ops, then the checkpointer stops
			close(done)
		}()
		s.cancel()
		select {
		case <-done:
		case <-ctx.Done():
			s.closeErr = fmt.Errorf("close store: %w", ctx.Err())
			return
		}
		err := s.ckpt.checkpoint()
		if err != nil && !errors.Is(err, ErrFailed) {
			s.closeErr = fmt.Errorf("final checkpoint: %w", err)
		}
		failed := s.mem.failure()
		if err == nil && failed == nil && s.damage.Load() == nil {
			// Everything is in state.db: the next start needs no journal.
			if err := s.state.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Delete(metaOpen)
			}); err != nil && s.closeErr == nil {
				s.closeErr = fmt.Errorf("mark %s closed: %w", StateFile, err)
			}
		}
		if err := s.journal.Close(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
		if err := s.state.Close(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// fail makes the store refuse writes for err, unless it already does, and
// returns the error it refuses them with.
func (s *Store) fail(err error) error {
	failed, first := s.mem.fail(err)
	if first {
		s.log.Error("store failed; refusing writes until restart", "err", err)
	}
	return failed
}

// noteDamage makes the store refuse writes, for good, once damage is found
// in a data file: submit and the checkpointer read s.damage, which takes no
// lock, so this may run anywhere (a read under mem's lock included).
func (s *Store) noteDamage(err error) {
	if s.damage.CompareAndSwap(nil, &err) {
		s.log.Error("data file damaged; refusing writes (stop the node and run abacus recover)", "err", err)
	}
}

// refusal is why the store takes no more writes, or nil: damage found in a
// data file, or failed, mem's failure (a commit or checkpoint that failed).
func (s *Store) refusal(failed error) error {
	if d := s.damage.Load(); d != nil {
		return *d
	}
	return failed
}

// Err is nil while the store takes writes, and says why once it does not.
func (s *Store) Err() error {
	if s.com.isClosed() {
		return ErrClosed
	}
	if d := s.damage.Load(); d != nil {
		return *d
	}
	return s.mem.failure()
}

func (s *Store) String() string {
	return "store " + s.cfg.Dir + " replica " + s.replica.String() + " seq " + strconv.FormatUint(s.mem.publishedSeq(), 10)
}
