package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/abacus-counter/abacus/window"
)

// nameParam is the {name} path segment, unescaped once: chi routes on the
// raw path when the request has one (RawPath is set), so "a%3Ab" arrives
// escaped, and clients that escape ':' (encodeURIComponent does) mean "a:b";
// otherwise chi routed on the already decoded path, and decoding again would
// turn "%2541" into "A". Undecodable escapes stay as they are and fail name
// validation.
func nameParam(r *http.Request) string {
	raw := chi.URLParam(r, "name")
	if r.URL.RawPath == "" {
		return raw
	}
	if name, err := url.PathUnescape(raw); err == nil {
		return name
	}
	return raw
}

// readBody reads the request body up to limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	if r.ContentLength > limit {
		return nil, errorf(kindBodyTooLarge, "the body may be at most "+strconv.FormatInt(limit, 10)+" bytes")
	}
	if r.ContentLength == 0 {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, errorf(kindBodyTooLarge, "the body may be at most "+strconv.FormatInt(limit, 10)+" bytes")
		}
		return nil, errorf(kindInvalidJSON, "could not read the body")
	}
	return body, nil
}

func checkJSONContentType(r *http.Request, body []byte) *apiError {
	if len(body) == 0 {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return errorf(kindUnsupportedType, "send JSON as application/json")
	}
	return nil
}

// idempotencyKey returns the request's Idempotency-Key header, if valid.
func idempotencyKey(r *http.Request) (string, *apiError) {
	vs := r.Header.Values("Idempotency-Key")
	switch {
	case len(vs) == 0:
		return "", nil
	case len(vs) > 1:
		return "", errorf(kindInvalidIdemKey, "Idempotency-Key given more than once")
	case !validIdempotencyKey(vs[0]):
		return "", errorf(kindInvalidIdemKey, "Idempotency-Key must be 1 to 255 printable ASCII characters")
	}
	return vs[0], nil
}

// fingerprint identifies a request by what the client sent: method, path,
// query and body. A retry resends the same bytes.
func fingerprint(r *http.Request, body []byte) [32]byte {
	h := sha256.New()
	io.WriteString(h, r.Method)
	h.Write([]byte{0})
	io.WriteString(h, r.URL.Path)
	h.Write([]byte{0})
	io.WriteString(h, r.URL.RawQuery)
	h.Write([]byte{0})
	h.Write(body)
	var fp [32]byte
	h.Sum(fp[:0])
	return fp
}

// write applies req and writes either the fresh or the replayed response.
// route names the kind of write for the increments metric.
func (s *server) write(w http.ResponseWriter, r *http.Request, req *WriteRequest, contentType, route string) {
	// No timer of our own: a client that gives up closes its connection,
	// which cancels r.Context().
	res, err := s.Counters.Apply(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		writeBody(w, http.StatusOK, contentType, res.Response)
		return
	}
	s.metrics.applied(route, s.Durability, req.Increments)
	body := res.Response
	if body == nil {
		body = req.Render(res.Totals)
	}
	writeBody(w, http.StatusOK, contentType, body)
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		writeAPIError(w, ae)
	case errors.Is(err, ErrOverflow):
		writeProblem(w, kindOverflow, "the increment would carry a counter past 18446744073709551615; nothing was applied")
	case errors.Is(err, ErrIdempotencyMismatch):
		writeProblem(w, kindIdemReused, "this Idempotency-Key was used for a different request")
	case errors.Is(err, ErrFutureTime):
		writeProblem(w, kindFutureTime, "ts is more than 5 minutes ahead of this node's clock")
	case errors.Is(err, ErrUnavailable):
		// Unavailable errors are worded for clients (see Unavailable); they
		// carry no Go internals.
		writeProblem(w, kindUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, kindUnavailable, "the write did not commit in time; it may still apply")
	case errors.Is(err, context.Canceled):
		writeProblem(w, kindUnavailable, "the request was cancelled")
	default:
		s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, kindInternal, "")
	}
}

// increment serves POST /v1/counters/{name}/increment.
func (s *server) increment(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r, maxSingleBody)
	if e == nil {
		e = checkJSONContentType(r, body)
	}
	var key string
	if e == nil {
		key, e = idempotencyKey(r)
	}
	var inc Increment
	if e == nil {
		inc, e = parseSingle(nameParam(r), queryOf(r), body, s.Counters.Now())
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	req := &WriteRequest{
		Increments:     []Increment{inc},
		IdempotencyKey: key,
		Render: func(totals []uint64) []byte {
			return appendIncrementResponse(make([]byte, 0, 128+len(inc.Name)), inc, totals[0])
		},
	}
	if key != "" {
		req.Fingerprint = fingerprint(r, body)
	}
	s.write(w, r, req, "application/json", "single")
}

