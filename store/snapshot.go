package store

import (
	"context"
	"fmt"
	"io"
	"os"

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
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("snapshot: %w", err)
	}
	n, err := io.Copy(w, tmp)
	if err != nil {
		return n, fmt.Errorf("snapshot: send: %w", err)
	}
	return n, nil
}

// Restored reports whether this data directory was restored from a snapshot:
// state.db existed but journal.db did not. Peers may hold newer entries of this
// replica than the snapshot has; the node must learn them before taking
// writes, or its new increments would hide under the peers' larger values.
func (s *Store) Restored() bool { return s.restored }
