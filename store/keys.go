package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/abacus-counter/abacus/crdt"
)

// Layout of state.db (schema 3). Every key and value format is here.
//
//	meta      "schema" → uint64; "replica" → 16 bytes; "windows" → window config
//	          string; "seq" → this replica's last committed seq; "created" → Unix
//	          seconds; "restored" → seq (present while a restored snapshot has
//	          not caught up on its own replica's entries; see Restored); "open"
//	          → 1 while a process has the file open (absent after a clean Close)
//	replicas  local index (uint32 BE) → replica ID (16) | node name | dc
//	totals    name → counter
//	blocks    name | 0x00 | res seconds (uint32 BE) | block start (uint64 BE) →
//	          block (package block) | CRC-32C (4 bytes BE) of key and block
//	expiry    res seconds (uint32 BE) | block end (uint64 BE) | name → empty
//	seqidx    local index (uint32 BE) | seq (uint64 BE) | slot → empty: a
//	          total's entry at its seq, and a block's column at the column's
//	          seq, the slot being then the block's first window
//	vv        replica ID (16) → seq: every change of that replica up to seq is here
//	idem      key → expires (Unix nanoseconds) | fingerprint (32) | response:
//	          this replica's keys written before key records replicated; read,
//	          never written, gone within one key TTL of the upgrade
//	keyrecs   key → uvarint n, n × key record (crdt.AppendKeyRecord): every
//	          replica's records of the key
//	keyseq    origin ID (16) | seq (uint64 BE) | key → empty: the records of
//	          an origin in seq order, for anti-entropy range scans
//	idemexp   expires (uint64 BE Unix nanoseconds) | key → empty
//	comps     slot (crdt.AppendSlot) → uvarint n, n × compensation
//	          (crdt.AppendComp), sorted as crdt.Comps
//
// A counter value is uvarint n, then n × (local index, value, seq) as uvarints,
// sorted by replica ID. Local indexes keep the per-entry replica reference to a
// byte or two; the replicas bucket maps them back. From schema 2 on, the value
// ends with a CRC-32C (4 bytes BE) of key and value: bbolt has no checksums on
// its pages, and a damaged page must never be served as a count.
//
// A block starts at a multiple of block.Width windows; it ends (expiry key)
// where the next one starts, and goes once its last window is past retention.
//
// Schemas 1 and 2 kept each window under its own key, with per-window index
// keys (Open migrates them: migrate.go):
//
//	windows   name | 0x00 | res seconds (uint32 BE) | start (uint64 BE) → counter
//	expiry    res seconds (uint32 BE) | start (uint64 BE) | name → empty
//	seqidx    local index (uint32 BE) | seq (uint64 BE) | window slot → empty
//
// Layout of journal.db:
//
//	meta      "replica" → 16 bytes
//	journal   record number (uint64 BE) → record (see journal.go)
var (
	bucketMeta     = []byte("meta")
	bucketReplicas = []byte("replicas")
	bucketTotals   = []byte("totals")
	bucketWindows  = []byte("windows") // schemas 1 and 2
	bucketBlocks   = []byte("blocks")
	bucketExpiry   = []byte("expiry")
	bucketSeqIdx   = []byte("seqidx")
	bucketVV       = []byte("vv")
	bucketIdem     = []byte("idem")
	bucketIdemExp  = []byte("idemexp")
	bucketKeyRecs  = []byte("keyrecs")
	bucketKeySeq   = []byte("keyseq")
	bucketComps    = []byte("comps")
	bucketJournal  = []byte("journal")

	// schema1Buckets are the buckets every schema 1 or 2 state.db has: the
	// key record buckets came later, without a new schema, and migration
	// adds them.
	schema1Buckets = [][]byte{bucketMeta, bucketReplicas, bucketTotals, bucketWindows, bucketExpiry, bucketSeqIdx, bucketVV, bucketIdem, bucketIdemExp}
	stateBuckets   = [][]byte{bucketMeta, bucketReplicas, bucketTotals, bucketBlocks, bucketExpiry, bucketSeqIdx, bucketVV, bucketIdem, bucketIdemExp, bucketKeyRecs, bucketKeySeq, bucketComps}

	metaSchema   = []byte("schema")
	metaReplica  = []byte("replica")
	metaWindows  = []byte("windows")
	metaSeq      = []byte("seq")
	metaCreated  = []byte("created")
	metaRestored = []byte("restored")
	metaOpen     = []byte("open")
)

