package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/store"
)

// BenchmarkPromSum is the perf suite's prom-sum query in process, for
// profiling: sum by (counter) of rate over 1,000 counters, 6 h at 1 m.
func BenchmarkPromSum(b *testing.B) {
	cfg := agent.DefaultConfig()
	cfg.DataDir = b.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GossipAddr = "127.0.0.1:0"
	a, err := agent.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	go a.Serve()
	defer a.Shutdown(context.Background())
	end := time.Now().Truncate(time.Minute)
	for m := 1; m <= 370; m++ {
		req := &store.Request{}
		for c := range 1000 {
			req.Increments = append(req.Increments, store.Increment{Name: fmt.Sprintf("perf.ps.%d", c), Amount: 1, TS: end.Add(-time.Duration(m) * time.Minute)})
		}
		if _, err := a.Store().Apply(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Store().Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	form := url.Values{
		"query": {`sum by (counter) (rate(abacus_events_total[5m]))`},
		"start": {strconv.FormatInt(end.Add(-6*time.Hour).Unix(), 10)},
		"end":   {strconv.FormatInt(end.Unix(), 10)},
		"step":  {"60"},
	}
	b.ResetTimer()
	for range b.N {
		resp, err := http.PostForm("http://"+a.Addr()+"/api/v1/query_range", form)
		if err != nil || resp.StatusCode != 200 {
			b.Fatal(resp.StatusCode, err)
		}
		resp.Body.Close()
	}
}
