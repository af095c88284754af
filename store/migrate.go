package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store/block"
)

// migrateBatch bounds the keys one transaction of a migration writes.
const migrateBatch = 50_000

// migrate rewrites a schema 1 or 2 state.db as schema 3, before anything else
// reads or writes it (docs/ARCHITECTURE.md, "Migration"): a new file gets
// every bucket but the windows and their indexes as they are, the windows
// grouped into blocks, both indexes built anew, and is then renamed over the
// old one. A crash before the rename leaves the old file, migrated again at
// the next start; nothing is ever written to it.
func (s *Store) migrate() error {
	path := s.state.path
	tmp := path + ".v3"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	start := time.Now()
	from := s.schema
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoSync: true})
	if err != nil {
		return fmt.Errorf("migrate %s: create %s: %w", path, tmp, err)
	}
	var stats migrateStats
	err = s.state.View(func(src *bolt.Tx) error {
		return s.migrateInto(src, dst, &stats)
	})
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("migrate %s from schema %d: %w", path, from, err)
	}
	if err := s.state.Close(); err != nil {
		return fmt.Errorf("migrate %s: close: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("migrate %s: %w", path, err)
	}
	if s.state, err = s.openBolt(path, false); err != nil {
		return err
	}
	s.state.onDamage = s.noteDamage
	s.schema, s.sums = schemaVersion, true
	s.log.Info("migrated state.db", "from_schema", from, "to_schema", schemaVersion, "windows", stats.windows, "blocks", stats.blocks, "counters", stats.totals, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

type migrateStats struct{ windows, blocks, totals int }

// migrateInto writes src's contents into dst in schema 3.
func (s *Store) migrateInto(src *bolt.Tx, dst *bolt.DB, stats *migrateStats) error {
	err := dst.Update(func(tx *bolt.Tx) error {
		for _, name := range stateBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Buckets that do not change, copied key by key in order.
	for _, name := range [][]byte{bucketMeta, bucketReplicas, bucketVV, bucketIdem, bucketIdemExp, bucketKeyRecs, bucketKeySeq, bucketComps} {
		b := src.Bucket(name)
		if b == nil {
			continue
		}
		w := newBatchWriter(dst)
		err := b.ForEach(func(k, v []byte) error {
			if bytes.Equal(name, bucketMeta) && bytes.Equal(k, metaSchema) {
				v = u64(schemaVersion)
			}
			return w.put(name, k, v)
		})
		if err == nil {
			err = w.flush()
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	// Totals, with a checksum from now on, and their seq index keys.
	w := newBatchWriter(dst)
	var es []storedEntry
	err = src.Bucket(bucketTotals).ForEach(func(k, v []byte) error {
		var err error
		if es, err = s.decodeCounter(k, v, es[:0]); err != nil {
			return err
		}
		stats.totals++
		ref := crdt.TotalSlot(string(k))
		for _, e := range es {
			w.index(bucketSeqIdx, seqIdxKey(e.idx, e.seq, ref))
		}
		body := appendCounterBody(nil, es)
		return w.put(bucketTotals, k, appendSum(k, body, 0))
	})
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return fmt.Errorf("totals: %w", err)
	}
	// Windows, into blocks: a block's windows come one after another in key
	// order.
	if wb := src.Bucket(bucketWindows); wb != nil {
		var blk block.Block
		var cur crdt.Slot // the open block's ref
		open := false
		finish := func() error {
			if !open || blk.Empty() {
				return nil
			}
			open = false
			stats.blocks++
			key := blockKey(nil, cur.Name, cur.Res, cur.Start)
			for _, c := range blk.Columns {
				w.index(bucketSeqIdx, seqIdxKey(c.Replica, c.Seq, cur))
			}
			w.index(bucketExpiry, expiryKey(cur.Res, cur.Start+blockSpan(cur.Res), cur.Name))
			return w.put(bucketBlocks, key, encodeBlock(key, &blk))
		}
		err := wb.ForEach(func(k, v []byte) error {
			slot, ok := parseWindowKey(k)
			if !ok || slot.Res == 0 || slot.Start%int64(slot.Res) != 0 {
				return s.state.damaged("windows key %x", k)
			}
			var err error
			if es, err = s.decodeCounter(k, v, es[:0]); err != nil {
				return err
			}
			stats.windows++
			bstart, i := blockOf(slot.Res, slot.Start)
			if ref := blockRef(slot.Name, slot.Res, bstart); !open || ref != cur {
				if err := finish(); err != nil {
					return err
				}
				blk.Reset()
				cur, open = ref, true
			}
			for _, e := range es {
				blk.Raise(e.idx, i, block.Entry{Value: e.value, Seq: e.seq})
			}
			return nil
		})
		if err == nil {
			err = finish()
		}
		if err == nil {
			err = w.flush()
		}
		if err != nil {
			return fmt.Errorf("windows: %w", err)
		}
	}
	return nil
}

// batchWriter writes keys into a new file in transactions of up to
// migrateBatch keys: puts as they come (in key order per bucket), index keys
// sorted at each flush.
type batchWriter struct {
	db   *bolt.DB
	puts []kv
	keys map[string][][]byte
	n    int
}

type kv struct {
	bucket, k, v []byte
}

func newBatchWriter(db *bolt.DB) *batchWriter {
	return &batchWriter{db: db, keys: make(map[string][][]byte)}
}

func (w *batchWriter) put(bucket, k, v []byte) error {
	w.puts = append(w.puts, kv{bucket, bytes.Clone(k), bytes.Clone(v)})
	return w.grow()
}

func (w *batchWriter) index(bucket, k []byte) {
	w.keys[string(bucket)] = append(w.keys[string(bucket)], k)
	w.n++
}

func (w *batchWriter) grow() error {
	if w.n++; w.n < migrateBatch {
		return nil
	}
	return w.flush()
}

func (w *batchWriter) flush() error {
	err := w.db.Update(func(tx *bolt.Tx) error {
		for _, p := range w.puts {
			b := tx.Bucket(p.bucket)
			b.FillPercent = fillPercent
			if bytes.Equal(p.bucket, bucketBlocks) {
				b.FillPercent = blockFillPercent // the newest blocks grow in place
			}
			if err := b.Put(p.k, p.v); err != nil {
				return err
			}
		}
		for name, keys := range w.keys {
			slices.SortFunc(keys, bytes.Compare)
			b := tx.Bucket([]byte(name))
			for _, k := range keys {
				if err := b.Put(k, []byte{}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	w.puts, w.n = w.puts[:0], 0
	clear(w.keys)
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