// schemaVersion is the schema of new data directories. Open migrates schemas
// 1 (no checksums on counters) and 2 (a key per window) to it.
const schemaVersion = 3

// newerSchema reports whether state.db's schema value v is a newer build's.
func newerSchema(v []byte) bool { return len(v) == 8 && binary.BigEndian.Uint64(v) > schemaVersion }

func schemaError(v []byte) error {
	return fmt.Errorf("%s schema %x, this build reads 1 to %d: %w", StateFile, v, schemaVersion, ErrIncompatible)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// windowKey is the windows-bucket key of a window slot.
func windowKey(dst []byte, name string, res uint32, start int64) []byte {
	dst = append(dst, name...)
	dst = append(dst, 0)
	dst = binary.BigEndian.AppendUint32(dst, res)
	return binary.BigEndian.AppendUint64(dst, uint64(start))
}

// parseWindowKey is windowKey's inverse: the slot of a windows-bucket key,
// and whether k is one.
func parseWindowKey(k []byte) (crdt.Slot, bool) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 || len(k) != i+13 {
		return crdt.Slot{}, false
	}
	return crdt.Slot{Name: string(k[:i]), Res: binary.BigEndian.Uint32(k[i+1:]), Start: int64(binary.BigEndian.Uint64(k[i+5:]))}, true
}

// windowPrefix is the prefix of every windows-bucket key of (name, res).
func windowPrefix(name string, res uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(name), 0), res)
}

func expiryKey(res uint32, start int64, name string) []byte {
	k := binary.BigEndian.AppendUint32(make([]byte, 0, 12+len(name)), res)
	k = binary.BigEndian.AppendUint64(k, uint64(start))
	return append(k, name...)
}

func seqIdxKey(idx uint32, seq uint64, slot crdt.Slot) []byte {
	k := binary.BigEndian.AppendUint32(make([]byte, 0, 12+len(slot.Name)+12), idx)
	k = binary.BigEndian.AppendUint64(k, seq)
	return crdt.AppendSlot(k, slot)
}

func parseSeqIdxKey(k []byte) (idx uint32, seq uint64, slot crdt.Slot, err error) {
	if len(k) < 12 {
		return 0, 0, crdt.Slot{}, fmt.Errorf("seqidx key of %d bytes", len(k))
	}
	d := crdt.NewDecoder(k[12:])
	slot = d.Slot()
	if d.Err() != nil {
		return 0, 0, crdt.Slot{}, fmt.Errorf("seqidx key: %w", d.Err())
	}
	return binary.BigEndian.Uint32(k), binary.BigEndian.Uint64(k[4:]), slot, nil
}

func idemExpKey(expires int64, key string) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(expires)), key...)
}

// storedEntry is a counter entry as state.db holds it.
type storedEntry struct {
	idx   uint32
	value uint64
	seq   uint64
}

func appendCounterBody(dst []byte, es []storedEntry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	for _, e := range es {
		dst = binary.AppendUvarint(dst, uint64(e.idx))
		dst = binary.AppendUvarint(dst, e.value)
		dst = binary.AppendUvarint(dst, e.seq)
	}
	return dst
}

// The *CounterBody functions handle a counter without its checksum: state.db
// values go through encodeCounter, decodeCounter and sumCounter, which add
// and check it. (They were renamed when checksums came, so that a call on a
// raw state.db value written elsewhere fails to compile.)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The values of state.db's counters and blocks and the records of journal.db
// end with a CRC-32C (big-endian) of their key and everything before it in
// the value; a journal record's sum covers its value alone (a nil key).

// appendSum appends to v the sum of key and v[start:].
func appendSum(key, v []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(v, crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, v[start:]))
}

// splitSum returns v without its sum, and whether the sum is key's and the
// rest's.
func splitSum(key, v []byte) ([]byte, bool) {
	if len(v) < 4 {
		return nil, false
	}
	body := v[:len(v)-4]
	return body, binary.BigEndian.Uint32(v[len(body):]) == crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, body)
}

// encodeCounter is a counter's state.db value under key.
func (s *Store) encodeCounter(key []byte, es []storedEntry) []byte {
	v := appendCounterBody(nil, es)
	if !s.sums {
		return v
	}
	return appendSum(key, v, 0)
}

