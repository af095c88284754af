package promapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/promapi"
)

// testNow is mid-minute, so that "now" is never itself a boundary.
var testNow = time.Date(2026, 12, 3, 12, 0, 30, 0, time.UTC)

func minuteCount(dc string, m int) uint64 {
	if dc == "dc1" {
		return uint64(m%7 + 1)
	}
	return uint64(m % 3) // some minutes empty
}

// seeded is a source with events in every minute of the last three hours in
// two datacenters, and hourly events three days back.
func seeded() *fakeSource {
	src := newFakeSource(testNow)
	cur := testNow.Truncate(time.Minute)
	for m := 1; m <= 180; m++ {
		at := cur.Add(-time.Duration(m) * time.Minute).Add(10 * time.Second)
		for _, dc := range []string{"dc1", "dc2"} {
			if n := minuteCount(dc, m); n > 0 {
				src.add("signups", dc, n, at)
			}
		}
	}
	for h := 50; h <= 80; h++ {
		src.add("signups", "dc1", uint64(h), testNow.Truncate(time.Hour).Add(-time.Duration(h)*time.Hour).Add(7*time.Minute))
	}
	src.add("logins", "dc1", 3, testNow.Add(-10*time.Minute))
	src.add("errors.db", "dc2", 4, testNow.Add(-20*time.Minute))
	return src
}

func sampleValue(tb testing.TB, v any) float64 {
	tb.Helper()
	s, ok := v.(string)
	if !ok {
		tb.Fatalf("sample value %v is not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func TestAPI_QueryRange_ConsecutiveSamplesDifferByTheWindow(t *testing.T) {
	src := seeded()
	h := mustAPI(t, src)
	cur := testNow.Truncate(time.Minute)
	start, end := cur.Add(-170*time.Minute), cur.Add(-2*time.Minute)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		code, env := call(t, h, method, "/api/v1/query_range", url.Values{
			"query": {`abacus_events_total{counter="signups"}`},
			"start": {strconv.FormatInt(start.Unix(), 10)},
			"end":   {end.Format(time.RFC3339)},
			"step":  {"1m"},
		})
		if code != http.StatusOK || env.Status != "success" {
			t.Fatalf("%s: %d %+v", method, code, env)
		}
		m := decode[matrix](t, env)
		if len(m) != 2 {
			t.Fatalf("%s: %d series, want one per dc: %+v", method, len(m), m)
		}
		for _, s := range m {
			dc := s.Metric["dc"]
			if s.Metric["__name__"] != promapi.MetricName || s.Metric["counter"] != "signups" {
				t.Fatalf("labels %v", s.Metric)
			}
			if len(s.Values) != 169 {
				t.Fatalf("%s: %d samples, want 169", dc, len(s.Values))
			}
			for i := 1; i < len(s.Values); i++ {
				ts := time.Unix(int64(s.Values[i-1][0].(float64)), 0)
				minutesAgo := int(cur.Sub(ts) / time.Minute)
				got := sampleValue(t, s.Values[i][1]) - sampleValue(t, s.Values[i-1][1])
				if want := float64(minuteCount(dc, minutesAgo)); got != want {
					t.Fatalf("%s %s: the minute %d minutes ago counts %v, want %v", method, dc, minutesAgo, got, want)
				}
			}
		}
	}
}

func TestAPI_Query_PerDCSeriesSumToTheTotal(t *testing.T) {
	src := seeded()
	h := mustAPI(t, src)
	var total uint64
	for _, d := range src.counters["signups"] {
		total += d.total
	}
	// At now, every event (all in finished minutes) is before the newest
	// sample.
	_, env := call(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {`sum by (counter) (abacus_events_total{counter="signups"})`}})
	v := decode[vector](t, env)
	if len(v) != 1 || sampleValue(t, v[0].Value[1]) != float64(total) {
		t.Fatalf("sum = %+v, want %d", v, total)
	}
	_, env = call(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {`abacus_events_total{counter="signups"}`}})
	var sum float64
	for _, s := range decode[vector](t, env) {
		sum += sampleValue(t, s.Value[1])
	}
	if sum != float64(total) {
		t.Fatalf("per-dc series sum to %v, want %d", sum, total)
	}
}

