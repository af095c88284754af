package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// promData is what the Prometheus tests write: per-minute counts over the
// last three hours, in two datacenters.
type promData struct {
	cur time.Time // start of the minute the data was written in
}

const promMinutes = 180

// signups varies minute by minute (dc-b has empty minutes); steady and
// logins have constant rates, for the dashboard's rate panels.
func (promData) count(counter, dc string, minutesAgo int) uint64 {
	switch counter + "/" + dc {
	case "signups/dc-a":
		return uint64(minutesAgo%7 + 1)
	case "signups/dc-b":
		return uint64(minutesAgo % 3)
	case "steady/dc-a":
		return 6
	case "steady/dc-b":
		return 4
	case "logins/dc-a":
		return 2
	}
	return 0
}

func (d promData) total(counter string) uint64 {
	var n uint64
	for m := 1; m <= promMinutes; m++ {
		n += d.count(counter, "dc-a", m) + d.count(counter, "dc-b", m)
	}
	return n
}

// newPromCluster starts two nodes in two datacenters, writes promData's
// events at each (one batch per node), and waits until both hold them all.
func newPromCluster(t *testing.T) (*testCluster, promData) {
	t.Helper()
	c := newCluster(t, "a", "b")
	d := promData{cur: time.Now().Truncate(time.Minute)}
	for _, node := range []string{"a", "b"} {
		dc := "dc-" + node
		var incs []map[string]any
		for m := 1; m <= promMinutes; m++ {
			ts := d.cur.Add(-time.Duration(m)*time.Minute + 17*time.Second).Unix()
			for _, counter := range []string{"signups", "steady", "logins"} {
				if n := d.count(counter, dc, m); n > 0 {
					incs = append(incs, map[string]any{"name": counter, "amount": n, "ts": ts})
				}
			}
		}
		body, _ := json.Marshal(map[string]any{"increments": incs})
		resp, err := http.Post("http://"+c.nodes[node].Addr()+"/v1/increments", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("batch at %s: %d %s", node, resp.StatusCode, b)
		}
	}
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		for _, node := range []string{"a", "b"} {
			for _, counter := range []string{"signups", "steady", "logins"} {
				if got, want := c.total(node, counter), d.total(counter); got != want {
					return false, fmt.Sprintf("%s at %s = %d, want %d", counter, node, got, want)
				}
				// The windows travel apart from the total: wait for them too.
				code, body := httpGet(t, fmt.Sprintf("http://%s/v1/counters/%s/range?from=%d&to=%d&step=1m", c.nodes[node].Addr(), counter, d.cur.Add(-(promMinutes+1)*time.Minute).Unix(), d.cur.Unix()))
				var r struct{ Sum uint64 }
				if json.Unmarshal([]byte(body), &r); code != 200 || r.Sum != d.total(counter) {
					return false, fmt.Sprintf("the minutes of %s at %s sum to %d, want %d", counter, node, r.Sum, d.total(counter))
				}
			}
			// Each node must also know the other's datacenter.
			code, body := httpGet(t, "http://"+c.nodes[node].Addr()+"/api/v1/label/dc/values")
			if code != 200 || !strings.Contains(body, `["dc-a","dc-b"]`) {
				return false, fmt.Sprintf("dc values at %s: %d %s", node, code, body)
			}
		}
		return true, ""
	})
	return c, d
}

