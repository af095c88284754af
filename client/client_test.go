package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/client"
	"github.com/abacus-counter/abacus/window"
)

// testCluster is n1 with a live peer n2 that lags and a dead peer n3.
func testCluster(notReady error) *apitest.Cluster {
	return &apitest.Cluster{NotReady: notReady, Peers: []api.Member{
		{Name: "n2", Replica: "r2", DC: "dc2", Addr: "127.0.0.2:7946", HTTP: "127.0.0.2:4000", State: "alive", Lag: &api.Lag{Seqs: 3, Seconds: 1.5}},
		{Name: "n3", Replica: "r3", DC: "dc3", Addr: "127.0.0.3:7946", HTTP: "127.0.0.3:4000", State: "dead", Lag: &api.Lag{Seqs: 40, Seconds: 600}, Since: &deadSince},
	}}
}

var deadSince = time.Date(2026, 11, 23, 11, 50, 0, 0, time.UTC)

func newFake(now time.Time) *apitest.Counters { return apitest.NewCounters(now) }

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// startAPI serves the real api handler over f and returns a client of it.
func startAPI(t *testing.T, f *apitest.Counters, cl *apitest.Cluster) *client.Client {
	t.Helper()
	srv := httptest.NewServer(api.NewHandler(api.Deps{Counters: f, Cluster: cl, ForceLeave: cl, Windows: window.DefaultConfig()}))
	t.Cleanup(srv.Close)
	return mustClient(t, client.Config{BaseURL: srv.URL, Timeout: 10 * time.Second})
}

func mustClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClient_IncGet(t *testing.T) {
	ctx := context.Background()
	c := startAPI(t, newFake(testNow), testCluster(nil))
	if total, err := c.Get(ctx, "signups"); err != nil || total != 0 {
		t.Fatalf("Get before = %d, %v; want 0", total, err)
	}
	ts := testNow.Add(-90 * time.Minute)
	r, err := c.Inc(ctx, "signups", 5, client.IncOptions{TS: ts})
	if err != nil {
		t.Fatal(err)
	}
	want := client.IncResult{Name: "signups", Amount: 5, TS: ts, Total: 5}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("Inc = %+v, want %+v", r, want)
	}
	r, err = c.Inc(ctx, "signups", 2, client.IncOptions{})
	if err != nil || r.Total != 7 || !r.TS.Equal(testNow) || r.Replayed {
		t.Fatalf("Inc without ts = %+v, %v; want total 7 at the node's now", r, err)
	}
	if total, err := c.Get(ctx, "signups"); err != nil || total != 7 {
		t.Fatalf("Get = %d, %v; want 7", total, err)
	}
}

func TestClient_Inc_Idempotent(t *testing.T) {
	ctx := context.Background()
	c := startAPI(t, newFake(testNow), testCluster(nil))
	first, err := c.Inc(ctx, "orders", 3, client.IncOptions{IdempotencyKey: "order-4711"})
	if err != nil || first.Total != 3 || first.Replayed {
		t.Fatalf("first = %+v, %v", first, err)
	}
	again, err := c.Inc(ctx, "orders", 3, client.IncOptions{IdempotencyKey: "order-4711"})
	if err != nil || again.Total != 3 || !again.Replayed {
		t.Fatalf("retry = %+v, %v; want the first answer, replayed", again, err)
	}
	_, err = c.Inc(ctx, "orders", 4, client.IncOptions{IdempotencyKey: "order-4711"})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 422 || e.Slug() != "idempotency-key-reused" {
		t.Fatalf("reused key = %v; want a 422 idempotency-key-reused", err)
	}
	if total, _ := c.Get(ctx, "orders"); total != 3 {
		t.Fatalf("total = %d, want 3", total)
	}
}

