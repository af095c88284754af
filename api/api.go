package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-counter/abacus/window"
)

// Increment is one increment as the API takes it.
type Increment struct {
	Name   string
	Amount uint64
	TS     time.Time
}

// WriteRequest is one client request: its increments apply all or nothing.
type WriteRequest struct {
	Increments []Increment
	// IdempotencyKey, if not empty, makes the request apply at most once.
	IdempotencyKey string
	// Fingerprint identifies the request, so a key reused for another request
	// is refused.
	Fingerprint [32]byte
	// Render builds the response body from the totals after the request, to
	// store with the idempotency key. It is called once, on the commit path.
	Render func(totals []uint64) []byte
}

// WriteResult is what a write did.
type WriteResult struct {
	// Totals holds, per increment, its counter's total on this node after the
	// request.
	Totals []uint64
	// Replayed means the key was seen before: Response is the stored response.
	Replayed bool
	Response []byte
}

// ReplicaCount is one replica's share of a counter.
type ReplicaCount struct {
	Replica string
	Node    string
	DC      string
	Count   uint64
}

// NameTotal is one counter in a listing.
type NameTotal struct {
	Name  string
	Total uint64
}

// Errors a Counters implementation returns for the API to map to statuses.
var (
	ErrOverflow            = errors.New("counter would overflow")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	ErrFutureTime          = errors.New("event time too far in the future")
	// ErrUnavailable is a 503; make one with a reason with Unavailable.
	ErrUnavailable = errors.New("unavailable")
)

// Unavailable is an ErrUnavailable whose message is reason alone: the
// problem's detail, worded for clients.
func Unavailable(reason string) error { return unavailableError(reason) }

// UnavailableReason returns the reason of the Unavailable error in err's
// chain, for another HTTP surface of the node (the Prometheus API) to answer
// a 503 with it.
func UnavailableReason(err error) (string, bool) {
	var ue unavailableError
	if errors.As(err, &ue) {
		return string(ue), true
	}
	return "", false
}

type unavailableError string

func (e unavailableError) Error() string        { return string(e) }
func (e unavailableError) Is(target error) bool { return target == ErrUnavailable }

// Counters is what the API needs from the node's counters.
type Counters interface {
	// Now is the node's clock.
	Now() time.Time
	// Apply applies req and returns once it is acknowledged.
	Apply(ctx context.Context, req *WriteRequest) (WriteResult, error)
	// Total is a counter's total on this node (0 if never incremented).
	Total(name string) (uint64, error)
	// Replicas is a counter's total per replica.
	Replicas(name string) ([]ReplicaCount, error)
	// Range returns one count per point of plan.
	Range(name string, plan window.Plan) ([]uint64, error)
	// List returns counters by name: up to limit names with prefix after
	// after, and the after of the next page ("" if none).
	List(prefix, after string, limit int) ([]NameTotal, string, error)
}

// Member is one node as /v1/cluster shows it.
type Member struct {
	Name    string `json:"name"`
	Replica string `json:"replica,omitempty"`
	DC      string `json:"dc"`
	Addr    string `json:"addr"`           // gossip address
	HTTP    string `json:"http,omitempty"` // API address
	State   string `json:"state,omitempty"`
	// Lag is how far behind this member's copy of this node's data is, as
	// seen from here; absent when unknown. For a member that is dead or has
	// left, it is measured from the last digest heard from it: what it
	// lacks of this node's commits.
	Lag *Lag `json:"lag,omitempty"`
	// Since is when the member entered its state, for members that are dead
	// or have left; absent otherwise.
	Since *time.Time `json:"since,omitempty"`
}

// Lag is a peer's replication lag.
type Lag struct {
	Seqs    uint64  `json:"seqs"`    // commits of this node the peer has not confirmed
	Seconds float64 `json:"seconds"` // age of the oldest of those commits
}

// Cluster is what the API needs to know about membership.
type Cluster interface {
	Self() Member
	Members() []Member
	// Ready is nil when the node should receive traffic, else why not.
	Ready() error
}

