package promapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/promapi"
)

// FuzzQueryParams sends arbitrary query parameters to every route, as GET
// and as POST form. Whatever comes in, the answer is Prometheus's envelope:
// success, or an error with an errorType and a 4xx status. The one 5xx
// allowed is 503 timeout, and no request outlives the query timeout by
// more than a moment.
func FuzzQueryParams(f *testing.F) {
	f.Add(uint8(0), `sum by (counter) (rate(abacus_events_total[5m]))`, "", "", "", "", "", "")
	f.Add(uint8(1), `increase(abacus_events_total{counter="signups"}[1h])`, "", "1796299200", "2026-12-03T12:00:00Z", "1m", "5s", "10")
	f.Add(uint8(1), `abacus_events_total`, "", "-1e300", "1e300", "1e-9", "", "")
	f.Add(uint8(0), `abacus_events_total{counter=~"(a|b)+"} @ 1796299200 offset -1h`, "NaN", "", "", "", "-1", "x")
	f.Add(uint8(2), `{counter!~"x.*"}`, "", "0", "Inf", "", "", "2")
	f.Add(uint8(3), `{dc="dc1"}`, "", "", "", "", "", "")
	f.Add(uint8(4), `{__name__=~".+"}`, "", "", "", "", "", "")
	f.Add(uint8(0), `count_over_time(abacus_events_total[100y:1s])`, "", "", "", "", "1", "")
	f.Add(uint8(0), `sum(`, "9223372036854775807", "", "", "", "", "")
	hot := seeded()
	h := mustAPI(f, hot, func(c *promapi.Config) { c.Timeout = 2 * time.Second; c.MaxSamples = 1_000_000 })
	f.Fuzz(func(t *testing.T, route uint8, query, ts, start, end, step, timeout, limit string) {
		paths := []string{"/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels", "/api/v1/label/counter/values", "/api/v1/metadata", "/api/v1/status/buildinfo"}
		path := paths[int(route/2)%len(paths)]
		params := url.Values{}
		for k, v := range map[string]string{"query": query, "time": ts, "start": start, "end": end, "step": step, "timeout": timeout, "limit": limit} {
			if v != "" {
				params.Set(k, v)
			}
		}
		if query != "" {
			params.Set("match[]", query)
		}
		var r *http.Request
		if route%2 == 1 && path != "/api/v1/metadata" && path != "/api/v1/status/buildinfo" && path != "/api/v1/label/counter/values" {
			r = httptest.NewRequest(http.MethodPost, path, strings.NewReader(params.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r = httptest.NewRequest(http.MethodGet, path+"?"+params.Encode(), nil)
		}
		w := httptest.NewRecorder()
		began := time.Now()
		h.ServeHTTP(w, r)
		took := time.Since(began)
		var env struct {
			Status    string `json:"status"`
			ErrorType string `json:"errorType"`
			Error     string `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
			t.Fatalf("%s %v: %d, not JSON: %q", path, params, w.Code, w.Body)
		}
		switch {
		case w.Code == http.StatusOK:
			if env.Status != "success" {
				t.Fatalf("%s %v: 200 with %q", path, params, w.Body)
			}
		case w.Code == http.StatusServiceUnavailable && env.ErrorType == "timeout":
		case w.Code >= 500:
			t.Fatalf("%s %v: %d %q", path, params, w.Code, w.Body)
		default:
			if env.Status != "error" || env.ErrorType == "" || env.Error == "" {
				t.Fatalf("%s %v: %d with a malformed error %q", path, params, w.Code, w.Body)
			}
		}
		if took > 3*time.Second {
			t.Fatalf("%s %v took %v; the timeout is 2s", path, params, took)
		}
	})
}
