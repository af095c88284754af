package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
	"github.com/abacus-counter/abacus/window"
)

// RecoverConfig configures Recover.
type RecoverConfig struct {
	// Dir is the damaged data directory.
	Dir string
	// Windows is used when state.db no longer says which windows it had;
	// zero means window.DefaultConfig().
	Windows window.Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// IgnoreSchema salvages a state.db whose schema reads as a newer
	// build's as if it were this build's: for a schema value that is itself
	// damaged, on a directory no newer build has run on.
	IgnoreSchema bool
}

// RecoverReport says what Recover salvaged.
type RecoverReport struct {
	Replica crdt.ReplicaID
	// Counters is the number of slots (totals and windows) written back.
	Counters int
	// Journal is the number of journal records merged in.
	Journal int
	// Lost lists what could not be read, in words.
	Lost []string
	// Kept are the damaged files, renamed, kept for inspection.
	Kept []string
}

// Recover rebuilds a damaged data directory in place: it reads whatever
// state.db and journal.db still give (every counter that passes its checks,
// every journal record that decodes), writes it into a fresh state.db with
// the same replica ID, and marks that state.db restored from seq 0, so that
// on its next start the node takes no write before its peers have given back
// every entry of its own replica they hold. Its version vector starts empty:
// anti-entropy then brings back every other replica's entries too. The old
// files are renamed, not deleted. The data directory must not be in use.
func Recover(cfg RecoverConfig) (RecoverReport, error) {
	var rep RecoverReport
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Windows.Resolutions == nil {
		cfg.Windows = window.DefaultConfig()
	}
	statePath, journalPath := filepath.Join(cfg.Dir, StateFile), filepath.Join(cfg.Dir, JournalFile)
	for _, p := range []string{statePath, journalPath} {
		if lockedByOther(p) {
			return rep, fmt.Errorf("recover %s: %w", cfg.Dir, ErrInUse)
		}
	}
	sv := salvage{mem: make(map[crdt.Slot]*crdt.GCounter), idem: make(map[string][]crdt.KeyRecord), comps: make(map[crdt.Slot]crdt.Comps)}
	if _, err := os.Stat(statePath); err == nil {
		if err := sv.readState(statePath, cfg.IgnoreSchema, &rep); err != nil {
			return rep, fmt.Errorf("recover %s: %w", cfg.Dir, err)
		}
	} else {
		rep.Lost = append(rep.Lost, StateFile+" is missing")
	}
	if _, err := os.Stat(journalPath); err == nil {
		if err := sv.readJournal(journalPath, &rep); err != nil {
			return rep, fmt.Errorf("recover %s: %w", cfg.Dir, err)
		}
	}
	if !sv.haveReplica {
		return rep, fmt.Errorf("recover %s: neither %s nor %s still names this node's replica ID; move the directory away and start the node with an empty one (a new replica)", cfg.Dir, StateFile, JournalFile)
	}
	rep.Replica = sv.replica
	windows := cfg.Windows
	if sv.windows != "" {
		w, err := window.ParseConfig(sv.windows)
		if err == nil {
			windows = w
		} else {
			rep.Lost = append(rep.Lost, "window configuration (using the configured one)")
		}
	}

	stamp := strconv.FormatInt(cfg.Now().Unix(), 10)
	tmp := statePath + ".recover"
	os.Remove(tmp)
	if err := writeRecovered(tmp, &sv, windows, cfg, &rep); err != nil {
		os.Remove(tmp)
		return rep, err
	}
	// Every step leaves a state.db that names this replica, so a crash in
	// between never lets the next start become a new replica: the damaged
	// state.db is linked aside, the new one renamed over it (one atomic
	// step), and only then the journal moved aside.
	kept := func(p string) string { return p + ".damaged-" + stamp }
	if _, err := os.Stat(statePath); err == nil {
		if err := os.Link(statePath, kept(statePath)); err != nil {
			return rep, fmt.Errorf("recover: keep %s aside: %w", statePath, err)
		}
		rep.Kept = append(rep.Kept, kept(statePath))
	}
	if err := os.Rename(tmp, statePath); err != nil {
		return rep, fmt.Errorf("recover: %w", err)
	}
	if _, err := os.Stat(journalPath); err == nil {
		if err := os.Rename(journalPath, kept(journalPath)); err != nil {
			return rep, fmt.Errorf("recover: keep %s aside: %w", journalPath, err)
		}
		rep.Kept = append(rep.Kept, kept(journalPath))
	}
	if err := syncDir(cfg.Dir); err != nil {
		return rep, fmt.Errorf("recover: %w", err)
	}
	return rep, nil
}

