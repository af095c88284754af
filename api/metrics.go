package api

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type httpMetrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	increments *prometheus.CounterVec
	amounts    *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	if reg == nil {
		return nil
	}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "abacus_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route pattern and method.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"route", "method"}),
	}
	m.increments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "abacus_increments_total",
		Help: "Increments applied (acknowledged, retries with a known Idempotency-Key not counted), by route (single, batch, seed) and durability.",
	}, []string{"route", "durability"})
	m.amounts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "abacus_increment_amount_total",
		Help: "Sum of the amounts of the increments applied, by route and durability.",
	}, []string{"route", "durability"})
	reg.MustRegister(m.requests, m.duration, m.increments, m.amounts)
	return m
}

// applied counts the increments of an acknowledged request.
func (m *httpMetrics) applied(route, durability string, incs []Increment) {
	if m == nil {
		return
	}
	var sum float64
	for _, inc := range incs {
		sum += float64(inc.Amount)
	}
	m.increments.WithLabelValues(route, durability).Add(float64(len(incs)))
	m.amounts.WithLabelValues(route, durability).Add(sum)
}

// instrument wraps h to count and time its requests under route. The
// per-route children are looked up once per method and code, not per request.
func (m *httpMetrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	if m == nil {
		return h
	}
	type key struct {
		method string
		code   int
	}
	var (
		mu       sync.RWMutex
		counters = map[key]prometheus.Counter{}
		timers   = map[string]prometheus.Observer{}
	)
	observe := func(method string, code int, d time.Duration) {
		k := key{method, code}
		mu.RLock()
		c, okc := counters[k]
		o, oko := timers[method]
		mu.RUnlock()
		if !okc || !oko {
			mu.Lock()
			if c, okc = counters[k]; !okc {
				c = m.requests.WithLabelValues(route, method, strconv.Itoa(code))
				counters[k] = c
			}
			if o, oko = timers[method]; !oko {
				o = m.duration.WithLabelValues(route, method)
				timers[method] = o
			}
			mu.Unlock()
		}
		c.Inc()
		o.Observe(d.Seconds())
	}
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statusWriter{ResponseWriter: w, code: http.StatusOK}
		h(&sw, r)
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		default:
			method = "other" // bound label values against arbitrary methods
		}
		observe(method, sw.code, time.Since(start))
	}
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