func TestAPI_QueryRange_HoursBeyondMinuteRetention(t *testing.T) {
	src := seeded()
	h := mustAPI(t, src)
	hour := testNow.Truncate(time.Hour)
	start, end := hour.Add(-79*time.Hour), hour.Add(-51*time.Hour)
	_, env := call(t, h, http.MethodGet, "/api/v1/query_range", url.Values{
		"query": {`abacus_events_total{counter="signups",dc="dc1"}`},
		"start": {strconv.FormatInt(start.Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {"1h"},
	})
	m := decode[matrix](t, env)
	if len(m) != 1 || len(m[0].Values) != 29 {
		t.Fatalf("%+v", m)
	}
	vals := m[0].Values
	for i := 1; i < len(vals); i++ {
		ts := time.Unix(int64(vals[i-1][0].(float64)), 0)
		hoursAgo := int(hour.Sub(ts) / time.Hour)
		if got := sampleValue(t, vals[i][1]) - sampleValue(t, vals[i-1][1]); got != float64(hoursAgo) {
			t.Fatalf("the hour %d hours ago counts %v, want %d", hoursAgo, got, hoursAgo)
		}
	}
}

func TestAPI_Query_IncreaseAndRate(t *testing.T) {
	src := seeded()
	h := mustAPI(t, src)
	cur := testNow.Truncate(time.Minute)
	at := cur.Add(-30 * time.Minute)
	query := func(q string) float64 {
		t.Helper()
		_, env := call(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {q}, "time": {strconv.FormatInt(at.Unix(), 10)}})
		v := decode[vector](t, env)
		if len(v) != 1 {
			t.Fatalf("%s: %+v", q, v)
		}
		return sampleValue(t, v[0].Value[1])
	}
	sum := func(from, to int) (n uint64) {
		for m := from; m <= to; m++ {
			n += minuteCount("dc1", m) + minuteCount("dc2", m)
		}
		return n
	}
	// The difference of two samples ten minutes apart is exact.
	if got, want := query(`sum(abacus_events_total{counter="signups"}) - sum(abacus_events_total{counter="signups"} offset 10m)`), float64(sum(31, 40)); got != want {
		t.Fatalf("difference = %v, want %v", got, want)
	}
	// increase() is Prometheus's: the range is open on the left, so it sees
	// the samples of minutes 31..39 (nine minutes) and extrapolates them to
	// the ten minutes of the range.
	want := float64(sum(31, 39)) * 10 / 9
	if got := query(`sum by (counter) (increase(abacus_events_total{counter="signups"}[10m]))`); got != want {
		t.Fatalf("increase = %v, want %v", got, want)
	}
	if got := query(`sum by (counter) (rate(abacus_events_total{counter="signups"}[10m]))`); math.Abs(got-want/600) > 1e-12 {
		t.Fatalf("rate = %v, want %v", got, want/600)
	}
}

func TestAPI_Matchers(t *testing.T) {
	h := mustAPI(t, seeded())
	for _, tc := range []struct {
		name  string
		query string
		want  []string // counter/dc of each series
	}{
		{"all", `abacus_events_total`, []string{"errors.db/dc2", "logins/dc1", "signups/dc1", "signups/dc2"}},
		{"equal", `abacus_events_total{counter="logins"}`, []string{"logins/dc1"}},
		{"not equal", `abacus_events_total{counter!="signups"}`, []string{"errors.db/dc2", "logins/dc1"}},
		{"regexp", `abacus_events_total{counter=~"sign.*|log.*"}`, []string{"logins/dc1", "signups/dc1", "signups/dc2"}},
		{"regexp set", `abacus_events_total{counter=~"logins|nothing"}`, []string{"logins/dc1"}},
		{"not regexp", `abacus_events_total{counter!~"s.*"}`, []string{"errors.db/dc2", "logins/dc1"}},
		{"dc", `abacus_events_total{dc="dc2"}`, []string{"errors.db/dc2", "signups/dc2"}},
		{"dc regexp", `abacus_events_total{dc=~"dc1|dc3",counter=~"s.*"}`, []string{"signups/dc1"}},
		{"by name", `{__name__="abacus_events_total",counter="logins"}`, []string{"logins/dc1"}},
		{"other metric", `up`, nil},
		{"other label", `abacus_events_total{job="x"}`, nil},
		{"other label empty", `abacus_events_total{job="",counter="logins"}`, []string{"logins/dc1"}},
		{"unknown counter", `abacus_events_total{counter="nope"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, env := call(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {tc.query}})
			if code != http.StatusOK {
				t.Fatalf("%d %+v", code, env)
			}
			var got []string
			for _, s := range decode[vector](t, env) {
				got = append(got, s.Metric["counter"]+"/"+s.Metric["dc"])
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestAPI_Query_ReadsEachCounterOnce: a selector that names its counters
// reads each of them once, not once to see that it exists and again for its
// samples.
func TestAPI_Query_ReadsEachCounterOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		query string
		reads int
	}{
		{"equal", `abacus_events_total{counter="logins"}`, 1},
		{"regexp set", `abacus_events_total{counter=~"logins|signups|nothing"}`, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := seeded()
			h := mustAPI(t, src)
			if code, env := call(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {tc.query}}); code != http.StatusOK {
				t.Fatalf("%d %+v", code, env)
			}
			src.mu.Lock()
			defer src.mu.Unlock()
			if src.reads != tc.reads {
				t.Fatalf("%d reads of the source, want %d", src.reads, tc.reads)
			}
		})
	}
}

// TestAPI_SourceErrors: a read the node refuses for a reason worded for
// clients (a damaged data file) is a 503 with that reason, as the /v1 reads
// answer; any other failure is a 500 whose detail only the node's log gets,
// on every endpoint that reads counters.
func TestAPI_SourceErrors(t *testing.T) {
	const reason = "data file state.db is damaged; this node refuses writes until an operator runs abacus recover"
	const secret = "bolt: page 42 corrupt"
	now := strconv.FormatInt(testNow.Unix(), 10)
	reads := []struct {
		name   string
		path   string
		params url.Values
	}{
		{"query", "/api/v1/query", url.Values{"query": {`abacus_events_total{counter="logins"}`}}},
		{"query_range", "/api/v1/query_range", url.Values{"query": {`abacus_events_total`}, "start": {now}, "end": {now}, "step": {"60"}}},
		{"series", "/api/v1/series", url.Values{"match[]": {`abacus_events_total`}}},
		{"label values by dc", "/api/v1/label/counter/values", url.Values{"match[]": {`{dc="dc1"}`}}},
		{"labels of a named counter", "/api/v1/labels", url.Values{"match[]": {`{counter="logins"}`}}},
	}
	for _, tc := range []struct {
		name    string
		fail    error
		code    int
		errType string
		text    string // in the answer
	}{
		{"unavailable", fmt.Errorf("read counter: %w", api.Unavailable(reason)), http.StatusServiceUnavailable, "unavailable", reason},
		{"other", errors.New(secret), http.StatusInternalServerError, "internal", ""},
	} {
		for _, rd := range reads {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				src := seeded()
				src.fail = tc.fail
				var log bytes.Buffer
				h := mustAPI(t, src, func(c *promapi.Config) { c.Logger = slog.New(slog.NewTextHandler(&log, nil)) })
				code, env := call(t, h, http.MethodGet, rd.path, rd.params)
				if code != tc.code || env.Status != "error" || env.ErrorType != tc.errType {
					t.Fatalf("%d %+v, want %d %s", code, env, tc.code, tc.errType)
				}
				if !strings.Contains(env.Error, tc.text) || strings.Contains(env.Error, secret) {
					t.Fatalf("error %q", env.Error)
				}
				if tc.code == http.StatusInternalServerError && !strings.Contains(log.String(), secret) {
					t.Fatalf("the node's log lacks the cause: %q", log.String())
				}
			})
		}
	}
}

func TestAPI_Errors(t *testing.T) {
	src := seeded()
	h := mustAPI(t, src, func(c *promapi.Config) { c.MaxSeries = 2; c.MaxSamples = 100 })
	now := strconv.FormatInt(testNow.Unix(), 10)
	for _, tc := range []struct {
		name    string
		path    string
		params  url.Values
		code    int
		errType string
	}{
		{"bad expression", "/api/v1/query", url.Values{"query": {"sum(rate(x[5m]"}}, 400, "bad_data"},
		{"empty expression", "/api/v1/query", url.Values{}, 400, "bad_data"},
		{"bad time", "/api/v1/query", url.Values{"query": {"1"}, "time": {"yesterday"}}, 400, "bad_data"},
		{"bad timeout", "/api/v1/query", url.Values{"query": {"1"}, "timeout": {"soon"}}, 400, "bad_data"},
		{"bad limit", "/api/v1/query", url.Values{"query": {"1"}, "limit": {"-1"}}, 400, "bad_data"},
		{"bad lookback", "/api/v1/query", url.Values{"query": {"1"}, "lookback_delta": {"x"}}, 400, "bad_data"},
		{"no step", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {now}, "end": {now}}, 400, "bad_data"},
		{"zero step", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {now}, "end": {now}, "step": {"0"}}, 400, "bad_data"},
		{"end before start", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {now}, "end": {"0"}, "step": {"1"}}, 400, "bad_data"},
		{"too many points", "/api/v1/query_range", url.Values{"query": {"1"}, "start": {"0"}, "end": {now}, "step": {"1"}}, 400, "bad_data"},
		{"too many series", "/api/v1/query", url.Values{"query": {"abacus_events_total"}}, 422, "cost_limit"},
		{"too many samples", "/api/v1/query_range", url.Values{"query": {`abacus_events_total{counter="signups"}`}, "start": {strconv.FormatInt(testNow.Add(-3*time.Hour).Unix(), 10)}, "end": {now}, "step": {"60"}}, 422, "execution"},
		{"too many samples read", "/api/v1/query", url.Values{"query": {`count_over_time(abacus_events_total{counter="signups"}[3h])`}}, 422, "execution"},
		{"series without match", "/api/v1/series", url.Values{}, 400, "bad_data"},
		{"series bad match", "/api/v1/series", url.Values{"match[]": {"{"}}, 400, "bad_data"},
		{"series empty matcher", "/api/v1/series", url.Values{"match[]": {`{counter=""}`}}, 400, "bad_data"},
		{"labels bad start", "/api/v1/labels", url.Values{"start": {"x"}}, 400, "bad_data"},
		{"unknown route", "/api/v1/targets", url.Values{}, 404, "not_found"},
		{"huge subquery", "/api/v1/query", url.Values{"query": {"count_over_time(vector(1)[100y:1s])"}}, 400, "bad_data"},
		{"huge nested subquery", "/api/v1/query", url.Values{"query": {"max_over_time(rate(abacus_events_total[5m:100ms])[1d:1h])"}}, 400, "bad_data"},
		{"huge subquery in a range", "/api/v1/query_range", url.Values{"query": {"count_over_time(vector(1)[1m:1s])"}, "start": {"0"}, "end": {"864000"}, "step": {"3600"}}, 400, "bad_data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, env := call(t, h, http.MethodGet, tc.path, tc.params)
			if code != tc.code || env.Status != "error" || env.ErrorType != tc.errType || env.Error == "" {
				t.Fatalf("%d %+v, want %d %s", code, env, tc.code, tc.errType)
			}
		})
	}
}

// TestAPI_Timeout checks a query slower than its timeout ends at the timeout
// with Prometheus's timeout error, whichever of the engine's timeout or the
// request's is shorter.
func TestAPI_Timeout(t *testing.T) {
	src := seeded()
	for i := range 100 {
		src.add(fmt.Sprintf("c%03d", i), "dc1", 1, testNow.Add(-time.Hour))
	}
	src.delay = 20 * time.Millisecond // 100 counters: 2s to read them all
	for _, tc := range []struct {
		name    string
		engine  time.Duration
		param   string
		timeout time.Duration
	}{
		{"engine", 200 * time.Millisecond, "", 200 * time.Millisecond},
		{"parameter", time.Minute, "0.2", 200 * time.Millisecond},
		{"parameter longer than engine", 200 * time.Millisecond, "1m", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := mustAPI(t, src, func(c *promapi.Config) { c.Timeout = tc.engine })
			params := url.Values{"query": {"sum(abacus_events_total)"}}
			if tc.param != "" {
				params.Set("timeout", tc.param)
			}
			began := time.Now()
			code, env := call(t, h, http.MethodGet, "/api/v1/query", params)
			took := time.Since(began)
			if code != http.StatusServiceUnavailable || env.ErrorType != "timeout" {
				t.Fatalf("%d %+v, want 503 timeout", code, env)
			}
			// One read in flight may finish after the deadline.
			if took > tc.timeout+500*time.Millisecond {
				t.Fatalf("took %v with a timeout of %v", took, tc.timeout)
			}
		})
	}
}

func TestAPI_SubqueryWithoutStep(t *testing.T) {
	h := mustAPI(t, seeded())
	code, env := call(t, h, http.MethodGet, "/api/v1/query", url.Values{"query": {`max_over_time(sum(abacus_events_total)[1h:])`}})
	if code != http.StatusOK {
		t.Fatalf("%d %+v", code, env)
	}
}

func TestAPI_SeriesLabelsMetadata(t *testing.T) {
	h := mustAPI(t, seeded())
	get := func(path string, params url.Values) envelope {
		t.Helper()
		code, env := call(t, h, http.MethodGet, path, params)
		if code != http.StatusOK || env.Status != "success" {
			t.Fatalf("%s: %d %+v", path, code, env)
		}
		return env
	}
	strs := func(env envelope) []string {
		var out []string
		if err := json.Unmarshal(env.Data, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := strs(get("/api/v1/labels", nil)); !slices.Equal(got, []string{"__name__", "counter", "dc"}) {
		t.Fatalf("labels %v", got)
	}
	if got := strs(get("/api/v1/label/counter/values", nil)); !slices.Equal(got, []string{"errors.db", "logins", "signups"}) {
		t.Fatalf("counter values %v", got)
	}
	env := get("/api/v1/label/counter/values", url.Values{"limit": {"2"}})
	if got := strs(env); !slices.Equal(got, []string{"errors.db", "logins"}) || len(env.Warnings) != 1 {
		t.Fatalf("counter values, limit 2: %v %v", got, env.Warnings)
	}
	if got := strs(get("/api/v1/label/counter/values", url.Values{"match[]": {`{dc="dc2"}`}})); !slices.Equal(got, []string{"errors.db", "signups"}) {
		t.Fatalf("counter values in dc2: %v", got)
	}
	if got := strs(get("/api/v1/label/dc/values", nil)); !slices.Equal(got, []string{"dc1", "dc2"}) {
		t.Fatalf("dc values %v", got)
	}
	if got := strs(get("/api/v1/label/__name__/values", nil)); !slices.Equal(got, []string{promapi.MetricName}) {
		t.Fatalf("__name__ values %v", got)
	}
	if got := strs(get("/api/v1/label/job/values", nil)); len(got) != 0 {
		t.Fatalf("job values %v", got)
	}
	var series []map[string]string
	env = get("/api/v1/series", url.Values{"match[]": {`abacus_events_total{counter=~"s.*"}`, `{counter="logins"}`}})
	if err := json.Unmarshal(env.Data, &series); err != nil {
		t.Fatal(err)
	}
	if len(series) != 3 || series[0]["counter"] != "logins" || series[2]["dc"] != "dc2" {
		t.Fatalf("series %v", series)
	}
	var meta map[string][]map[string]string
	if err := json.Unmarshal(get("/api/v1/metadata", nil).Data, &meta); err != nil {
		t.Fatal(err)
	}
	if m := meta[promapi.MetricName]; len(m) != 1 || m[0]["type"] != "counter" {
		t.Fatalf("metadata %v", meta)
	}
	var bi map[string]string
	if err := json.Unmarshal(get("/api/v1/status/buildinfo", nil).Data, &bi); err != nil {
		t.Fatal(err)
	}
	if _, ok := bi["goVersion"]; !ok {
		t.Fatalf("buildinfo %v", bi)
	}
}

// TestAPI_LabelValues_OfMatchedSeries: label values are those of the series
// the matchers select, as Grafana's label_values(abacus_events_total{…}, dc)
// expects, and a limit cuts the matching values, not the counters scanned
// before the dc matcher is applied.
func TestAPI_LabelValues_OfMatchedSeries(t *testing.T) {
	src := seeded()
	src.add("aaa", "dc2", 1, testNow.Add(-5*time.Minute)) // sorts first, dc2 only
	h := mustAPI(t, src)
	for _, tc := range []struct {
		name   string
		path   string
		params url.Values
		want   []string
		warned bool
	}{
		{"dc of one counter", "/api/v1/label/dc/values", url.Values{"match[]": {`abacus_events_total{counter="logins"}`}}, []string{"dc1"}, false},
		{"dc of counters by regexp", "/api/v1/label/dc/values", url.Values{"match[]": {`{counter=~"err.*"}`}}, []string{"dc2"}, false},
		{"dc of all", "/api/v1/label/dc/values", url.Values{"match[]": {`abacus_events_total`}}, []string{"dc1", "dc2"}, false},
		{"counters in dc1, limit 1", "/api/v1/label/counter/values", url.Values{"match[]": {`{dc="dc1"}`}, "limit": {"1"}}, []string{"logins"}, true},
		{"counters in dc1, limit 2", "/api/v1/label/counter/values", url.Values{"match[]": {`{dc="dc1"}`}, "limit": {"2"}}, []string{"logins", "signups"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, env := call(t, h, http.MethodGet, tc.path, tc.params)
			if code != http.StatusOK {
				t.Fatalf("%d %+v", code, env)
			}
			var got []string
			if err := json.Unmarshal(env.Data, &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) || (len(env.Warnings) > 0) != tc.warned {
				t.Fatalf("got %v (warnings %v), want %v (warned %v)", got, env.Warnings, tc.want, tc.warned)
			}
		})
	}
}

// TestAPI_QueryRange_AcrossResolutions checks a range that starts where only
// hours are kept and ends among the minutes: the counter never decreases,
// and at every step it is the events before the sample it shows.
func TestAPI_QueryRange_AcrossResolutions(t *testing.T) {
	src := seeded()
	// An event every 10 minutes from 52 h to 44 h ago.
	for m := 44 * 60; m <= 52*60; m += 10 {
		src.add("edge", "dc1", 1, testNow.Add(-time.Duration(m)*time.Minute))
	}
	h := mustAPI(t, src)
	start, end := testNow.Add(-51*time.Hour).Truncate(time.Hour), testNow.Add(-45*time.Hour).Truncate(time.Hour)
	_, env := call(t, h, http.MethodGet, "/api/v1/query_range", url.Values{
		"query":          {`abacus_events_total{counter="edge"}`},
		"start":          {strconv.FormatInt(start.Unix(), 10)},
		"end":            {strconv.FormatInt(end.Unix(), 10)},
		"step":           {"600"},
		"lookback_delta": {"1h"},
	})
	m := decode[matrix](t, env)
	if len(m) != 1 {
		t.Fatalf("%+v", m)
	}
	prev := -1.0
	for _, p := range m[0].Values {
		v := sampleValue(t, p[1])
		if v < prev {
			t.Fatalf("the counter fell from %v to %v at %v", prev, v, p[0])
		}
		prev = v
	}
	// At the end (minutes kept there), the value is exact: events before it.
	want := 0
	for mAgo := 44 * 60; mAgo <= 52*60; mAgo += 10 {
		if testNow.Add(-time.Duration(mAgo) * time.Minute).Before(end) {
			want++
		}
	}
	if prev != float64(want) {
		t.Fatalf("at the end: %v, want %d", prev, want)
	}
}
