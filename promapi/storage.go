package promapi

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/abacus-counter/abacus/window"
)

// Label names of the series model.
const (
	MetricName = "abacus_events_total"
	LabelCount = "counter"
	LabelDC    = "dc"
)

// listPage is how many names one Source.Names call returns.
const listPage = 1000

// queryable reads the Source as Prometheus storage. It is made per query,
// so that every series of one query is computed against one clock reading.
type queryable struct {
	src       Source
	windows   window.Config
	maxSeries int
	// maxSamples bounds the samples one query reads from the counters (the
	// engine's MaxSamples bounds what it holds while evaluating, which it
	// counts only after the adapter has read everything).
	maxSamples int
	now        time.Time
}

func (q *queryable) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{q: q, mint: mint, maxt: maxt}, nil
}

type querier struct {
	q          *queryable
	mint, maxt int64
}

func (*querier) Close() error { return nil }

// errTooManySeries is the engine's own error, so the API answers it as
// Prometheus does.
func (qr *querier) errTooManySeries() error {
	return promql.ErrTooManySeries(fmt.Sprintf("selecting more than %d series", qr.q.maxSeries))
}

// names returns the counter names the matchers allow, in name order, at
// most limit of them (limit ≤ 0: no bound).
//
// For a caller that reads each name's counts itself (readsEach: Select,
// which drops those without any and bounds the series it finds, and the
// label calls that filter on dc), past limit it fails with the engine's too
// many series error, and names the matchers spell out (an equality, a set
// of alternatives) are not checked to exist: a check here would read each
// counter twice. Otherwise past limit it returns the first limit, and
// spelt-out names are read once each to keep only those that exist.
func (qr *querier) names(ctx context.Context, ms []*labels.Matcher, limit int, readsEach bool) ([]string, error) {
	var counterMs []*labels.Matcher
	for _, m := range ms {
		switch m.Name {
		case labels.MetricName:
			if !m.Matches(MetricName) {
				return nil, nil
			}
		case LabelCount:
			counterMs = append(counterMs, m)
		case LabelDC:
		default:
			// Abacus series have no other label: it is "" on all of them.
			if !m.Matches("") {
				return nil, nil
			}
		}
	}
	match := func(name string) bool {
		for _, m := range counterMs {
			if !m.Matches(name) {
				return false
			}
		}
		return true
	}
	// Narrow the scan: an equality or a set of alternatives names the
	// counters; a regexp with a literal prefix scans that prefix only.
	var exact []string
	prefix := ""
	for _, m := range counterMs {
		switch m.Type {
		case labels.MatchEqual:
			exact = []string{m.Value}
		case labels.MatchRegexp:
			if set := m.SetMatches(); len(set) > 0 && exact == nil {
				exact = set
			} else if p := m.Prefix(); len(p) > len(prefix) {
				prefix = p
			}
		}
	}
	var out []string
	if exact != nil {
		slices.Sort(exact)
		for _, n := range slices.Compact(exact) {
			if n == "" || !match(n) {
				continue
			}
			if readsEach {
				out = append(out, n)
				continue
			}
			counts, err := qr.q.src.CountsByDC(n, nil)
			if err != nil {
				return nil, promql.ErrStorage{Err: err}
			}
			if len(counts) > 0 {
				out = append(out, n)
			}
		}
		if limit > 0 && len(out) > limit && !readsEach {
			return out[:limit], nil
		}
		return out, nil
	}
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		page, next, err := qr.q.src.Names(prefix, after, listPage)
		if err != nil {
			return nil, promql.ErrStorage{Err: err}
		}
		for _, n := range page {
			if !match(n) {
				continue
			}
			if limit > 0 && len(out) == limit {
				if readsEach {
					return nil, qr.errTooManySeries()
				}
				return out, nil
			}
			out = append(out, n)
		}
		if next == "" {
			return out, nil
		}
		after = next
	}
}

// dcMatch reports whether every dc matcher allows dc.
func dcMatch(ms []*labels.Matcher, dc string) bool {
	for _, m := range ms {
		if m.Name == LabelDC && !m.Matches(dc) {
			return false
		}
	}
	return true
}

func seriesLabels(name, dc string) labels.Labels {
	if dc == "" {
		return labels.FromStrings(labels.MetricName, MetricName, LabelCount, name)
	}
	return labels.FromStrings(labels.MetricName, MetricName, LabelCount, name, LabelDC, dc)
}

func (qr *querier) Select(ctx context.Context, _ bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	names, err := qr.names(ctx, ms, qr.q.maxSeries, true)
	if err != nil {
		return storage.ErrSeriesSet(err)
	}
	mint, maxt := qr.mint, qr.maxt
	onlyLabels := false
	if hints != nil {
		mint, maxt = hints.Start, hints.End
		onlyLabels = hints.Func == "series"
	}
	// Names come sorted, and one name's series come sorted by dc: the set is
	// in label order, as a sorted Select must be.
	return &seriesSet{ctx: ctx, qr: qr, names: names, ms: ms, plan: qr.q.plan(mint, maxt), onlyLabels: onlyLabels}
}

