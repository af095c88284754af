package store

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
)

// TestUpgrade_KeysFromBeforeRecordsReplicated: a data directory written
// before key records replicated holds keys in version 1 journal records and
// in the idem bucket. Both still answer retries, survive a checkpoint and a
// restart, and expire.
func TestUpgrade_KeysFromBeforeRecordsReplicated(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	cfg := DefaultConfig(dir)
	cfg.Now = func() time.Time { return now }
	cfg.CheckpointInterval, cfg.JanitorInterval = -1, -1
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	replica := s.Replica()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	expires := now.Add(time.Hour).UnixNano()
	// A version 1 journal record: one entry and one key.
	rec := []byte{1}
	rec = binary.AppendUvarint(rec, 1) // seq
	rec = binary.AppendUvarint(rec, 1) // origins
	rec = append(rec, replica[:]...)
	rec = binary.AppendUvarint(rec, 1) // deltas
	rec = crdt.AppendSlot(rec, crdt.TotalSlot("x"))
	rec = binary.AppendUvarint(rec, 0)
	rec = binary.AppendUvarint(rec, 5)
	rec = binary.AppendUvarint(rec, 1)
	rec = binary.AppendUvarint(rec, 1) // idem
	rec = binary.AppendUvarint(rec, uint64(len("from-journal")))
	rec = append(rec, "from-journal"...)
	rec = binary.AppendVarint(rec, expires)
	rec = append(rec, make([]byte, 32)...)
	rec = binary.AppendUvarint(rec, 2)
	rec = append(rec, "j1"...)
	rec = binary.AppendUvarint(rec, 0) // covers
	put := func(file string, bucket []byte, k, v []byte) {
		db, err := bolt.Open(filepath.Join(dir, file), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(k, v) }); err != nil {
			t.Fatal(err)
		}
	}
	put(JournalFile, bucketJournal, u64(1), rec)
	legacy := binary.BigEndian.AppendUint64(nil, uint64(expires))
	legacy = append(legacy, make([]byte, 32)...)
	put(StateFile, bucketIdem, []byte("from-state"), append(legacy, "s1"...))
	put(StateFile, bucketIdemExp, idemExpKey(expires, "from-state"), []byte{})

	check := func(when string) {
		t.Helper()
		s, err := Open(cfg)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer s.Close(context.Background())
		for key, want := range map[string]string{"from-journal": "j1", "from-state": "s1"} {
			res, err := s.Apply(context.Background(), &Request{IdempotencyKey: key, Increments: []Increment{{Name: "x", Amount: 1, TS: now}}})
			if err != nil || !res.Replayed || string(res.Response) != want {
				t.Errorf("%s: retry of %s = %+v, %v; want %q replayed", when, key, res, err, want)
			}
		}
		if v, err := s.Total("x"); err != nil || v != 5 {
			t.Errorf("%s: total %d, %v; want 5", when, v, err)
		}
		if err := s.Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	check("first open")
	check("after a checkpoint")
	now = now.Add(2 * time.Hour)
	s, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Expire(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"idem", "keyrecs", "keyseq", "idemexp"} {
		if n := s.KeyCount(b); n != 0 {
			t.Errorf("%d entries left in %s after the keys expired", n, b)
		}
	}
}
