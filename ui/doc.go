// Package ui is Abacus's web dashboard: one HTML page, a script and a style
// sheet, embedded in the binary and served under /ui/. The page reads the
// public HTTP API (/v1/counters, /v1/counters/{name}/range and ?detail=true,
// /v1/cluster, /readyz and /metrics) from the node that serves it, with the
// operator's bearer token if one is set, and draws its chart by hand in SVG.
// It shows the node's health (readiness and why not, writes, request and
// increment rates and commit latency between refreshes, disk, version), the
// counters sorted by name, total or rate, a counter's range with a second one
// to compare and the still-filling last step marked, its split by
// datacenter, and the members with their lag (a dead one's as last seen).
// The address's fragment keeps the view: #counter=…&compare=…&span=…&step=…
// &sort=…&refresh=N (seconds between refreshes, 5 by default).
//
// Nothing is fetched from anywhere else: no CDN, no fonts, no build step. The
// page works on a machine without internet access, and the Content-Security-
// Policy it is served with forbids anything but the node itself.
//
// Handler is stateless and safe for concurrent use. The assets are public: the
// page holds no data of its own, and every request it makes for data goes
// through the API's own authentication.
package ui
