package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/abacus-counter/abacus/api"
)

// FuzzRequest sends arbitrary names, queries and bodies to the write and read
// routes. Whatever comes in, the answer is a 2xx with the documented shape or
// a 4xx problem: never a 5xx, never a panic, never an amount out of range.
func FuzzRequest(f *testing.F) {
	f.Add("a", "amount=5", []byte(``), uint8(0))
	f.Add("signups", "", []byte(`{"amount":7,"ts":"2026-11-23T11:00:00Z"}`), uint8(0))
	f.Add("x", "", []byte(`{"increments":[{"name":"a","amount":2},{"name":"b","ts":1795428000.5}]}`), uint8(1))
	f.Add("y", "from=2026-11-23T10:00:00Z&step=15m", []byte(``), uint8(2))
	f.Add("z", "prefix=a&limit=3", []byte(``), uint8(3))
	f.Add("%zz", "amount=%", []byte(`{"amount":`), uint8(0))
	f.Fuzz(func(t *testing.T, name, query string, body []byte, route uint8) {
		h := newHandler(newFake())
		var method, path string
		switch route % 5 {
		case 0:
			method, path = "POST", "/v1/counters/"+url.PathEscape(name)+"/increment"
		case 1:
			method, path = "POST", "/v1/increments"
		case 2:
			method, path = "GET", "/v1/counters/"+url.PathEscape(name)+"/range"
		case 3:
			method, path = "GET", "/v1/counters"
		case 4:
			method, path = "GET", "/inc"
		}
		target := path
		if query != "" {
			target += "?" + strings.NewReplacer("#", "%23", " ", "%20").Replace(query)
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return
		}
		r := httptest.NewRequest(method, target, strings.NewReader(string(body)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case w.Code >= 500:
			t.Fatalf("%s %s body %q: %d %s", method, target, body, w.Code, w.Body)
		case w.Code >= 400:
			var p api.Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code {
				t.Fatalf("%s %s: %d with a malformed problem %q", method, target, w.Code, w.Body)
			}
		case route%5 == 0:
			var out struct {
				Name   string `json:"name"`
				Amount uint64 `json:"amount"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("%s %s: 200 with invalid JSON %q", method, target, w.Body)
			}
			if out.Amount < 1 || out.Amount > api.MaxAmount || out.Name != name {
				t.Fatalf("%s %s: accepted %+v", method, target, out)
			}
		}
	})
}
