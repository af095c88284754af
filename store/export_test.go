package store

import bolt "go.etcd.io/bbolt"

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

// SetCheckpointTxSlots makes checkpoints split into transactions of n slots,
// so that small test histories exercise multi-transaction checkpoints.
func SetCheckpointTxSlots(n int) { checkpointTxSlots = n }

// QueuedOps is the number of requests and merges waiting for the committer.
func (s *Store) QueuedOps() int { return len(s.ops) }

// SetAfterSlotTx makes f run after each slot transaction of a checkpoint.
func SetAfterSlotTx(f func()) { afterSlotTx = f }

// SetCleanCheckMax sets the size above which state.db is checked on open
// only after an unclean shutdown; it returns the previous value.
func SetCleanCheckMax(n int64) int64 { old := cleanCheckMax; cleanCheckMax = n; return old }

// SetAfterIdemLookup makes f run after an idempotency key's lookup found no
// record, before the request reaches the committer.
func SetAfterIdemLookup(f func()) { afterIdemLookup = f }

// StoredReadsSkipped is how many keyed requests the committer settled
// without reading state.db for records of their key (see idemLookup).
func (s *Store) StoredReadsSkipped() uint64 { return s.stats.storedReadsSkipped.Load() }