// seriesSet reads the counters when the engine asks for the first series
// (the engine takes them all before it evaluates anything), with a reader
// per core: reads of different counters are independent. Readers check the
// query's deadline between counters.
type seriesSet struct {
	ctx        context.Context
	qr         *querier
	names      []string
	ms         []*labels.Matcher
	plan       []region
	onlyLabels bool

	loaded  bool
	pending []storage.Series
	cur     storage.Series
	err     error
}

// maxReaders bounds the readers of one query.
const maxReaders = 4

func (s *seriesSet) load() {
	results := make([][]storage.Series, len(s.names))
	errs := make([]error, len(s.names))
	readers := min(runtime.GOMAXPROCS(0), maxReaders, len(s.names)/64+1)
	var next, samples atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(s.names) {
					return
				}
				if err := s.ctx.Err(); err != nil {
					errs[i] = err
					return
				}
				var n int
				results[i], n, errs[i] = s.qr.q.series(s.names[i], s.plan, s.ms, s.onlyLabels)
				if lim := s.qr.q.maxSamples; lim > 0 && samples.Add(int64(n)) > int64(lim) {
					errs[i] = promql.ErrTooManySamples(fmt.Sprintf("reading more than %d samples", lim))
					next.Store(int64(len(s.names))) // the other readers stop too
					return
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for i, r := range results {
		if errs[i] != nil {
			s.err = errs[i]
			return
		}
		n += len(r)
	}
	if s.qr.q.maxSeries > 0 && n > s.qr.q.maxSeries {
		s.err = s.qr.errTooManySeries()
		return
	}
	s.pending = make([]storage.Series, 0, n)
	for _, r := range results {
		s.pending = append(s.pending, r...)
	}
}

func (s *seriesSet) Next() bool {
	if !s.loaded {
		s.loaded = true
		s.load()
	}
	if s.err != nil || len(s.pending) == 0 {
		return false
	}
	s.cur, s.pending = s.pending[0], s.pending[1:]
	return true
}

func (s *seriesSet) At() storage.Series                { return s.cur }
func (s *seriesSet) Err() error                        { return s.err }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// region is a run of sample times at one resolution: multiples of size in
// [lo, hi], Unix seconds; span is where its windows are read from.
type region struct {
	size   int64
	lo, hi int64
	span   Span
}

// samples is how many sample times r holds.
func (r region) samples() int { return int((r.hi-r.lo)/r.size) + 1 }

// plan returns where the samples in [mint, maxt] (milliseconds) lie. A time
// t belongs to the finest resolution whose window containing t is retained;
// its sample is at the start of that window. Samples are never later than
// now.
func (q *queryable) plan(mint, maxt int64) []region {
	now := q.now
	lo := ceilDiv(mint, 1000)
	hi := min(floorDiv(maxt, 1000), now.Unix())
	var out []region
	upper := hi // inclusive upper bound of the current resolution's times
	for _, r := range q.windows.Resolutions {
		size := int64(r.Seconds())
		cut := r.Cutoff(now)
		rlo := max(lo, cut)
		rlo = rlo + mod(-rlo, size) // first multiple of size at or after rlo
		rhi := upper - mod(upper, size)
		if rlo <= rhi {
			end := r.Start(now.Add(window.MaxFuture)) + size
			out = append(out, region{size: size, lo: rlo, hi: rhi, span: Span{Res: r.Seconds(), From: rlo, To: end}})
		}
		// Older times than this resolution keeps belong to the next one.
		upper = min(upper, cut-1)
		if upper < lo {
			break
		}
	}
	return out
}

// series computes counter name's series allowed by the dc matchers, and
// counts their samples.
func (q *queryable) series(name string, plan []region, ms []*labels.Matcher, onlyLabels bool) ([]storage.Series, int, error) {
	spans := make([]Span, 0, len(plan))
	if !onlyLabels {
		for _, r := range plan {
			spans = append(spans, r.span)
		}
	}
	counts, err := q.src.CountsByDC(name, spans)
	if err != nil {
		return nil, 0, promql.ErrStorage{Err: fmt.Errorf("read counter %s: %w", name, err)}
	}
	n := 0 // samples a series has
	if !onlyLabels {
		for _, r := range plan {
			n += r.samples()
		}
	}
	var out []storage.Series
	samples := 0
	for _, c := range counts {
		if !dcMatch(ms, c.DC) {
			continue
		}
		ps := promql.Series{Metric: seriesLabels(name, c.DC)}
		if !onlyLabels {
			ps.Floats = make([]promql.FPoint, 0, n)
			// Regions run newest first; samples must come oldest first.
			for i := len(plan) - 1; i >= 0; i-- {
				ps.Floats = appendCumulative(ps.Floats, plan[i], c.Total, c.Windows[i])
			}
		}
		samples += len(ps.Floats)
		out = append(out, promql.NewStorageSeries(ps))
	}
	return out, samples, nil
}

// appendCumulative appends the samples of region r: at each boundary b, the
// events before b, which are the total less every window from b on.
// windows are r.span's, from r.lo (= r.span.From) on.
func appendCumulative(dst []promql.FPoint, r region, total uint64, windows []uint64) []promql.FPoint {
	n := r.samples()
	var after uint64 // events in windows starting after the boundary at hand
	for _, v := range windows[min(n, len(windows)):] {
		after = satAdd(after, v)
	}
	first := len(dst)
	dst = slices.Grow(dst, n)[:first+n]
	for i := n - 1; i >= 0; i-- {
		if i < len(windows) {
			after = satAdd(after, windows[i])
		}
		v := uint64(0)
		if total > after {
			v = total - after
		}
		dst[first+i] = promql.FPoint{T: (r.lo + int64(i)*r.size) * 1000, F: float64(v)}
	}
	// A window read a moment after its total (a peer's entries arriving in
	// another order) could make the series dip; a counter never does.
	for i := max(first, 1); i < len(dst); i++ {
		if dst[i].F < dst[i-1].F {
			dst[i].F = dst[i-1].F
		}
	}
	return dst
}

func (qr *querier) LabelNames(ctx context.Context, _ *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	names, err := qr.names(ctx, ms, 1, false)
	if err != nil {
		return nil, nil, err
	}
	if len(names) == 0 {
		return []string{}, nil, nil
	}
	out := []string{labels.MetricName, LabelCount}
	if len(qr.q.src.DCs()) > 0 {
		out = append(out, LabelDC)
	}
	return out, nil, nil
}

func (qr *querier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	limit := 0
	if hints != nil {
		limit = hints.Limit
	}
	hasDC := slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return m.Name == LabelDC })
	switch name {
	case labels.MetricName:
		names, err := qr.names(ctx, ms, 1, false)
		if err != nil {
			return nil, nil, err
		}
		if len(names) == 0 {
			return []string{}, nil, nil
		}
		return []string{MetricName}, nil, nil
	case LabelCount:
		if hasDC {
			// Only counters with a series in a matching dc count towards
			// limit (one more, so that the API can say the answer was cut).
			var out []string
			err := qr.eachCounts(ctx, ms, func(n string, counts []DCCounts) bool {
				if slices.ContainsFunc(counts, func(c DCCounts) bool { return dcMatch(ms, c.DC) }) {
					out = append(out, n)
				}
				return limit <= 0 || len(out) <= limit
			})
			return out, nil, err
		}
		// Paginate through the index; stop at limit (one more, so that the
		// API can say the answer was cut).
		bound := 0
		if limit > 0 {
			bound = limit + 1
		}
		names, err := qr.names(ctx, ms, bound, false)
		if err != nil {
			return nil, nil, err
		}
		return names, nil, nil
	case LabelDC:
		if slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return m.Name == LabelCount }) {
			// The dcs of the counters selected, not every dc the node knows.
			seen := map[string]bool{}
			err := qr.eachCounts(ctx, ms, func(_ string, counts []DCCounts) bool {
				for _, c := range counts {
					if c.DC != "" && dcMatch(ms, c.DC) {
						seen[c.DC] = true
					}
				}
				return true
			})
			if err != nil {
				return nil, nil, err
			}
			out := make([]string, 0, len(seen))
			for dc := range seen {
				out = append(out, dc)
			}
			slices.Sort(out)
			return out, nil, nil
		}
		var out []string
		for _, dc := range qr.q.src.DCs() {
			if dc != "" && dcMatch(ms, dc) {
				out = append(out, dc)
			}
		}
		if len(ms) > 0 {
			names, err := qr.names(ctx, ms, 1, false)
			if err != nil {
				return nil, nil, err
			}
			if len(names) == 0 {
				return []string{}, nil, nil
			}
		}
		if out == nil {
			out = []string{}
		}
		return out, nil, nil
	}
	return []string{}, nil, nil
}

// eachCounts reads the counts of each counter the matchers allow, once, in
// name order, until fn returns false.
func (qr *querier) eachCounts(ctx context.Context, ms []*labels.Matcher, fn func(name string, counts []DCCounts) bool) error {
	names, err := qr.names(ctx, ms, 0, true)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		counts, err := qr.q.src.CountsByDC(n, nil)
		if err != nil {
			return promql.ErrStorage{Err: fmt.Errorf("read counter %s: %w", n, err)}
		}
		if !fn(n, counts) {
			return nil
		}
	}
	return nil
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}

func floorDiv(a, b int64) int64 { return (a - mod(a, b)) / b }
func ceilDiv(a, b int64) int64  { return -floorDiv(-a, b) }