func TestClient_Errors(t *testing.T) {
	ctx := context.Background()
	f := newFake(testNow)
	c := startAPI(t, f, testCluster(errors.New("joining the cluster")))
	f.Set("big", math.MaxUint64-1)

	tests := []struct {
		name   string
		call   func() error
		status int
		slug   string
		text   string // the whole Error()
	}{
		{"bad name", func() error { _, err := c.Get(ctx, "no spaces"); return err },
			400, "invalid-name", "400 invalid-name: counter names are 1 to 128 bytes of A-Z a-z 0-9 _ . : -"},
		{"overflow", func() error { _, err := c.Inc(ctx, "big", 2, client.IncOptions{}); return err },
			409, "overflow", "409 overflow: the increment would carry a counter past 18446744073709551615; nothing was applied"},
		{"zero amount", func() error { _, err := c.Inc(ctx, "x", 0, client.IncOptions{}); return err },
			400, "invalid-amount", ""},
		{"future ts", func() error {
			_, err := c.Inc(ctx, "x", 1, client.IncOptions{TS: testNow.Add(time.Hour)})
			return err
		}, 400, "future-time", ""},
		{"bad step", func() error { _, err := c.Range(ctx, "x", client.RangeQuery{Step: 90 * time.Second}); return err },
			400, "invalid-step", ""},
		{"empty range", func() error {
			_, err := c.Range(ctx, "x", client.RangeQuery{From: testNow, To: testNow.Add(-time.Hour)})
			return err
		}, 400, "invalid-range", ""},
		{"bad limit", func() error { _, _, err := c.List(ctx, "", "", 5000); return err },
			400, "invalid-parameter", ""},
		{"not ready", func() error { return c.Ready(ctx) },
			503, "unavailable", "503 unavailable: joining the cluster"},
		{"no snapshot route", func() error { _, err := c.Snapshot(ctx, io.Discard); return err },
			404, "not-found", "404 not-found: no route for GET /v1/snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var e *client.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *client.Error", err, err)
			}
			if e.Status != tt.status || e.Slug() != tt.slug || e.Type != api.ProblemTypePrefix+tt.slug || e.Title == "" {
				t.Fatalf("err = %+v, want %d %s", e, tt.status, tt.slug)
			}
			if tt.text != "" && e.Error() != tt.text {
				t.Fatalf("Error() = %q, want %q", e.Error(), tt.text)
			}
		})
	}
	if err := c.Healthy(ctx); err != nil {
		t.Fatalf("Healthy = %v", err)
	}
	if _, err := c.Get(ctx, ""); err == nil {
		t.Fatal("Get with an empty name succeeded")
	}
}

