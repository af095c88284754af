package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/internal/testenv"
)

// keyed sends a keyed request to node: path and JSON body as a client would,
// and returns the status, whether it was a replay, and the body.
func (c *testCluster) keyed(node, path, key, body string) (int, bool, string) {
	c.t.Helper()
	req, err := http.NewRequest("POST", "http://"+c.nodes[node].Addr()+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("keyed request at %s: %v", node, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Idempotent-Replayed") == "true", string(b)
}

// waitRecords waits until node has learned n key records from peers.
func (c *testCluster) waitRecords(node string, n uint64) {
	c.t.Helper()
	testenv.WaitFor(c.t, 10*time.Second, func() (bool, string) {
		got := c.nodes[node].Store().Stats().KeyRecordsMerged
		return got >= n, fmt.Sprintf("%s learned %d key records, want %d", node, got, n)
	})
}

// TestClusterIdem_RetryElsewhereIsReplay: a retry that reaches another node
// once the key has replicated applies nothing there and answers the original
// response; another body under the key is a 422 there too.
func TestClusterIdem_RetryElsewhereIsReplay(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	ts := time.Now().Add(-time.Minute).Unix()
	body := fmt.Sprintf(`{"amount":7,"ts":%d}`, ts)
	code, replayed, first := c.keyed("a1", "/v1/counters/orders/increment", "order-1", body)
	if code != 200 || replayed {
		t.Fatalf("original: %d replayed=%v %s", code, replayed, first)
	}
	c.want["orders"] = 7
	for _, n := range []string{"b1", "c1"} {
		c.waitRecords(n, 1)
		code, replayed, got := c.keyed(n, "/v1/counters/orders/increment", "order-1", body)
		if code != 200 || !replayed || got != first {
			t.Errorf("retry at %s: %d replayed=%v %q, want the original %q replayed", n, code, replayed, got, first)
		}
		code, _, got = c.keyed(n, "/v1/counters/orders/increment", "order-1", `{"amount":8}`)
		if code != 422 {
			t.Errorf("another body at %s: %d %s, want 422", n, code, got)
		}
	}
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
	_, m := httpGet(t, "http://"+c.nodes["b1"].Addr()+"/metrics")
	for _, want := range []string{"abacus_idempotency_replays_total 1", "abacus_idempotency_records_replicated_total 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("b1's metrics lack %q", want)
		}
	}
}

// TestClusterIdem_PartitionCountsOnce: retries during a partition apply on
// both sides (a single increment and a batch); after healing every node
// counts each request once, totals and windows alike.
func TestClusterIdem_PartitionCountsOnce(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.net.Partition([]string{"a1"}, []string{"b1", "c1"})
	ts := time.Now().Add(-10 * time.Minute)
	single := fmt.Sprintf(`{"amount":5,"ts":%d}`, ts.Unix())
	batch := fmt.Sprintf(`{"increments":[{"name":"x","amount":2,"ts":%d},{"name":"y","amount":3,"ts":%d}]}`, ts.Unix(), ts.Add(-time.Hour).Unix())
	for _, n := range []string{"a1", "b1"} {
		if code, replayed, body := c.keyed(n, "/v1/counters/x/increment", "single-1", single); code != 200 || replayed {
			t.Fatalf("single at %s: %d replayed=%v %s", n, code, replayed, body)
		}
	}
	for _, n := range []string{"c1", "a1"} {
		if code, replayed, body := c.keyed(n, "/v1/increments", "batch-1", batch); code != 200 || replayed {
			t.Fatalf("batch at %s: %d replayed=%v %s", n, code, replayed, body)
		}
	}
	c.want["x"], c.want["y"] = 5+2, 3
	if got := c.nodes["a1"].Store().Stats().KeyRecordsMerged; got != 0 {
		t.Fatalf("a1 learned %d key records across the partition", got)
	}
	c.net.Heal()
	c.waitConverged(30*time.Second, ts.Add(-90*time.Minute))
	var resolved uint64
	for _, a := range c.nodes {
		resolved += a.Store().Stats().DuplicatesResolved
	}
	if resolved == 0 {
		t.Error("no node resolved a duplicate")
	}
	// And a retry now is a replay everywhere.
	for n := range c.nodes {
		if code, replayed, body := c.keyed(n, "/v1/increments", "batch-1", batch); code != 200 || !replayed {
			t.Errorf("batch retry at %s after healing: %d replayed=%v %s", n, code, replayed, body)
		}
	}
}

// TestClusterIdem_LoserWipedBeforeHealing: the node that applied the losing
// copy loses its disk during the partition; the copy it passed on is still
// taken back once the partition heals.
func TestClusterIdem_LoserWipedBeforeHealing(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.net.Partition([]string{"a1"}, []string{"b1", "c1"})
	body := fmt.Sprintf(`{"amount":4,"ts":%d}`, time.Now().Unix())
	if code, _, out := c.keyed("a1", "/v1/counters/x/increment", "k", body); code != 200 {
		t.Fatalf("original at a1: %d %s", code, out)
	}
	if code, replayed, out := c.keyed("b1", "/v1/counters/x/increment", "k", body); code != 200 || replayed {
		t.Fatalf("retry at b1: %d replayed=%v %s", code, replayed, out)
	}
	// b1's copy reaches c1, then b1's disk is gone.
	testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
		got := c.total("c1", "x")
		return got == 4, fmt.Sprintf("c1 total %d, want b1's 4", got)
	})
	c.stop("b1")
	if err := os.RemoveAll(c.dirs["b1"]); err != nil {
		t.Fatal(err)
	}
	c.want["x"] = 4
	c.net.Heal()
	c.start("b1", t.TempDir(), func(cfg *agent.Config) { cfg.Join = []string{c.nodes["a1"].Gossip().Addr()} })
	c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
}

