package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"abacus/store"
)

// storeMetrics are the store's Prometheus metrics: histograms fed by the
// store's observer hooks, and gauges and counters read from Stats at scrape
// time.
type storeMetrics struct {
	commitSeconds     prometheus.Histogram
	commitOps         prometheus.Histogram
	checkpointSeconds prometheus.Histogram
	checkpointSlots   prometheus.Histogram
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
	}
	reg.MustRegister(m.commitSeconds, m.commitOps, m.checkpointSeconds, m.checkpointSlots)
	return m
}

func (m *storeMetrics) hook(cfg *store.Config) {
	cfg.ObserveCommit = func(ops int, took time.Duration) {
		m.commitOps.Observe(float64(ops))
		m.commitSeconds.Observe(took.Seconds())
	}
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
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPendingSlots, descJournalRecs, descDBBytes, descSeq, descReplicas, descCommits, descCheckpoints} {
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
}
