package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/internal/buildinfo"
	"github.com/abacus-counter/abacus/store"
)

// storeMetrics are the store's Prometheus metrics: histograms fed by the
// store's observer hooks, and gauges and counters read from Stats at scrape
// time.
type storeMetrics struct {
	commitSeconds     prometheus.Histogram
	commitOps         prometheus.Histogram
	checkpointSeconds prometheus.Histogram
	checkpointSlots   prometheus.Histogram
	resolution        prometheus.Histogram
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_store_commit_duration_seconds",
			Help:    "Time to commit one journal record, fsync included: the floor of a durable increment's latency.",
			Buckets: []float64{.0001, .00025, .0005, .001, .002, .004, .008, .016, .032, .064, .128, .5, 1},
		}),
		commitOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_store_commit_batch_size",
			Help:    "Requests and merges that shared one journal commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		checkpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_store_checkpoint_duration_seconds",
			Help:    "Time to fold changed slots from the journal into the main database.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		checkpointSlots: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_store_checkpoint_slots",
			Help:    "Slots written by one checkpoint.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 11),
		}),
		resolution: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "abacus_idempotency_resolution_seconds",
			Help:    "Time from a duplicate copy of a keyed request being applied (at its node) to this node compensating it: how long the cluster counted that request twice.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
	}
	reg.MustRegister(m.commitSeconds, m.commitOps, m.checkpointSeconds, m.checkpointSlots, m.resolution)
	return m
}

func (m *storeMetrics) hook(cfg *store.Config) {
	cfg.ObserveCommit = func(ops int, took time.Duration) {
		m.commitOps.Observe(float64(ops))
		m.commitSeconds.Observe(took.Seconds())
	}
	cfg.ObserveResolution = func(d time.Duration) { m.resolution.Observe(max(d, 0).Seconds()) }
	cfg.ObserveCheckpoint = func(slots int, took time.Duration) {
		m.checkpointSlots.Observe(float64(slots))
		m.checkpointSeconds.Observe(took.Seconds())
	}
}

// storeCollector reads Stats at scrape time.
type storeCollector struct {
	st *store.Store
}

var (
	descPendingSlots = prometheus.NewDesc("abacus_store_pending_slots", "Slots changed since the last checkpoint, held in memory.", nil, nil)
	descJournalRecs  = prometheus.NewDesc("abacus_store_journal_records", "Journal records not yet folded into the main database.", nil, nil)
	descDBBytes      = prometheus.NewDesc("abacus_store_file_size_bytes", "Size of the store's files.", []string{"file"}, nil)
	descSeq          = prometheus.NewDesc("abacus_store_seq", "This replica's last committed sequence number.", nil, nil)
	descReplicas     = prometheus.NewDesc("abacus_store_replicas_known", "Replicas in the replica table.", nil, nil)
	descCommits      = prometheus.NewDesc("abacus_store_commits_total", "Journal commits.", nil, nil)
	descCheckpoints  = prometheus.NewDesc("abacus_store_checkpoints_total", "Checkpoints.", nil, nil)
	descKeyRecords   = prometheus.NewDesc("abacus_idempotency_records_replicated_total", "Key records of keyed requests applied at other nodes, learned here (broadcasts and anti-entropy).", nil, nil)
	descReplays      = prometheus.NewDesc("abacus_idempotency_replays_total", "Retries answered with the original response of a known Idempotency-Key, whichever node took the original.", nil, nil)
	descDuplicates   = prometheus.NewDesc("abacus_idempotency_duplicates_resolved_total", "Duplicate copies of keyed requests (a retry that raced the key's replication) compensated by this node.", nil, nil)
	descCompSlots    = prometheus.NewDesc("abacus_idempotency_compensated_slots", "Totals and windows holding compensations of duplicate copies.", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPendingSlots, descJournalRecs, descDBBytes, descSeq, descReplicas, descCommits, descCheckpoints, descKeyRecords, descReplays, descDuplicates, descCompSlots} {
		ch <- d
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.st.Stats()
	ch <- prometheus.MustNewConstMetric(descPendingSlots, prometheus.GaugeValue, float64(s.PendingSlots))
	ch <- prometheus.MustNewConstMetric(descJournalRecs, prometheus.GaugeValue, float64(s.JournalRecords))
	ch <- prometheus.MustNewConstMetric(descDBBytes, prometheus.GaugeValue, float64(s.StateBytes), store.StateFile)
	ch <- prometheus.MustNewConstMetric(descDBBytes, prometheus.GaugeValue, float64(s.JournalBytes), store.JournalFile)
	ch <- prometheus.MustNewConstMetric(descSeq, prometheus.GaugeValue, float64(s.Seq))
	ch <- prometheus.MustNewConstMetric(descReplicas, prometheus.GaugeValue, float64(s.ReplicasKnown))
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(s.Commits))
	ch <- prometheus.MustNewConstMetric(descCheckpoints, prometheus.CounterValue, float64(s.Checkpoints))
	ch <- prometheus.MustNewConstMetric(descKeyRecords, prometheus.CounterValue, float64(s.KeyRecordsMerged))
	ch <- prometheus.MustNewConstMetric(descReplays, prometheus.CounterValue, float64(s.Replays))
	ch <- prometheus.MustNewConstMetric(descDuplicates, prometheus.CounterValue, float64(s.DuplicatesResolved))
	ch <- prometheus.MustNewConstMetric(descCompSlots, prometheus.GaugeValue, float64(s.CompensatedSlots))
}

