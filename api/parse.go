package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-counter/abacus/window"
)

// MaxAmount is the largest amount one increment may carry: 2^53 − 1, the
// largest integer every JSON client represents exactly.
const MaxAmount = 1<<53 - 1

const maxNameLen = 128

// validName reports whether s is a counter name: 1–128 bytes of
// [A-Za-z0-9_.:-]. (The same rule as crdt.ValidName, which api cannot import.)
func validName(s string) bool {
	return len(s) > 0 && validNamePrefix(s)
}

// validNamePrefix is validName allowing the empty string.
func validNamePrefix(s string) bool {
	if len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func checkName(s string) *apiError {
	if !validName(s) {
		return errorf(kindInvalidName, "counter names are 1 to 128 bytes of A-Z a-z 0-9 _ . : -")
	}
	return nil
}

// parseAmount parses a decimal amount, 1 to MaxAmount.
func parseAmount(s string) (uint64, *apiError) {
	// ParseUint in base 10 takes ASCII digits only: no sign, space,
	// underscore, point or exponent.
	if len(s) > 16 {
		return 0, errorf(kindInvalidAmount, "amount must be a whole number from 1 to 9007199254740991")
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < 1 || v > MaxAmount {
		return 0, errorf(kindInvalidAmount, "amount must be a whole number from 1 to 9007199254740991")
	}
	return v, nil
}

// parseAmountJSON parses an amount given as a JSON value: an integer literal.
// Absent means the default, 1; null is refused, not taken for absent.
func parseAmountJSON(raw json.RawMessage) (uint64, *apiError) {
	if len(raw) == 0 {
		return 1, nil
	}
	if string(raw) == "null" {
		return 0, errorf(kindJSONNull, "amount is null; leave it out for the default, 1")
	}
	return parseAmount(string(raw))
}

// parseTime parses an event time (RFC 3339 or Unix seconds) and refuses one
// more than window.MaxFuture ahead of now.
func parseTime(s string, now time.Time) (time.Time, *apiError) {
	ts, err := window.ParseTime(s)
	if err != nil {
		return time.Time{}, errorf(kindInvalidTime, "ts must be RFC 3339 or Unix seconds, from 1970 to 9999")
	}
	if window.CheckEventTime(ts, now) != nil {
		return time.Time{}, errorf(kindFutureTime, "ts is more than 5 minutes ahead of this node's clock")
	}
	return ts, nil
}

// parseTimeJSON parses an event time given as a JSON string or number.
// Absent means now; null is refused, not taken for absent.
func parseTimeJSON(raw json.RawMessage, now time.Time) (time.Time, *apiError) {
	if len(raw) == 0 {
		return now, nil
	}
	if string(raw) == "null" {
		return time.Time{}, errorf(kindJSONNull, "ts is null; leave it out for now")
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, errorf(kindInvalidTime, "ts must be RFC 3339 or Unix seconds")
		}
	}
	return parseTime(s, now)
}

// validIdempotencyKey: 1 to 255 printable ASCII characters.
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// incrementBody is the optional JSON body of a single increment.
type incrementBody struct {
	Amount json.RawMessage `json:"amount"`
	TS     json.RawMessage `json:"ts"`
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields, fields in the wrong case, keys given twice and trailing data.
func decodeStrict(body []byte, v any) *apiError {
	if e := checkKeys(body, v); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(kindInvalidJSON, jsonErrorDetail(err))
	}
	// Only whitespace may follow the value. (The decoder's More and Token
	// miss a stray closing bracket: More is false before one, and Token
	// fails on it.)
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return errorf(kindInvalidJSON, "trailing data after the JSON value")
	}
	return nil
}

// jsonErrorDetail describes a decoding error without echoing Go internals.
func jsonErrorDetail(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "syntax error at byte " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return "field " + typ.Field + " has the wrong type"
		}
		return "the body has the wrong shape"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "empty or truncated body"
	}
	return "the body is not valid JSON"
}

// parseSingle reads one increment from a name, the query and an optional JSON
// body. amount and ts may come from the query or the body, not both.
func parseSingle(name string, query url.Values, body []byte, now time.Time) (Increment, *apiError) {
	if e := checkName(name); e != nil {
		return Increment{}, e
	}
	for k := range query {
		if k != "amount" && k != "ts" {
			return Increment{}, errorf(kindInvalidParameter, "unknown query parameter "+strconv.Quote(k))
		}
	}
	inc := Increment{Name: name, Amount: 1, TS: now}
	qa, hasQA := query["amount"]
	qt, hasQT := query["ts"]
	if hasQA {
		if len(qa) != 1 {
			return Increment{}, errorf(kindInvalidAmount, "amount given more than once")
		}
		a, e := parseAmount(qa[0])
		if e != nil {
			return Increment{}, e
		}
		inc.Amount = a
	}
	if hasQT {
		if len(qt) != 1 {
			return Increment{}, errorf(kindInvalidTime, "ts given more than once")
		}
		ts, e := parseTime(qt[0], now)
		if e != nil {
			return Increment{}, e
		}
		inc.TS = ts
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return inc, nil
	}
	var b incrementBody
	if e := decodeStrict(body, &b); e != nil {
		return Increment{}, e
	}
	if len(b.Amount) > 0 {
		if hasQA {
			return Increment{}, errorf(kindInvalidAmount, "amount given in both the query and the body")
		}
		a, e := parseAmountJSON(b.Amount)
		if e != nil {
			return Increment{}, e
		}
		inc.Amount = a
	}
	if len(b.TS) > 0 {
		if hasQT {
			return Increment{}, errorf(kindInvalidTime, "ts given in both the query and the body")
		}
		ts, e := parseTimeJSON(b.TS, now)
		if e != nil {
			return Increment{}, e
		}
		inc.TS = ts
	}
	return inc, nil
}

// batchBody is the JSON body of POST /v1/increments.
type batchBody struct {
	Increments []batchItem `json:"increments"`
}

type batchItem struct {
	Name   string          `json:"name"`
	Amount json.RawMessage `json:"amount"`
	TS     json.RawMessage `json:"ts"`
}

// parseBatch reads and validates a whole batch; any bad item refuses it all.
// Bodies of the common shape take scanBatch's single pass; the rest, and
// every refusal, the strict way.
func parseBatch(body []byte, now time.Time) ([]Increment, *apiError) {
	if incs, ok := scanBatch(body, now); ok {
		return incs, nil
	}
	return parseBatchStrict(body, now)
}

// parseBatchStrict is parseBatch through decodeStrict, for any body.
func parseBatchStrict(body []byte, now time.Time) ([]Increment, *apiError) {
	var b batchBody
	if e := decodeStrict(body, &b); e != nil {
		return nil, e
	}
	if len(b.Increments) == 0 {
		return nil, errorf(kindInvalidParameter, "increments must hold at least one increment")
	}
	if len(b.Increments) > maxBatchItems {
		return nil, errorf(kindTooManyIncrements, "at most 10000 increments per batch")
	}
	out := make([]Increment, len(b.Increments))
	for i, it := range b.Increments {
		at := func(e *apiError) *apiError {
			e.detail = "increments[" + strconv.Itoa(i) + "]: " + e.detail
			return e
		}
		if e := checkName(it.Name); e != nil {
			return nil, at(e)
		}
		a, e := parseAmountJSON(it.Amount)
		if e != nil {
			return nil, at(e)
		}
		ts, e := parseTimeJSON(it.TS, now)
		if e != nil {
			return nil, at(e)
		}
		out[i] = Increment{Name: it.Name, Amount: a, TS: ts}
	}
	return out, nil
}
