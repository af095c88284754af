package main_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// TestE2E_RecoverDamagedNode damages one node's state.db in a three-node
// cluster of real processes, runs abacus recover on it, and restarts it:
// it refuses writes while no peer can give back its own entries, takes
// them once its peers are back and have, and then every node's every count
// equals what was acknowledged.
func TestE2E_RecoverDamagedNode(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	key := gossipKey(t)
	common := []string{"--gossip-profile", "local", "--gossip-key-file", key}
	n1 := startNode(t, t.TempDir(), append(common, "--node-name", "n1")...)
	n2 := startNode(t, t.TempDir(), append(common, "--node-name", "n2", "--join", n1.gossip)...)
	n3 := startNode(t, t.TempDir(), append(common, "--node-name", "n3", "--join", n1.gossip)...)
	nodes := []*node{n1, n2, n3}

	acked := map[string]uint64{}
	for round := 0; round < 3; round++ {
		for i, n := range nodes {
			batch := map[string]uint64{}
			for c := 0; c < 50; c++ {
				name := fmt.Sprintf("r.%02d", c)
				batch[name] = uint64(1 + round + i*c)
				acked[name] += batch[name]
			}
			postBatch(t, n.url, batch)
		}
	}
	converged := func() (bool, string) {
		for _, n := range nodes {
			got, status, body := listTotals(t, n.url, "r.")
			if status != 200 {
				return false, fmt.Sprintf("%s: %d %s", n.url, status, body)
			}
			for name, w := range acked {
				if got[name] != w {
					return false, fmt.Sprintf("%s: %s = %d, acknowledged %d", n.url, name, got[name], w)
				}
			}
		}
		return true, ""
	}
	testenv.WaitFor(t, 30*time.Second, converged)

	// Damage n2's state.db while it is stopped: it refuses to start.
	n2.stop()
	state := filepath.Join(n2.dataDir, "state.db")
	// Half of what it holds: bbolt grows a file ahead of its pages, so half
	// of the file's length may cut nothing in use.
	if err := os.Truncate(state, testenv.BoltHighWater(t, state)/2); err != nil {
		t.Fatal(err)
	}
	o := tryStart(t, n2.dataDir, n2.args...)
	if o.n != nil {
		t.Fatalf("n2 served a state.db cut in half")
	}
	checkRefusal(t, o, "state.db")

	out, err := exec.Command(abacusBinary(t), "recover", "--data-dir", n2.dataDir).CombinedOutput()
	if err != nil {
		t.Fatalf("abacus recover: %v\n%s", err, out)
	}
	t.Logf("abacus recover:\n%s", out)

	// With its peers stopped, nobody can give n2 its entries back: it
	// serves, but takes no write.
	n1.stop()
	n3.stop()
	n2.restart()
	if !strings.Contains(n2.logs.String(), "restored") {
		t.Errorf("n2's log does not say it is restored:\n%s", n2.logs)
	}
	for i := 0; i < 3; i++ {
		resp, err := httpClient.Post(n2.url+"/v1/counters/r.00/increment", "application/json", bytes.NewReader(nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a write to the recovered n2 with no peer up: %d, want 503", resp.StatusCode)
		}
	}
	// n1 comes back where n2 and n3 look for it.
	n1.args = append(n1.args, "--gossip-addr", n1.gossip)
	n1.restart()
	n3.restart()
	// It takes writes once its peers have given back its entries...
	testenv.WaitFor(t, 60*time.Second, func() (bool, string) {
		resp, err := httpClient.Post(n2.url+"/v1/counters/r.00/increment", "application/json", bytes.NewReader(nil))
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			acked["r.00"]++
			return true, ""
		}
		return false, fmt.Sprintf("n2 answers a write with %d %s", resp.StatusCode, body)
	})
	// ... and then every node holds every acknowledged count.
	testenv.WaitFor(t, 60*time.Second, converged)
}
