// Package promapi answers the Prometheus HTTP query API (/api/v1/query,
// query_range, series, labels, label values, metadata, buildinfo) over
// Abacus's counters, so that Grafana's Prometheus data source, promtool and
// every Prometheus API client read Abacus with no adapter.
//
// Queries run on the real PromQL engine (github.com/prometheus/prometheus/
// promql) over a storage.Queryable that reads the node's windows through the
// Source interface this package declares. The series model is one
// Prometheus counter per counter and datacenter:
//
//	abacus_events_total{counter="NAME", dc="DC"}
//
// whose value at t is the number of events with event time before t, t
// aligned down to the finest resolution retained at t. Samples sit on
// window boundaries of that resolution: one a minute over the last 48 hours
// (default windows), one an hour before that, one a day before that. So
// consecutive samples one window apart differ by exactly that window's count,
// and increase(), rate() and sum by (counter) mean what Prometheus users
// expect. A value is computed as the all-time total minus the windows from t
// on, read at one instant, so the number of samples a series costs is
// bounded by the retention of the resolution in use divided by its window
// length, whatever the asked range.
//
// Caveats. Prometheus's default lookback (5m) finds no sample between
// hourly or daily boundaries: over data older than the finest retention use
// ranges of at least the window length (rate(x[2h])) or lookback_delta.
// Events whose time is in the current, unfinished window are not in any
// sample yet: the newest sample is at the start of the current window.
//
// An API is safe for concurrent use; each query holds no lock of its own.
// Limits are configured in Config: the timeout is the engine's, the series
// bound the storage adapter's, and the sample bound both (the adapter stops
// reading past it, the engine holds no more at once).
package promapi
