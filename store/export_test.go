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
