package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/ui"
	"github.com/abacus-counter/abacus/window"
)

// The OpenAPI document (openapi.json) is kept true by these tests: it must be
// a valid OpenAPI 3.1 document, list exactly the router's routes, and
// describe what the handlers really answer, errors included.

// loadDoc loads and validates openapi.json (examples and defaults included).
func loadDoc(t testing.TB) *openapi3.T {
	t.Helper()
	data, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		t.Fatalf("load openapi.json: %v", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableMultiError()); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI document:\n%v", err)
	}
	return doc
}

// docCluster has a live peer with a lag and an HTTP address and a dead one,
// so that every Member field shows up.
func docCluster() *apitest.Cluster {
	since := apitest.Now.Add(-time.Hour)
	return &apitest.Cluster{Peers: []api.Member{
		{Name: "n2", Replica: "r2", DC: "dc2", Addr: "127.0.0.2:7946", HTTP: "127.0.0.2:4000", State: "alive", Lag: &api.Lag{Seqs: 3, Seconds: 0.25}},
		{Name: "n3", Replica: "r3", DC: "dc3", Addr: "127.0.0.3:7946", HTTP: "127.0.0.3:4000", State: "dead", Lag: &api.Lag{Seqs: 40, Seconds: 3600}, Since: &since},
	}}
}

// newDocHandler is a handler with every optional route (/metrics,
// /v1/snapshot) on, and auth if auth is set.
func newDocHandler(f *apitest.Counters, c api.Cluster, auth api.Authorizer) http.Handler {
	reg := prometheus.NewRegistry()
	fl, _ := c.(api.ForceLeaver)
	return api.NewHandler(api.Deps{
		ForceLeave: fl,
		Counters:   f,
		Cluster:    c,
		Windows:    window.DefaultConfig(),
		Registerer: reg,
		Metrics:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Snapshot:   fakeSnapshot{},
		Auth:       auth,
		UI:         ui.Handler(),
	})
}

func TestOpenAPI_Valid(t *testing.T) {
	doc := loadDoc(t)
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi = %s, want 3.1", doc.OpenAPI)
	}
}

// TestOpenAPI_Routes checks the document lists exactly the routes the router
// serves: a route added to or removed from NewHandler must be added to or
// removed from openapi.json too.
func TestOpenAPI_Routes(t *testing.T) {
	doc := loadDoc(t)
	routes, ok := newDocHandler(newFake(), &apitest.Cluster{}, nil).(chi.Routes)
	if !ok {
		t.Fatal("api.NewHandler no longer returns a chi.Routes; update this test")
	}
	inRouter := map[string]bool{}
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		// chi's catch-all "/ui/*" is the document's "/ui/" and "/ui/{path}"
		// (an OpenAPI path parameter cannot be empty).
		if prefix, ok := strings.CutSuffix(route, "/*"); ok {
			inRouter[method+" "+prefix+"/"] = true
			route = prefix + "/{path}"
		}
		inRouter[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inDoc := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc[strings.ToUpper(method)+" "+path] = true
		}
	}
	// HEAD is served for every GET route by middleware.GetHead: a documented
	// HEAD next to a GET is implied, not missing from the router.
	for op := range inDoc {
		if path, ok := strings.CutPrefix(op, "HEAD "); ok && inRouter["GET "+path] {
			delete(inDoc, op)
		}
	}
	var undocumented, unrouted []string
	for op := range inRouter {
		if !inDoc[op] {
			undocumented = append(undocumented, op)
		}
	}
	for op := range inDoc {
		if !inRouter[op] {
			unrouted = append(unrouted, op)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unrouted)
	if len(undocumented) > 0 {
		t.Errorf("routes in api.NewHandler missing from api/openapi.json:\n\t%s", strings.Join(undocumented, "\n\t"))
	}
	if len(unrouted) > 0 {
		t.Errorf("operations in api/openapi.json that api.NewHandler does not route:\n\t%s", strings.Join(unrouted, "\n\t"))
	}
}

