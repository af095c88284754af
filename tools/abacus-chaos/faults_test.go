//go:build linux

package main

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func kindsOf(steps []step) map[string]int {
	m := map[string]int{}
	for _, s := range steps {
		for _, f := range s.Faults {
			m[f.Kind]++
		}
	}
	return m
}

func TestSchedule_EveryKind(t *testing.T) {
	for _, tc := range []struct {
		name       string
		nodes, dcs int
	}{{"3 nodes 2 DCs", 3, 2}, {"4 nodes 3 DCs", 4, 3}, {"5 nodes 2 DCs", 5, 2}, {"5 nodes 3 DCs", 5, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			topo := newTopology(tc.nodes, tc.dcs)
			for seed := uint64(0); seed < 50; seed++ {
				short := shortSchedule(seed, topo)
				long := longSchedule(seed, topo, 10*time.Minute)
				for _, k := range allFaults {
					if kindsOf(short)[k] != 1 {
						t.Fatalf("seed %d: short schedule has %d %s faults, want 1", seed, kindsOf(short)[k], k)
					}
					if kindsOf(long)[k] == 0 {
						t.Fatalf("seed %d: long schedule has no %s fault", seed, k)
					}
				}
				for _, s := range append(short, long...) {
					checkStep(t, topo, s)
				}
			}
		})
	}
}

// checkStep: at most one network and one process fault, a wipe alone, and
// partitions that cut something and leave every group non-empty.
func checkStep(t *testing.T, topo topology, s step) {
	t.Helper()
	net, proc := 0, 0
	for _, f := range s.Faults {
		if f.Node < 0 || f.Node >= topo.nodes {
			t.Fatalf("%s: node out of range", f)
		}
		switch {
		case f.Kind == faultWipe:
			if len(s.Faults) != 1 {
				t.Fatalf("a wipe shares its step: %v", s.Faults)
			}
		case isNetwork(f.Kind):
			net++
		default:
			proc++
		}
		switch f.Kind {
		case faultIsolateDC, faultSplit, faultBridge:
			if len(f.Cuts) == 0 {
				t.Fatalf("%s cuts nothing", f)
			}
			for _, g := range f.Groups {
				if len(g) == 0 {
					t.Fatalf("%s has an empty group", f)
				}
			}
		}
		if f.Kind == faultBridge {
			// B reaches both ends: no cut touches it.
			for _, c := range f.Cuts {
				if slices.Contains(f.Groups[1], c[0]) || slices.Contains(f.Groups[1], c[1]) {
					t.Fatalf("%s cuts the bridge group", f)
				}
			}
		}
		if f.Kind == faultSkew && (f.Offset == 0 || f.Offset > maxSkew || f.Offset < -maxSkew) {
			t.Fatalf("%s: offset out of bounds", f)
		}
	}
	if net > 1 || proc > 1 {
		t.Fatalf("step with %d network and %d process faults", net, proc)
	}
}

func TestSchedule_Seeded(t *testing.T) {
	topo := newTopology(5, 3)
	if !reflect.DeepEqual(longSchedule(7, topo, 5*time.Minute), longSchedule(7, topo, 5*time.Minute)) {
		t.Fatal("the same seed made two schedules")
	}
	if reflect.DeepEqual(longSchedule(7, topo, 5*time.Minute), longSchedule(8, topo, 5*time.Minute)) {
		t.Fatal("two seeds made the same schedule")
	}
}

func TestOnlyKinds(t *testing.T) {
	steps := shortSchedule(1, newTopology(3, 2))
	got := onlyKinds(steps, []string{faultKill, faultLoss})
	if k := kindsOf(got); len(got) != 2 || k[faultKill] != 1 || k[faultLoss] != 1 {
		t.Fatalf("onlyKinds kept %v", k)
	}
	if len(onlyKinds(steps, nil)) != 0 {
		t.Fatal("no kinds should leave no steps")
	}
}

func TestDCOf(t *testing.T) {
	for _, tc := range []struct {
		n, dcs int
		want   []int
	}{
		{3, 2, []int{0, 0, 1}},
		{4, 2, []int{0, 0, 1, 1}},
		{4, 3, []int{0, 0, 1, 2}},
		{5, 2, []int{0, 0, 0, 1, 1}},
		{5, 3, []int{0, 0, 1, 1, 2}},
	} {
		var got []int
		for i := 0; i < tc.n; i++ {
			got = append(got, dcOf(i, tc.n, tc.dcs))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("dcOf(·, %d, %d) = %v, want %v", tc.n, tc.dcs, got, tc.want)
		}
	}
}