// ForceLeaver removes a dead member from the cluster's member lists.
type ForceLeaver interface {
	// ForceLeave removes the member name from this node's member list and
	// tells every live member to do the same; it returns how many were told.
	// It fails with ErrUnknownMember or ErrMemberAlive.
	ForceLeave(name string) (told int, err error)
}

// Errors a ForceLeaver returns.
var (
	ErrUnknownMember = errors.New("no such member")
	ErrMemberAlive   = errors.New("member is alive")
)

// Deps is everything the handler needs.
type Deps struct {
	Counters Counters
	Cluster  Cluster
	Windows  window.Config
	Logger   *slog.Logger
	// Registerer receives the HTTP metrics; nil means none are kept.
	Registerer prometheus.Registerer
	// Metrics serves /metrics; nil means the route answers 404.
	Metrics http.Handler
	// MetricsPublic serves /metrics without a token even when Auth is set.
	MetricsPublic bool
	// Auth, if set, requires bearer tokens: read for GETs, write for
	// increments, admin for snapshots. /healthz and /readyz stay open.
	Auth Authorizer
	// Snapshot, if set, serves GET /v1/snapshot (admin).
	Snapshot Snapshotter
	// ForceLeave, if set, serves POST /v1/cluster/members/{name}/force-leave
	// (admin).
	ForceLeave ForceLeaver
	// Durability labels the increments metric ("fsync" or "async").
	Durability string
	// UI serves the dashboard at /ui and /ui/…, given the full path; nil
	// means those routes answer 404. Its files are open to all (they hold
	// no data; the page's own API calls carry the token).
	UI http.Handler
	// PromAPI, if set, serves the Prometheus query API under /api/v1/ (GET
	// and POST, read role); nil means those routes answer 404.
	PromAPI http.Handler
}

// Snapshotter writes a consistent copy of the node's database.
type Snapshotter interface {
	// Snapshot writes the copy to w.
	Snapshot(ctx context.Context, w io.Writer) error
	// SnapshotName suggests a file name for the copy.
	SnapshotName() string
}

// Body limits.
const (
	maxSingleBody = 64 << 10
	maxBatchBody  = 4 << 20
	maxBatchItems = 10_000
)

type server struct {
	Deps
	router  *chi.Mux
	metrics *httpMetrics
}

// NewHandler returns the HTTP handler of a node.
func NewHandler(d Deps) http.Handler {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{Deps: d, router: chi.NewRouter()}
	s.metrics = newHTTPMetrics(d.Registerer)
	r := s.router
	r.Use(s.recoverer, s.noHeadOnUnsafeGet, middleware.GetHead)
	r.NotFound(s.metrics.instrument("unmatched", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, kindNotFound, "no route for "+r.Method+" "+r.URL.Path)
	}))
	r.MethodNotAllowed(s.metrics.instrument("unmatched", s.methodNotAllowed))
	// One flat router: a request is matched once. Each route is instrumented
	// with its pattern as the metrics label, fixed here rather than rebuilt
	// from the routing context on every request.
	route := func(method, pattern string, need Role, h http.HandlerFunc) {
		if method == http.MethodGet {
			h = noStore(h)
		}
		r.Method(method, pattern, s.metrics.instrument(pattern, s.require(need, h)))
	}
	route("GET", "/healthz", RoleNone, s.healthz)
	route("GET", "/readyz", RoleNone, s.readyz)
	if d.Metrics != nil {
		need := RoleRead
		if d.MetricsPublic {
			need = RoleNone
		}
		route("GET", "/metrics", need, d.Metrics.ServeHTTP)
	}
	route("GET", "/", RoleRead, s.compatTotal)
	route("GET", "/inc", RoleWrite, s.compatInc)
	route("POST", "/inc", RoleWrite, s.compatInc)
	route("GET", "/v1/counters", RoleRead, s.list)
	route("GET", "/v1/counters/{name}", RoleRead, s.get)
	route("POST", "/v1/counters/{name}/increment", RoleWrite, s.increment)
	route("GET", "/v1/counters/{name}/range", RoleRead, s.rangeQuery)
	route("POST", "/v1/increments", RoleWrite, s.batch)
	route("GET", "/v1/cluster", RoleRead, s.cluster)
	if d.Snapshot != nil {
		route("GET", "/v1/snapshot", RoleAdmin, s.snapshot)
	}
	if d.ForceLeave != nil {
		route("POST", "/v1/cluster/members/{name}/force-leave", RoleAdmin, s.forceLeave)
	}
	if d.UI != nil {
		route("GET", "/ui", RoleNone, d.UI.ServeHTTP)
		route("GET", "/ui/*", RoleNone, d.UI.ServeHTTP)
	}
	route("GET", "/v1/openapi.json", RoleRead, s.openapi)
	if d.PromAPI != nil {
		route("GET", "/api/v1/*", RoleRead, d.PromAPI.ServeHTTP)
		route("POST", "/api/v1/*", RoleRead, d.PromAPI.ServeHTTP)
	}
	return r
}