// TestOpenAPI_ProblemTypes checks the ProblemType enum is exactly the kinds
// declared in problem.go.
func TestOpenAPI_ProblemTypes(t *testing.T) {
	doc := loadDoc(t)
	src, err := os.ReadFile("problem.go")
	if err != nil {
		t.Fatal(err)
	}
	var inCode []string
	for _, m := range regexp.MustCompile(`kind\{"([a-z-]+)",`).FindAllSubmatch(src, -1) {
		inCode = append(inCode, api.ProblemTypePrefix+string(m[1]))
	}
	if len(inCode) == 0 {
		t.Fatal("found no problem kinds in problem.go; update this test")
	}
	var inDoc []string
	for _, v := range doc.Components.Schemas["ProblemType"].Value.Enum {
		inDoc = append(inDoc, v.(string))
	}
	slices.Sort(inCode)
	slices.Sort(inDoc)
	if !slices.Equal(inCode, inDoc) {
		t.Fatalf("ProblemType enum in openapi.json:\n\t%s\nkinds in problem.go:\n\t%s", strings.Join(inDoc, "\n\t"), strings.Join(inCode, "\n\t"))
	}
}

// TestOpenAPI_Served checks GET /v1/openapi.json answers the file.
func TestOpenAPI_Served(t *testing.T) {
	want, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	w := do(t, newHandler(newFake()), call{"GET", "/v1/openapi.json", "", nil})
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), want) {
		t.Fatalf("GET /v1/openapi.json = %d, %d bytes; want 200 and openapi.json (%d bytes)", w.Code, w.Body.Len(), len(want))
	}
	if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "application/json" || cc != "no-store" {
		t.Fatalf("Content-Type %q, Cache-Control %q", ct, cc)
	}
}

