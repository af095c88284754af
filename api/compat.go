package api

import (
	"net/http"
	"strconv"
)

// The seed's routes, kept so that its clients keep working: plain-text totals
// of the counter "default" or ?name=.

const defaultCounter = "default"

func compatName(r *http.Request) (string, *apiError) {
	q := queryOf(r)
	name := defaultCounter
	for k, v := range q {
		switch {
		case k == "name" && len(v) == 1:
			name = v[0]
		case k == "amount" && r.URL.Path == "/inc" && len(v) == 1:
		default:
			return "", errorf(kindInvalidParameter, "unknown or repeated query parameter "+strconv.Quote(k))
		}
	}
	return name, checkName(name)
}

// compatTotal serves GET /: the total as text.
func (s *server) compatTotal(w http.ResponseWriter, r *http.Request) {
	name, e := compatName(r)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	total, err := s.Counters.Total(name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, "text/plain; charset=utf-8", append(strconv.AppendUint(nil, total, 10), '\n'))
}

// compatInc serves GET and POST /inc?amount=N[&name=X]: the new total as text.
// GET increments because the seed's clients do; HEAD, which must be safe,
// does not reach it (see NewHandler).
func (s *server) compatInc(w http.ResponseWriter, r *http.Request) {
	name, e := compatName(r)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	amount := uint64(1)
	if v := r.URL.Query().Get("amount"); r.URL.Query().Has("amount") {
		if amount, e = parseAmount(v); e != nil {
			writeAPIError(w, e)
			return
		}
	}
	key, e := idempotencyKey(r)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	req := &WriteRequest{
		Increments:     []Increment{{Name: name, Amount: amount, TS: s.Counters.Now()}},
		IdempotencyKey: key,
		Render: func(totals []uint64) []byte {
			return append(strconv.AppendUint(nil, totals[0], 10), '\n')
		},
	}
	if key != "" {
		// GET and POST of the same /inc are the same request.
		req.Fingerprint = fingerprint(&http.Request{Method: "INC", URL: r.URL}, nil)
	}
	s.write(w, r, req, "text/plain; charset=utf-8", "seed")
}
