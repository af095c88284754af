package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/store"
)

// TestCountsByDC_NetOfDuplicates: the per-datacenter reads behind the
// Prometheus API count a keyed request once, like Total and Range: the
// duplicate copy's datacenter keeps only what that copy did not add twice.
func TestCountsByDC_NetOfDuplicates(t *testing.T) {
	c := newClock(t0)
	rs := replicas(t, c, 2)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	ts := c.Now()
	if _, err := a.Apply(ctx, idemReq("k", 1, inc("x", 4, ts))); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	if _, err := b.Apply(ctx, idemReq("k", 1, inc("x", 4, ts))); err != nil {
		t.Fatal(err)
	}
	mustApply(t, b, inc("x", 1, ts))
	meshSync(t, a, b)
	for _, s := range rs {
		s.SetReplicaInfo(store.ReplicaInfo{ID: a.Replica(), Node: "a", DC: "ams"})
		s.SetReplicaInfo(store.ReplicaInfo{ID: b.Replica(), Node: "b", DC: "hkg"})
	}
	minute := ts.Truncate(time.Minute).Unix()
	for _, check := range []string{"in memory", "from state.db"} {
		for _, s := range rs {
			got, err := s.CountsByDC("x", []store.Span{{Res: 60, From: minute, To: minute + 60}})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]uint64{"ams": 4, "hkg": 1}
			if len(got) != len(want) {
				t.Fatalf("%s: %d datacenters %+v, want %d", check, len(got), got, len(want))
			}
			for _, dc := range got {
				if dc.Total != want[dc.DC] || dc.Windows[0][0] != want[dc.DC] {
					t.Errorf("%s: %s total %d minute %d, want %d", check, dc.DC, dc.Total, dc.Windows[0][0], want[dc.DC])
				}
			}
			if err := s.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}
