package store

import (
	"bytes"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// KeyCount is the number of keys in a state.db bucket, for tests that check
// what is on disk.
func (s *Store) KeyCount(bucket string) int {
	n := 0
	s.state.View(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(bucket)).Stats().KeyN
		return nil
	})
	return n
}

// Hooks are a store's test hooks (see hooks in config.go).
type Hooks struct {
	AfterSlotTx       func()
	CheckpointTxSlots int
	CleanCheckMax     int64
	JournalRotateSize int64
	AfterIdemLookup   func()
	StagedOver        func()
}

// WithHooks returns cfg with the hooks h.
func WithHooks(cfg Config, h Hooks) Config {
	cfg.hooks = hooks{afterSlotTx: h.AfterSlotTx, checkpointTxSlots: h.CheckpointTxSlots, cleanCheckMax: h.CleanCheckMax, journalRotateSize: h.JournalRotateSize, afterIdemLookup: h.AfterIdemLookup, stagedOver: h.StagedOver}
	return cfg
}

// QueuedOps is the number of requests and merges waiting for the committer.
func (s *Store) QueuedOps() int { return len(s.com.ops) }

// Schema is the schema state.db records, for tests that check what a data
// directory reports.
func (s *Store) Schema() uint64 {
	var v uint64
	s.state.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(metaSchema); len(b) == 8 {
			v = binary.BigEndian.Uint64(b)
		}
		return nil
	})
	return v
}

// CompactFile writes a compacted copy of the closed bbolt file src to dst:
// the same buckets, keys and values in as few pages as bbolt can, for
// fixtures that are committed to the repository.
func CompactFile(dst, src string) error {
	from, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	if err := bolt.Compact(to, from, 0); err != nil {
		to.Close()
		return err
	}
	return to.Close()
}

// StoredReadsSkipped is how many keyed requests the committer settled
// without reading state.db for records of their key (see idemLookup).
func (s *Store) StoredReadsSkipped() uint64 { return s.stats.storedReadsSkipped.Load() }

// CopyFile copies src to dst, which must not exist, and syncs it.
var CopyFile = copyFile

// RecordVersion is the journal record version this build writes.
const RecordVersion = recordVersion

// SchemaVersion is the state.db schema this build writes.
const SchemaVersion = schemaVersion

// SetSchema writes v as the schema of the closed state.db at path.
func SetSchema(path string, v uint64) error {
	return updateClosed(path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaSchema, u64(v)) })
}

// DeleteStateBucket deletes bucket name from the closed state.db at path.
func DeleteStateBucket(path, name string) error {
	return updateClosed(path, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(name)) })
}

// StateKeys lists the keys of bucket name in the closed state.db at path.
func StateKeys(path, name string) ([][]byte, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var keys [][]byte
	err = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(name)).ForEach(func(k, _ []byte) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		})
	})
	return keys, err
}

// DeleteStateKey deletes key from bucket name of the closed state.db at path.
func DeleteStateKey(path, name string, key []byte) error {
	return updateClosed(path, func(tx *bolt.Tx) error { return tx.Bucket([]byte(name)).Delete(key) })
}

// StateBuckets names the buckets of a schema 3 state.db.
func StateBuckets() []string {
	var names []string
	for _, b := range stateBuckets {
		names = append(names, string(b))
	}
	return names
}

// NewerRecord is a journal record of the version after this build's, its
// sum right: a newer build's, as this build sees it.
func NewerRecord() []byte { return appendSum(nil, []byte{recordVersion + 1}, 0) }

// PutJournalValue writes key → val into the journal bucket of the closed
// journal file at path, for tests that damage a record.
func PutJournalValue(path string, key, val []byte) error {
	return updateClosed(path, func(tx *bolt.Tx) error { return tx.Bucket(bucketJournal).Put(key, val) })
}

// Fail makes the store refuse writes from now on, as a failed checkpoint
// does.
func (s *Store) Fail(err error) { s.fail(err) }

// updateClosed runs fn in an update transaction of the closed bbolt file at
// path.
func updateClosed(path string, fn func(*bolt.Tx) error) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
