// Package crdt holds the conflict-free replicated data types Abacus counts with.
//
// A GCounter is a grow-only counter: one entry per replica, each entry raised
// only by its own replica, merged by taking the larger entry. Every entry also
// carries the sequence number of the commit on its replica that last raised it;
// replication uses that number to know what a peer is missing. Merge orders
// entries by (Value, Seq), which is a join-semilattice, so merge is commutative,
// associative and idempotent: replicas that have seen the same entries in any
// order and any number of times hold the same counter.
//
// A Slot names one counter of one window: (name, resolution, window start), or
// the all-time total when the resolution is zero. A Delta is one raised entry of
// one slot; it is what travels between replicas and into the journal, and it is
// always an absolute value, never an increment, so applying it twice is harmless.
//
// Keyed requests add two types. A KeyRecord is what one replica's
// application of a request with an idempotency key leaves: enough to replay
// its answer anywhere and to compute every slot it raised. Losers picks, from
// the records of one key, the copies that lose to an earlier one, by the
// records alone. A Comp takes such a copy's amount back from one slot; Comps
// is a grow-only set of them, and Comps.Value is a slot's count net of those
// whose loser's entry already holds the copy (see docs/ARCHITECTURE.md,
// "Idempotency keys across the cluster").
//
// The package is pure: no I/O, no clock, no logging. Types are not safe for
// concurrent mutation; callers guard them.
package crdt
