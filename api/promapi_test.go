package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/window"
)

// TestAPI_PromAPI checks Deps.PromAPI is served under /api/v1/, GET and
// POST, with the full path, and needs the read role when auth is on.
func TestAPI_PromAPI(t *testing.T) {
	tokens, err := api.ParseTokens(strings.NewReader(tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	prom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+r.Form.Get("query"))
	})
	h := api.NewHandler(api.Deps{Counters: newFake(), Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig(), Auth: tokens, PromAPI: prom})
	for _, tc := range []struct {
		name, method, token string
		code                int
		body                string
	}{
		{"no token", "GET", "", 401, ""},
		{"unknown token", "GET", "nope", 401, ""},
		{"read GET", "GET", "read-token-0123456789", 200, "GET /api/v1/query up"},
		{"read POST", "POST", "read-token-0123456789", 200, "POST /api/v1/query up"},
		{"write POST", "POST", "write-token-0123456789", 200, "POST /api/v1/query up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *http.Request
			if tc.method == "GET" {
				r = httptest.NewRequest("GET", "/api/v1/query?query=up", nil)
			} else {
				r = httptest.NewRequest("POST", "/api/v1/query", strings.NewReader("query=up"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code || (tc.body != "" && w.Body.String() != tc.body) {
				t.Fatalf("%d %q, want %d %q", w.Code, w.Body, tc.code, tc.body)
			}
		})
	}
	// Without PromAPI the routes do not exist.
	h = api.NewHandler(api.Deps{Counters: newFake(), Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig()})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/query?query=up", nil))
	if w.Code != 404 {
		t.Fatalf("without PromAPI: %d", w.Code)
	}
}
