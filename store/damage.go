package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
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
func (d *boltDB) View(fn func(*bolt.Tx) error) error {
	return d.guard(func() error { return d.DB.View(fn) })
}

// Update runs a write transaction, see bolt.DB.Update. bbolt rolls the
// transaction back when fn or its commit panics.
func (d *boltDB) Update(fn func(*bolt.Tx) error) error {
	return d.guard(func() error { return d.DB.Update(fn) })
}

// guard runs fn, which reads or writes d, turning bbolt's panics and faults
// into a *DamagedError. View and Update use it; so must every read on a
// transaction opened with Begin.
func (d *boltDB) guard(fn func() error) (err error) {
	defer d.catch(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return fn()
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
func openChecked(path string, opts *bolt.Options, checkMax int64) (db *boltDB, err error) {
	// The checks parse the file's bytes too: a slip of theirs on a damaged
	// file is a refusal, not a crash.
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &DamagedError{File: path, Reason: fmt.Sprintf("bbolt failed to open it: %v", r)}
		}
	}()
	if err := precheck(path); err != nil {
		return nil, err
	}
	// A bigger file is walked only after an unclean shutdown (inspect):
	// walking gigabytes at every start would make every restart slow.
	if size := fileSize(path); size > 0 && size <= checkMax {
		if err := checkPages(path, time.Time{}); err != nil {
			return nil, err
		}
	}
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

// newestMeta is the valid meta page of f with the highest txid, as bbolt
// picks it on open. The second meta page lies one page size in, which only
// a valid first page tells; else bbolt's default, 4 KiB, is tried.
func newestMeta(f *os.File, path string) (boltMeta, error) {
	buf := make([]byte, 4096)
	n, _ := f.ReadAt(buf, 0)
	m0, ok0 := readBoltMeta(buf[:n])
	ps := int64(4096)
	if ok0 {
		ps = int64(m0.pageSize)
	}
	var m1 boltMeta
	ok1 := false
	if n, _ := f.ReadAt(buf, ps); n > 0 {
		m1, ok1 = readBoltMeta(buf[:n])
	}
	switch {
	case !ok0 && !ok1:
		return boltMeta{}, &DamagedError{File: path, Reason: "no valid bbolt meta page"}
	case !ok0 || (ok1 && m1.txid > m0.txid):
		return m1, nil
	}
	return m0, nil
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
	m, err := newestMeta(f, path)
	if err != nil {
		return err
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
// checksum and decode, every index key must parse, every seq index key must
// name a slot that exists and (schema 3) every total's entry and block's
// column must have its seq index key, and keys must come in order. (bbolt's own
// tx.Check runs on a goroutine of its own, where a fault in a damaged page
// cannot be caught: it is not used.) It reports whether it got through everything within
// the budget.
func (s *Store) checkState(budget walkBudget) (complete bool, err error) {
	d := s.state
	complete = true
	err = d.View(func(tx *bolt.Tx) error {
		// inspect has refused a state.db without one of its schema's
		// buckets; of the buckets walked here, one a schema does not have
		// is skipped.
		if tx.Bucket(bucketMeta) == nil {
			return d.damaged("bucket meta is missing")
		}
		// From schema 3 on, every entry of a total and every column of a
		// block has its seq index key, written in the same transaction:
		// anti-entropy finds changes through them, so one lost (a page cut
		// from the index's tree) would be a change no peer ever gets.
		// Schemas 1 and 2 are migrated next, which builds the index anew.
		var seqIdx *bolt.Cursor
		if b := tx.Bucket(bucketSeqIdx); b != nil && s.schema >= 3 {
			seqIdx = b.Cursor()
		}
		indexed := func(key []byte, idx uint32, seq uint64, slot crdt.Slot) error {
			if seqIdx == nil {
				return nil
			}
			k := seqIdxKey(idx, seq, slot)
			if got, _ := seqIdx.Seek(k); !bytes.Equal(got, k) {
				return d.damaged("seq index lacks replica %d at seq %d of %s", idx, seq, counterLabel(key))
			}
			return nil
		}
		var es []storedEntry
		counter := func(k, v []byte) error {
			var err error
			if es, err = s.decodeCounter(k, v, es[:0]); err != nil {
				return err
			}
			for _, e := range es {
				if err := indexed(k, e.idx, e.seq, crdt.TotalSlot(string(k))); err != nil {
					return err
				}
			}
			return nil
		}
		var blk block.Block
		blockCheck := func(k, v []byte) error {
			ref, ok := parseWindowKey(k)
			if !ok {
				return d.damaged("block key %x", k)
			}
			if err := s.decodeBlock(k, v, &blk); err != nil {
				return err
			}
			for _, c := range blk.Columns {
				if err := indexed(k, c.Replica, c.Seq, ref); err != nil {
					return err
				}
			}
			return nil
		}
		windows := bucketWindows // schemas 1 and 2
		if s.schema >= 3 {
			windows = bucketBlocks
		}
		n := 0
		for _, b := range []struct {
			name []byte
			fn   func(k, v []byte) error
		}{
			{bucketTotals, counter},
			{bucketWindows, counter},
			{bucketBlocks, blockCheck},
			{bucketSeqIdx, func(k, _ []byte) error {
				_, _, slot, err := parseSeqIdxKey(k)
				if err != nil {
					return d.damaged("%v", err)
				}
				var v []byte
				if slot.IsTotal() {
					v = tx.Bucket(bucketTotals).Get([]byte(slot.Name))
				} else {
					v = tx.Bucket(windows).Get(windowKey(nil, slot.Name, slot.Res, slot.Start))
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
				if _, err := legacyIdemRecord(string(k), v, crdt.ReplicaID{}); err != nil {
					return d.damaged("idempotency key: %v", err)
				}
				return nil
			}},
			{bucketKeyRecs, func(k, v []byte) error {
				if _, err := decodeKeyRecords(v); err != nil {
					return d.damaged("key records of %q: %v", k, err)
				}
				return nil
			}},
			{bucketComps, func(k, v []byte) error {
				if dec := crdt.NewDecoder(k); dec.Slot() == (crdt.Slot{}) || dec.Err() != nil {
					return d.damaged("compensations key %x", k)
				}
				if _, err := decodeComps(v); err != nil {
					return d.damaged("compensations: %v", err)
				}
				return nil
			}},
		} {
			bk := tx.Bucket(b.name)
			if bk == nil {
				continue
			}
			c := bk.Cursor()
			var prev []byte
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if prev != nil && bytes.Compare(prev, k) >= 0 {
					return d.damaged("bucket %s: keys out of order", b.name)
				}
				prev = k
				if err := b.fn(k, v); err != nil {
					return err
				}
				if n++; n%4096 == 0 && budget.over() {
					complete = false
					return nil
				}
			}
		}
		if tx.Bucket(bucketReplicas) != nil {
			if _, err := loadReplicas(tx); err != nil {
				return d.damaged("replica table: %v", err)
			}
		}
		return nil
	})
	return complete, err
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

// Bounds of the checks on open. A file up to Config.hooks.cleanCheckMax bytes
// (64 MiB: a journal, or a state.db of up to some million slots) has its pages
// and keys checked at every start, in well under a second. A bigger state.db
// is checked only after an unclean shutdown, for up to uncleanCheckTime; after
// a clean one, damage in it is found when it is read, and stops writes.
const uncleanCheckTime = 10 * time.Minute

// inspect reads what state.db says about the last stop, and checks the file
// as far as the bounds above allow, before anything is written to it. It
// reports whether state.db is fresh: no buckets at all, a new directory's.
// Otherwise every bucket of its schema is there.
func (s *Store) inspect() (fresh bool, err error) {
	err = s.state.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(metaSchema) == nil {
			// initState writes every bucket and the schema in one
			// transaction: a file with buckets and no schema lost some.
			for _, b := range stateBuckets {
				if tx.Bucket(b) != nil {
					return s.state.damaged("no schema, while bucket %s is there", b)
				}
			}
			fresh = true
			return nil
		}
		s.unclean = meta.Get(metaOpen) != nil
		v := meta.Get(metaSchema)
		switch {
		case newerSchema(v):
			// Before anything is checked or written: a newer build's
			// layout is not damage, and the directory is left as it is.
			return schemaError(v)
		case len(v) != 8 || binary.BigEndian.Uint64(v) == 0:
			return s.state.damaged("schema %x", v)
		}
		s.schema = binary.BigEndian.Uint64(v)
		s.sums = s.schema >= 2
		// Every bucket of the schema is there from the transaction that
		// wrote the schema on: one missing was lost, and initState would
		// otherwise make it anew, empty.
		need := stateBuckets
		if s.schema < 3 {
			need = schema1Buckets
		}
		for _, b := range need {
			if tx.Bucket(b) == nil {
				return s.state.damaged("bucket %s is missing", b)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if fresh {
		// A journal that names a replica was written after state.db got
		// its schema: a state.db with nothing in it lost everything.
		if id, ok := journalReplica(filepath.Join(s.cfg.Dir, JournalFile)); ok {
			return false, s.state.damaged("holds nothing, while journal.db belongs to replica %s", id)
		}
		return true, nil
	}
	var budget walkBudget
	big := fileSize(s.state.path) > s.cfg.hooks.cleanCheckMax
	switch {
	case s.unclean:
		budget.deadline = time.Now().Add(uncleanCheckTime)
	case big:
		return false, nil
	}
	start := time.Now()
	if big {
		// openChecked walked the pages of a small file only.
		switch err := checkPages(s.state.path, budget.deadline); {
		case errors.Is(err, errCheckTime):
			s.log.Warn("page check of state.db stopped at its time limit", "took", time.Since(start))
			return false, nil
		case err != nil:
			return false, err
		}
	}
	complete, err := s.checkState(budget)
	if err != nil {
		return false, err
	}
	if !complete {
		s.log.Warn("consistency check of state.db stopped at its time limit; the rest is checked as it is read", "took", time.Since(start))
	} else if s.unclean {
		s.log.Info("checked state.db after an unclean shutdown", "took", time.Since(start))
	}
	return false, nil
}

// checkPages walks the page tree of a bbolt file from its newest valid meta
// page, reading the file rather than mapping it: every page id must lie
// below the high-water mark, no page may be reached twice (a cycle would
// send bbolt's cursors round for ever), elements must lie inside their page
// and keys must come in order. This is what makes it safe to hand the file
// to bbolt at all: its cursors trust these and loop, recurse or fault when
// they do not hold. It stops with an error at the deadline.
func checkPages(path string, deadline time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	m, err := newestMeta(f, path)
	if err != nil {
		return err
	}
	ps := int64(m.pageSize)
	bad := func(format string, args ...any) error {
		return &DamagedError{File: path, Reason: fmt.Sprintf(format, args...)}
	}
	seen := make(map[uint64]bool)
	le := binary.LittleEndian
	var walk func(p []byte, id uint64, depth int) error
	// page reads page id with its overflow.
	page := func(id uint64) ([]byte, error) {
		if id < 2 || id >= m.pgid {
			return nil, bad("page %d out of range (high-water mark %d)", id, m.pgid)
		}
		hdr := make([]byte, 16)
		if _, err := f.ReadAt(hdr, int64(id)*ps); err != nil {
			return nil, bad("page %d unreadable: %v", id, err)
		}
		if le.Uint64(hdr) != id {
			return nil, bad("page %d says it is page %d", id, le.Uint64(hdr))
		}
		over := uint64(le.Uint32(hdr[12:]))
		if id+over >= m.pgid {
			return nil, bad("page %d overflows past the high-water mark", id)
		}
		for j := id; j <= id+over; j++ {
			if seen[j] {
				return nil, bad("page %d reached twice", j)
			}
			seen[j] = true
		}
		p := make([]byte, int64(1+over)*ps)
		if _, err := f.ReadAt(p, int64(id)*ps); err != nil {
			return nil, bad("page %d unreadable: %v", id, err)
		}
		return p, nil
	}
	bucket := func(v []byte, depth int) error {
		if len(v) < 16 {
			return bad("bucket header of %d bytes", len(v))
		}
		root := le.Uint64(v)
		if root == 0 { // inline bucket: its leaf page follows the header
			return walk(v[16:], 0, depth+1)
		}
		p, err := page(root)
		if err != nil {
			return err
		}
		return walk(p, root, depth+1)
	}
	walk = func(p []byte, id uint64, depth int) error {
		if depth > 64 {
			return bad("page tree deeper than 64 at page %d", id)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return errCheckTime
		}
		if len(p) < 16 {
			return bad("page %d: short", id)
		}
		flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
		if 16+count*16 > len(p) {
			return bad("page %d: %d elements do not fit", id, count)
		}
		var prev []byte
		for i := 0; i < count; i++ {
			e := p[16+i*16:]
			var k, v []byte
			switch flags {
			case 0x01: // branch: pos, ksize, pgid
				pos, ks := int(le.Uint32(e)), int(le.Uint32(e[4:]))
				start := 16 + i*16 + pos
				if pos < 0 || start+ks > len(p) || start < 0 {
					return bad("page %d: element %d outside the page", id, i)
				}
				k = p[start : start+ks]
				child, err := page(le.Uint64(e[8:]))
				if err != nil {
					return err
				}
				if err := walk(child, le.Uint64(e[8:]), depth+1); err != nil {
					return err
				}
			case 0x02: // leaf: flags, pos, ksize, vsize
				ef, pos, ks, vs := le.Uint32(e), int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
				start := 16 + i*16 + pos
				if pos < 0 || start < 0 || ks < 0 || vs < 0 || start+ks+vs > len(p) {
					return bad("page %d: element %d outside the page", id, i)
				}
				k, v = p[start:start+ks], p[start+ks:start+ks+vs]
				if ef&0x01 != 0 {
					if err := bucket(v, depth); err != nil {
						return err
					}
				}
			default:
				return bad("page %d: flags %#x, want a branch or leaf page", id, flags)
			}
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return bad("page %d: keys out of order", id)
			}
			prev = k
		}
		return nil
	}
	root, err := page(m.root)
	if err != nil {
		return err
	}
	if err := walk(root, m.root, 0); err != nil {
		return err
	}
	if m.free != ^uint64(0) {
		p, err := page(m.free)
		if err != nil {
			return bad("freelist: %v", err)
		}
		if le.Uint16(p[8:]) != 0x10 {
			return bad("freelist page %d has flags %#x", m.free, le.Uint16(p[8:]))
		}
		count, ids := uint64(le.Uint16(p[10:])), p[16:]
		if count == 0xFFFF && len(ids) >= 8 {
			count, ids = le.Uint64(ids), ids[8:]
		}
		// Divide, not multiply: a count from a damaged page can make
		// count*8 wrap round to a small number.
		if count > uint64(len(ids)/8) {
			return bad("freelist page %d: %d ids do not fit", m.free, count)
		}
		for i := range int(count) {
			id := le.Uint64(ids[i*8:])
			if id < 2 || id >= m.pgid || seen[id] {
				return bad("freelist names page %d, which is in use or out of range", id)
			}
		}
	}
	return nil
}

var errCheckTime = errors.New("check stopped at its time limit")

// counterLabel names a totals or windows key for a message: the counter's
// name, and which window if it is one.
func counterLabel(key []byte) string {
	i := bytes.IndexByte(key, 0)
	if i < 0 {
		return strconv.Quote(string(key))
	}
	if slot, ok := parseWindowKey(key); ok {
		return fmt.Sprintf("%q (%ds window at %s)", slot.Name, slot.Res, time.Unix(slot.Start, 0).UTC().Format(time.RFC3339))
	}
	return strconv.Quote(string(key[:i])) + " (a window)"
}

// journalReplica returns the replica journal.db at path names, if it can be
// read and names one.
func journalReplica(path string) (id crdt.ReplicaID, ok bool) {
	if _, err := os.Stat(path); err != nil {
		return id, false
	}
	db, err := openForSalvage(path)
	if err != nil {
		return id, false
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if v := meta.Get(metaReplica); len(v) == len(id) {
				copy(id[:], v)
				ok = true
			}
		}
		return nil
	})
	return id, ok
}
