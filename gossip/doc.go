// Package gossip owns hashicorp/memberlist: membership (SWIM), and the
// replication of counters between replicas over it.
//
// # Fresh changes
//
// After each commit the store hands this replica's raised entries to
// Committed. They wait in an outbox keyed by (slot, origin), where a newer
// value replaces a waiting one, and memberlist's gossip drains it through
// GetBroadcasts into messages that fit the packet budget it gives. Each value
// is sent to RetransmitMult × log(N+1) peers. A node that learns something
// from a broadcast merges it durably and then relays it, so news spreads
// epidemically. Only committed values are ever sent.
//
// # Anti-entropy
//
// Every node's digest is its version vector (for each origin replica, the seq
// up to which it holds every change): tens of bytes per replica whatever the
// number of counters. Digests travel in memberlist's push/pull state and in a
// small UDP message every DigestInterval. A node that sees a peer ahead on an
// origin pulls that origin's entries after its own seq from that peer, in
// chunks of at most ChunkBytes sent with SendReliable, each saying how far it
// covers; it asks for the next chunk only after merging the last. Converged
// nodes exchange digests only.
//
// # Membership
//
// Node metadata carries the replica ID, datacenter, cluster name, a hash of
// the window configuration and the HTTP address. A node of another cluster or
// window configuration is refused; of two live members with the same replica
// ID (a copied data directory) the later one refuses writes (WriteBlocked) and
// says why. A node missing members keeps re-joining its Join addresses and the
// members it knew, so partitions longer than memberlist's dead-node reaping
// heal by themselves. ForceLeave drops a dead member at once, here and, by a
// forget message, at every live member (memberlist has no such operation).
// With Keys every packet and stream is encrypted and
// authenticated (the first key encrypts, all decrypt); the cluster name labels
// them. Behind the key (guard.go), user messages are taken only from members,
// entries of this node's own replica only while it recovers, and every
// dropped packet is counted (Stats.Rejected) and logged at a bounded rate.
//
// # Concurrency
//
// A Gossip is safe for concurrent use. memberlist's delegate callbacks only
// decode, record and queue work; workers do the store I/O and the sending.
// Nothing memberlist defines appears in this package's API but Config's test
// hooks.
package gossip
