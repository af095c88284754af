package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// promAnswer is the part of a Prometheus query answer the suite checks.
type promAnswer struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	} `json:"data"`
}

// promQuery posts one query_range form and checks the answer has want series
// of points points each.
func (s *suite) promQuery(n *node, form url.Values, series, points int) (time.Duration, error) {
	began := time.Now()
	resp, err := httpc.PostForm(n.url()+"/api/v1/query_range", form)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	if err != nil {
		return 0, err
	}
	var a promAnswer
	if err := json.Unmarshal(body, &a); err != nil || resp.StatusCode != http.StatusOK || a.Status != "success" {
		return 0, fmt.Errorf("query_range %s: %d %.200s", form.Get("query"), resp.StatusCode, body)
	}
	if len(a.Data.Result) != series {
		return 0, fmt.Errorf("query_range %s: %d series, want %d", form.Get("query"), len(a.Data.Result), series)
	}
	for _, r := range a.Data.Result {
		if len(r.Values) != points {
			return 0, fmt.Errorf("query_range %s: a series of %d points, want %d", form.Get("query"), len(r.Values), points)
		}
	}
	return took, nil
}

// promLatencies runs the query back to back for d (one client: the figure
// is the latency of one query, not the node's throughput) and returns the
// median and p99 in milliseconds and the number of queries.
func (s *suite) promLatencies(n *node, form func() url.Values, series, points int, d time.Duration) (p50, p99 float64, count int, err error) {
	var lat []float64
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) || len(lat) < 20 {
		if err := s.ctx.Err(); err != nil {
			return 0, 0, 0, err
		}
		took, err := s.promQuery(n, form(), series, points)
		if err != nil {
			return 0, 0, 0, err
		}
		lat = append(lat, float64(took.Microseconds())/1000)
	}
	slices.Sort(lat)
	pct := func(q float64) float64 { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	return pct(0.5), pct(0.99), len(lat), nil
}

// promForm is a query_range over the last span, step 1m, ending at the
// start of the current minute (so every point is a finished minute).
func promForm(query string, span time.Duration) func() url.Values {
	return func() url.Values {
		end := time.Now().Truncate(time.Minute)
		return url.Values{
			"query": {query},
			"start": {strconv.FormatInt(end.Add(-span).Unix(), 10)},
			"end":   {strconv.FormatInt(end.Unix(), 10)},
			"step":  {"60"},
		}
	}
}

// runPromRange measures a Prometheus range query of 2,880 points (48 h at
// 1 m) over one counter with events in every minute, as Grafana sends it.
func runPromRange(s *suite) error {
	n, err := s.preloaded("prom-range", "perf.pr", s.cfg.rangePreload, 1, "48h", 10*time.Minute)
	if err != nil {
		return err
	}
	defer s.stopNode(n)
	// The plain selector: at the first point, 48 h back, a rate's range
	// would reach into hourly samples.
	query := `abacus_events_total{counter="perf.pr.0"}`
	form := promForm(query, 2879*time.Minute)
	row := s.row(s.cur, "query_range "+query+", 48 h at 1 m (2,880 points), one client", "ms")
	row.Target = &Target{AtMost: true, Bound: 10, OnP99: true, Desc: "p99 ≤ 10 ms"}
	n99 := s.row(s.cur+"/queries", "queries per run", "")
	if _, _, _, err := s.promLatencies(n, form, 1, 2880, s.cfg.warmup); err != nil {
		return err
	}
	for range s.cfg.runs {
		p50, p99, count, err := s.promLatencies(n, form, 1, 2880, s.cfg.duration)
		if err != nil {
			return err
		}
		s.record(map[string]any{"p50_ms": p50, "p99_ms": p99, "queries": count})
		row.addWithP99(p50, p99)
		n99.add(float64(count))
	}
	return nil
}

// runPromSum measures sum by (counter) of rate over 1,000 counters with
// events in every minute of the last 6 hours, 6 h at 1 m.
func runPromSum(s *suite) error {
	counters := s.cfg.promCounters
	incs := int64(counters) * 6 * 60 // one increment per counter per minute
	n, err := s.preloaded("prom-sum", "perf.ps", incs, counters, "6h", 20*time.Minute)
	if err != nil {
		return err
	}
	defer s.stopNode(n)
	query := `sum by (counter) (rate(abacus_events_total{counter=~"perf\\.ps\\..*"}[5m]))`
	form := promForm(query, 6*time.Hour)
	row := s.row(s.cur, strings.ReplaceAll(fmt.Sprintf("query_range %s over %d counters, 6 h at 1 m (361 points each), one client", query, counters), `\\`, `\`), "ms")
	row.Target = &Target{AtMost: true, Bound: 200, OnP99: true, Desc: "p99 ≤ 200 ms"}
	nq := s.row(s.cur+"/queries", "queries per run", "")
	if _, _, _, err := s.promLatencies(n, form, counters, 361, s.cfg.warmup); err != nil {
		return err
	}
	for range s.cfg.runs {
		p50, p99, count, err := s.promLatencies(n, form, counters, 361, s.cfg.duration)
		if err != nil {
			return err
		}
		s.record(map[string]any{"p50_ms": p50, "p99_ms": p99, "queries": count})
		row.addWithP99(p50, p99)
		nq.add(float64(count))
	}
	return nil
}
