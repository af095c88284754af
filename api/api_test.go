package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/window"
)

func newFake() *apitest.Counters { return apitest.NewCounters(apitest.Now) }

func newHandler(f *apitest.Counters) http.Handler {
	return api.NewHandler(api.Deps{Counters: f, Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig(), Registerer: prometheus.NewRegistry()})
}

type call struct {
	method, path, body string
	header             map[string]string
}

func do(t testing.TB, h http.Handler, c call) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func problemOf(t testing.TB, w *httptest.ResponseRecorder) api.Problem {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, w.Body)
	}
	var p api.Problem
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatalf("problem body %q: %v", w.Body, err)
	}
	if p.Status != w.Code || p.Title == "" || !strings.HasPrefix(p.Type, api.ProblemTypePrefix) {
		t.Fatalf("malformed problem %+v for status %d", p, w.Code)
	}
	return p
}

// TestAPI_BadInput checks every kind of bad request gets its documented 4xx as
// problem+json, never a 5xx, and changes nothing.
func TestAPI_BadInput(t *testing.T) {
	long := strings.Repeat("a", 129)
	big := `{"amount":1,"pad":"` + strings.Repeat("x", 70<<10) + `"}`
	var many strings.Builder
	many.WriteString(`{"increments":[`)
	for i := 0; i < 10001; i++ {
		if i > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`{"name":"a"}`)
	}
	many.WriteString(`]}`)
	huge := `{"increments":[{"name":"a","ts":"` + strings.Repeat("1", 5<<20) + `"}]}`
	json := map[string]string{"Content-Type": "application/json"}
	tests := []struct {
		name   string
		call   call
		status int
		slug   string
	}{
		// names
		{"name with space", call{"POST", "/v1/counters/a%20b/increment", "", nil}, 400, "invalid-name"},
		{"name too long", call{"POST", "/v1/counters/" + long + "/increment", "", nil}, 400, "invalid-name"},
		{"name with slash", call{"GET", "/v1/counters/a%2Fb", "", nil}, 400, "invalid-name"},
		{"name unicode", call{"GET", "/v1/counters/z%C3%A4hler", "", nil}, 400, "invalid-name"},
		{"compat bad name", call{"GET", "/?name=a+b", "", nil}, 400, "invalid-name"},
		// amounts
		{"amount 0", call{"POST", "/v1/counters/a/increment?amount=0", "", nil}, 400, "invalid-amount"},
		{"amount -1", call{"POST", "/v1/counters/a/increment?amount=-1", "", nil}, 400, "invalid-amount"},
		{"amount 1.5", call{"POST", "/v1/counters/a/increment?amount=1.5", "", nil}, 400, "invalid-amount"},
		{"amount abc", call{"POST", "/v1/counters/a/increment?amount=abc", "", nil}, 400, "invalid-amount"},
		{"amount 2^53", call{"POST", "/v1/counters/a/increment?amount=9007199254740992", "", nil}, 400, "invalid-amount"},
		{"amount empty", call{"POST", "/v1/counters/a/increment?amount=", "", nil}, 400, "invalid-amount"},
		{"amount twice", call{"POST", "/v1/counters/a/increment?amount=1&amount=2", "", nil}, 400, "invalid-amount"},
		{"json amount 0", call{"POST", "/v1/counters/a/increment", `{"amount":0}`, json}, 400, "invalid-amount"},
		{"json amount -1", call{"POST", "/v1/counters/a/increment", `{"amount":-1}`, json}, 400, "invalid-amount"},
		{"json amount 1.5", call{"POST", "/v1/counters/a/increment", `{"amount":1.5}`, json}, 400, "invalid-amount"},
		{"json amount 1e3", call{"POST", "/v1/counters/a/increment", `{"amount":1e3}`, json}, 400, "invalid-amount"},
		{"json amount string", call{"POST", "/v1/counters/a/increment", `{"amount":"abc"}`, json}, 400, "invalid-amount"},
		{"json amount quoted number", call{"POST", "/v1/counters/a/increment", `{"amount":"5"}`, json}, 400, "invalid-amount"},
		{"json amount 2^53", call{"POST", "/v1/counters/a/increment", `{"amount":9007199254740992}`, json}, 400, "invalid-amount"},
		{"json amount huge", call{"POST", "/v1/counters/a/increment", `{"amount":123456789012345678901234567890}`, json}, 400, "invalid-amount"},
		{"amount in query and body", call{"POST", "/v1/counters/a/increment?amount=2", `{"amount":3}`, json}, 400, "invalid-amount"},
		{"compat amount 0", call{"GET", "/inc?amount=0", "", nil}, 400, "invalid-amount"},
		{"batch amount 1.5", call{"POST", "/v1/increments", `{"increments":[{"name":"a"},{"name":"b","amount":1.5}]}`, json}, 400, "invalid-amount"},
		// times
		{"ts garbage", call{"POST", "/v1/counters/a/increment?ts=yesterday", "", nil}, 400, "invalid-time"},
		{"ts far future", call{"POST", "/v1/counters/a/increment?ts=2026-11-23T12:05:01Z", "", nil}, 400, "future-time"},
		{"json ts garbage", call{"POST", "/v1/counters/a/increment", `{"ts":"noon"}`, json}, 400, "invalid-time"},
		{"json ts future unix", call{"POST", "/v1/counters/a/increment", `{"ts":1895428000}`, json}, 400, "future-time"},
		{"json ts object", call{"POST", "/v1/counters/a/increment", `{"ts":{}}`, json}, 400, "invalid-time"},
		{"json ts negative", call{"POST", "/v1/counters/a/increment", `{"ts":-5}`, json}, 400, "invalid-time"},
		{"batch ts future", call{"POST", "/v1/increments", `{"increments":[{"name":"a","ts":"2030-01-01T00:00:00Z"}]}`, json}, 400, "future-time"},
		{"range from garbage", call{"GET", "/v1/counters/a/range?from=x", "", nil}, 400, "invalid-time"},
		{"range from after to", call{"GET", "/v1/counters/a/range?from=2026-11-23T12:00:00Z&to=2026-11-23T11:00:00Z", "", nil}, 400, "invalid-range"},
		// steps
		{"step not a multiple", call{"GET", "/v1/counters/a/range?step=90s", "", nil}, 400, "invalid-step"},
		{"step zero", call{"GET", "/v1/counters/a/range?step=0s", "", nil}, 400, "invalid-step"},
		{"step negative", call{"GET", "/v1/counters/a/range?step=-1m", "", nil}, 400, "invalid-step"},
		{"step garbage", call{"GET", "/v1/counters/a/range?step=often", "", nil}, 400, "invalid-step"},
		{"too many points", call{"GET", "/v1/counters/a/range?from=2026-11-01T00:00:00Z&step=1m", "", nil}, 400, "too-many-points"},
		{"range unknown param", call{"GET", "/v1/counters/a/range?span=1h", "", nil}, 400, "invalid-parameter"},
		// bodies
		{"oversize single body", call{"POST", "/v1/counters/a/increment", big, json}, 413, "body-too-large"},
		{"oversize batch body", call{"POST", "/v1/increments", huge, json}, 413, "body-too-large"},
		{"too many batch items", call{"POST", "/v1/increments", many.String(), json}, 413, "too-many-increments"},
		{"malformed json", call{"POST", "/v1/counters/a/increment", `{"amount":`, json}, 400, "invalid-json"},
		{"json not an object", call{"POST", "/v1/counters/a/increment", `[1]`, json}, 400, "invalid-json"},
		{"json unknown field", call{"POST", "/v1/counters/a/increment", `{"amout":5}`, json}, 400, "invalid-json"},
		{"json trailing data", call{"POST", "/v1/counters/a/increment", `{"amount":5} {"amount":6}`, json}, 400, "invalid-json"},
		{"json trailing brace", call{"POST", "/v1/counters/a/increment", `{"amount":5}}`, json}, 400, "invalid-json"},
		{"batch trailing bracket", call{"POST", "/v1/increments", `{"increments":[{"name":"a"}]}]xyz`, json}, 400, "invalid-json"},
		{"batch trailing brace", call{"POST", "/v1/increments", `{"increments":[{"name":"a"}]}}`, json}, 400, "invalid-json"},
		{"batch malformed", call{"POST", "/v1/increments", `{"increments":[{"name":"a"}`, json}, 400, "invalid-json"},
		{"batch empty body", call{"POST", "/v1/increments", ``, json}, 400, "invalid-json"},
		{"batch empty list", call{"POST", "/v1/increments", `{"increments":[]}`, json}, 400, "invalid-parameter"},
		{"batch bad name", call{"POST", "/v1/increments", `{"increments":[{"name":"ok"},{"name":""}]}`, json}, 400, "invalid-name"},
		{"batch name not string", call{"POST", "/v1/increments", `{"increments":[{"name":5}]}`, json}, 400, "invalid-json"},
		// strict JSON: what encoding/json lets through on its own
		{"json duplicate amount", call{"POST", "/v1/counters/a/increment", `{"amount":1,"amount":1000000}`, json}, 400, "duplicate-json-key"},
		{"json duplicate ts", call{"POST", "/v1/counters/a/increment", `{"ts":1795428000,"ts":"2026-11-23T10:00:00Z"}`, json}, 400, "duplicate-json-key"},
		{"batch duplicate item key", call{"POST", "/v1/increments", `{"increments":[{"name":"a","amount":1,"amount":9}]}`, json}, 400, "duplicate-json-key"},
		{"batch duplicate top key", call{"POST", "/v1/increments", `{"increments":[{"name":"a"}],"increments":[{"name":"b"}]}`, json}, 400, "duplicate-json-key"},
		{"json duplicate amount, escaped", call{"POST", "/v1/counters/a/increment", `{"amount":1,"\u0061mount":1000000}`, json}, 400, "duplicate-json-key"},
		{"json duplicate among many keys", call{"POST", "/v1/counters/a/increment", `{"k0":1,"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k19":1,"k3":2}`, json}, 400, "duplicate-json-key"},
		{"json duplicate in a nested object", call{"POST", "/v1/increments", `{"increments":[{"name":"a","ts":{"x":1,"x":2}}]}`, json}, 400, "duplicate-json-key"},
		{"json Amount", call{"POST", "/v1/counters/a/increment", `{"Amount":7}`, json}, 400, "json-field-case"},
		{"json AMOUNT", call{"POST", "/v1/counters/a/increment", `{"AMOUNT":7}`, json}, 400, "json-field-case"},
		{"batch Name", call{"POST", "/v1/increments", `{"increments":[{"Name":"a"}]}`, json}, 400, "json-field-case"},
		{"batch Increments", call{"POST", "/v1/increments", `{"Increments":[{"name":"a"}]}`, json}, 400, "json-field-case"},
		{"json amount null", call{"POST", "/v1/counters/a/increment", `{"amount":null}`, json}, 400, "json-null"},
		{"json ts null", call{"POST", "/v1/counters/a/increment", `{"ts":null}`, json}, 400, "json-null"},
		{"batch amount null", call{"POST", "/v1/increments", `{"increments":[{"name":"a","amount":null}]}`, json}, 400, "json-null"},
		{"batch name null", call{"POST", "/v1/increments", `{"increments":[{"name":null}]}`, json}, 400, "invalid-name"},
		{"wrong content type", call{"POST", "/v1/counters/a/increment", `amount=5`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported-media-type"},
		// parameters and keys
		{"unknown increment param", call{"POST", "/v1/counters/a/increment?amt=5", "", nil}, 400, "invalid-parameter"},
		{"detail not bool", call{"GET", "/v1/counters/a?detail=yes", "", nil}, 400, "invalid-parameter"},
		{"list limit 0", call{"GET", "/v1/counters?limit=0", "", nil}, 400, "invalid-parameter"},
		{"list limit 1001", call{"GET", "/v1/counters?limit=1001", "", nil}, 400, "invalid-parameter"},
		{"list bad prefix", call{"GET", "/v1/counters?prefix=a%20", "", nil}, 400, "invalid-parameter"},
		{"idempotency key too long", call{"POST", "/v1/counters/a/increment", "", map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}}, 400, "invalid-idempotency-key"},
		{"idempotency key control char", call{"POST", "/v1/counters/a/increment", "", map[string]string{"Idempotency-Key": "a\tb"}}, 400, "invalid-idempotency-key"},
		// routes and methods
		{"unknown route", call{"GET", "/v2/counters", "", nil}, 404, "not-found"},
		{"unknown nested route", call{"GET", "/v1/counters/a/b/c", "", nil}, 404, "not-found"},
		{"GET increment", call{"GET", "/v1/counters/a/increment", "", nil}, 405, "method-not-allowed"},
		{"DELETE counter", call{"DELETE", "/v1/counters/a", "", nil}, 405, "method-not-allowed"},
		{"PUT batch", call{"PUT", "/v1/increments", "", nil}, 405, "method-not-allowed"},
		{"POST healthz", call{"POST", "/healthz", "", nil}, 405, "method-not-allowed"},
		{"odd method", call{"BREW", "/v1/counters/a", "", nil}, 405, "method-not-allowed"},
		{"HEAD inc would increment", call{"HEAD", "/inc", "", nil}, 405, "method-not-allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			w := do(t, newHandler(f), tt.call)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			p := problemOf(t, w)
			if p.Type != api.ProblemTypePrefix+tt.slug {
				t.Fatalf("type = %s, want %s (detail %q)", p.Type, tt.slug, p.Detail)
			}
			if len(f.Applied()) != 0 {
				t.Fatalf("a refused request applied: %+v", f.Applied())
			}
			if tt.status == 405 && w.Header().Get("Allow") == "" {
				t.Fatal("405 without an Allow header")
			}
		})
	}
}

