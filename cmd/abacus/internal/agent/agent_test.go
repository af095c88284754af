package agent_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/internal/buildinfo"
	"github.com/abacus-counter/abacus/store"
)

func startAgent(t *testing.T, dir string, mutate ...func(*agent.Config)) *agent.Agent {
	t.Helper()
	cfg := agent.DefaultConfig()
	cfg.DataDir = dir
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.NodeName = "n1"
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go a.Serve()
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	return a
}

func call(t *testing.T, a *agent.Agent, method, path string, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.Addr()+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAgent_DefaultConfig(t *testing.T) {
	cfg := agent.DefaultConfig()
	if cfg.DataDir != "./abacus-data" || cfg.HTTPAddr != "127.0.0.1:4000" || cfg.DC != "dc1" {
		t.Fatalf("defaults = %+v", cfg)
	}
}

// TestAgent_SeedRoutes_SurviveRestart is the quick start: / answers 0,
// /inc?amount=1 answers 1, and after a restart / still answers 1.
func TestAgent_SeedRoutes_SurviveRestart(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir)
	if code, _, body := call(t, a, "GET", "/", ""); code != 200 || body != "0\n" {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, _, body := call(t, a, "GET", "/inc?amount=1", ""); code != 200 || body != "1\n" {
		t.Fatalf("GET /inc = %d %q", code, body)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	a = startAgent(t, dir)
	if code, _, body := call(t, a, "GET", "/", ""); code != 200 || body != "1\n" {
		t.Fatalf("GET / after restart = %d %q", code, body)
	}
}

func TestAgent_Idempotency_AcrossRestart(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir)
	key := []string{"Idempotency-Key", "pay-7", "Content-Type", "application/json"}
	code, _, first := call(t, a, "POST", "/v1/counters/orders/increment", `{"amount":5}`, key...)
	if code != 200 {
		t.Fatalf("first = %d %s", code, first)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	a = startAgent(t, dir)
	code, hdr, again := call(t, a, "POST", "/v1/counters/orders/increment", `{"amount":5}`, key...)
	if code != 200 || again != first || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after restart = %d %q (replayed %q), want %q replayed", code, again, hdr.Get("Idempotent-Replayed"), first)
	}
	if code, _, body := call(t, a, "POST", "/v1/counters/orders/increment", `{"amount":6}`, key...); code != 422 {
		t.Fatalf("reuse with another body = %d %s", code, body)
	}
	if _, _, body := call(t, a, "GET", "/v1/counters/orders", ""); body != `{"name":"orders","total":5}`+"\n" {
		t.Fatalf("total = %s", body)
	}
	// The batch route honours keys too.
	bkey := []string{"Idempotency-Key", "batch-1"}
	batch := `{"increments":[{"name":"orders","amount":2},{"name":"refunds"}]}`
	if code, _, body := call(t, a, "POST", "/v1/increments", batch, bkey...); code != 200 || body != `{"accepted":2}`+"\n" {
		t.Fatalf("batch = %d %s", code, body)
	}
	if code, hdr, body := call(t, a, "POST", "/v1/increments", batch, bkey...); code != 200 || hdr.Get("Idempotent-Replayed") != "true" || body != `{"accepted":2}`+"\n" {
		t.Fatalf("batch retry = %d %s", code, body)
	}
	if _, _, body := call(t, a, "GET", "/v1/counters/orders?detail=true", ""); !strings.Contains(body, `"total":7`) || !strings.Contains(body, `"by_dc":{"dc1":7}`) || !strings.Contains(body, `"node":"n1"`) {
		t.Fatalf("detail = %s", body)
	}
}

// TestAgent_Shutdown_FinishesInFlight shuts down while writers are busy:
// every write either got its 200 before the server stopped or failed at the
// client, and everything acknowledged is there after the restart.
func TestAgent_Shutdown_FinishesInFlight(t *testing.T) {
	dir := t.TempDir()
	a := startAgent(t, dir)
	var mu sync.Mutex
	acked := 0
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Post("http://"+a.Addr()+"/v1/counters/s/increment", "", nil)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked++
					mu.Unlock()
				} else if resp.StatusCode != 503 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	a = startAgent(t, dir)
	_, _, body := call(t, a, "GET", "/v1/counters/s", "")
	if want := fmt.Sprintf(`{"name":"s","total":%d}`+"\n", acked); body != want {
		t.Fatalf("after graceful restart: %s, want %s", body, want)
	}
	if acked == 0 {
		t.Fatal("no write was acknowledged")
	}
}

func TestAgent_Metrics(t *testing.T) {
	a := startAgent(t, t.TempDir(), func(c *agent.Config) { c.Durability = store.Fsync })
	_, _, before := call(t, a, "GET", "/metrics", "")
	call(t, a, "POST", "/v1/counters/m/increment", "")
	call(t, a, "GET", "/nope", "")
	code, _, body := call(t, a, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("metrics = %d", code)
	}
	// Prometheus's own linter: names, units, help texts, counter suffixes.
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	// The key series move with traffic.
	for _, series := range []string{
		`abacus_store_commits_total`,
		`abacus_increments_total{durability="fsync",route="single"}`,
		`abacus_store_seq`,
	} {
		if v0, v1 := metricValue(before, series), metricValue(body, series); v1 <= v0 {
			t.Errorf("%s did not move: %v → %v", series, v0, v1)
		}
	}
	for _, want := range []string{
		`abacus_http_requests_total{code="200",method="POST",route="/v1/counters/{name}/increment"} 1`,
		`abacus_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`abacus_store_commit_batch_size_count 1`,
		`abacus_store_seq 1`,
		`abacus_increments_total{durability="fsync",route="single"} 1`,
		`abacus_node_ready 1`,
		`abacus_node_accepting_writes 1`,
		`go_goroutines`,
		fmt.Sprintf(`abacus_build_info{goversion=%q,revision=%q,version=%q} 1`, buildinfo.Get().GoVersion, buildinfo.Get().Revision, buildinfo.Get().Version),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// metricValue is the value of one series in Prometheus text, 0 if absent.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

func TestAgent_PortInUse(t *testing.T) {
	a := startAgent(t, t.TempDir())
	cfg := agent.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = a.Addr()
	cfg.GossipAddr = "127.0.0.1:0"
	if _, err := agent.New(cfg); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second agent on %s: %v", a.Addr(), err)
	}
}
