package main_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// TestE2E_ClusterKillDuringLoad runs three real agents, drives clients at all
// of them, SIGKILLs one mid-load, restarts it on its data directory, and
// checks that all three converge to the acknowledged totals: every total and
// every minute and hour window within acked ≤ count ≤ acked + in flight, and
// identical on every node.
func TestE2E_ClusterKillDuringLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	common := []string{"--gossip-profile", "local", "--gossip-key-file", gossipKey(t)}
	n1 := startNode(t, t.TempDir(), append(common, "--node-name", "n1", "--dc", "ams")...)
	n2 := startNode(t, t.TempDir(), append(common, "--node-name", "n2", "--dc", "ams", "--join", n1.gossip)...)
	n3 := startNode(t, t.TempDir(), append(common, "--node-name", "n3", "--dc", "hkg", "--join", n1.gossip)...)
	nodes := []*node{n1, n2, n3}
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		for _, n := range nodes {
			var c struct{ Members []struct{ State string } }
			getJSON(t, n.url+"/v1/cluster", &c)
			alive := 0
			for _, m := range c.Members {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false, fmt.Sprintf("%s sees %d alive members", n.url, alive)
			}
		}
		return true, ""
	})

	names := []string{"c.a", "c.b", "c.c", "c.d"}
	l := newLedger()
	stop := make(chan struct{})
	var waits []func() (int64, int64)
	for _, n := range nodes {
		waits = append(waits, load(n.url, 12, names, l, stop))
	}
	time.Sleep(2 * time.Second)
	n3.kill()
	time.Sleep(time.Second) // the others keep counting without it
	close(stop)
	var ok, unknown int64
	for _, w := range waits {
		o, u := w()
		ok, unknown = ok+o, unknown+u
	}
	t.Logf("%d acknowledged, %d in flight at SIGKILL", ok, unknown)
	if ok < 100 {
		t.Fatalf("only %d requests acknowledged", ok)
	}
	n3.restart()

	var mu sync.Mutex
	start := time.Now()
	testenv.WaitFor(t, 60*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		ref := counts(t, n1.url, names)
		for _, n := range nodes[1:] {
			got := counts(t, n.url, names)
			for k, v := range ref {
				if got[k] != v {
					return false, fmt.Sprintf("%s: %s = %d, n1 has %d", n.url, k, got[k], v)
				}
			}
		}
		return true, ""
	})
	t.Logf("all three agree %v after the restart", time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		checkLedger(t, counts(t, n.url, names), nil, l)
	}
}
