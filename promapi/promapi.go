package promapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/abacus-counter/abacus/window"
)

// Span asks for the windows of one resolution starting in [From, To), Unix
// seconds; From is a multiple of Res.
type Span struct {
	Res      uint32 // window length in seconds
	From, To int64
}

// DCCounts is one datacenter's share of a counter.
type DCCounts struct {
	DC    string // "" when the node does not know the replica's datacenter
	Total uint64 // all-time total
	// Windows holds, per span asked for, the count of each window of the
	// span: Windows[i][k] is the window starting at spans[i].From + k×Res.
	Windows [][]uint64
}

// Source is what the API needs from the node. A read it refuses with
// api.Unavailable (a damaged data file) is answered 503 with the reason;
// any other error is a 500 whose detail goes to the node's log only.
type Source interface {
	// Now is the node's clock.
	Now() time.Time
	// CountsByDC returns a counter's total and its windows in each span per
	// datacenter, all read at one instant; none for a counter never
	// incremented.
	CountsByDC(name string, spans []Span) ([]DCCounts, error)
	// Names returns up to limit counter names with prefix after after, in
	// name order, and the after of the next page ("" if none).
	Names(prefix, after string, limit int) ([]string, string, error)
	// DCs lists the datacenters of the replicas the node knows.
	DCs() []string
}

// BuildInfo is what /api/v1/status/buildinfo reports.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"buildUser"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// Config configures the API.
type Config struct {
	// Source is the node's counters; required.
	Source Source
	// Windows is the cluster's resolution set.
	Windows window.Config
	// MaxSamples is the most samples one query may read from the Source,
	// and the most the engine may hold at once (Prometheus's
	// --query.max-samples); zero means DefaultMaxSamples.
	MaxSamples int
	// MaxSeries is the most series one query may select; zero means
	// DefaultMaxSeries.
	MaxSeries int
	// Timeout bounds each query; a request's timeout parameter may only
	// shorten it. Zero means DefaultTimeout.
	Timeout time.Duration
	// LookbackDelta is how far back an instant selector looks for a sample;
	// zero means Prometheus's 5m.
	LookbackDelta time.Duration
	// BuildInfo is served at /api/v1/status/buildinfo.
	BuildInfo BuildInfo
	// Logger receives query errors the engine logs; nil discards them.
	Logger *slog.Logger
}

// Defaults of Config's limits.
const (
	DefaultMaxSamples = 5_000_000
	DefaultMaxSeries  = 10_000
	DefaultTimeout    = 30 * time.Second
)

// DefaultConfig has the default limits and windows; Source is left to the
// caller.
func DefaultConfig() Config {
	return Config{
		Windows:    window.DefaultConfig(),
		MaxSamples: DefaultMaxSamples,
		MaxSeries:  DefaultMaxSeries,
		Timeout:    DefaultTimeout,
	}
}

// API serves the Prometheus query API.
type API struct {
	cfg    Config
	engine *promql.Engine
	parser parser.Parser
	router chi.Router
}

// New validates cfg and builds the engine.
func New(cfg Config) (*API, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("promapi: no Source")
	}
	if err := cfg.Windows.Validate(); err != nil {
		return nil, fmt.Errorf("promapi: %w", err)
	}
	if cfg.MaxSamples < 0 || cfg.MaxSeries < 0 || cfg.Timeout < 0 || cfg.LookbackDelta < 0 {
		return nil, fmt.Errorf("promapi: negative limit")
	}
	if cfg.MaxSamples == 0 {
		cfg.MaxSamples = DefaultMaxSamples
	}
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = DefaultMaxSeries
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := parser.NewParser(parser.Options{})
	eng := promql.NewEngine(promql.EngineOpts{
		Logger:               cfg.Logger,
		MaxSamples:           cfg.MaxSamples,
		Timeout:              cfg.Timeout,
		LookbackDelta:        cfg.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		// The engine calls this for a subquery without a step; nil would
		// panic.
		NoStepSubqueryIntervalFn: func(int64) int64 { return defaultSubqueryStep.Milliseconds() },
		Parser:                   p,
	})
	// The series limit is the adapter's (queryable.maxSeries), not the
	// engine's query-cost feature: that feature wraps every sample read in
	// two context checks, a sixth of a large query's time.
	a := &API{cfg: cfg, engine: eng, parser: p}
	a.router = a.routes()
	return a, nil
}

// Handler serves the API's routes, all under /api/v1/, whether or not it is
// mounted in another chi router: it routes on the full path.
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.router.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, (*chi.Context)(nil))))
	})
}

func (a *API) routes() chi.Router {
	r := chi.NewRouter()
	both := func(pattern string, h apiFunc) {
		r.Get(pattern, a.serve(h))
		r.Post(pattern, a.serve(h))
	}
	both("/api/v1/query", a.query)
	both("/api/v1/query_range", a.queryRange)
	both("/api/v1/series", a.series)
	both("/api/v1/labels", a.labelNames)
	r.Get("/api/v1/label/{name}/values", a.serve(a.labelValues))
	r.Get("/api/v1/metadata", a.serve(a.metadata))
	r.Get("/api/v1/status/buildinfo", a.serve(a.buildInfo))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{errorNotFound, fmt.Errorf("no route for %s %s", r.Method, r.URL.Path)}, nil)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{errorMethod, fmt.Errorf("%s is not allowed on %s", r.Method, r.URL.Path)}, nil)
	})
	return r
}

// queryable returns the storage one query reads, against one clock reading.
func (a *API) queryable() *queryable {
	return &queryable{src: a.cfg.Source, windows: a.cfg.Windows, maxSeries: a.cfg.MaxSeries, maxSamples: a.cfg.MaxSamples, now: a.cfg.Source.Now()}
}

// Close releases the engine.
func (a *API) Close(context.Context) error { return a.engine.Close() }
