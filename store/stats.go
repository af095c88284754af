package store

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Stats are counters and gauges about the store, for metrics and tests.
type Stats struct {
	Commits        uint64        // journal commits since open
	CommittedOps   uint64        // requests and merges those commits carried
	CommitTime     time.Duration // total time spent in journal commits
	Checkpoints    uint64        // checkpoints since open
	PendingSlots   int           // slots changed since the last checkpoint
	JournalRecords uint64        // records not yet trimmed
	Seq            uint64        // this replica's last committed seq
	StateBytes     int64         // size of state.db
	JournalBytes   int64         // size of journal.db
	// JournalRotations counts journal files replaced by a new one since open
	// (bbolt never shrinks a file; see rotateJournal).
	JournalRotations uint64
	IdempotencyKeys  int // keys committed since the last checkpoint
	ReplicasKnown    int // replicas in the replica table
	// Idempotency across the cluster.
	KeyRecordsMerged   uint64 // key records of other replicas learned
	Replays            uint64 // retries answered with a known key's response
	DuplicatesResolved uint64 // losing copies of a request compensated here
	CompensatedSlots   int    // slots holding compensations
}

type statCounters struct {
	commits, committedOps, commitNanos, checkpoints atomic.Uint64
	recordsMerged, replays, duplicates              atomic.Uint64
	journalRotations                                atomic.Uint64
	storedReadsSkipped                              atomic.Uint64 // see idemLookup; for tests
}

// Stats returns the store's current figures.
func (s *Store) Stats() Stats {
	var st Stats
	jlast := s.mem.figures(&st)
	st.Commits = s.stats.commits.Load()
	st.CommittedOps = s.stats.committedOps.Load()
	st.CommitTime = time.Duration(s.stats.commitNanos.Load())
	st.Checkpoints = s.stats.checkpoints.Load()
	st.KeyRecordsMerged = s.stats.recordsMerged.Load()
	st.Replays = s.stats.replays.Load()
	st.DuplicatesResolved = s.stats.duplicates.Load()
	st.JournalRotations = s.stats.journalRotations.Load()
	if t := s.ckpt.truncatedSeen.Load(); jlast > t {
		st.JournalRecords = jlast - t
	}
	st.ReplicasKnown = len(s.reps.table().infos)
	if fi, err := os.Stat(filepath.Join(s.cfg.Dir, StateFile)); err == nil {
		st.StateBytes = fi.Size()
	}
	if fi, err := os.Stat(filepath.Join(s.cfg.Dir, JournalFile)); err == nil {
		st.JournalBytes = fi.Size()
	}
	return st
}