// TestOpenAPI_Responses sends real requests through the handler and checks
// each request and response against the document: status documented, headers
// and body matching the schema for the content type the handler wrote.
func TestOpenAPI_Responses(t *testing.T) {
	doc := loadDoc(t)
	// The dashboard's files are text; kin-openapi decodes only text/plain as
	// such by itself.
	for _, ct := range []string{"text/html", "text/javascript", "text/css", "image/svg+xml"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	key := func(k string) map[string]string { return map[string]string{"Idempotency-Key": k} }
	var many strings.Builder
	many.WriteString(`{"increments":[`)
	for i := range 10001 {
		if i > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`{"name":"a"}`)
	}
	many.WriteString(`]}`)

	tests := []struct {
		name    string
		call    call
		prep    func(t testing.TB, f *apitest.Counters, h http.Handler)
		cluster api.Cluster
		auth    bool
		status  int
	}{
		// successes: every operation at least once
		{name: "ui redirect", call: call{"GET", "/ui", "", nil}, status: 301},
		{name: "ui page", call: call{"GET", "/ui/", "", nil}, status: 200},
		{name: "ui script", call: call{"GET", "/ui/app.js", "", nil}, status: 200},
		{name: "ui missing", call: call{"GET", "/ui/nope.txt", "", nil}, status: 404},
		{name: "increment", call: call{"POST", "/v1/counters/signups/increment?amount=5&ts=1795428000", "", nil}, status: 200},
		{name: "increment json", call: call{"POST", "/v1/counters/signups/increment", `{"amount":7,"ts":"2026-11-23T11:59:00.5+01:00"}`, jsonCT}, status: 200},
		{name: "increment replayed", call: call{"POST", "/v1/counters/signups/increment?amount=3", "", key("k1")}, status: 200,
			prep: func(t testing.TB, f *apitest.Counters, h http.Handler) {
				do(t, h, call{"POST", "/v1/counters/signups/increment?amount=3", "", key("k1")})
			}},
		{name: "batch", call: call{"POST", "/v1/increments", `{"increments":[{"name":"a","amount":2},{"name":"b","ts":1795428000.5},{"name":"a","ts":"2026-11-23T11:00:00Z"}]}`, jsonCT}, status: 200},
		{name: "get", call: call{"GET", "/v1/counters/signups", "", nil}, status: 200, prep: seed},
		{name: "get detail", call: call{"GET", "/v1/counters/signups?detail=true", "", nil}, status: 200, prep: seed},
		{name: "range", call: call{"GET", "/v1/counters/signups/range?from=2026-11-23T06:00:00Z&to=2026-11-23T12:00:00Z&step=1h", "", nil}, status: 200, prep: seed},
		{name: "range defaults", call: call{"GET", "/v1/counters/signups/range", "", nil}, status: 200, prep: seed},
		{name: "list page", call: call{"GET", "/v1/counters?prefix=s&limit=1", "", nil}, status: 200, prep: seed},
		{name: "list last page", call: call{"GET", "/v1/counters?after=a", "", nil}, status: 200, prep: seed},
		{name: "cluster", call: call{"GET", "/v1/cluster", "", nil}, status: 200, cluster: docCluster()},
		{name: "force-leave", call: call{"POST", "/v1/cluster/members/n3/force-leave", "", nil}, status: 200, cluster: docCluster()},
		{name: "healthz", call: call{"GET", "/healthz", "", nil}, status: 200},
		{name: "readyz", call: call{"GET", "/readyz", "", nil}, status: 200},
		{name: "metrics", call: call{"GET", "/metrics", "", nil}, status: 200, prep: seed},
		{name: "openapi", call: call{"GET", "/v1/openapi.json", "", nil}, status: 200},
		{name: "snapshot", call: call{"GET", "/v1/snapshot", "", nil}, status: 200},
		{name: "with a token", call: call{"POST", "/v1/increments", `{"increments":[{"name":"a"}]}`, map[string]string{"Authorization": "Bearer write-token-0123456789", "Content-Type": "application/json"}}, auth: true, status: 200},
		{name: "compat total", call: call{"GET", "/?name=signups", "", nil}, status: 200, prep: seed},
		{name: "compat inc GET", call: call{"GET", "/inc?amount=2", "", nil}, status: 200},
		{name: "compat inc POST", call: call{"POST", "/inc?name=signups", "", nil}, status: 200},
		{name: "compat inc replayed", call: call{"POST", "/inc", "", key("k2")}, status: 200,
			prep: func(t testing.TB, f *apitest.Counters, h http.Handler) { do(t, h, call{"GET", "/inc", "", key("k2")}) }},

		// errors
		{name: "bad amount", call: call{"POST", "/v1/counters/signups/increment?amount=0", "", nil}, status: 400},
		{name: "future ts", call: call{"POST", "/v1/counters/signups/increment", `{"ts":"2030-01-01T00:00:00Z"}`, jsonCT}, status: 400},
		{name: "batch bad item", call: call{"POST", "/v1/increments", `{"increments":[{"name":"ok"},{"name":"a b"}]}`, jsonCT}, status: 400},
		{name: "bad detail", call: call{"GET", "/v1/counters/signups?detail=maybe", "", nil}, status: 400},
		{name: "bad step", call: call{"GET", "/v1/counters/signups/range?step=90s", "", nil}, status: 400},
		{name: "bad limit", call: call{"GET", "/v1/counters?limit=0", "", nil}, status: 400},
		{name: "compat unknown parameter", call: call{"GET", "/?count=1", "", nil}, status: 400},
		{name: "compat inc bad key", call: call{"GET", "/inc", "", key("")}, status: 400},
		{name: "body too large", call: call{"POST", "/v1/counters/signups/increment", `{"amount":1,"x":"` + strings.Repeat("x", 70<<10) + `"}`, jsonCT}, status: 413},
		{name: "too many increments", call: call{"POST", "/v1/increments", many.String(), jsonCT}, status: 413},
		{name: "form body", call: call{"POST", "/v1/increments", `a=1`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, status: 415},
		{name: "overflow", call: call{"POST", "/v1/counters/signups/increment?amount=2", "", nil}, status: 409,
			prep: func(t testing.TB, f *apitest.Counters, h http.Handler) { f.Set("signups", 1<<64-2) }},
		{name: "key reused", call: call{"POST", "/v1/increments", `{"increments":[{"name":"b"}]}`, key("k3")}, status: 422,
			prep: func(t testing.TB, f *apitest.Counters, h http.Handler) {
				do(t, h, call{"POST", "/v1/increments", `{"increments":[{"name":"a"}]}`, key("k3")})
			}},
		{name: "shutting down", call: call{"POST", "/inc", "", nil}, status: 503,
			prep: func(t testing.TB, f *apitest.Counters, h http.Handler) {
				f.SetErr(fmt.Errorf("%w: %w", api.ErrUnavailable, errors.New("shutting down")))
			}},
		{name: "not ready", call: call{"GET", "/readyz", "", nil}, status: 503, cluster: &apitest.Cluster{NotReady: errors.New("joining [127.0.0.2:7946]")}},
		{name: "force-leave alive", call: call{"POST", "/v1/cluster/members/n2/force-leave", "", nil}, status: 409, cluster: docCluster()},
		{name: "force-leave unknown", call: call{"POST", "/v1/cluster/members/n9/force-leave", "", nil}, status: 404, cluster: docCluster()},
		{name: "no token", call: call{"GET", "/v1/counters/signups", "", nil}, auth: true, status: 401},
		{name: "unknown token", call: call{"POST", "/inc", "", map[string]string{"Authorization": "Bearer nobody-0123456789"}}, auth: true, status: 401},
		{name: "role too low", call: call{"GET", "/v1/snapshot", "", map[string]string{"Authorization": "Bearer write-token-0123456789"}}, auth: true, status: 403},
		{name: "internal", call: call{"POST", "/v1/counters/signups/increment", "", nil}, status: 500,
			prep: func(t testing.TB, f *apitest.Counters, h http.Handler) { f.SetErr(errors.New("disk on fire")) }},
	}
	succeeded := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			c := tt.cluster
			if c == nil {
				c = &apitest.Cluster{}
			}
			var auth api.Authorizer
			if tt.auth {
				tokens, err := api.ParseTokens(strings.NewReader(tokenFile))
				if err != nil {
					t.Fatal(err)
				}
				auth = tokens
			}
			h := newDocHandler(f, c, auth)
			if tt.prep != nil {
				tt.prep(t, f, h)
			}
			req := httptest.NewRequest(tt.call.method, tt.call.path, strings.NewReader(tt.call.body))
			for k, v := range tt.call.header {
				req.Header.Set(k, v)
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("%s %s: no operation in openapi.json: %v", req.Method, req.URL.Path, err)
			}
			opts := &openapi3filter.Options{
				AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
				IncludeResponseStatus: true, // an undocumented status fails
				MultiError:            true,
				SkipSettingDefaults:   true, // send the request as written
			}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			if tt.status < 400 {
				// A request the handler takes must be one the document allows.
				if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
					t.Fatalf("request does not match openapi.json: %v", err)
				}
				req.Body = io.NopCloser(strings.NewReader(tt.call.body)) // validation read it
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, tt.status, w.Body)
			}
			res := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: w.Code, Header: w.Header(), Options: opts}
			res.SetBodyBytes(w.Body.Bytes())
			if err := openapi3filter.ValidateResponse(context.Background(), res); err != nil {
				t.Fatalf("response does not match openapi.json:\n%v\nbody: %.500s", err, w.Body)
			}
			if tt.status < 400 {
				succeeded[tt.call.method+" "+route.Path] = true
			}
		})
	}
	// Every documented operation must have a success case above (2xx, or the
	// 3xx of a redirect), so that every success schema is checked against a
	// real response.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if op := strings.ToUpper(method) + " " + path; !succeeded[op] {
				t.Errorf("no success case in TestOpenAPI_Responses for %s", op)
			}
		}
	}
}