func TestClient_Batch(t *testing.T) {
	ctx := context.Background()
	f := newFake(testNow)
	c := startAPI(t, f, testCluster(nil))
	ts := testNow.Add(-time.Minute)
	incs := []client.Increment{{Name: "a", Amount: 2}, {Name: "b", Amount: 3, TS: ts}, {Name: "a", Amount: 4}}
	r, err := c.IncBatch(ctx, incs, "batch-1")
	if err != nil || r != (client.BatchResult{Accepted: 3}) {
		t.Fatalf("IncBatch = %+v, %v", r, err)
	}
	r, err = c.IncBatch(ctx, incs, "batch-1")
	if err != nil || r != (client.BatchResult{Accepted: 3, Replayed: true}) {
		t.Fatalf("retried IncBatch = %+v, %v", r, err)
	}
	for name, want := range map[string]uint64{"a": 6, "b": 3} {
		if got, err := c.Get(ctx, name); err != nil || got != want {
			t.Fatalf("Get(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	if incs := f.Increments(); incs[1].TS != ts || incs[0].TS != testNow {
		t.Fatalf("event times = %v, %v; want %v and the node's now", incs[1].TS, incs[0].TS, ts)
	}
	_, err = c.IncBatch(ctx, []client.Increment{{Name: "ok", Amount: 1}, {Name: "bad name", Amount: 1}}, "")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 400 || !strings.HasPrefix(e.Detail, "increments[1]: ") {
		t.Fatalf("bad batch = %v; want a 400 naming increments[1]", err)
	}
}

func TestClient_Detail(t *testing.T) {
	ctx := context.Background()
	f := newFake(testNow)
	f.AddReplica("hits", api.ReplicaCount{Replica: "r2", Node: "n2", DC: "dc2", Count: 10})
	c := startAPI(t, f, testCluster(nil))
	if _, err := c.Inc(ctx, "hits", 4, client.IncOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Detail(ctx, "hits")
	if err != nil {
		t.Fatal(err)
	}
	want := client.Detail{
		Name: "hits", Total: 14,
		Replicas: []client.ReplicaCount{{Replica: "r1", Node: "n1", DC: "dc1", Count: 4}, {Replica: "r2", Node: "n2", DC: "dc2", Count: 10}},
		ByDC:     map[string]uint64{"dc1": 4, "dc2": 10},
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("Detail = %+v\nwant %+v", d, want)
	}
}

func TestClient_Range(t *testing.T) {
	ctx := context.Background()
	c := startAPI(t, newFake(testNow), testCluster(nil))
	base := testNow.Add(-10 * time.Minute)
	for _, inc := range []struct {
		at     time.Duration
		amount uint64
	}{{10 * time.Second, 3}, {59 * time.Second, 1}, {time.Minute + 5*time.Second, 4}, {3 * time.Minute, 5}, {6 * time.Minute, 100}} {
		if _, err := c.Inc(ctx, "clicks", inc.amount, client.IncOptions{TS: base.Add(inc.at)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Range(ctx, "clicks", client.RangeQuery{From: base, To: base.Add(5 * time.Minute), Step: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	want := client.Range{Name: "clicks", From: base, To: base.Add(5 * time.Minute), Step: time.Minute, Resolution: time.Minute, Sum: 13}
	for i, n := range []uint64{4, 4, 0, 5, 0} {
		want.Points = append(want.Points, client.Point{Start: base.Add(time.Duration(i) * time.Minute), Count: n})
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("Range = %+v\nwant %+v", r, want)
	}

	raw, err := c.RangeJSON(ctx, "clicks", client.RangeQuery{From: base, To: base.Add(10 * time.Minute), Step: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Step   string `json:"step"`
		Points []struct {
			Count uint64 `json:"count"`
		} `json:"points"`
		Sum uint64 `json:"sum"`
	}
	if err := json.Unmarshal(raw, &m); err != nil || m.Step != "5m" || len(m.Points) != 2 || m.Points[0].Count != 13 || m.Points[1].Count != 100 || m.Sum != 113 {
		t.Fatalf("RangeJSON = %s (%v)", raw, err)
	}
}

func TestClient_List(t *testing.T) {
	ctx := context.Background()
	c := startAPI(t, newFake(testNow), testCluster(nil))
	names := []string{"app.a", "app.b", "app.c", "app.d", "app.e", "other"}
	for i, n := range names {
		if _, err := c.Inc(ctx, n, uint64(i+1), client.IncOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := c.List(ctx, "app.", "", 2)
	if err != nil || !reflect.DeepEqual(page, []client.NameTotal{{"app.a", 1}, {"app.b", 2}}) || next != "app.b" {
		t.Fatalf("List = %v, %q, %v", page, next, err)
	}
	page, next, err = c.List(ctx, "app.", "app.d", 2)
	if err != nil || !reflect.DeepEqual(page, []client.NameTotal{{"app.e", 5}}) || next != "" {
		t.Fatalf("last page = %v, %q, %v", page, next, err)
	}
	var all []client.NameTotal
	for nt, err := range c.ListAll(ctx, "app.", 2) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, nt)
	}
	if want := []client.NameTotal{{"app.a", 1}, {"app.b", 2}, {"app.c", 3}, {"app.d", 4}, {"app.e", 5}}; !reflect.DeepEqual(all, want) {
		t.Fatalf("ListAll = %v, want %v", all, want)
	}
	// Stopping early stops fetching.
	n := 0
	for range c.ListAll(ctx, "", 1) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("early break yielded %d", n)
	}
}

func TestClient_Cluster(t *testing.T) {
	c := startAPI(t, newFake(testNow), testCluster(nil))
	ci, err := c.Cluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := client.ClusterInfo{
		Self: client.Member{Name: "n1", Replica: "r1", DC: "dc1", Addr: "127.0.0.1:7946", HTTP: "127.0.0.1:4000"},
		Members: []client.Member{
			{Name: "n1", Replica: "r1", DC: "dc1", Addr: "127.0.0.1:7946", HTTP: "127.0.0.1:4000", State: "alive"},
			{Name: "n2", Replica: "r2", DC: "dc2", Addr: "127.0.0.2:7946", HTTP: "127.0.0.2:4000", State: "alive", Lag: &client.Lag{Seqs: 3, Seconds: 1.5}},
			{Name: "n3", Replica: "r3", DC: "dc3", Addr: "127.0.0.3:7946", HTTP: "127.0.0.3:4000", State: "dead", Lag: &client.Lag{Seqs: 40, Seconds: 600}, Since: &deadSince},
		},
	}
	if !reflect.DeepEqual(ci, want) {
		t.Fatalf("Cluster = %+v\nwant %+v", ci, want)
	}
}

func TestClient_ForceLeave(t *testing.T) {
	c := startAPI(t, newFake(testNow), testCluster(nil))
	ctx := context.Background()
	var ce *client.Error
	if _, err := c.ForceLeave(ctx, "n2"); !errors.As(err, &ce) || ce.Slug() != "member-alive" {
		t.Fatalf("force-leave of a live member: %v", err)
	}
	if _, err := c.ForceLeave(ctx, "n9"); !errors.As(err, &ce) || ce.Slug() != "unknown-member" {
		t.Fatalf("force-leave of an unknown member: %v", err)
	}
	told, err := c.ForceLeave(ctx, "n3")
	if err != nil || told != 1 {
		t.Fatalf("force-leave n3 = %d, %v; want 1 live peer told", told, err)
	}
	ci, err := c.Cluster(ctx)
	if err != nil || len(ci.Members) != 2 || ci.Members[1].Name != "n2" {
		t.Fatalf("members after force-leave = %+v, %v", ci.Members, err)
	}
}

func TestClient_TokenAndPrefix(t *testing.T) {
	var gotAuth, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotPath = r.Header.Get("Authorization"), r.URL.Path
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"x","total":42}`)
	}))
	t.Cleanup(srv.Close)
	c := mustClient(t, client.Config{BaseURL: srv.URL + "/abacus/", Token: "s3cret"})
	if total, err := c.Get(context.Background(), "x"); err != nil || total != 42 {
		t.Fatalf("Get = %d, %v", total, err)
	}
	if gotAuth != "Bearer s3cret" || gotPath != "/abacus/v1/counters/x" {
		t.Fatalf("Authorization %q, path %q", gotAuth, gotPath)
	}
	c = mustClient(t, client.Config{BaseURL: srv.URL})
	c.Get(context.Background(), "x")
	if gotAuth != "" {
		t.Fatalf("Authorization without a token = %q", gotAuth)
	}
}

func TestClient_NonProblemErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
	}{
		{"proxy text", 502, "text/plain; charset=utf-8", "upstream down\nmore\n", "502 Bad Gateway: upstream down"},
		{"html", 500, "text/html", "<h1>oops</h1>", "500 Internal Server Error"},
		{"bad problem", 401, "application/problem+json", "{", "401 Unauthorized"},
		{"problem with newlines", 403, "application/problem+json",
			`{"type":"urn:abacus:problem:forbidden","title":"Token lacks the required role","status":403,"detail":"needs\nadmin"}`,
			"403 forbidden: needs admin"},
		{"about:blank", 429, "application/problem+json", `{"type":"about:blank","title":"Too Many Requests","status":429}`, "429 Too Many Requests"},
		// Go's own answer to plain HTTP on a TLS port has no Content-Type.
		{"no content type", 400, "", "Client sent an HTTP request to an HTTPS server.\n", "400 Bad Request: Client sent an HTTP request to an HTTPS server."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			_, err := mustClient(t, client.Config{BaseURL: srv.URL}).Get(context.Background(), "x")
			var e *client.Error
			if !errors.As(err, &e) || e.Status != tt.status || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestClient_Unreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	_, err := mustClient(t, client.Config{BaseURL: url}).Get(context.Background(), "x")
	var e *client.Error
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want a transport error", err)
	}
}

func TestClient_Timeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	_, err := mustClient(t, client.Config{BaseURL: srv.URL, Timeout: 50 * time.Millisecond}).Get(context.Background(), "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline", err)
	}
}

func TestClient_TLS_CAFile(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := mustClient(t, client.Config{BaseURL: srv.URL}).Healthy(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v, want a certificate error", err)
	}
	if err := mustClient(t, client.Config{BaseURL: srv.URL, CAFile: caFile}).Healthy(ctx); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
}

func TestClient_New_Invalid(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	tests := []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no scheme", client.Config{BaseURL: "127.0.0.1:4000"}, "want http://host:port"},
		{"ftp", client.Config{BaseURL: "ftp://127.0.0.1"}, "want http://host:port"},
		{"no host", client.Config{BaseURL: "http://"}, "want http://host:port"},
		{"query", client.Config{BaseURL: "http://127.0.0.1:4000/?x=1"}, "no user, query"},
		{"token with newline", client.Config{BaseURL: client.DefaultBaseURL, Token: "a\nb"}, "token"},
		{"negative timeout", client.Config{BaseURL: client.DefaultBaseURL, Timeout: -time.Second}, "timeout"},
		{"missing CA file", client.Config{BaseURL: client.DefaultBaseURL, CAFile: filepath.Join(t.TempDir(), "none")}, "CA file"},
		{"CA file without PEM", client.Config{BaseURL: client.DefaultBaseURL, CAFile: notPEM}, "no PEM certificate"},
		{"CA file and HTTPClient", client.Config{BaseURL: client.DefaultBaseURL, CAFile: notPEM, HTTPClient: http.DefaultClient}, "exclusive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := client.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := client.New(client.DefaultConfig()); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
}

func TestClient_Snapshot(t *testing.T) {
	data := bytes.Repeat([]byte("bbolt page "), 100_000) // about 1 MiB, several reads
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" || r.URL.Path != "/v1/snapshot" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer admin-token" {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(401)
			io.WriteString(w, `{"type":"urn:abacus:problem:unauthorized","title":"Missing or invalid token","status":401,"detail":"send an admin token"}`)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	var buf bytes.Buffer
	n, err := mustClient(t, client.Config{BaseURL: srv.URL, Token: "admin-token", Timeout: 10 * time.Second}).Snapshot(ctx, &buf)
	if err != nil || n != int64(len(data)) || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("Snapshot = %d bytes, %v; want %d identical bytes", n, err, len(data))
	}
	_, err = mustClient(t, client.Config{BaseURL: srv.URL, Token: "wrong"}).Snapshot(ctx, io.Discard)
	if err == nil || err.Error() != "401 unauthorized: send an admin token" {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestClient_Snapshot_NotADatabase(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html>login</html>")
	}))
	t.Cleanup(srv.Close)
	var buf bytes.Buffer
	_, err := mustClient(t, client.Config{BaseURL: srv.URL}).Snapshot(context.Background(), &buf)
	if err == nil || !strings.Contains(err.Error(), "not application/octet-stream") || buf.Len() != 0 {
		t.Fatalf("err = %v, wrote %d bytes", err, buf.Len())
	}
}

// TestClient_Snapshot_Stall: the timeout bounds a pause in the stream, and
// the error says so.
func TestClient_Snapshot_Stall(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, "first part")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	var buf bytes.Buffer
	n, err := mustClient(t, client.Config{BaseURL: srv.URL, Timeout: 100 * time.Millisecond}).Snapshot(context.Background(), &buf)
	if err == nil || !strings.Contains(err.Error(), "nothing received for 100ms") || n != 10 || buf.String() != "first part" {
		t.Fatalf("Snapshot = %d (%q), %v; want the first part and a stall error", n, buf.String(), err)
	}
}
