package ui_test

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/ui"
)

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// TestHandler_Files checks what each path answers, with the handler alone
// and mounted in the API's router as the agent mounts it.
func TestHandler_Files(t *testing.T) {
	handlers := map[string]http.Handler{
		"alone":   ui.Handler(),
		"mounted": api.NewHandler(api.Deps{UI: ui.Handler()}),
	}
	tests := []struct {
		name     string
		method   string
		path     string
		status   int
		ctype    string // for 200s
		contains string // for 200 GETs
		location string // for redirects
	}{
		{"page", "GET", "/ui/", 200, "text/html; charset=utf-8", `<svg id="chart"`, ""},
		{"page by name", "GET", "/ui/index.html", 200, "text/html; charset=utf-8", "<title>Abacus</title>", ""},
		{"script", "GET", "/ui/app.js", 200, "text/javascript; charset=utf-8", "'use strict';", ""},
		{"style", "GET", "/ui/style.css", 200, "text/css; charset=utf-8", ".chart", ""},
		{"icon", "GET", "/ui/favicon.svg", 200, "image/svg+xml", "<svg", ""},
		{"page HEAD", "HEAD", "/ui/", 200, "text/html; charset=utf-8", "", ""},
		{"no slash", "GET", "/ui", 301, "", "", "/ui/"},
		{"no slash keeps query", "GET", "/ui?x=1", 301, "", "", "/ui/?x=1"},
		{"unknown file", "GET", "/ui/nope.js", 404, "", "", ""},
		{"unknown type", "GET", "/ui/app", 404, "", "", ""},
		{"no directory listing", "GET", "/ui/static/", 404, "", "", ""},
		{"no directory by name", "GET", "/ui/static", 404, "", "", ""},
		{"no double slash", "GET", "/ui//app.js", 404, "", "", ""},
		{"no dot dot", "GET", "/ui/../ui/app.js", 404, "", "", ""},
		{"no source", "GET", "/ui/ui.go", 404, "", "", ""},
	}
	for hname, h := range handlers {
		for _, tt := range tests {
			t.Run(hname+"/"+tt.name, func(t *testing.T) {
				w := get(t, h, tt.method, tt.path)
				if w.Code != tt.status {
					t.Fatalf("%s %s = %d, want %d (body %q)", tt.method, tt.path, w.Code, tt.status, w.Body)
				}
				switch {
				case tt.status == 200:
					if ct := w.Header().Get("Content-Type"); ct != tt.ctype {
						t.Errorf("Content-Type = %q, want %q", ct, tt.ctype)
					}
					if w.Header().Get("X-Content-Type-Options") != "nosniff" {
						t.Errorf("no nosniff")
					}
					if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
						t.Errorf("Content-Security-Policy = %q", csp)
					}
					if tt.method == "HEAD" && w.Body.Len() != 0 {
						t.Errorf("HEAD has a body of %d bytes", w.Body.Len())
					}
					if !strings.Contains(w.Body.String(), tt.contains) {
						t.Errorf("body lacks %q", tt.contains)
					}
				case tt.status == 301:
					if loc := w.Header().Get("Location"); loc != tt.location {
						t.Errorf("Location = %q, want %q", loc, tt.location)
					}
				case tt.status == 404:
					if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
						t.Fatalf("Content-Type = %q", ct)
					}
					var p api.Problem
					if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
						t.Fatal(err)
					}
					if p.Type != api.ProblemTypePrefix+"not-found" || p.Status != 404 || p.Title == "" {
						t.Errorf("problem = %+v", p)
					}
				}
			})
		}
	}
}

// TestHandler_MountedRoutes checks the API's side of the mount: other
// methods are refused, requests are counted under the two route patterns,
// and a router without a UI has no /ui.
func TestHandler_MountedRoutes(t *testing.T) {
	h := api.NewHandler(api.Deps{UI: ui.Handler()})
	if w := get(t, h, "POST", "/ui/"); w.Code != 405 || w.Header().Get("Allow") == "" {
		t.Errorf("POST /ui/ = %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
	if w := get(t, h, "GET", "/uix"); w.Code != 404 {
		t.Errorf("GET /uix = %d", w.Code)
	}
	if w := get(t, api.NewHandler(api.Deps{}), "GET", "/ui/"); w.Code != 404 {
		t.Errorf("GET /ui/ without a UI = %d", w.Code)
	}
}

// TestAssets_SelfContained checks that the page needs nothing but its own
// files: every local reference in index.html is served, and no file names an
// outside host (the dashboard must work without internet access).
func TestAssets_SelfContained(t *testing.T) {
	h := ui.Handler()
	page := get(t, h, "GET", "/ui/").Body.String()
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("index.html references %d files, want the script, the style sheet and the icon", len(refs))
	}
	for _, ref := range refs {
		if strings.Contains(ref[1], ":") || strings.HasPrefix(ref[1], "/") {
			t.Errorf("index.html references %q: only relative paths to its own files", ref[1])
			continue
		}
		if w := get(t, h, "GET", "/ui/"+ref[1]); w.Code != 200 {
			t.Errorf("index.html references %q, which answers %d", ref[1], w.Code)
		}
	}
	outside := regexp.MustCompile(`(?i)(?:https?:)?//[a-z0-9-]+\.[a-z0-9.-]+|@import|@font-face`)
	err := fs.WalkDir(os.DirFS("static"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(filepath.Join("static", p))
		if err != nil {
			return err
		}
		for _, m := range outside.FindAllString(string(b), -1) {
			if !strings.HasSuffix(m, "//www.w3.org") { // the SVG namespace, not a fetch
				t.Errorf("%s names an outside resource: %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
