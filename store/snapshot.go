package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Snapshot writes a consistent copy of state.db to w: every change committed
// before the call, as of one checkpoint. Restore by placing the copy as
// state.db in an empty data directory (see Restored).
//
// The copy is taken into a temporary file in the data directory first, so
// that the read transaction it needs is short: a long one would hold up the
// checkpointer whenever state.db must grow, however slowly w drains.
func (s *Store) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.Checkpoint(ctx); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	tmp, err := os.CreateTemp(s.cfg.Dir, "snapshot-*.tmp")
	if err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := s.state.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(tmp)
		return err
	}); err != nil {
		return 0, fmt.Errorf("snapshot: copy %s: %w", StateFile, err)
	}
	if err := markClosed(tmp.Name()); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	n, err := io.Copy(w, tmp)
	if err != nil {
		return n, fmt.Errorf("snapshot: send: %w", err)
	}
	return n, nil
}

// Restored reports whether this data directory was restored from a snapshot
// (state.db was found without journal.db) and has not been marked caught up
// since. Peers may hold newer entries of this replica than the snapshot has;
// the node must learn them before taking writes, or its new increments would
// hide under the peers' larger values. The mark is on disk: a restart before
// the catch-up finishes is still restored.
func (s *Store) Restored() bool { return s.restored.Load() }

// RestoredSeq is this replica's seq in the restored snapshot: peers may hold
// its entries above it.
func (s *Store) RestoredSeq() uint64 { return s.restoredSeq }

// markRestored records in state.db that it is a restored snapshot.
func (s *Store) markRestored() error {
	err := s.state.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get(metaSchema) == nil || meta.Get(metaRestored) != nil {
			return nil // never initialised (a crash while creating it), or marked
		}
		seq := meta.Get(metaSeq)
		if len(seq) != 8 {
			return fmt.Errorf("seq %x: %w", seq, ErrIncompatible)
		}
		return meta.Put(metaRestored, bytes.Clone(seq))
	})
	if err != nil {
		return fmt.Errorf("mark %s as a restored snapshot: %w", StateFile, err)
	}
	return nil
}

// CaughtUp records that this restored replica holds every entry of its own
// that peers had: Restored is false from now on, across restarts. Those
// entries are committed first: with Async durability a merge is answered
// before its commit, and a crash after the mark is gone but before that
// commit would bring the node back unrestored and without them.
func (s *Store) CaughtUp() error {
	if !s.restored.Load() {
		return nil
	}
	if err := s.Flush(context.Background()); err != nil {
		return fmt.Errorf("commit what catching up merged: %w", err)
	}
	err := s.state.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Delete(metaRestored)
	})
	if err != nil {
		return fmt.Errorf("clear the restored mark: %w", err)
	}
	s.restored.Store(false)
	s.log.Info("restored replica caught up on its own entries", "replica", s.replica.String())
	return nil
}

// markClosed clears the open mark in a copy of state.db: a snapshot holds
// everything committed before it, so restoring it is not an unclean stop
// (whose lost journal would mean lost increments).
func markClosed(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			return meta.Delete(metaOpen)
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