// TestClusterIdem_TTLExpiresEverywhere: after the key TTL a retry is a new
// request at every node.
func TestClusterIdem_TTLExpiresEverywhere(t *testing.T) {
	ttl := func(cfg *agent.Config) { cfg.IdempotencyTTL = 2 * time.Second }
	c := &testCluster{t: t, net: newCluster(t).net, nodes: map[string]*agent.Agent{}, dirs: map[string]string{}, want: map[string]uint64{}}
	for _, n := range []string{"a1", "b1"} {
		c.start(n, t.TempDir(), ttl)
	}
	c.waitMembers(2)
	body := `{"amount":1}`
	if code, _, out := c.keyed("a1", "/v1/counters/x/increment", "k", body); code != 200 {
		t.Fatalf("original: %d %s", code, out)
	}
	c.waitRecords("b1", 1)
	if _, replayed, _ := c.keyed("b1", "/v1/counters/x/increment", "k", body); !replayed {
		t.Fatal("retry at b1 within the TTL was not a replay")
	}
	deadline := time.Now().Add(2 * time.Second)
	time.Sleep(time.Until(deadline) + 100*time.Millisecond) // the TTL passing, not synchronisation
	if code, replayed, out := c.keyed("b1", "/v1/counters/x/increment", "k", body); code != 200 || replayed {
		t.Fatalf("retry at b1 after the TTL: %d replayed=%v %s, want applied as new", code, replayed, out)
	}
	// A retry of that new request at a1 is a replay, or, if it raced the new
	// record, a duplicate the cluster takes back: either way it counts once.
	if code, _, out := c.keyed("a1", "/v1/counters/x/increment", "k", body); code != 200 {
		t.Fatalf("retry at a1: %d %s", code, out)
	}
	c.want["x"] = 2
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
}

// TestClusterIdem_OlderPeer: a node that does not advertise the newer
// messages (as a node of a previous version does not) is still joined, and
// is sent the pulls it knows, which it answers: replication between versions
// keeps working during a rolling upgrade. Protocol 0 knows neither key pulls
// nor pulls with their chain's base; protocol 1 knows key pulls only.
func TestClusterIdem_OlderPeer(t *testing.T) {
	for _, tc := range []struct {
		max       uint8
		want      string   // the pulls b1 must receive
		mustNot   []string // and must not
		fromOlder string   // what a1 receives from b1, which knows a1 is newer
	}{
		{0, "pull", []string{"pull_keys", "pull_base"}, "pull_base"},
		{1, "pull_keys", []string{"pull", "pull_base"}, "pull_base"},
	} {
		t.Run(fmt.Sprintf("protocol %d", tc.max), func(t *testing.T) {
			c := newCluster(t, "a1")
			older := func(cfg *agent.Config) {
				inner := cfg.Gossip
				cfg.Gossip = func(g *gossip.Config) {
					inner(g)
					tune := g.Tune
					g.Tune = func(mc *memberlist.Config) {
						tune(mc)
						mc.DelegateProtocolMax = tc.max
					}
				}
			}
			c.start("b1", t.TempDir(), older)
			c.waitMembers(2)
			c.net.Partition([]string{"a1"}, []string{"b1"})
			for i := range 20 {
				if !c.inc("b1", "x", 1, time.Now()) || !c.inc("a1", "x", 1, time.Now()) {
					t.Fatalf("increment %d not acknowledged", i)
				}
			}
			// Let the broadcasts spend their transmissions on the partition, so
			// that healing takes anti-entropy pulls.
			testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
				for n, a := range c.nodes {
					if left := a.Gossip().Stats().OutboxEntries; left > 0 {
						return false, fmt.Sprintf("%s has %d entries to broadcast", n, left)
					}
				}
				return true, ""
			})
			c.net.Heal()
			c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
			in := c.nodes["b1"].Gossip().Stats().MessagesIn
			if in[tc.want] == 0 {
				t.Fatalf("b1 received no %s: %v", tc.want, in)
			}
			for _, k := range tc.mustNot {
				if in[k] != 0 {
					t.Fatalf("b1 received %d %s, which its version does not know: %v", in[k], k, in)
				}
			}
			if in := c.nodes["a1"].Gossip().Stats().MessagesIn; in[tc.fromOlder] == 0 {
				t.Fatalf("a1 received no %s from b1, which knows a1 speaks them: %v", tc.fromOlder, in)
			}
		})
	}
}