// noHeadOnUnsafeGet refuses HEAD /inc: chi's GetHead would run the GET
// handler, and GET /inc increments (for the seed's clients). HEAD must be
// safe.
func (s *server) noHeadOnUnsafeGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && r.URL.Path == "/inc" {
			w.Header().Set("Allow", "GET, POST")
			writeProblem(w, kindMethodNotAllowed, "HEAD would increment; use GET or POST")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// noStore marks a read's answer as not to be cached: counts change.
func noStore(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		h(w, r)
	}
}

var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

func (s *server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range routeMethods {
		if s.router.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
			if m == http.MethodGet && r.URL.Path != "/inc" {
				allowed = append(allowed, http.MethodHead) // served by GetHead
			}
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeProblem(w, kindMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
}

// recoverer turns a panic in a handler into a 500 instead of a dead
// connection, and logs it. No input should reach one.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", v)
				writeProblem(w, kindInternal, "")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.Cluster.Ready(); err != nil {
		writeProblem(w, kindUnavailable, err.Error())
		return
	}
	// JSON like the 503's problem details, so that a client reads one shape.
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ready"})
}

// forceLeave serves POST /v1/cluster/members/{name}/force-leave: a dead
// member is dropped from every live member's list at once instead of after
// days.
func (s *server) forceLeave(w http.ResponseWriter, r *http.Request) {
	name := nameParam(r)
	told, err := s.ForceLeave.ForceLeave(name)
	switch {
	case errors.Is(err, ErrUnknownMember):
		writeProblem(w, kindUnknownMember, "no member named "+strconv.Quote(name)+" is known here; abacus members lists them")
		return
	case errors.Is(err, ErrMemberAlive):
		writeProblem(w, kindMemberAlive, strconv.Quote(name)+" is alive: stop it first (a stopped node leaves by itself); force-leave removes dead members")
		return
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Name string `json:"name"`
		Told int    `json:"told"`
	}{name, told})
}

// snapshot serves GET /v1/snapshot: a consistent copy of the database, as a
// file. A large database takes longer than the server's write timeout allows
// other answers, so this one has none.
func (s *server) snapshot(w http.ResponseWriter, r *http.Request) {
	http.NewResponseController(w).SetWriteDeadline(time.Time{})
	cw := &countingWriter{w: w, header: func() {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="`+s.Snapshot.SnapshotName()+`"`)
	}}
	if err := s.Snapshot.Snapshot(r.Context(), cw); err != nil {
		s.Logger.Error("snapshot failed", "err", err)
		if cw.n == 0 {
			writeProblem(w, kindUnavailable, "the snapshot could not be taken; see the node's log")
			return
		}
		// Part of the file is gone already: cut the connection so that the
		// client sees an error, not a short file.
		panic(http.ErrAbortHandler)
	}
}

// countingWriter sets the headers on the first write and counts the bytes.
type countingWriter struct {
	w      io.Writer
	header func()
	n      int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.n == 0 && c.header != nil {
		c.header()
		c.header = nil
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *server) cluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Self    Member   `json:"self"`
		Members []Member `json:"members"`
	}{s.Cluster.Self(), s.Cluster.Members()})
}