func queryOf(r *http.Request) url.Values {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return url.Values{"": nil} // an undecodable query is an unknown parameter
	}
	return q
}

// appendIncrementResponse renders {"name","amount","ts","total"} without
// reflection: names need no escaping, the rest are numbers and a time.
func appendIncrementResponse(b []byte, inc Increment, total uint64) []byte {
	b = append(b, `{"name":"`...)
	b = append(b, inc.Name...)
	b = append(b, `","amount":`...)
	b = strconv.AppendUint(b, inc.Amount, 10)
	b = append(b, `,"ts":"`...)
	b = inc.TS.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","total":`...)
	b = strconv.AppendUint(b, total, 10)
	return append(b, "}\n"...)
}

// batch serves POST /v1/increments.
func (s *server) batch(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r, maxBatchBody)
	if e == nil {
		e = checkJSONContentType(r, body)
	}
	var key string
	if e == nil {
		key, e = idempotencyKey(r)
	}
	if e == nil && len(r.URL.RawQuery) > 0 {
		e = errorf(kindInvalidParameter, "this route takes no query parameters")
	}
	var incs []Increment
	if e == nil {
		if len(body) == 0 {
			e = errorf(kindInvalidJSON, "empty body: send {\"increments\":[…]}")
		} else {
			incs, e = parseBatch(body, s.Counters.Now())
		}
	}
	if e != nil {
		writeAPIError(w, e)
		return
	}
	n := len(incs)
	req := &WriteRequest{
		Increments:     incs,
		IdempotencyKey: key,
		Render: func([]uint64) []byte {
			return append(strconv.AppendInt([]byte(`{"accepted":`), int64(n), 10), "}\n"...)
		},
	}
	if key != "" {
		req.Fingerprint = fingerprint(r, body)
	}
	s.write(w, r, req, "application/json", "batch")
}