// TestPromAPI runs the same checks with the official Go client, with
// promtool from Debian's prometheus package, and with every query of the
// Grafana dashboard, against a 2-datacenter cluster.
func TestPromAPI(t *testing.T) {
	c, d := newPromCluster(t)
	addr := "http://" + c.nodes["a"].Addr()
	t.Run("client_golang", func(t *testing.T) { testPromClient(t, addr, d) })
	t.Run("promtool", func(t *testing.T) { testPromtool(t, addr, d) })
	t.Run("grafana dashboard", func(t *testing.T) { testDashboard(t, addr, d) })
	t.Run("bad expression", func(t *testing.T) {
		for _, method := range []string{"GET", "POST"} {
			var resp *http.Response
			var err error
			q := url.Values{"query": {"sum(rate(abacus_events_total[5m]"}}
			if method == "GET" {
				resp, err = http.Get(addr + "/api/v1/query?" + q.Encode())
			} else {
				resp, err = http.PostForm(addr+"/api/v1/query", q)
			}
			if err != nil {
				t.Fatal(err)
			}
			var env struct{ Status, ErrorType, Error string }
			err = json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 400 || env.Status != "error" || env.ErrorType != "bad_data" || !strings.Contains(env.Error, "parse error") {
				t.Fatalf("%s: %d %+v %v", method, resp.StatusCode, env, err)
			}
		}
	})
}

