package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DamagedError says that a data file cannot be trusted: its bbolt structure
// is broken, a stored value fails its checksum, or the file is shorter than
// its own metadata says. The store never serves from such a file; the
// operator rebuilds the data directory (abacus recover).
type DamagedError struct {
	// File is the damaged file's path.
	File string
	// Reason says what was found, in a few words.
	Reason string
}

func (e *DamagedError) Error() string { return e.File + " is damaged: " + e.Reason }

// Unwrap makes errors.Is(err, ErrDamaged) hold.
func (e *DamagedError) Unwrap() error { return ErrDamaged }

// boltDB is a bbolt handle whose transactions turn bbolt's panics (its
// assertions on pages it cannot make sense of) and memory-map faults (a
// page past the end of a truncated file) into a *DamagedError. Its View and
// Update shadow bbolt's, so that every transaction of the store goes through
// them. onDamage, if set, hears of every damage found.
type boltDB struct {
	*bolt.DB
	path     string
	onDamage func(error)
}

// View runs a read transaction, see bolt.DB.View.
func (d *boltDB) View(fn func(*bolt.Tx) error) (err error) {
	defer d.catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return d.DB.View(fn)
}

// Update runs a write transaction, see bolt.DB.Update. bbolt rolls the
// transaction back when fn or its commit panics.
func (d *boltDB) Update(fn func(*bolt.Tx) error) (err error) {
	defer d.catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return d.DB.Update(fn)
}

func (d *boltDB) catch(err *error) {
	r := recover()
	if r == nil {
		if de := (*DamagedError)(nil); errors.As(*err, &de) && d.onDamage != nil {
			d.onDamage(*err)
		}
		return
	}
	*err = &DamagedError{File: d.path, Reason: fmt.Sprintf("bbolt failed on it: %v", r)}
	if d.onDamage != nil {
		d.onDamage(*err)
	}
}

// damaged is the error for a value or key of state.db that does not decode.
func (d *boltDB) damaged(format string, args ...any) error {
	return &DamagedError{File: d.path, Reason: fmt.Sprintf(format, args...)}
}

// openChecked opens a bbolt file after checking what can be checked without
// trusting it: a valid meta page, and a file at least as long as that meta
// page says. bbolt itself would map the missing pages and fault, or panic on
// the first page it cannot read. Its panics while opening are errors too.
func openChecked(path string, opts *bolt.Options) (db *boltDB, err error) {
	if err := precheck(path); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &DamagedError{File: path, Reason: fmt.Sprintf("bbolt failed to open it: %v", r)}
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	b, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, err
	}
	return &boltDB{DB: b, path: path}, nil
}

const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2
	metaOffset  = 16 // page header: id, flags, count, overflow
	metaSumLen  = 56 // meta bytes before the checksum
)

type boltMeta struct {
	pageSize         uint32
	root, free, pgid uint64
	txid             uint64
}

