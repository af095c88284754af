package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/window"
)

type fakeSnapshot struct{}

func (fakeSnapshot) Snapshot(ctx context.Context, w io.Writer) error {
	_, err := w.Write([]byte("bolt"))
	return err
}
func (fakeSnapshot) SnapshotName() string { return "x.db" }

const tokenFile = `# test tokens
read-token-0123456789 read
write-token-0123456789 write

admin-token-0123456789 admin
`

// TestAPI_Auth checks every route with no token, an unknown token and each
// role: 401, 403 or the route's own answer.
func TestAPI_Auth(t *testing.T) {
	tokens, err := api.ParseTokens(strings.NewReader(tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	routes := []struct {
		method, path, body string
		need               api.Role
	}{
		{"GET", "/healthz", "", api.RoleNone},
		{"GET", "/readyz", "", api.RoleNone},
		{"GET", "/metrics", "", api.RoleRead},
		{"GET", "/", "", api.RoleRead},
		{"GET", "/inc", "", api.RoleWrite},
		{"POST", "/inc", "", api.RoleWrite},
		{"GET", "/v1/counters", "", api.RoleRead},
		{"GET", "/v1/counters/a", "", api.RoleRead},
		{"GET", "/v1/counters/a/range", "", api.RoleRead},
		{"POST", "/v1/counters/a/increment", "", api.RoleWrite},
		{"POST", "/v1/increments", `{"increments":[{"name":"a"}]}`, api.RoleWrite},
		{"GET", "/v1/cluster", "", api.RoleRead},
		{"GET", "/v1/snapshot", "", api.RoleAdmin},
	}
	who := []struct {
		name  string
		token string
		role  api.Role
		known bool
	}{
		{"no token", "", api.RoleNone, false},
		{"unknown token", "nope-nope-nope-nope", api.RoleNone, false},
		{"read", "read-token-0123456789", api.RoleRead, true},
		{"write", "write-token-0123456789", api.RoleWrite, true},
		{"admin", "admin-token-0123456789", api.RoleAdmin, true},
	}
	for _, metricsPublic := range []bool{false, true} {
		h := api.NewHandler(api.Deps{
			Counters: newFake(), Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig(),
			Registerer: prometheus.NewRegistry(), Metrics: http.NotFoundHandler(), MetricsPublic: metricsPublic,
			Auth: tokens, Snapshot: fakeSnapshot{},
		})
		for _, rt := range routes {
			need := rt.need
			if rt.path == "/metrics" && metricsPublic {
				need = api.RoleNone
			}
			for _, w := range who {
				hdr := map[string]string{}
				if w.token != "" {
					hdr["Authorization"] = "Bearer " + w.token
				}
				res := do(t, h, call{rt.method, rt.path, rt.body, hdr})
				var want int
				switch {
				case need == api.RoleNone:
					want = 0 // the route's own answer
				case !w.known:
					want = 401
				case w.role < need:
					want = 403
				}
				switch {
				case want == 0 && (res.Code == 401 || res.Code == 403):
					t.Errorf("%s %s as %s (metrics public %v): %d, want the route's answer", rt.method, rt.path, w.name, metricsPublic, res.Code)
				case want != 0 && res.Code != want:
					t.Errorf("%s %s as %s: %d, want %d", rt.method, rt.path, w.name, res.Code, want)
				case want == 401 && res.Header().Get("WWW-Authenticate") == "":
					t.Errorf("%s %s as %s: 401 without WWW-Authenticate", rt.method, rt.path, w.name)
				case want == 0 && rt.path != "/metrics" && res.Code >= 400:
					t.Errorf("%s %s as %s: %d %s", rt.method, rt.path, w.name, res.Code, res.Body)
				}
				if want != 0 {
					problemOf(t, res)
				}
			}
		}
	}
}

func TestTokens_Parse(t *testing.T) {
	for _, bad := range []string{
		"", "# only comments\n", "short read\n", "0123456789abcdef superuser\n", "0123456789abcdef read extra\n",
		"0123456789abcdef read\n0123456789abcdef admin\n", // a token twice
	} {
		if _, err := api.ParseTokens(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseTokens(%q) accepted", bad)
		}
	}
	tk, err := api.ParseTokens(strings.NewReader("0123456789abcdef write\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := tk.Role("0123456789abcdef"); !ok || r != api.RoleWrite {
		t.Fatalf("Role = %v %v", r, ok)
	}
	if _, ok := tk.Role("0123456789abcdeF"); ok {
		t.Fatal("a near miss matched")
	}
}