// gossipCollector reads the gossip layer's figures at scrape time.
type gossipCollector struct {
	g *gossip.Gossip
}

var (
	descGossipMsgs    = prometheus.NewDesc("abacus_gossip_messages_total", "Gossip messages by direction and kind.", []string{"direction", "kind"}, nil)
	descGossipBytes   = prometheus.NewDesc("abacus_gossip_bytes_total", "Gossip message bytes (before memberlist's framing and encryption) by direction and kind.", []string{"direction", "kind"}, nil)
	descExchanges     = prometheus.NewDesc("abacus_gossip_pushpull_exchanges_total", "Anti-entropy push/pull states merged from peers.", nil, nil)
	descPulls         = prometheus.NewDesc("abacus_gossip_pulls_total", "Anti-entropy catch-ups, by outcome (started, completed).", []string{"outcome"}, nil)
	descChunks        = prometheus.NewDesc("abacus_gossip_chunks_total", "Anti-entropy chunks, served to peers or merged from them.", []string{"direction"}, nil)
	descEntries       = prometheus.NewDesc("abacus_gossip_entries_total", "Counter entries moved by gossip, by how (pulled, learned from broadcasts, committed here and queued).", []string{"how"}, nil)
	descGossipErrors  = prometheus.NewDesc("abacus_gossip_dropped_total", "Inbound gossip dropped, by reason (decode, queue_full, refused_node; not_member: packets that fail the key or the cluster label, and messages from no member or of this node's own replica; own_replica: relayed messages that held only this node's own entries, normal in a busy cluster).", []string{"reason"}, nil)
	descOutbox        = prometheus.NewDesc("abacus_gossip_outbox_entries", "Entries waiting to be broadcast.", nil, nil)
	descOutboxDropped = prometheus.NewDesc("abacus_gossip_outbox_dropped_total", "Entries dropped from a full outbox before they were broadcast, and key records before they were pushed (anti-entropy delivers both).", nil, nil)
	descMembers       = prometheus.NewDesc("abacus_cluster_members", "Members by state, this node included.", []string{"state"}, nil)
	descLagSeconds    = prometheus.NewDesc("abacus_replication_lag_seconds", "Age of the oldest commit of this node a peer had not confirmed in its last digest.", []string{"peer"}, nil)
	descLagSeqs       = prometheus.NewDesc("abacus_replication_lag_commits", "Commits of this node a peer had not confirmed in its last digest.", []string{"peer"}, nil)
)

func (c gossipCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descGossipMsgs, descGossipBytes, descExchanges, descPulls, descChunks, descEntries, descGossipErrors, descOutbox, descOutboxDropped, descMembers, descLagSeconds, descLagSeqs} {
		ch <- d
	}
}