// get serves GET /v1/counters/{name}.
func (s *server) get(w http.ResponseWriter, r *http.Request) {
	name := nameParam(r)
	if e := checkName(name); e != nil {
		writeAPIError(w, e)
		return
	}
	q := queryOf(r)
	detail := false
	for k, v := range q {
		if k != "detail" || len(v) != 1 {
			writeProblem(w, kindInvalidParameter, "the only query parameter is detail=true|false")
			return
		}
		d, err := strconv.ParseBool(v[0])
		if err != nil {
			writeProblem(w, kindInvalidParameter, "detail must be true or false")
			return
		}
		detail = d
	}
	total, err := s.Counters.Total(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !detail {
		b := append([]byte(`{"name":"`), name...)
		b = append(b, `","total":`...)
		b = strconv.AppendUint(b, total, 10)
		writeBody(w, http.StatusOK, "application/json", append(b, "}\n"...))
		return
	}
	reps, err := s.Counters.Replicas(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	type replica struct {
		Replica string `json:"replica"`
		Node    string `json:"node"`
		DC      string `json:"dc"`
		Count   uint64 `json:"count"`
	}
	out := struct {
		Name     string            `json:"name"`
		Total    uint64            `json:"total"`
		Replicas []replica         `json:"replicas"`
		ByDC     map[string]uint64 `json:"by_dc"`
	}{Name: name, Total: total, Replicas: []replica{}, ByDC: map[string]uint64{}}
	for _, rc := range reps {
		out.Replicas = append(out.Replicas, replica{rc.Replica, rc.Node, rc.DC, rc.Count})
		dc := rc.DC
		if dc == "" {
			dc = "unknown"
		}
		out.ByDC[dc] = satAdd(out.ByDC[dc], rc.Count)
	}
	writeJSON(w, http.StatusOK, out)
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

// rangeQuery serves GET /v1/counters/{name}/range.
func (s *server) rangeQuery(w http.ResponseWriter, r *http.Request) {
	name := nameParam(r)
	if e := checkName(name); e != nil {
		writeAPIError(w, e)
		return
	}
	var q window.Query
	for k, v := range queryOf(r) {
		if len(v) != 1 {
			writeProblem(w, kindInvalidParameter, "parameters from, to and step may be given once each")
			return
		}
		switch k {
		case "from", "to":
			ts, err := window.ParseTime(v[0])
			if err != nil {
				writeProblem(w, kindInvalidTime, k+" must be RFC 3339 or Unix seconds, from 1970 to 9999")
				return
			}
			if k == "from" {
				q.From = ts
			} else {
				q.To = ts
			}
		case "step":
			d, err := window.ParseDuration(v[0])
			if err != nil || d <= 0 {
				writeProblem(w, kindInvalidStep, "step must be a positive duration such as 1m, 15m, 1h or 1d")
				return
			}
			q.Step = d
		default:
			writeProblem(w, kindInvalidParameter, "unknown query parameter "+strconv.Quote(k))
			return
		}
	}
	plan, err := s.Windows.Plan(q, s.Counters.Now())
	switch {
	case errors.Is(err, window.ErrEmptyRange):
		writeProblem(w, kindInvalidRange, "from must be before to")
		return
	case errors.Is(err, window.ErrBadStep), errors.Is(err, window.ErrStepNotMultiple):
		writeProblem(w, kindInvalidStep, "step must be a whole multiple of a resolution ("+s.Windows.String()+")")
		return
	case errors.Is(err, window.ErrTooManyPoints):
		writeProblem(w, kindTooManyPoints, "at most 11000 points per query; use a larger step or a shorter range")
		return
	case err != nil:
		s.writeError(w, r, err)
		return
	}
	points, err := s.Counters.Range(name, plan)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, "application/json", appendRangeResponse(make([]byte, 0, 64+48*len(points)), name, plan, points))
}

func appendRangeResponse(b []byte, name string, p window.Plan, points []uint64) []byte {
	b = append(b, `{"name":"`...)
	b = append(b, name...)
	b = append(b, `","from":"`...)
	b = p.From.AppendFormat(b, time.RFC3339)
	b = append(b, `","to":"`...)
	b = p.To.AppendFormat(b, time.RFC3339)
	b = append(b, `","step":"`...)
	b = append(b, window.FormatDuration(p.Step)...)
	b = append(b, `","resolution":"`...)
	b = append(b, window.FormatDuration(p.Resolution.Size)...)
	b = append(b, `","points":[`...)
	var sum uint64
	stepSec := int64(p.Step / time.Second)
	for i, c := range points {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"start":"`...)
		b = appendUnixRFC3339(b, p.From.Unix()+int64(i)*stepSec)
		b = append(b, `","count":`...)
		b = strconv.AppendUint(b, c, 10)
		b = append(b, '}')
		sum = satAdd(sum, c)
	}
	b = append(b, `],"sum":`...)
	b = strconv.AppendUint(b, sum, 10)
	b = append(b, `,"partial":`...)
	b = strconv.AppendBool(b, p.Partial)
	return append(b, "}\n"...)
}

// list serves GET /v1/counters.
func (s *server) list(w http.ResponseWriter, r *http.Request) {
	prefix, after, limit := "", "", 100
	for k, v := range queryOf(r) {
		if len(v) != 1 {
			writeProblem(w, kindInvalidParameter, "parameters prefix, after and limit may be given once each")
			return
		}
		switch k {
		case "prefix", "after":
			if !validNamePrefix(v[0]) {
				writeProblem(w, kindInvalidParameter, k+" must be up to 128 bytes of A-Z a-z 0-9 _ . : -")
				return
			}
			if k == "prefix" {
				prefix = v[0]
			} else {
				after = v[0]
			}
		case "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > 1000 {
				writeProblem(w, kindInvalidParameter, "limit must be a whole number from 1 to 1000")
				return
			}
			limit = n
		default:
			writeProblem(w, kindInvalidParameter, "unknown query parameter "+strconv.Quote(k))
			return
		}
	}
	page, next, err := s.Counters.List(prefix, after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	type item struct {
		Name  string `json:"name"`
		Total uint64 `json:"total"`
	}
	out := struct {
		Counters []item  `json:"counters"`
		Next     *string `json:"next"`
	}{Counters: make([]item, len(page))}
	for i, c := range page {
		out.Counters[i] = item{c.Name, c.Total}
	}
	if next != "" {
		out.Next = &next
	}
	writeJSON(w, http.StatusOK, out)
}