func newV1(t *testing.T, addr string) v1.API {
	t.Helper()
	client, err := promapi.NewClient(promapi.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return v1.NewAPI(client)
}

func testPromClient(t *testing.T, addr string, d promData) {
	api := newV1(t, addr)
	ctx := context.Background()
	// Known per-minute counts come back as differences of consecutive
	// samples, per datacenter.
	r := v1.Range{Start: d.cur.Add(-170 * time.Minute), End: d.cur.Add(-2 * time.Minute), Step: time.Minute}
	val, _, _, err := api.QueryRange(ctx, `abacus_events_total{counter="signups"}`, r)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := val.(model.Matrix)
	if !ok || len(m) != 2 {
		t.Fatalf("%v", val)
	}
	for _, s := range m {
		checkMinutes(t, d, "signups", string(s.Metric["dc"]), s.Values)
	}
	// Per-datacenter series sum to the total.
	at := d.cur.Add(time.Second)
	val, _, _, err = api.Query(ctx, `abacus_events_total{counter="signups"}`, at)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	dcs := 0
	for _, s := range val.(model.Vector) {
		sum += float64(s.Value)
		dcs++
	}
	if dcs != 2 || sum != float64(d.total("signups")) {
		t.Fatalf("per-dc series (%d) sum to %v, want %d", dcs, sum, d.total("signups"))
	}
	val, _, _, err = api.Query(ctx, `sum by (counter) (abacus_events_total)`, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range val.(model.Vector) {
		if counter := string(s.Metric["counter"]); float64(s.Value) != float64(d.total(counter)) {
			t.Fatalf("sum for %s = %v, want %d", counter, s.Value, d.total(counter))
		}
	}
	// A bad expression is Prometheus's bad_data error.
	_, _, _, err = api.Query(ctx, `sum(`, at)
	var apiErr *v1.Error
	if !errorsAs(err, &apiErr) || apiErr.Type != v1.ErrBadData {
		t.Fatalf("bad expression: %v", err)
	}
	series, _, _, err := api.Series(ctx, []string{`abacus_events_total{counter=~"s.*"}`}, time.Time{}, time.Time{})
	if err != nil || len(series) != 4 {
		t.Fatalf("series: %v %v", series, err)
	}
	names, _, _, err := api.LabelNames(ctx, nil, time.Time{}, time.Time{})
	if err != nil || !slices.Equal(names, model.LabelNames{"__name__", "counter", "dc"}) {
		t.Fatalf("labels: %v %v", names, err)
	}
	values, _, _, err := api.LabelValues(ctx, "counter", nil, time.Time{}, time.Time{})
	if err != nil || len(values) != 3 || values[0] != "logins" {
		t.Fatalf("counter values: %v %v", values, err)
	}
	meta, err := api.Metadata(ctx, "", "")
	if err != nil || len(meta["abacus_events_total"]) != 1 || meta["abacus_events_total"][0].Type != v1.MetricTypeCounter {
		t.Fatalf("metadata: %v %v", meta, err)
	}
	bi, err := api.Buildinfo(ctx)
	if err != nil || bi.GoVersion == "" {
		t.Fatalf("buildinfo: %+v %v", bi, err)
	}
}

func errorsAs(err error, target **v1.Error) bool {
	e, ok := err.(*v1.Error)
	if ok {
		*target = e
	}
	return ok
}

// checkMinutes checks consecutive samples one minute apart differ by the
// minute's count.
func checkMinutes(t *testing.T, d promData, counter, dc string, ps []model.SamplePair) {
	t.Helper()
	if len(ps) < 100 {
		t.Fatalf("%s/%s: %d samples", counter, dc, len(ps))
	}
	for i := 1; i < len(ps); i++ {
		if ps[i].Timestamp.Time().Sub(ps[i-1].Timestamp.Time()) != time.Minute {
			t.Fatalf("samples %v and %v are not a minute apart", ps[i-1].Timestamp, ps[i].Timestamp)
		}
		minutesAgo := int(d.cur.Sub(ps[i-1].Timestamp.Time()) / time.Minute)
		if got, want := float64(ps[i].Value-ps[i-1].Value), float64(d.count(counter, dc, minutesAgo)); got != want {
			t.Fatalf("%s/%s: the minute %d minutes ago counts %v, want %v", counter, dc, minutesAgo, got, want)
		}
	}
}

func testPromtool(t *testing.T, addr string, d promData) {
	promtool := testenv.Require(t, "promtool", "prometheus")
	run := func(args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, promtool, append([]string{"query"}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("promtool query %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// instant: per-dc series sum to the total.
	at := strconv.FormatInt(d.cur.Add(time.Second).Unix(), 10)
	var vec []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	if err := json.Unmarshal([]byte(must("instant", "-o", "json", "--time", at, addr, `abacus_events_total{counter="signups"}`)), &vec); err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, s := range vec {
		f, _ := strconv.ParseFloat(s.Value[1].(string), 64)
		sum += f
	}
	if len(vec) != 2 || sum != float64(d.total("signups")) {
		t.Fatalf("instant: %+v sums to %v, want %d", vec, sum, d.total("signups"))
	}
	// range: per-minute counts as differences of consecutive samples.
	var mat []struct {
		Metric map[string]string `json:"metric"`
		Values [][2]any          `json:"values"`
	}
	out := must("range", "-o", "json", "--start", d.cur.Add(-170*time.Minute).Format(time.RFC3339), "--end", d.cur.Add(-2*time.Minute).Format(time.RFC3339), "--step", "1m", addr, `abacus_events_total{counter="signups"}`)
	if err := json.Unmarshal([]byte(out), &mat); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(mat) != 2 {
		t.Fatalf("range: %s", out)
	}
	for _, s := range mat {
		ps := make([]model.SamplePair, len(s.Values))
		for i, v := range s.Values {
			f, _ := strconv.ParseFloat(v[1].(string), 64)
			ps[i] = model.SamplePair{Timestamp: model.TimeFromUnixNano(int64(v[0].(float64) * 1e9)), Value: model.SampleValue(f)}
		}
		checkMinutes(t, d, "signups", s.Metric["dc"], ps)
	}
	// series and labels.
	out = must("series", "--match", `abacus_events_total{counter="steady"}`, addr)
	if !strings.Contains(out, `dc="dc-a"`) || !strings.Contains(out, `dc="dc-b"`) || strings.Count(out, "\n") != 2 {
		t.Fatalf("series: %s", out)
	}
	out = must("labels", addr, "counter")
	if strings.Fields(out)[0] != "logins" || len(strings.Fields(out)) != 3 {
		t.Fatalf("labels: %s", out)
	}
	// A bad expression: promtool reports the API's bad_data error.
	out, err := run("instant", addr, "sum(")
	if err == nil || !strings.Contains(out, "bad_data") {
		t.Fatalf("bad expression: %v\n%s", err, out)
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query struct {
				Query string `json:"query"`
			} `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr    string `json:"expr"`
			Instant bool   `json:"instant"`
		} `json:"targets"`
	} `json:"panels"`
}

// testDashboard runs every query of deploy/grafana's dashboard as Grafana
// would (variables replaced) and checks the answers against the known rates.
func testDashboard(t *testing.T, addr string, d promData) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "deploy", "grafana", "dashboards", "abacus.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash dashboard
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	api := newV1(t, addr)
	ctx := context.Background()
	// The counter variable: label_values(abacus_events_total, counter).
	if len(dash.Templating.List) != 1 || dash.Templating.List[0].Query.Query != "label_values(abacus_events_total, counter)" {
		t.Fatalf("templating: %+v", dash.Templating)
	}
	vals, _, _, err := api.LabelValues(ctx, "counter", []string{"abacus_events_total"}, d.cur.Add(-6*time.Hour), d.cur)
	if err != nil || !slices.Equal(vals, model.LabelValues{"logins", "signups", "steady"}) {
		t.Fatalf("counter variable: %v %v", vals, err)
	}
	// Grafana's values: two selected counters (a multi-value variable is a
	// regexp alternation), $__rate_interval for a 1m timeInterval, a 1h range.
	vars := strings.NewReplacer("$counter", "(steady|logins)", "$__rate_interval", "5m", "$__range", "1h")
	// Expected, per panel: the value of each series (by its one label).
	want := map[string]map[string]float64{
		"Events per minute per counter":              {"steady": 10, "logins": 2},
		"Events per minute per datacenter (stacked)": {"dc-a": 8, "dc-b": 4},
		"Top counters by rate":                       {"steady": 10.0 / 60, "logins": 2.0 / 60},
		"Events in range":                            {"": 12 * 60},
	}
	end := d.cur.Add(-10 * time.Minute)
	for _, p := range dash.Panels {
		w, ok := want[p.Title]
		if !ok {
			t.Errorf("panel %q: no expected answer in this test", p.Title)
			continue
		}
		for _, target := range p.Targets {
			expr := vars.Replace(target.Expr)
			var samples []*model.Sample
			if target.Instant {
				v, _, _, err := api.Query(ctx, expr, end)
				if err != nil {
					t.Fatalf("%s: %s: %v", p.Title, expr, err)
				}
				samples = v.(model.Vector)
				if p.Title == "Top counters by rate" && (len(samples) != 2 || samples[0].Metric["counter"] != "steady") {
					t.Fatalf("%s: %v, want steady first", p.Title, samples)
				}
			} else {
				v, _, _, err := api.QueryRange(ctx, expr, v1.Range{Start: d.cur.Add(-150 * time.Minute), End: end, Step: 5 * time.Minute})
				if err != nil {
					t.Fatalf("%s: %s: %v", p.Title, expr, err)
				}
				for _, s := range v.(model.Matrix) {
					if len(s.Values) != 29 {
						t.Fatalf("%s: %s: %d points", p.Title, s.Metric, len(s.Values))
					}
					for _, sp := range s.Values {
						samples = append(samples, &model.Sample{Metric: s.Metric, Value: sp.Value, Timestamp: sp.Timestamp})
					}
				}
			}
			if len(samples) == 0 {
				t.Fatalf("%s: %s: no data", p.Title, expr)
			}
			for _, s := range samples {
				key := ""
				for _, l := range s.Metric {
					key = string(l)
				}
				if math.Abs(float64(s.Value)-w[key]) > 1e-9*w[key] || w[key] == 0 {
					t.Fatalf("%s: %s: %s = %v at %v, want %v", p.Title, expr, s.Metric, s.Value, s.Timestamp, w[key])
				}
			}
			// With every counter selected, the query still runs.
			if _, _, _, err := api.Query(ctx, strings.NewReplacer("$counter", ".+", "$__rate_interval", "5m", "$__range", "1h").Replace(target.Expr), end); err != nil {
				t.Fatalf("%s with all counters: %v", p.Title, err)
			}
		}
	}
}