func (c gossipCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.Stats()
	for kind := range s.MessagesIn {
		ch <- prometheus.MustNewConstMetric(descGossipMsgs, prometheus.CounterValue, float64(s.MessagesIn[kind]), "in", kind)
		ch <- prometheus.MustNewConstMetric(descGossipMsgs, prometheus.CounterValue, float64(s.MessagesOut[kind]), "out", kind)
		ch <- prometheus.MustNewConstMetric(descGossipBytes, prometheus.CounterValue, float64(s.BytesIn[kind]), "in", kind)
		ch <- prometheus.MustNewConstMetric(descGossipBytes, prometheus.CounterValue, float64(s.BytesOut[kind]), "out", kind)
	}
	ch <- prometheus.MustNewConstMetric(descExchanges, prometheus.CounterValue, float64(s.Exchanges))
	ch <- prometheus.MustNewConstMetric(descPulls, prometheus.CounterValue, float64(s.PullsStarted), "started")
	ch <- prometheus.MustNewConstMetric(descPulls, prometheus.CounterValue, float64(s.PullsDone), "completed")
	ch <- prometheus.MustNewConstMetric(descChunks, prometheus.CounterValue, float64(s.ChunksServed), "served")
	ch <- prometheus.MustNewConstMetric(descChunks, prometheus.CounterValue, float64(s.ChunksMerged), "merged")
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.CounterValue, float64(s.EntriesPulled), "pulled")
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.CounterValue, float64(s.EntriesLearned), "learned")
	ch <- prometheus.MustNewConstMetric(descEntries, prometheus.CounterValue, float64(s.EntriesCommited), "committed")
	ch <- prometheus.MustNewConstMetric(descGossipErrors, prometheus.CounterValue, float64(s.DecodeErrors), "decode")
	ch <- prometheus.MustNewConstMetric(descGossipErrors, prometheus.CounterValue, float64(s.Dropped), "queue_full")
	ch <- prometheus.MustNewConstMetric(descGossipErrors, prometheus.CounterValue, float64(s.Refused), "refused_node")
	ch <- prometheus.MustNewConstMetric(descGossipErrors, prometheus.CounterValue, float64(s.Rejected), "not_member")
	ch <- prometheus.MustNewConstMetric(descGossipErrors, prometheus.CounterValue, float64(s.Echoes), "own_replica")
	ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(s.OutboxEntries))
	ch <- prometheus.MustNewConstMetric(descOutboxDropped, prometheus.CounterValue, float64(s.OutboxDropped))
	for state, n := range c.g.MemberCounts() {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), state)
	}
	for _, m := range c.g.Members()[1:] {
		// Live peers only: a dead one has AbacusMemberDead, and its lag,
		// which only grows, would page twice (it shows in /v1/cluster).
		if m.Lag != nil && m.State == "alive" {
			ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, m.Lag.Seconds, m.Name)
			ch <- prometheus.MustNewConstMetric(descLagSeqs, prometheus.GaugeValue, float64(m.Lag.Seqs), m.Name)
		}
	}
}

// nodeCollector reports whether the node is ready and takes writes.
type nodeCollector struct {
	a *Agent
}

var (
	descReady  = prometheus.NewDesc("abacus_node_ready", "1 when /readyz answers 200: joined, caught up with its peers, taking writes.", nil, nil)
	descWrites = prometheus.NewDesc("abacus_node_accepting_writes", "1 when the node takes increments; 0 while it refuses them (a copied data directory, a restored snapshot catching up, a failed disk, shutting down).", nil, nil)
)

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReady
	ch <- descWrites
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	b := func(ok bool) float64 {
		if ok {
			return 1
		}
		return 0
	}
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b((*cluster)(c.a).Ready() == nil))
	writes := c.a.writeBlocked() == nil && c.a.store.Err() == nil && !c.a.closing.Load()
	ch <- prometheus.MustNewConstMetric(descWrites, prometheus.GaugeValue, b(writes))
}

// buildInfoGauge is abacus_build_info: always 1, the build in its labels, so
// that a dashboard can tell which nodes run which build.
func buildInfoGauge() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "abacus_build_info",
		Help:        "The running build: version, commit (revision) and Go version; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	g.Set(1)
	return g
}
