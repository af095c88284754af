package agent

import (
	"net/http"
	"time"

	"github.com/abacus-counter/abacus/internal/buildinfo"
	"github.com/abacus-counter/abacus/promapi"
	"github.com/abacus-counter/abacus/store"
)

// newPromAPI builds the Prometheus query API over the node's store.
func (a *Agent) newPromAPI() (http.Handler, error) {
	cfg := promapi.DefaultConfig()
	cfg.Source = promSource{a.store}
	cfg.Windows = a.cfg.Windows
	cfg.MaxSamples = a.cfg.QueryMaxSamples
	cfg.MaxSeries = a.cfg.QueryMaxSeries
	if a.cfg.QueryTimeout != 0 { // zero keeps promapi's default
		cfg.Timeout = a.cfg.QueryTimeout
	}
	cfg.BuildInfo = buildInfo()
	cfg.Logger = a.log.With("component", "promapi")
	p, err := promapi.New(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	h := p.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A query may run up to its timeout: the server's write timeout
		// must not cut its answer first.
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + 10*time.Second))
		h.ServeHTTP(w, r)
	}), nil
}

// buildInfo is the running build as internal/buildinfo reads it, so that
// /api/v1/status/buildinfo, abacus_build_info and abacus version agree.
func buildInfo() promapi.BuildInfo {
	bi := buildinfo.Get()
	return promapi.BuildInfo{Version: bi.Version, Revision: bi.Revision, GoVersion: bi.GoVersion, BuildDate: bi.Time}
}

// promSource adapts the store to promapi.Source. Its errors go through
// readError, as the /v1 reads' do: a damaged data file is a 503 with the
// reason on both.
type promSource struct {
	st *store.Store
}

var _ promapi.Source = promSource{}

func (p promSource) Now() time.Time { return p.st.Now() }
func (p promSource) DCs() []string  { return p.st.DCs() }

func (p promSource) CountsByDC(name string, spans []promapi.Span) ([]promapi.DCCounts, error) {
	ss := make([]store.Span, len(spans))
	for i, s := range spans {
		ss[i] = store.Span(s)
	}
	cs, err := p.st.CountsByDC(name, ss)
	if err != nil {
		return nil, readError(err)
	}
	out := make([]promapi.DCCounts, len(cs))
	for i, c := range cs {
		out[i] = promapi.DCCounts(c)
	}
	return out, nil
}

func (p promSource) Names(prefix, after string, limit int) ([]string, string, error) {
	page, next, err := p.st.List(prefix, after, limit)
	if err != nil {
		return nil, "", readError(err)
	}
	out := make([]string, len(page))
	for i, nt := range page {
		out[i] = nt.Name
	}
	return out, next, nil
}
