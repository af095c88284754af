package api

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ProblemTypePrefix starts every problem type; the rest is a stable slug.
const ProblemTypePrefix = "urn:abacus:problem:"

// problem kinds: slug, title and status never change for a slug.
type kind struct {
	slug   string
	title  string
	status int
}

var (
	kindInvalidName       = kind{"invalid-name", "Invalid counter name", http.StatusBadRequest}
	kindInvalidAmount     = kind{"invalid-amount", "Invalid amount", http.StatusBadRequest}
	kindInvalidTime       = kind{"invalid-time", "Invalid time", http.StatusBadRequest}
	kindFutureTime        = kind{"future-time", "Event time too far in the future", http.StatusBadRequest}
	kindInvalidRange      = kind{"invalid-range", "Invalid range", http.StatusBadRequest}
	kindInvalidStep       = kind{"invalid-step", "Invalid step", http.StatusBadRequest}
	kindTooManyPoints     = kind{"too-many-points", "Range has too many points", http.StatusBadRequest}
	kindInvalidJSON       = kind{"invalid-json", "Malformed JSON body", http.StatusBadRequest}
	kindDuplicateKey      = kind{"duplicate-json-key", "JSON key given twice", http.StatusBadRequest}
	kindFieldCase         = kind{"json-field-case", "JSON field name in the wrong case", http.StatusBadRequest}
	kindJSONNull          = kind{"json-null", "JSON null where a value belongs", http.StatusBadRequest}
	kindInvalidParameter  = kind{"invalid-parameter", "Invalid parameter", http.StatusBadRequest}
	kindInvalidIdemKey    = kind{"invalid-idempotency-key", "Invalid Idempotency-Key", http.StatusBadRequest}
	kindUnauthorized      = kind{"unauthorized", "Missing or invalid token", http.StatusUnauthorized}
	kindForbidden         = kind{"forbidden", "Token lacks the required role", http.StatusForbidden}
	kindNotFound          = kind{"not-found", "Not found", http.StatusNotFound}
	kindUnknownMember     = kind{"unknown-member", "No such member", http.StatusNotFound}
	kindMemberAlive       = kind{"member-alive", "Member is alive", http.StatusConflict}
	kindMethodNotAllowed  = kind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed}
	kindOverflow          = kind{"overflow", "Counter would overflow", http.StatusConflict}
	kindBodyTooLarge      = kind{"body-too-large", "Request body too large", http.StatusRequestEntityTooLarge}
	kindTooManyIncrements = kind{"too-many-increments", "Too many increments in one batch", http.StatusRequestEntityTooLarge}
	kindUnsupportedType   = kind{"unsupported-media-type", "Unsupported content type", http.StatusUnsupportedMediaType}
	kindIdemReused        = kind{"idempotency-key-reused", "Idempotency-Key reused with a different request", http.StatusUnprocessableEntity}
	kindInternal          = kind{"internal", "Internal error", http.StatusInternalServerError}
	kindUnavailable       = kind{"unavailable", "Service unavailable", http.StatusServiceUnavailable}
)

// apiError is an error that knows its problem kind.
type apiError struct {
	kind   kind
	detail string
}

func (e *apiError) Error() string { return e.kind.slug + ": " + e.detail }

func errorf(k kind, detail string) *apiError { return &apiError{kind: k, detail: detail} }

func writeProblem(w http.ResponseWriter, k kind, detail string) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	w.WriteHeader(k.status)
	b, _ := json.Marshal(Problem{Type: ProblemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: detail})
	w.Write(append(b, '\n'))
}

func writeAPIError(w http.ResponseWriter, e *apiError) { writeProblem(w, e.kind, e.detail) }
