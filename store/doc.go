// Package store owns everything on disk: one replica's counters in two bbolt
// files in the data directory, and the group-commit write path.
//
// # Files
//
// journal.db takes every commit. Each group commit appends one record holding
// the absolute new values of the entries it raised (never increments), the
// idempotency keys it recorded, and version-vector advances. Its keys only grow,
// so a commit touches a page or two and costs about one fsync, whatever the
// number of counters.
//
// state.db holds the counters proper: totals, windows in blocks of 64 (one
// key per counter, resolution and block; package block), the seq index that
// anti-entropy scans and the expiry index the janitor scans (one key per
// block column and per block), the version vector, idempotency keys and the
// replica table. The checkpointer folds changed slots into it in large,
// key-ordered transactions, where many increments to one slot, and many
// windows of one block, cost one write, and then trims the journal. Open
// migrates a state.db of schema 1 or 2 (a key per window) first (migrate.go).
//
// In memory, mem holds every slot changed since the last checkpoint as a
// complete counter; reads consult mem first and state.db second. On open, the
// journal is replayed into mem. Replaying merges by max, so a record whose
// effects already reached state.db changes nothing: a crash at any point loses
// nothing that was acknowledged and counts nothing twice.
//
// # Write path
//
// Apply hands a request to the committer goroutine. The committer takes every
// request waiting, stages them against mem and state.db (overflow refuses a
// whole request), appends one journal record, commits, then publishes the new
// counters to mem and answers every request: group commit. With Async
// durability it answers before the commit and commits at least every
// AsyncFlushInterval.
//
// After each commit, Config.Sink receives this replica's raised entries,
// and Merge returns the entries it learned, so the gossip layer only ever
// sends values that are on disk.
//
// # Replication
//
// Each commit that raises this replica's entries gets the next seq. Every entry
// carries the seq that last raised it. Digest is the version vector;
// ChainChunk scans one replica's entries in seq-index order for a peer that
// is behind, with that replica's key records in the same seq range and the
// compensations of its duplicate copies in those slots; MergeChanges applies
// what peers send, with the covers that let the version vector advance, in
// one commit.
//
// # Idempotency keys
//
// A keyed request's record is committed with it and handed to
// Config.Sink for the gossip layer to push. A retry that finds a
// record of its key (this replica's or another's) is a replay. When a record
// arrives whose request another record already applied, the committer settles
// which copies lose and writes their compensations in the same commit; every
// read (Total, Replicas, Range, List, CountsByDC) is net of them.
//
// # Damaged files
//
// bbolt trusts its file: a damaged page makes it panic, loop or fault. So
// Open checks first, from the file rather than the memory map (both meta
// pages against the file's length; the page tree: ids in range, no page
// reached twice, elements inside their page, keys in order, the freelist),
// then walks every key (counters carry a CRC-32C from schema 2 on), within
// the bounds set in damage.go. Every transaction runs under recover and
// runtime/debug.SetPanicOnFault: a panic or a fault met while running is a
// *DamagedError (ErrDamaged), and the store refuses writes from then on. A
// clean Close leaves a mark in state.db; a journal lost after a stop without
// it is a restored snapshot, or (Config.RefuseLostJournal) an error. Recover
// rebuilds a damaged directory with the same replica ID, marked restored.
//
// # Concurrency
//
// All exported methods are safe for concurrent use. Only package store imports
// bbolt; nothing it returns aliases a transaction's memory.
package store
