package gossip

import "sync/atomic"

// stats are the gossip layer's counters, read at scrape time.
type stats struct {
	msgsIn, msgsOut   [msgLast + 1]atomic.Uint64
	bytesIn, bytesOut [msgLast + 1]atomic.Uint64

	decodeErrors     atomic.Uint64
	dropped          atomic.Uint64 // inbound work dropped for full queues
	refused          atomic.Uint64 // nodes refused: wrong cluster, windows or a duplicate replica
	exchanges        atomic.Uint64 // push/pull states merged
	pullsStarted     atomic.Uint64
	pullsDone        atomic.Uint64
	chunksServed     atomic.Uint64
	chunksMerged     atomic.Uint64
	entriesPulled    atomic.Uint64
	entriesLearned   atomic.Uint64 // from broadcasts, relayed on
	committedEntries atomic.Uint64 // this replica's entries queued for broadcast
	recordsLearned   atomic.Uint64 // key records from broadcasts, relayed on
	recordsPulled    atomic.Uint64 // key records from chunks
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
	// Messages and bytes by kind ("deltas", "digest", "pull", "chunk", "bye").
	MessagesIn, MessagesOut, BytesIn, BytesOut map[string]uint64

	DecodeErrors, Dropped, Refused, Exchanges      uint64
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
	s.Exchanges = g.stats.exchanges.Load()
	s.PullsStarted = g.stats.pullsStarted.Load()
	s.PullsDone = g.stats.pullsDone.Load()
	s.ChunksServed = g.stats.chunksServed.Load()
	s.ChunksMerged = g.stats.chunksMerged.Load()
	s.EntriesPulled = g.stats.entriesPulled.Load()
	s.EntriesLearned = g.stats.entriesLearned.Load()
	s.EntriesCommited = g.stats.committedEntries.Load()
	s.OutboxEntries = g.out.len()
	g.out.mu.Lock()
	s.OutboxDropped = g.out.dropped
	g.out.mu.Unlock()
	return s
}