// readBoltMeta decodes and validates a bbolt meta page (bbolt's layout,
// native byte order: little-endian on every platform Abacus builds for).
func readBoltMeta(p []byte) (boltMeta, bool) {
	if len(p) < metaOffset+metaSumLen+8 {
		return boltMeta{}, false
	}
	m := p[metaOffset:]
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:metaSumLen])
	if le.Uint32(m) != boltMagic || le.Uint32(m[4:]) != boltVersion || le.Uint64(m[metaSumLen:]) != h.Sum64() {
		return boltMeta{}, false
	}
	bm := boltMeta{pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), free: le.Uint64(m[32:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if bm.pageSize < 1024 || bm.pageSize > 1<<24 || bm.root >= bm.pgid || (bm.free >= bm.pgid && bm.free != ^uint64(0)) || bm.pgid < 4 {
		return boltMeta{}, false
	}
	return bm, true
}

// precheck checks a bbolt file's meta pages against its size. A missing file
// passes (bbolt creates it); an empty one does not: bbolt writes four pages
// when it creates a file, so an empty file was cut.
func precheck(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	size := fi.Size()
	if size == 0 {
		return &DamagedError{File: path, Reason: "it is empty"}
	}
	buf := make([]byte, 4096)
	n, _ := f.ReadAt(buf, 0)
	m0, ok0 := readBoltMeta(buf[:n])
	var m1 boltMeta
	ok1 := false
	ps := int64(4096)
	if ok0 {
		ps = int64(m0.pageSize)
	}
	if n, _ := f.ReadAt(buf, ps); n > 0 {
		m1, ok1 = readBoltMeta(buf[:n])
	}
	if !ok0 && !ok1 {
		return &DamagedError{File: path, Reason: "no valid bbolt meta page"}
	}
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	if want := int64(m.pgid) * int64(m.pageSize); size < want {
		return &DamagedError{File: path, Reason: fmt.Sprintf("%d bytes long, its meta page says %d", size, want)}
	}
	return nil
}

// walkBudget bounds the consistency check of state.db on open.
type walkBudget struct {
	deadline time.Time
}

func (b walkBudget) over() bool { return !b.deadline.IsZero() && time.Now().After(b.deadline) }

// checkState walks every key of state.db: every counter must pass its
// checksum and decode, every index key must parse, and every seq index key
// must name a slot that exists. Then bbolt's own check (page reachability,
// the freelist) runs. It reports whether it got through everything within
// the budget.
func (s *Store) checkState(budget walkBudget) (complete bool, err error) {
	d := s.state
	complete = true
	err = d.View(func(tx *bolt.Tx) error {
		for _, name := range stateBuckets {
			if tx.Bucket(name) == nil {
				return d.damaged("bucket %s is missing", name)
			}
		}
		counter := func(k, v []byte) error {
			if _, err := s.decodeCounter(k, v, nil); err != nil {
				return d.damaged("counter %q: %v", k, err)
			}
			return nil
		}
		n := 0
		for _, b := range []struct {
			name []byte
			fn   func(k, v []byte) error
		}{
			{bucketTotals, counter},
			{bucketWindows, counter},
			{bucketSeqIdx, func(k, _ []byte) error {
				_, _, slot, err := parseSeqIdxKey(k)
				if err != nil {
					return d.damaged("%v", err)
				}
				var v []byte
				if slot.IsTotal() {
					v = tx.Bucket(bucketTotals).Get([]byte(slot.Name))
				} else {
					v = tx.Bucket(bucketWindows).Get(windowKey(nil, slot.Name, slot.Res, slot.Start))
				}
				if v == nil {
					return d.damaged("seq index names counter %q, which is missing", slot.Name)
				}
				return nil
			}},
			{bucketExpiry, func(k, _ []byte) error {
				if len(k) < 12 {
					return d.damaged("expiry key %x", k)
				}
				return nil
			}},
			{bucketVV, func(k, v []byte) error {
				if len(k) != 16 || len(v) != 8 {
					return d.damaged("version vector entry %x", k)
				}
				return nil
			}},
			{bucketIdem, func(k, v []byte) error {
				if _, err := decodeIdemValue(string(k), v); err != nil {
					return d.damaged("idempotency key: %v", err)
				}
				return nil
			}},
		} {
			c := tx.Bucket(b.name).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if err := b.fn(k, v); err != nil {
					return err
				}
				if n++; n%4096 == 0 && budget.over() {
					complete = false
					return nil
				}
			}
		}
		if _, err := loadReplicas(tx); err != nil {
			return d.damaged("replica table: %v", err)
		}
		for err := range tx.Check() {
			return d.damaged("%v", err)
		}
		return nil
	})
	return complete, err
}

// checkJournal reads every journal record.
func (s *Store) checkJournal() error {
	d := s.journal
	return d.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJournal)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return d.damaged("journal key %x", k)
			}
			if _, err := decodeRecord(v); err != nil {
				return d.damaged("journal record %d: %v", binary.BigEndian.Uint64(k), err)
			}
		}
		for err := range tx.Check() {
			return d.damaged("%v", err)
		}
		return nil
	})
}

// fileSize is path's size, or 0.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// copyFile copies src to dst (recovery keeps the damaged files aside).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Bounds of the consistency check on open: after a clean shutdown only a
// state.db up to cleanCheckMax bytes is walked (well under a second); after
// an unclean one every state.db is, for up to uncleanCheckTime.
var (
	cleanCheckMax    int64 = 64 << 20
	uncleanCheckTime       = 10 * time.Minute
)

// inspect reads what state.db says about the last stop, and checks the file
// as far as the bounds above allow, before anything is written to it.
func (s *Store) inspect() error {
	var fresh bool
	err := s.state.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(metaSchema) == nil {
			fresh = true
			return nil
		}
		s.unclean = meta.Get(metaOpen) != nil
		if v := meta.Get(metaSchema); len(v) == 8 {
			s.sums = binary.BigEndian.Uint64(v) >= 2
		}
		return nil
	})
	if err != nil || fresh {
		return err
	}
	var budget walkBudget
	switch {
	case s.unclean:
		budget.deadline = time.Now().Add(uncleanCheckTime)
	case fileSize(s.state.path) > cleanCheckMax:
		return nil
	}
	start := time.Now()
	complete, err := s.checkState(budget)
	if err != nil {
		return err
	}
	if !complete {
		s.log.Warn("consistency check of state.db stopped at its time limit; the rest is checked as it is read", "took", time.Since(start))
	} else if s.unclean {
		s.log.Info("checked state.db after an unclean shutdown", "took", time.Since(start))
	}
	return nil
}