func TestAPI_Overflow_Is409(t *testing.T) {
	f := newFake()
	f.Set("a", 1<<64-2)
	w := do(t, newHandler(f), call{"POST", "/v1/counters/a/increment?amount=2", "", nil})
	if w.Code != 409 || problemOf(t, w).Type != api.ProblemTypePrefix+"overflow" {
		t.Fatalf("status %d body %s, want 409 overflow", w.Code, w.Body)
	}
	if f.Count("a") != 1<<64-2 {
		t.Fatalf("overflowing increment changed the total to %d", f.Count("a"))
	}
}

func TestAPI_Unavailable_Is503(t *testing.T) {
	f := newFake()
	f.SetErr(api.Unavailable("shutting down"))
	w := do(t, newHandler(f), call{"POST", "/v1/counters/a/increment", "", nil})
	if p := problemOf(t, w); w.Code != 503 || p.Type != api.ProblemTypePrefix+"unavailable" || p.Detail != "shutting down" {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	w = do(t, api.NewHandler(api.Deps{Counters: f, Cluster: &apitest.Cluster{NotReady: errors.New("joining")}, Windows: window.DefaultConfig()}), call{"GET", "/readyz", "", nil})
	if w.Code != 503 {
		t.Fatalf("readyz = %d, want 503", w.Code)
	}
}

func TestAPI_Increment(t *testing.T) {
	f := newFake()
	h := newHandler(f)
	tests := []struct {
		name string
		call call
		want string
	}{
		{"default amount", call{"POST", "/v1/counters/a/increment", "", nil},
			`{"name":"a","amount":1,"ts":"2026-11-23T12:00:00Z","total":1}`},
		{"query amount and ts", call{"POST", "/v1/counters/a/increment?amount=5&ts=1795428000", "", nil},
			`{"name":"a","amount":5,"ts":"2026-11-23T10:00:00Z","total":6}`},
		{"json body", call{"POST", "/v1/counters/a/increment", `{"amount":7,"ts":"2026-11-23T11:59:00+01:00"}`, map[string]string{"Content-Type": "Application/JSON; charset=utf-8"}},
			`{"name":"a","amount":7,"ts":"2026-11-23T10:59:00Z","total":13}`},
		{"json empty object", call{"POST", "/v1/counters/a/increment", `{}`, nil},
			`{"name":"a","amount":1,"ts":"2026-11-23T12:00:00Z","total":14}`},
		{"max amount", call{"POST", "/v1/counters/b/increment?amount=9007199254740991", "", nil},
			`{"name":"b","amount":9007199254740991,"ts":"2026-11-23T12:00:00Z","total":9007199254740991}`},
	}
	for _, tt := range tests {
		w := do(t, h, tt.call)
		if w.Code != 200 || strings.TrimSpace(w.Body.String()) != tt.want {
			t.Fatalf("%s: %d %s, want 200 %s", tt.name, w.Code, w.Body, tt.want)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q", tt.name, ct)
		}
	}
	w := do(t, h, call{"POST", "/v1/increments", `{"increments":[{"name":"a","amount":2},{"name":"c"},{"name":"a","ts":"2026-11-23T11:00:00Z"}]}`, nil})
	if w.Code != 200 || strings.TrimSpace(w.Body.String()) != `{"accepted":3}` {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	if f.Count("a") != 17 || f.Count("c") != 1 {
		t.Fatalf("totals after batch = %d, %d", f.Count("a"), f.Count("c"))
	}
}

func TestAPI_Idempotency(t *testing.T) {
	f := newFake()
	h := newHandler(f)
	key := map[string]string{"Idempotency-Key": "order-42"}
	first := do(t, h, call{"POST", "/v1/counters/a/increment?amount=3", "", key})
	again := do(t, h, call{"POST", "/v1/counters/a/increment?amount=3", "", key})
	if first.Code != 200 || again.Code != 200 || first.Body.String() != again.Body.String() {
		t.Fatalf("first %d %s, retry %d %s", first.Code, first.Body, again.Code, again.Body)
	}
	if first.Header().Get("Idempotent-Replayed") != "" || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("Idempotent-Replayed: first %q retry %q", first.Header().Get("Idempotent-Replayed"), again.Header().Get("Idempotent-Replayed"))
	}
	if f.Count("a") != 3 {
		t.Fatalf("total = %d, want 3", f.Count("a"))
	}
	other := do(t, h, call{"POST", "/v1/counters/a/increment?amount=4", "", key})
	if other.Code != 422 || problemOf(t, other).Type != api.ProblemTypePrefix+"idempotency-key-reused" {
		t.Fatalf("reuse: %d %s", other.Code, other.Body)
	}
}

func TestAPI_Reads(t *testing.T) {
	f := newFake()
	f.Set("x.1", 4)
	f.Set("x.2", 5)
	f.Set("y", 6)
	h := newHandler(f)
	tests := []struct {
		path, want string
	}{
		{"/", "0\n"},
		{"/?name=y", "6\n"},
		{"/v1/counters/x.1", `{"name":"x.1","total":4}` + "\n"},
		{"/v1/counters/x%2E1", `{"name":"x.1","total":4}` + "\n"},
		{"/v1/counters/never", `{"name":"never","total":0}` + "\n"},
		{"/v1/counters/y?detail=true", `{"name":"y","total":6,"replicas":[{"replica":"r1","node":"n1","dc":"dc1","count":6}],"by_dc":{"dc1":6}}` + "\n"},
		{"/v1/counters?prefix=x.&limit=1", `{"counters":[{"name":"x.1","total":4}],"next":"x.1"}` + "\n"},
		{"/v1/counters?prefix=x.&after=x.1", `{"counters":[{"name":"x.2","total":5}],"next":null}` + "\n"},
		{"/v1/counters/y/range?from=2026-11-23T11:58:00Z&to=2026-11-23T12:00:00Z",
			`{"name":"y","from":"2026-11-23T11:58:00Z","to":"2026-11-23T12:00:00Z","step":"1m","resolution":"1m","points":[{"start":"2026-11-23T11:58:00Z","count":0},{"start":"2026-11-23T11:59:00Z","count":6}],"sum":6,"partial":false}` + "\n"},
		{"/healthz", "ok\n"},
		{"/readyz", `{"status":"ready"}` + "\n"},
	}
	for _, tt := range tests {
		w := do(t, h, call{"GET", tt.path, "", nil})
		if w.Code != 200 || w.Body.String() != tt.want {
			t.Fatalf("GET %s = %d %q, want %q", tt.path, w.Code, w.Body, tt.want)
		}
	}
	w := do(t, h, call{"HEAD", "/v1/counters/y", "", nil})
	if w.Code != 200 {
		t.Fatalf("HEAD = %d", w.Code)
	}
	w = do(t, h, call{"GET", "/inc?amount=2&name=y", "", nil})
	if w.Code != 200 || w.Body.String() != "8\n" {
		t.Fatalf("GET /inc = %d %q", w.Code, w.Body)
	}
	w = do(t, h, call{"POST", "/inc", "", nil})
	if w.Code != 200 || w.Body.String() != "1\n" {
		t.Fatalf("POST /inc = %d %q", w.Code, w.Body)
	}
	body, _ := io.ReadAll(do(t, h, call{"GET", "/v1/cluster", "", nil}).Body)
	if !strings.Contains(string(body), `"self":{"name":"n1"`) {
		t.Fatalf("cluster = %s", body)
	}
}

// TestAPI_EscapedNames: clients that percent-encode a name's characters (as
// encodeURIComponent does with ':') mean the same counter.
func TestAPI_EscapedNames(t *testing.T) {
	f := newFake()
	h := newHandler(f)
	if w := do(t, h, call{"POST", "/v1/counters/svc%3Asignups/increment?amount=2", "", nil}); w.Code != 200 || !strings.Contains(w.Body.String(), `"name":"svc:signups"`) {
		t.Fatalf("escaped increment: %d %s", w.Code, w.Body)
	}
	if w := do(t, h, call{"GET", "/v1/counters/svc:signups", "", nil}); w.Body.String() != `{"name":"svc:signups","total":2}`+"\n" {
		t.Fatalf("unescaped read: %s", w.Body)
	}
	if w := do(t, h, call{"GET", "/v1/counters/svc%3Asignups/range", "", nil}); w.Code != 200 {
		t.Fatalf("escaped range: %d %s", w.Code, w.Body)
	}
	// Decoded once: "%2541" is the name "%41", which is not a valid name.
	for _, bad := range []string{"/v1/counters/a%2Fb", "/v1/counters/a%20b", "/v1/counters/%2541", "/v1/counters/%253Ab"} {
		if w := do(t, h, call{"GET", bad, "", nil}); w.Code != 400 {
			t.Fatalf("GET %s = %d, want 400", bad, w.Code)
		}
	}
}

// TestBodies_WithAndWithoutContentLength: a body is read whether or not it
// declares its length (chunked), up to the limit; a body cut short of its
// declared length is refused (what arrived is not a whole request: the JSON
// parser is what refuses it here).
func TestBodies_WithAndWithoutContentLength(t *testing.T) {
	f := newFake()
	h := newHandler(f)
	send := func(body io.Reader, length int64) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/increments", body)
		r.ContentLength = length
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	batch := `{"increments":[{"name":"a","amount":2},{"name":"b"}]}`
	if w := send(strings.NewReader(batch), int64(len(batch))); w.Code != 200 {
		t.Fatalf("with its length: %d %s", w.Code, w.Body)
	}
	if w := send(strings.NewReader(batch), -1); w.Code != 200 {
		t.Fatalf("without a length: %d %s", w.Code, w.Body)
	}
	if f.Count("a") != 4 || f.Count("b") != 2 {
		t.Fatalf("totals = %d, %d, want 4, 2", f.Count("a"), f.Count("b"))
	}
	huge := `{"increments":[{"name":"a","ts":"` + strings.Repeat("1", 5<<20) + `"}]}`
	if w := send(strings.NewReader(huge), -1); w.Code != 413 || problemOf(t, w).Type != api.ProblemTypePrefix+"body-too-large" {
		t.Errorf("an oversize body without a length: %d %s", w.Code, w.Body)
	}
	if w := send(strings.NewReader(batch[:20]), int64(len(batch))); w.Code != 400 || problemOf(t, w).Type != api.ProblemTypePrefix+"invalid-json" {
		t.Errorf("a body shorter than its length: %d %s", w.Code, w.Body)
	}
	if f.Count("a") != 4 {
		t.Errorf("a refused body changed a count: a = %d", f.Count("a"))
	}
}

// TestBodies_DeclaredLengthIsNotAllocatedUpFront: a client that declares a
// body at the limit and sends a few bytes must not make the node set aside
// the whole limit: idle connections would cost the limit each.
func TestBodies_DeclaredLengthIsNotAllocatedUpFront(t *testing.T) {
	h := newHandler(newFake())
	r := httptest.NewRequest("POST", "/v1/increments", iotest.TimeoutReader(strings.NewReader(`{"incr`)))
	r.ContentLength = 4 << 20
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h.ServeHTTP(w, r)
	runtime.ReadMemStats(&after)
	if w.Code != 400 {
		t.Errorf("a body that stops early: %d %s, want 400", w.Code, w.Body)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("serving it allocated %d bytes for a body of 6", got)
	}
}
