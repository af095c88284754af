package promapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/abacus-counter/abacus/api"
)

// errorType is Prometheus's errorType and the status it answers with.
type errorType struct {
	name   string
	status int
}

var (
	errorBadData   = errorType{"bad_data", http.StatusBadRequest}
	errorExec      = errorType{"execution", http.StatusUnprocessableEntity}
	errorCostLimit = errorType{"cost_limit", http.StatusUnprocessableEntity}
	errorCanceled  = errorType{"canceled", 499}
	errorTimeout   = errorType{"timeout", http.StatusServiceUnavailable}
	errorInternal  = errorType{"internal", http.StatusInternalServerError}
	errorUnavail   = errorType{"unavailable", http.StatusServiceUnavailable}
	errorNotFound  = errorType{"not_found", http.StatusNotFound}
	errorMethod    = errorType{"bad_data", http.StatusMethodNotAllowed}
)

type apiError struct {
	typ errorType
	err error
}

func (e *apiError) Error() string { return e.typ.name + ": " + e.err.Error() }

// response is Prometheus's envelope.
type response struct {
	Status    string   `json:"status"`
	Data      any      `json:"data,omitempty"`
	ErrorType string   `json:"errorType,omitempty"`
	Error     string   `json:"error,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
	Infos     []string `json:"infos,omitempty"`
}

type result struct {
	data     any
	err      *apiError
	warnings annotations.Annotations
	query    string
	close    func()
}

type apiFunc func(r *http.Request) result

// maxForm bounds a POSTed form.
const maxForm = 1 << 20

func (a *API) serve(h apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		}
		if err := r.ParseForm(); err != nil {
			writeError(w, &apiError{errorBadData, fmt.Errorf("invalid form: %w", err)}, nil)
			return
		}
		res := h(r)
		if res.close != nil {
			defer res.close()
		}
		if res.err != nil {
			writeError(w, res.err, nil)
			return
		}
		warn, info := res.warnings.AsStrings(res.query, 10, 10)
		if qd, ok := res.data.(queryData); ok {
			writeQueryData(w, qd.Result, warn, info)
			return
		}
		writeJSON(w, http.StatusOK, response{Status: "success", Data: res.data, Warnings: warn, Infos: info})
	}
}

// writeQueryData writes a query's answer, encoded by appendQueryData.
func writeQueryData(w http.ResponseWriter, v parser.Value, warn, info []string) {
	b := append(getBuf(), `{"status":"success","data":`...)
	b, err := appendQueryData(b, v)
	defer func() { putBuf(b) }()
	if err != nil {
		writeError(w, &apiError{errorInternal, errors.New("the answer could not be encoded")}, nil)
		return
	}
	for _, f := range []struct {
		name string
		list []string
	}{{"warnings", warn}, {"infos", info}} {
		if len(f.list) > 0 {
			j, _ := json.Marshal(f.list)
			b = append(b, `,"`+f.name+`":`...)
			b = append(b, j...)
		}
	}
	b = append(b, '}')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError, data any) {
	writeJSON(w, e.typ.status, response{Status: "error", ErrorType: e.typ.name, Error: e.err.Error(), Data: data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(response{Status: "error", ErrorType: errorInternal.name, Error: "the answer could not be encoded"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}

func invalidParam(err error, name string) result {
	return result{err: &apiError{errorBadData, fmt.Errorf("invalid parameter %q: %w", name, err)}}
}

// engineError maps an engine error as Prometheus's API does. A failed read
// of the counters is a 503 with the node's reason when the Source refuses
// it with one worded for clients (api.Unavailable: a damaged data file, as
// the /v1 reads answer), else a 500 whose detail goes to the node's log
// only, with what was asked.
func (a *API) engineError(err error, asked string) *apiError {
	var (
		canceled promql.ErrQueryCanceled
		timeout  promql.ErrQueryTimeout
		series   promql.ErrTooManySeries
		read     promql.ErrTooManySamplesRead
		stor     promql.ErrStorage
	)
	switch {
	case errors.As(err, &canceled):
		return &apiError{errorCanceled, err}
	case errors.As(err, &timeout):
		return &apiError{errorTimeout, err}
	case errors.As(err, &series), errors.As(err, &read):
		return &apiError{errorCostLimit, err}
	case errors.As(err, &stor):
		if why, ok := api.UnavailableReason(stor.Err); ok { // ErrStorage has no Unwrap
			return &apiError{errorUnavail, errors.New(why)}
		}
		// The detail stays in the node's log: clients get no Go error text.
		a.cfg.Logger.Error("prometheus API read failed", "asked", asked, "err", err)
		return &apiError{errorInternal, errors.New("reading the counters failed; see the node's log")}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{errorTimeout, errors.New("query timed out")}
	case errors.Is(err, context.Canceled):
		return &apiError{errorCanceled, errors.New("query was canceled")}
	}
	return &apiError{errorExec, err}
}

// constructionError maps an error of building a query (parsing, mostly).
func (a *API) constructionError(err error) *apiError {
	var (
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
		ceiling  promql.ErrLimitAboveCeiling
	)
	switch {
	case errors.As(err, &timeout), errors.As(err, &canceled):
		return a.engineError(err, "")
	case errors.As(err, &ceiling):
		return &apiError{errorBadData, err}
	}
	return &apiError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "query", err)}
}

// Times as Prometheus takes them: Unix seconds with a fraction, or RFC 3339.
var (
	minTime = time.Unix(math.MinInt64/1000+62135596801, 0).UTC()
	maxTime = time.Unix(math.MaxInt64/1000-62135596801, 999999999).UTC()

	minTimeFormatted = minTime.Format(time.RFC3339Nano)
	maxTimeFormatted = maxTime.Format(time.RFC3339Nano)
)

func parseTime(s string) (time.Time, error) {
	if t, err := strconv.ParseFloat(s, 64); err == nil {
		s, ns := math.Modf(t)
		ns = math.Round(ns*1000) / 1000
		if math.IsNaN(s) || s > float64(maxTime.Unix()) || s < float64(minTime.Unix()) {
			return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", strconv.FormatFloat(t, 'g', -1, 64))
		}
		return time.Unix(int64(s), int64(ns*float64(time.Second))).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	switch s {
	case minTimeFormatted:
		return minTime, nil
	case maxTimeFormatted:
		return maxTime, nil
	}
	return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
}

func parseTimeParam(r *http.Request, name string, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	t, err := parseTime(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid time value for '%s': %w", name, err)
	}
	return t, nil
}

func parseDuration(s string) (time.Duration, error) {
	if d, err := strconv.ParseFloat(s, 64); err == nil {
		ts := d * float64(time.Second)
		if math.IsNaN(ts) || ts >= float64(math.MaxInt64) || ts < float64(math.MinInt64) {
			return 0, fmt.Errorf("cannot parse %q to a valid duration. It overflows int64", s)
		}
		return time.Duration(ts), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return time.Duration(d), nil
	}
	return 0, fmt.Errorf("cannot parse %q to a valid duration", s)
}

func parseLimit(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q to a valid limit", s)
	}
	if n < 0 {
		return 0, errors.New("limit must be non-negative")
	}
	return n, nil
}

// queryContext applies the request's timeout parameter: it may only shorten
// the engine's.
func (a *API) queryContext(r *http.Request) (context.Context, context.CancelFunc, *apiError) {
	ctx := r.Context()
	if v := r.FormValue("timeout"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, nil, &apiError{errorBadData, fmt.Errorf("invalid parameter %q: %w", "timeout", err)}
		}
		if d <= 0 {
			return nil, nil, &apiError{errorBadData, fmt.Errorf("invalid parameter %q: timeout must be positive", "timeout")}
		}
		ctx, cancel := context.WithTimeout(ctx, min(d, a.cfg.Timeout))
		return ctx, cancel, nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	return ctx, cancel, nil
}

func (a *API) queryOpts(r *http.Request) (promql.QueryOpts, *apiError) {
	var lookback time.Duration
	if v := r.FormValue("lookback_delta"); v != "" {
		d, err := parseDuration(v)
		if err != nil {
			return nil, &apiError{errorBadData, fmt.Errorf("error parsing lookback delta duration: %w", err)}
		}
		lookback = d
	}
	return promql.NewPrometheusQueryOpts(r.FormValue("stats") == "all", lookback, nil), nil
}

// Subqueries. The engine allocates for every step of a subquery before any
// limit of its own applies: count_over_time(x[100y:1s]) asks it for tens of
// gigabytes. A subquery of more steps than maxSubquerySteps is refused up
// front, as a range query of more than 11,000 points is.
const (
	maxSubquerySteps    = 100_000
	defaultSubqueryStep = time.Minute // a subquery without a step: Prometheus's default evaluation interval
)

// checkSubqueries refuses qs if one of its subqueries, evaluated over span
// (the query's end minus its start), would take more than maxSubquerySteps
// steps. An expression that does not parse is left to the engine to report.
func (a *API) checkSubqueries(qs string, span time.Duration) *apiError {
	expr, err := a.parser.ParseExpr(qs)
	if err != nil {
		return nil
	}
	var bad *apiError
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		sq, ok := node.(*parser.SubqueryExpr)
		if !ok || bad != nil {
			return nil
		}
		// An inner subquery runs over its own range, its parents' ranges and
		// the query's span (seconds, in floats: ranges may sum past int64).
		total := span.Seconds() + sq.Range.Seconds()
		for _, p := range path {
			if outer, ok := p.(*parser.SubqueryExpr); ok {
				total += outer.Range.Seconds()
			}
		}
		step := sq.Step
		if step <= 0 {
			step = defaultSubqueryStep
		}
		if steps := total / step.Seconds(); steps > maxSubquerySteps {
			bad = &apiError{errorBadData, fmt.Errorf("invalid parameter %q: subquery %s would take %.0f steps; at most %d are allowed: use a larger step or a shorter range", "query", sq.String(), steps, maxSubquerySteps)}
		}
		return nil
	})
	return bad
}

// queryData is the data of a query answer.
type queryData struct {
	ResultType parser.ValueType `json:"resultType"`
	Result     parser.Value     `json:"result"`
}

func (a *API) query(r *http.Request) result {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return invalidParam(err, "limit")
	}
	ts, err := parseTimeParam(r, "time", a.cfg.Source.Now())
	if err != nil {
		return invalidParam(err, "time")
	}
	return a.run(r, limit, 0, func(ctx context.Context, opts promql.QueryOpts, qs string) (promql.Query, error) {
		return a.engine.NewInstantQuery(ctx, a.queryable(), opts, qs, ts)
	})
}

func (a *API) queryRange(r *http.Request) result {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return invalidParam(err, "limit")
	}
	start, err := parseTime(r.FormValue("start"))
	if err != nil {
		return invalidParam(err, "start")
	}
	end, err := parseTime(r.FormValue("end"))
	if err != nil {
		return invalidParam(err, "end")
	}
	if end.Before(start) {
		return invalidParam(errors.New("end timestamp must not be before start time"), "end")
	}
	step, err := parseDuration(r.FormValue("step"))
	if err != nil {
		return invalidParam(err, "step")
	}
	if step <= 0 {
		return invalidParam(errors.New("zero or negative query resolution step widths are not accepted. Try a positive integer"), "step")
	}
	if end.Sub(start)/step > 11000 {
		return result{err: &apiError{errorBadData, errors.New("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)")}}
	}
	return a.run(r, limit, end.Sub(start), func(ctx context.Context, opts promql.QueryOpts, qs string) (promql.Query, error) {
		return a.engine.NewRangeQuery(ctx, a.queryable(), opts, qs, start, end, step)
	})
}

// run is what an instant and a range query share once their times are
// parsed: the timeout and options, the subquery bound over span, building
// the query with newQuery, and running it.
func (a *API) run(r *http.Request, limit int, span time.Duration, newQuery func(context.Context, promql.QueryOpts, string) (promql.Query, error)) result {
	ctx, cancel, apiErr := a.queryContext(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	defer cancel()
	opts, apiErr := a.queryOpts(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	qs := r.FormValue("query")
	if apiErr := a.checkSubqueries(qs, span); apiErr != nil {
		return result{err: apiErr}
	}
	qry, err := newQuery(ctx, opts, qs)
	if err != nil {
		return result{err: a.constructionError(err)}
	}
	return a.exec(ctx, qry, qs, limit)
}

func (a *API) exec(ctx context.Context, qry promql.Query, qs string, limit int) result {
	res := qry.Exec(ctx)
	if res.Err != nil {
		qry.Close()
		return result{err: a.engineError(res.Err, qs), warnings: res.Warnings, query: qs}
	}
	warnings := res.Warnings
	v := res.Value
	if limit > 0 {
		cut := false
		switch x := v.(type) {
		case promql.Vector:
			if len(x) > limit {
				v, cut = x[:limit], true
			}
		case promql.Matrix:
			if len(x) > limit {
				v, cut = x[:limit], true
			}
		}
		if cut {
			warnings = warnings.Add(errors.New("results truncated due to limit"))
		}
	}
	return result{data: queryData{ResultType: v.Type(), Result: v}, warnings: warnings, query: qs, close: qry.Close}
}

// matcherSets parses match[] as Prometheus does: each set needs one matcher
// that does not match the empty string.
func (a *API) matcherSets(r *http.Request) ([][]*labels.Matcher, error) {
	sets, err := a.parser.ParseMetricSelectors(r.Form["match[]"])
	if err != nil {
		return nil, err
	}
outer:
	for _, ms := range sets {
		for _, m := range ms {
			if m != nil && !m.Matches("") {
				continue outer
			}
		}
		return nil, errors.New("match[] must contain at least one non-empty matcher")
	}
	return sets, nil
}

// timeRange parses start and end, defaulting to all time.
func timeRange(r *http.Request) (int64, int64, *result) {
	start, err := parseTimeParam(r, "start", minTime)
	if err != nil {
		res := invalidParam(err, "start")
		return 0, 0, &res
	}
	end, err := parseTimeParam(r, "end", maxTime)
	if err != nil {
		res := invalidParam(err, "end")
		return 0, 0, &res
	}
	if end.Before(start) {
		res := invalidParam(errors.New("end timestamp must not be before start time"), "end")
		return 0, 0, &res
	}
	return start.UnixMilli(), end.UnixMilli(), nil
}

func (a *API) series(r *http.Request) result {
	if len(r.Form["match[]"]) == 0 {
		return result{err: &apiError{errorBadData, errors.New("no match[] parameter provided")}}
	}
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return invalidParam(err, "limit")
	}
	mint, maxt, bad := timeRange(r)
	if bad != nil {
		return *bad
	}
	sets, err := a.matcherSets(r)
	if err != nil {
		return invalidParam(err, "match[]")
	}
	ctx, cancel, apiErr := a.queryContext(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	defer cancel()
	q, _ := a.queryable().Querier(mint, maxt)
	defer q.Close()
	hints := &storage.SelectHints{Start: mint, End: maxt, Func: "series"}
	seen := map[string]bool{}
	out := []labels.Labels{}
	var warnings annotations.Annotations
	for _, ms := range sets {
		set := q.Select(ctx, true, hints, ms...)
		for set.Next() {
			l := set.At().Labels()
			if k := l.String(); !seen[k] {
				seen[k] = true
				out = append(out, l)
			}
		}
		if err := set.Err(); err != nil {
			return result{err: a.engineError(err, r.URL.Path)}
		}
	}
	slices.SortFunc(out, labels.Compare)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
		warnings = warnings.Add(errors.New("results truncated due to limit"))
	}
	return result{data: out, warnings: warnings}
}

func (a *API) labelNames(r *http.Request) result {
	return a.labels(r, "")
}

func (a *API) labelValues(r *http.Request) result {
	name := chi.URLParam(r, "name")
	if !model.UTF8Validation.IsValidLabelName(name) {
		return result{err: &apiError{errorBadData, fmt.Errorf("invalid label name: %q", name)}}
	}
	return a.labels(r, name)
}

// labels answers /labels (name "") and /label/NAME/values.
func (a *API) labels(r *http.Request, name string) result {
	limit, err := parseLimit(r.FormValue("limit"))
	if err != nil {
		return invalidParam(err, "limit")
	}
	mint, maxt, bad := timeRange(r)
	if bad != nil {
		return *bad
	}
	var sets [][]*labels.Matcher
	if len(r.Form["match[]"]) > 0 {
		if sets, err = a.matcherSets(r); err != nil {
			return invalidParam(err, "match[]")
		}
	}
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	ctx, cancel, apiErr := a.queryContext(r)
	if apiErr != nil {
		return result{err: apiErr}
	}
	defer cancel()
	q, _ := a.queryable().Querier(mint, maxt)
	defer q.Close()
	hints := &storage.LabelHints{Limit: limit}
	var all []string
	for _, ms := range sets {
		var vals []string
		var err error
		if name == "" {
			vals, _, err = q.LabelNames(ctx, hints, ms...)
		} else {
			vals, _, err = q.LabelValues(ctx, name, hints, ms...)
		}
		if err != nil {
			return result{err: a.engineError(err, r.URL.Path)}
		}
		all = append(all, vals...)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if all == nil {
		all = []string{}
	}
	var warnings annotations.Annotations
	if limit > 0 && len(all) > limit {
		all = all[:limit]
		warnings = warnings.Add(errors.New("results truncated due to limit"))
	}
	return result{data: all, warnings: warnings}
}

type metadataEntry struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

const metricHelp = "Events counted by Abacus per counter and datacenter: the value at t is the number of events with event time before t, aligned to the finest resolution retained at t."

func (a *API) metadata(r *http.Request) result {
	// As Prometheus: limit < 0 (the default) is no limit, 0 answers nothing.
	limit := -1
	if v := r.FormValue("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalidParam(fmt.Errorf("cannot parse %q to a valid limit", v), "limit")
		}
		limit = n
	}
	if v := r.FormValue("limit_per_metric"); v != "" {
		if _, err := strconv.Atoi(v); err != nil {
			return invalidParam(fmt.Errorf("cannot parse %q to a valid limit", v), "limit_per_metric")
		}
	}
	out := map[string][]metadataEntry{}
	if m := r.FormValue("metric"); (m == "" || m == MetricName) && limit != 0 {
		out[MetricName] = []metadataEntry{{Type: "counter", Help: metricHelp}}
	}
	return result{data: out}
}

func (a *API) buildInfo(*http.Request) result {
	return result{data: a.cfg.BuildInfo}
}
