// Package api is Abacus's HTTP interface: the chi router, request parsing and
// validation, RFC 9457 problem responses, HTTP metrics, and openapi.json, the
// OpenAPI description of all of it (served at /v1/openapi.json and held to the
// code by openapi_test.go).
//
// The package depends only on the interfaces it declares (Counters, Cluster)
// and on the pure window package; cmd/abacus adapts the store and the gossip
// layer to them. NewHandler returns an http.Handler that is safe for
// concurrent use. No input reaches a panic: every parse is bounded and every
// failure becomes a 4xx problem with a stable type; a 5xx means the node
// itself is unwell (shutting down, or its disk failed).
package api