// unsum checks and strips the checksum of a counter value.
func (s *Store) unsum(key, v []byte) ([]byte, error) {
	if !s.sums {
		return v, nil
	}
	if len(v) < 4 {
		return nil, s.state.damaged("counter %s: value of %d bytes", counterLabel(key), len(v))
	}
	body, ok := splitSum(key, v)
	if !ok {
		return nil, s.state.damaged("counter %s: checksum mismatch", counterLabel(key))
	}
	return body, nil
}

// decodeCounter decodes the state.db value of key.
func (s *Store) decodeCounter(key, v []byte, dst []storedEntry) ([]storedEntry, error) {
	body, err := s.unsum(key, v)
	if err != nil {
		return nil, err
	}
	es, err := decodeCounterBody(body, dst)
	if err != nil {
		return nil, s.state.damaged("counter %s: %v", counterLabel(key), err)
	}
	return es, nil
}

// sumCounter is the value of the state.db counter under key.
func (s *Store) sumCounter(key, v []byte) (uint64, error) {
	body, err := s.unsum(key, v)
	if err != nil {
		return 0, err
	}
	n, err := sumCounterBody(body)
	if err != nil {
		return 0, s.state.damaged("counter %s: %v", counterLabel(key), err)
	}
	return n, nil
}

func decodeCounterBody(b []byte, dst []storedEntry) ([]storedEntry, error) {
	d := crdt.NewDecoder(b)
	n := d.Count(3)
	for i := 0; i < n; i++ {
		idx := d.Uvarint()
		v := d.Uvarint()
		s := d.Uvarint()
		if idx > 1<<32-1 {
			d.Fail(crdt.ErrMalformed)
		}
		dst = append(dst, storedEntry{idx: uint32(idx), value: v, seq: s})
	}
	if d.Err() != nil {
		return nil, fmt.Errorf("stored counter: %w", d.Err())
	}
	return dst, nil
}

// sumCounterBody is the value of a stored counter without decoding it into
// entries, for the read paths that need only totals.
func sumCounterBody(b []byte) (uint64, error) {
	d := crdt.NewDecoder(b)
	n := d.Count(3)
	var sum uint64
	for i := 0; i < n; i++ {
		d.Uvarint()
		v := d.Uvarint()
		d.Uvarint()
		if sum+v < sum {
			sum = ^uint64(0)
		} else {
			sum += v
		}
	}
	if d.Err() != nil {
		return 0, fmt.Errorf("stored counter: %w", d.Err())
	}
	return sum, nil
}

func keySeqKey(origin crdt.ReplicaID, seq uint64, key string) []byte {
	k := append(make([]byte, 0, 24+len(key)), origin[:]...)
	k = binary.BigEndian.AppendUint64(k, seq)
	return append(k, key...)
}

func appendKeyRecords(dst []byte, rs []crdt.KeyRecord) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for i := range rs {
		dst = crdt.AppendKeyRecord(dst, &rs[i])
	}
	return dst
}

func decodeKeyRecords(b []byte) ([]crdt.KeyRecord, error) {
	d := crdt.NewDecoder(b)
	n := d.Count(crdt.MinKeyRecordSize)
	out := make([]crdt.KeyRecord, 0, n)
	for i := 0; i < n && d.Err() == nil; i++ {
		out = append(out, d.KeyRecord())
	}
	if d.Err() == nil && d.Len() != 0 {
		d.Fail(crdt.ErrMalformed)
	}
	if d.Err() != nil {
		return nil, fmt.Errorf("key records: %w", d.Err())
	}
	return out, nil
}

func appendComps(dst []byte, cs crdt.Comps) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(cs)))
	for _, c := range cs {
		dst = crdt.AppendComp(dst, c)
	}
	return dst
}

func decodeComps(b []byte) (crdt.Comps, error) {
	d := crdt.NewDecoder(b)
	n := d.Count(crdt.MinCompSize)
	var cs crdt.Comps
	for i := 0; i < n && d.Err() == nil; i++ {
		cs, _ = cs.Add(d.Comp())
	}
	if d.Err() != nil {
		return nil, fmt.Errorf("compensations: %w", d.Err())
	}
	return cs, nil
}
