package api

import (
	_ "embed"
	"net/http"
)

// openapiJSON is the OpenAPI 3.1 description of this API. openapi_test.go
// keeps it true: its routes must be the router's, and real responses must
// match its schemas.
//
//go:embed openapi.json
var openapiJSON []byte

// openapi serves GET /v1/openapi.json.
func (s *server) openapi(w http.ResponseWriter, r *http.Request) {
	writeBody(w, http.StatusOK, "application/json", openapiJSON)
}
