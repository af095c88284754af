package gossip

import (
	"sync/atomic"
)

// stats are the gossip layer's counters, read at scrape time.
type stats struct {
	msgsIn, msgsOut   [msgLast + 1]atomic.Uint64
	bytesIn, bytesOut [msgLast + 1]atomic.Uint64

	decodeErrors   atomic.Uint64
	dropped        atomic.Uint64 // inbound work dropped for full queues
	refused        atomic.Uint64 // nodes refused: wrong cluster, windows or a duplicate replica
	rejected       atomic.Uint64 // packets dropped: undecryptable, wrong label, not from a member
	echoes         atomic.Uint64 // deltas messages of nothing but this node's own entries
	exchanges      atomic.Uint64 // push/pull states merged
	pullsStarted   atomic.Uint64
	pullsDone      atomic.Uint64
	chunksServed   atomic.Uint64
	chunksMerged   atomic.Uint64
	entriesPulled  atomic.Uint64
	entriesLearned atomic.Uint64 // from broadcasts, relayed on
}

func (s *stats) sent(t msgType, n int) {
	if t <= msgLast {
		s.msgsOut[t].Add(1)
		s.bytesOut[t].Add(uint64(n))
	}
}

func (s *stats) received(t msgType, n int) {
	if t <= msgLast {
		s.msgsIn[t].Add(1)
		s.bytesIn[t].Add(uint64(n))
	}
}

// Stats are the gossip layer's figures.
type Stats struct {
	// Messages and bytes by kind ("deltas", "digest", "pull", "chunk", "bye", "forget").
	MessagesIn, MessagesOut, BytesIn, BytesOut map[string]uint64

	DecodeErrors, Dropped, Refused, Exchanges uint64
	// Rejected counts packets and messages dropped as not from a member:
	// undecryptable, of another cluster label, malformed at memberlist's
	// level, or naming a node or replica this node does not know.
	Rejected uint64
	// Echoes counts deltas messages that held nothing but this node's own
	// entries (relayed back to it, or forged): dropped, never merged.
	Echoes                                         uint64
	PullsStarted, PullsDone                        uint64
	ChunksServed, ChunksMerged                     uint64
	EntriesPulled, EntriesLearned, EntriesCommited uint64
	OutboxEntries                                  int
	OutboxDropped                                  uint64
}

// Stats returns the gossip layer's figures.
func (g *Gossip) Stats() Stats {
	s := Stats{
		MessagesIn: map[string]uint64{}, MessagesOut: map[string]uint64{},
		BytesIn: map[string]uint64{}, BytesOut: map[string]uint64{},
	}
	for t := msgDeltas; t <= msgLast; t++ {
		k := t.String()
		s.MessagesIn[k] = g.stats.msgsIn[t].Load()
		s.MessagesOut[k] = g.stats.msgsOut[t].Load()
		s.BytesIn[k] = g.stats.bytesIn[t].Load()
		s.BytesOut[k] = g.stats.bytesOut[t].Load()
	}
	s.DecodeErrors = g.stats.decodeErrors.Load()
	s.Dropped = g.stats.dropped.Load()
	s.Refused = g.stats.refused.Load()
	s.Rejected = g.stats.rejected.Load()
	s.Echoes = g.stats.echoes.Load()
	s.Exchanges = g.stats.exchanges.Load()
	s.PullsStarted = g.stats.pullsStarted.Load()
	s.PullsDone = g.stats.pullsDone.Load()
	s.ChunksServed = g.stats.chunksServed.Load()
	s.ChunksMerged = g.stats.chunksMerged.Load()
	s.EntriesPulled = g.stats.entriesPulled.Load()
	s.EntriesLearned = g.stats.entriesLearned.Load()
	s.EntriesCommited = g.box.committed.Load()
	s.OutboxEntries = g.box.entries.len()
	g.box.entries.mu.Lock()
	s.OutboxDropped = g.box.entries.dropped
	g.box.entries.mu.Unlock()
	g.box.recs.mu.Lock()
	s.OutboxDropped += g.box.recs.dropped
	g.box.recs.mu.Unlock()
	return s
}
