package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/window"
)

// failingSnapshot writes `before` bytes of a database, then fails.
type failingSnapshot struct{ before int }

func (f failingSnapshot) Snapshot(ctx context.Context, w io.Writer) error {
	if f.before > 0 {
		if _, err := w.Write(make([]byte, f.before)); err != nil {
			return err
		}
	}
	return errors.New("disk on fire")
}
func (failingSnapshot) SnapshotName() string { return "x.db" }

// A snapshot that fails before any byte is a 503 problem; one that fails
// part way cuts the connection, so that the client sees an error and never
// a short file that looks complete.
func TestAPI_SnapshotFailures(t *testing.T) {
	h := api.NewHandler(api.Deps{Counters: newFake(), Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig(),
		Registerer: prometheus.NewRegistry(), Snapshot: failingSnapshot{}})
	w := do(t, h, call{"GET", "/v1/snapshot", "", nil})
	if w.Code != http.StatusServiceUnavailable || problemOf(t, w).Status != http.StatusServiceUnavailable {
		t.Fatalf("snapshot failing at once: %d %s", w.Code, w.Body)
	}

	srv := httptest.NewServer(api.NewHandler(api.Deps{Counters: newFake(), Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig(),
		Registerer: prometheus.NewRegistry(), Snapshot: failingSnapshot{before: 64 << 10}}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/snapshot")
	n := 0
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		n = len(b)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatalf("a snapshot that failed after part of the file read as a complete %d-byte file", n)
	}
}

// abacus_increments_total and abacus_increment_amount_total count applied
// increments by route; an idempotent replay is not counted again.
func TestAPI_IncrementMetricsSkipReplays(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := api.NewHandler(api.Deps{Counters: newFake(), Cluster: &apitest.Cluster{}, Windows: window.DefaultConfig(), Registerer: reg})
	key := map[string]string{"Idempotency-Key": "once"}
	for range 2 {
		if w := do(t, h, call{"POST", "/v1/counters/m/increment?amount=3", "", key}); w.Code != 200 {
			t.Fatalf("increment: %d %s", w.Code, w.Body)
		}
	}
	if w := do(t, h, call{"POST", "/v1/increments", `{"increments":[{"name":"m","amount":2},{"name":"n","amount":5}]}`, nil}); w.Code != 200 {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()+"/"+label(m, "route")] += m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"abacus_increments_total/single": 1, "abacus_increment_amount_total/single": 3,
		"abacus_increments_total/batch": 2, "abacus_increment_amount_total/batch": 7,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