// salvage is what could be read from a damaged directory.
type salvage struct {
	replica     crdt.ReplicaID
	haveReplica bool
	windows     string
	seq         uint64
	mem         map[crdt.Slot]*crdt.GCounter
	infos       map[crdt.ReplicaID]ReplicaInfo
	idem        map[string][]crdt.KeyRecord
	comps       map[crdt.Slot]crdt.Comps
}

// openForSalvage opens path read-only, without the checks of openChecked:
// salvage reads what it can of a file those would refuse. Its transactions
// turn bbolt's panics and faults into errors (boltDB).
func openForSalvage(path string) (*boltDB, error) {
	db := &boltDB{path: path}
	err := db.guard(func() error {
		var err error
		db.DB, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true, FreelistType: bolt.FreelistMapType})
		if errors.Is(err, bolterrors.ErrTimeout) {
			return ErrInUse
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return db, nil
}

// readState salvages state.db. A state.db of a newer build's schema is an
// error, unless ignoreSchema, and recover stops before it changes anything:
// that is not damage, and this build would misread it.
func (sv *salvage) readState(path string, ignoreSchema bool, rep *RecoverReport) error {
	db, err := openForSalvage(path)
	if err != nil {
		rep.Lost = append(rep.Lost, fmt.Sprintf("%s cannot be opened (%v): nothing of it is salvaged", StateFile, err))
		return nil
	}
	defer db.Close()
	var sums bool
	var table *replicaTable
	var newer error
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket")
		}
		if v := meta.Get(metaSchema); newerSchema(v) && !ignoreSchema {
			newer = fmt.Errorf("%w; start the build that wrote it instead, or, if no newer build ever ran on this directory (the schema value is damaged), run abacus recover --ignore-schema", schemaError(v))
			return nil
		}
		if v := meta.Get(metaReplica); len(v) == 16 {
			copy(sv.replica[:], v)
			sv.haveReplica = true
		}
		sv.windows = string(meta.Get(metaWindows))
		if v := meta.Get(metaSeq); len(v) == 8 {
			sv.seq = binary.BigEndian.Uint64(v)
		}
		if v := meta.Get(metaSchema); len(v) == 8 {
			sums = binary.BigEndian.Uint64(v) >= 2
		}
		return nil
	})
	if newer != nil {
		return newer
	}
	if err != nil {
		rep.Lost = append(rep.Lost, fmt.Sprintf("%s metadata: %v", StateFile, err))
	}
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketReplicas) == nil {
			return errors.New("no replicas bucket")
		}
		var err error
		table, err = loadReplicas(tx)
		return err
	})
	if table == nil || err != nil {
		rep.Lost = append(rep.Lost, fmt.Sprintf("replica table (%v): every counter entry is lost", err))
		return nil
	}
	sv.infos = make(map[crdt.ReplicaID]ReplicaInfo)
	for _, info := range table.infos {
		sv.infos[info.ID] = info
	}
	probe := &Store{sums: sums, state: db}
	bad := 0
	readCounter := func(slot crdt.Slot, k, v []byte) {
		es, err := probe.decodeCounter(k, v, nil)
		if err != nil {
			bad++
			return
		}
		g := sv.mem[slot]
		if g == nil {
			g = &crdt.GCounter{}
			sv.mem[slot] = g
		}
		for _, e := range es {
			id, ok := table.id(e.idx)
			if !ok {
				bad++
				continue
			}
			g.MergeEntry(crdt.Entry{Replica: id, Value: e.value, Seq: e.seq})
		}
	}
	var blk block.Block
	readBlock := func(k, v []byte) bool {
		ref, ok := parseWindowKey(k)
		if !ok || ref.Res == 0 || probe.decodeBlock(k, v, &blk) != nil {
			return false
		}
		for _, c := range blk.Columns {
			id, ok := table.id(c.Replica)
			if !ok {
				bad++
				continue
			}
			for p := c.Present; p != 0; p &= p - 1 {
				i := bits.TrailingZeros64(p)
				slot := crdt.Slot{Name: ref.Name, Res: ref.Res, Start: ref.Start + int64(i)*int64(ref.Res)}
				g := sv.mem[slot]
				if g == nil {
					g = &crdt.GCounter{}
					sv.mem[slot] = g
				}
				g.MergeEntry(crdt.Entry{Replica: id, Value: c.Entries[i].Value, Seq: c.Entries[i].Seq})
			}
		}
		return true
	}
	counter := func(slot func(k []byte) (crdt.Slot, bool)) func(k, v []byte) bool {
		return func(k, v []byte) bool {
			sl, ok := slot(k)
			if ok {
				readCounter(sl, k, v)
			}
			return ok
		}
	}
	for _, b := range []struct {
		name []byte
		read func(k, v []byte) bool // false: the key is damaged
	}{
		{bucketTotals, counter(func(k []byte) (crdt.Slot, bool) { return crdt.TotalSlot(string(k)), len(k) > 0 })},
		{bucketWindows, counter(parseWindowKey)}, // schemas 1 and 2
		{bucketBlocks, readBlock},
	} {
		// A cursor that hits a damaged page stops; what it read before
		// stays. Reading backwards from the end gets what lies after it.
		for _, backward := range []bool{false, true} {
			err := db.View(func(tx *bolt.Tx) error {
				bk := tx.Bucket(b.name)
				if bk == nil && !bytes.Equal(b.name, bucketTotals) {
					return nil // windows or blocks: a file of the other schema
				}
				if bk == nil {
					return errors.New("bucket missing")
				}
				c := bk.Cursor()
				first, next := c.First, c.Next
				if backward {
					first, next = c.Last, c.Prev
				}
				for k, v := first(); k != nil; k, v = next() {
					if !b.read(k, v) {
						bad++
					}
				}
				return nil
			})
			if err == nil {
				break
			}
			if backward {
				rep.Lost = append(rep.Lost, fmt.Sprintf("part of %s/%s (%v)", StateFile, b.name, err))
			}
		}
	}
	if bad > 0 {
		rep.Lost = append(rep.Lost, fmt.Sprintf("%d damaged counters or entries in %s", bad, StateFile))
	}
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketIdem); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				if r, err := legacyIdemRecord(string(k), v, sv.replica); err == nil {
					sv.idem[string(k)] = addRecord(sv.idem[string(k)], r)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketKeyRecs); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				if rs, err := decodeKeyRecords(v); err == nil {
					for _, r := range rs {
						sv.idem[string(k)] = addRecord(sv.idem[string(k)], r)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketComps); b != nil {
			return b.ForEach(func(k, v []byte) error {
				dec := crdt.NewDecoder(k)
				slot := dec.Slot()
				if cs, err := decodeComps(v); err == nil && dec.Err() == nil {
					sv.addComps(slot, cs)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		rep.Lost = append(rep.Lost, fmt.Sprintf("some idempotency keys or compensations (%v)", err))
	}
	return nil
}

func (sv *salvage) addComps(slot crdt.Slot, cs crdt.Comps) {
	cur := sv.comps[slot]
	for _, c := range cs {
		cur, _ = cur.Add(c)
	}
	sv.comps[slot] = cur
}

// readJournal salvages the journal's records: every one that decodes, past
// any that do not. A record of a newer build is an error, and recover stops
// before it changes anything: those records are not damage, and the build
// that wrote them replays them.
func (sv *salvage) readJournal(path string, rep *RecoverReport) error {
	db, err := openForSalvage(path)
	if err != nil {
		rep.Lost = append(rep.Lost, fmt.Sprintf("%s cannot be opened (%v): increments since the last checkpoint come back from peers only", JournalFile, err))
		return nil
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil && !sv.haveReplica {
			if v := meta.Get(metaReplica); len(v) == 16 {
				copy(sv.replica[:], v)
				sv.haveReplica = true
			}
		}
		b := tx.Bucket(bucketJournal)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			r, err := decodeRecord(v)
			if errors.Is(err, ErrIncompatible) {
				return fmt.Errorf("record %x: %w", k, err)
			}
			if err != nil {
				// The records after it still merge: each holds absolute
				// values, so a later one stands without the lost one.
				rep.Lost = append(rep.Lost, fmt.Sprintf("%s record %x (%v)", JournalFile, k, err))
				continue
			}
			sv.seq = max(sv.seq, r.seq)
			for _, d := range r.deltas {
				g := sv.mem[d.Slot]
				if g == nil {
					g = &crdt.GCounter{}
					sv.mem[d.Slot] = g
				}
				g.MergeEntry(d.Entry)
			}
			for _, x := range r.records {
				if x.Origin.IsZero() {
					x.Origin = sv.replica
				}
				sv.idem[x.Key] = addRecord(sv.idem[x.Key], x)
			}
			for _, c := range r.comps {
				sv.addComps(c.Slot, crdt.Comps{c.Comp})
			}
			rep.Journal++
		}
		return nil
	})
	if errors.Is(err, ErrIncompatible) {
		return fmt.Errorf("%s %w; start the build that wrote it and stop it cleanly (SIGTERM) instead", JournalFile, err)
	}
	if err != nil {
		rep.Lost = append(rep.Lost, fmt.Sprintf("part of %s (%v)", JournalFile, err))
	}
	return nil
}

// writeRecovered writes the salvage into a new state.db at path.
func writeRecovered(path string, sv *salvage, windows window.Config, cfg RecoverConfig, rep *RecoverReport) error {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("recover: create %s: %w", path, err)
	}
	s := &Store{cfg: Config{Dir: cfg.Dir, Windows: windows, Now: cfg.Now, Logger: cfg.Logger}, state: &boltDB{DB: b, path: path}, sums: true, replica: sv.replica}
	s.reps.cur.Store(&replicaTable{index: make(map[crdt.ReplicaID]uint32)})
	s.reps.ensure(sv.replica)
	for id, info := range sv.infos {
		if info.Node != "" {
			s.reps.setInfo(info)
		} else {
			s.reps.ensure(id)
		}
	}
	seq := sv.seq
	slots := make([]crdt.Slot, 0, len(sv.mem))
	for slot, g := range sv.mem {
		slots = append(slots, slot)
		if e, ok := g.Get(sv.replica); ok {
			seq = max(seq, e.Seq)
		}
	}
	slices.SortFunc(slots, crdt.Slot.Compare)
	now := cfg.Now()
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range stateBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		for k, v := range map[string][]byte{
			string(metaSchema):   u64(schemaVersion),
			string(metaReplica):  sv.replica[:],
			string(metaWindows):  []byte(windows.String()),
			string(metaSeq):      u64(seq),
			string(metaCreated):  u64(uint64(now.Unix())),
			string(metaRestored): u64(0),
		} {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		w := newSlotWriter(s, tx, now)
		for _, slot := range slots {
			if !s.keep(slot, now) {
				continue
			}
			if err := w.write(slot, sv.mem[slot], now); err != nil {
				return err
			}
			rep.Counters++
		}
		if err := w.flush(); err != nil {
			return err
		}
		live := make(map[string][]crdt.KeyRecord, len(sv.idem))
		for k, rs := range sv.idem {
			for _, r := range rs {
				if r.Expires > now.UnixNano() {
					live[k] = append(live[k], r)
				}
			}
		}
		if err := writeKeyRecords(tx, live); err != nil {
			return err
		}
		for slot, cs := range sv.comps {
			if !s.keep(slot, now) {
				continue
			}
			if err := tx.Bucket(bucketComps).Put(crdt.AppendSlot(nil, slot), appendComps(nil, cs)); err != nil {
				return err
			}
		}
		_, err := s.reps.persist(tx)
		return err
	})
	if cerr := b.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recover: write %s: %w", path, err)
	}
	return nil
}

// lockedByOther reports whether another process holds bbolt's lock on path
// (a running node): recovering under it would be a second writer.
func lockedByOther(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