// TestOpenAPI_UnmatchedResponses checks the 404 and 405 problems, which
// belong to no operation, against components.responses.
func TestOpenAPI_UnmatchedResponses(t *testing.T) {
	doc := loadDoc(t)
	h := newDocHandler(newFake(), &apitest.Cluster{}, nil)
	tests := []struct {
		call     call
		status   int
		response string
	}{
		{call{"GET", "/v2/counters", "", nil}, 404, "NotFound"},
		{call{"GET", "/v1/counters/a/b/c", "", nil}, 404, "NotFound"},
		{call{"DELETE", "/v1/counters/a", "", nil}, 405, "MethodNotAllowed"},
		{call{"GET", "/v1/increments", "", nil}, 405, "MethodNotAllowed"},
	}
	for _, tt := range tests {
		w := do(t, h, tt.call)
		if w.Code != tt.status {
			t.Fatalf("%s %s = %d, want %d", tt.call.method, tt.call.path, w.Code, tt.status)
		}
		resp := doc.Components.Responses[tt.response].Value
		for name, hdr := range resp.Headers {
			vs := w.Header().Values(name)
			if hdr.Value.Required && len(vs) == 0 {
				t.Fatalf("%s %s: no %s header", tt.call.method, tt.call.path, name)
			}
			for _, v := range vs {
				if err := hdr.Value.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
					t.Fatalf("%s %s: header %s: %q does not match components.responses.%s: %v", tt.call.method, tt.call.path, name, v, tt.response, err)
				}
			}
		}
		mt := resp.Content.Get(w.Header().Get("Content-Type"))
		if mt == nil {
			t.Fatalf("%s %s: Content-Type %q not in components.responses.%s", tt.call.method, tt.call.path, w.Header().Get("Content-Type"), tt.response)
		}
		var body any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if err := mt.Schema.Value.VisitJSON(body, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
			t.Fatalf("%s %s: body does not match components.responses.%s: %v", tt.call.method, tt.call.path, tt.response, err)
		}
	}
}

// seed gives the fake a few counters to read.
func seed(_ testing.TB, f *apitest.Counters, _ http.Handler) {
	f.Set("signups", 17)
	f.Set("sessions", 4)
	f.Set("logins", 9)
}
