package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// Prefix is where the dashboard is mounted: the page is Prefix, its assets
// are under it, and a request for Prefix without its slash is redirected.
const Prefix = "/ui/"

//go:embed static
var static embed.FS

// contentTypes maps the extensions of the embedded files to their types, so
// that the answer does not depend on the host's mime tables.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// csp allows the page to load its own files and call its own node, nothing
// else: the dashboard must work offline and must not leak a token elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard. It expects the request's full path (/ui or
// /ui/…): mount it at Prefix without stripping. Unknown files, directories
// and paths outside Prefix are 404 problems.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic("ui: embedded assets: " + err.Error()) // the embed pattern is fixed at compile time
	}
	return handler{files}
}

type handler struct{ files fs.FS }

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p+"/" == Prefix {
		target := Prefix
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		notFound(w, p)
		return
	}
	if name == "" {
		name = "index.html"
	}
	// No directory listings, and nothing that fs.FS would refuse ("..",
	// empty elements).
	if strings.HasSuffix(name, "/") || !fs.ValidPath(name) {
		notFound(w, p)
		return
	}
	ct, known := contentTypes[path.Ext(name)]
	if !known {
		notFound(w, p)
		return
	}
	b, err := fs.ReadFile(h.files, name)
	if err != nil {
		notFound(w, p) // missing, or a directory
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", ct)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Content-Security-Policy", csp)
	// ServeContent answers HEAD and Range requests; the zero time means no
	// Last-Modified (embedded files have no modification time).
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// notFound answers like the API's unknown routes: an RFC 9457 problem with
// the API's stable type for "not found".
func notFound(w http.ResponseWriter, p string) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"urn:abacus:problem:not-found", "Not found", http.StatusNotFound, "no dashboard file at " + p})
	hd := w.Header()
	hd.Set("Content-Type", "application/problem+json")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	w.Write(append(b, '\n'))
}
