package store

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// TestBoltHighWater_IsTxSize: the tests that cut a data file below what it
// holds read that length from the meta page the way bbolt does.
func TestBoltHighWater_IsTxSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			for i := range 2000 {
				if err := b.Put(binary.BigEndian.AppendUint64(nil, uint64(round*2000+i)), make([]byte, 100)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var want int64
	if err := db.View(func(tx *bolt.Tx) error { want = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got := testenv.BoltHighWater(t, path); got != want || got == 0 {
		t.Fatalf("BoltHighWater %d, bbolt's Tx.Size %d", got, want)
	}
}
