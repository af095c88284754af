package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/gossip/faultnet"
	"github.com/abacus-counter/abacus/internal/testenv"
	"github.com/abacus-counter/abacus/store"
)

// testCluster is several real nodes, each with its own store and memberlist
// on 127.0.0.1, in this process, with a fault-injecting network between them.
type testCluster struct {
	t     *testing.T
	net   *faultnet.Network
	nodes map[string]*agent.Agent
	dirs  map[string]string
	seed  string // gossip address to join
	key   []byte
	mu    sync.Mutex
	want  map[string]uint64 // acknowledged increments by counter
}

// fastGossip shortens memberlist's local timings so that failure detection,
// reaping and healing take seconds, not minutes — but not so short that a
// node busy under the race detector on two shared cores is taken for dead.
func fastGossip(c *gossip.Config) {
	c.Profile = gossip.Local
	c.DigestInterval = 100 * time.Millisecond
	c.RejoinInterval = 300 * time.Millisecond
	c.PullTimeout = 2 * time.Second
	c.Tune = func(mc *memberlist.Config) {
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 150 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 2
		mc.GossipToTheDeadTime = 2 * time.Second
		mc.PushPullInterval = time.Second
		mc.DeadNodeReclaimTime = time.Second
		mc.TCPTimeout = time.Second
		mc.IndirectChecks = 1
	}
}

func newCluster(t *testing.T, names ...string) *testCluster {
	c := &testCluster{t: t, net: faultnet.New(1), nodes: map[string]*agent.Agent{}, dirs: map[string]string{}, want: map[string]uint64{}}
	for _, n := range names {
		c.start(n, t.TempDir())
	}
	c.waitMembers(len(names))
	return c
}

// start runs node name on dir, joining the first node started.
func (c *testCluster) start(name, dir string, mutate ...func(*agent.Config)) *agent.Agent {
	c.t.Helper()
	cfg := agent.DefaultConfig()
	cfg.NodeName = name
	cfg.DataDir = dir
	cfg.DC = "dc-" + name[:1]
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GossipAddr = "127.0.0.1:0"
	if c.key != nil {
		cfg.GossipKeys = [][]byte{c.key}
	}
	if c.seed != "" {
		cfg.Join = []string{c.seed}
	}
	cfg.Gossip = func(g *gossip.Config) {
		fastGossip(g)
		g.WrapTransport = c.net.Wrap(name)
	}
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go a.Serve()
	c.t.Cleanup(func() { a.Shutdown(context.Background()) })
	if c.seed == "" {
		c.seed = a.Gossip().Addr()
	}
	c.nodes[name], c.dirs[name] = a, dir
	return a
}

func (c *testCluster) stop(name string) {
	c.t.Helper()
	if err := c.nodes[name].Shutdown(context.Background()); err != nil {
		c.t.Fatalf("stop %s: %v", name, err)
	}
	delete(c.nodes, name)
}

// waitMembers waits until every running node sees n alive members.
func (c *testCluster) waitMembers(n int) {
	c.t.Helper()
	testenv.WaitFor(c.t, 20*time.Second, func() (bool, string) {
		for name, a := range c.nodes {
			alive := 0
			for _, m := range a.Gossip().Members() {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != n {
				return false, fmt.Sprintf("%s sees %d alive members, want %d", name, alive, n)
			}
		}
		return true, ""
	})
}

// inc increments counter at node and, if acknowledged, adds it to the
// expected totals. It reports whether it was acknowledged.
func (c *testCluster) inc(node, counter string, amount uint64, ts time.Time) bool {
	c.t.Helper()
	u := fmt.Sprintf("http://%s/v1/counters/%s/increment?amount=%d&ts=%d", c.nodes[node].Addr(), counter, amount, ts.Unix())
	resp, err := http.Post(u, "", nil)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return false
	}
	c.mu.Lock()
	c.want[counter] += amount
	c.mu.Unlock()
	return true
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *testCluster) total(node, counter string) uint64 {
	c.t.Helper()
	code, body := httpGet(c.t, fmt.Sprintf("http://%s/v1/counters/%s", c.nodes[node].Addr(), counter))
	if code != 200 {
		c.t.Fatalf("total of %s at %s: %d %s", counter, node, code, body)
	}
	var v struct{ Total uint64 }
	json.Unmarshal([]byte(body), &v)
	return v.Total
}

// rangeOf is a node's answer to a fixed range query, for comparing nodes.
func (c *testCluster) rangeOf(node, counter string, from time.Time) string {
	code, body := httpGet(c.t, fmt.Sprintf("http://%s/v1/counters/%s/range?from=%d&to=%d&step=1m", c.nodes[node].Addr(), counter, from.Unix(), from.Add(time.Hour).Unix()))
	if code != 200 {
		c.t.Fatalf("range of %s at %s: %d %s", counter, node, code, body)
	}
	return body
}

// waitConverged waits until every running node reports exactly the
// acknowledged totals, and identical range answers.
func (c *testCluster) waitConverged(timeout time.Duration, rangeFrom time.Time) {
	c.t.Helper()
	start := time.Now()
	testenv.WaitFor(c.t, timeout, func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for counter, want := range c.want {
			var ref string
			for name := range c.nodes {
				if got := c.total(name, counter); got != want {
					return false, fmt.Sprintf("%s at %s = %d, want %d", counter, name, got, want)
				}
				r := c.rangeOf(name, counter, rangeFrom)
				if ref == "" {
					ref = r
				} else if r != ref {
					return false, fmt.Sprintf("range of %s differs at %s:\n%s\nvs\n%s", counter, name, r, ref)
				}
			}
		}
		return true, ""
	})
	c.t.Logf("converged in %v", time.Since(start).Round(time.Millisecond))
}

// assertIsolated checks, several digest intervals after both sides wrote,
// that nodes x and y still disagree: the partition holds.
func (c *testCluster) assertIsolated(x, y string, counters []string) {
	c.t.Helper()
	time.Sleep(time.Second)
	for _, counter := range counters {
		if c.total(x, counter) != c.total(y, counter) {
			return
		}
	}
	c.t.Fatalf("%s and %s agree on %v across the partition", x, y, counters)
}

// writeLoad sends count increments spread over counters and nodes, with
// event times spread over the last hour.
func (c *testCluster) writeLoad(nodes []string, counters []string, count int, seed uint64) (acked int) {
	r := rand.New(rand.NewPCG(seed, 1))
	now := time.Now()
	for i := 0; i < count; i++ {
		n := nodes[r.IntN(len(nodes))]
		if c.inc(n, counters[r.IntN(len(counters))], uint64(1+r.IntN(5)), now.Add(-time.Duration(r.IntN(3600))*time.Second)) {
			acked++
		}
	}
	return acked
}

func TestCluster_Converges(t *testing.T) {
	c := newCluster(t, "a1", "a2", "b1", "b2", "c1")
	names := []string{"a1", "a2", "b1", "b2", "c1"}
	counters := []string{"x", "y", "z"}
	if acked := c.writeLoad(names, counters, 300, 1); acked != 300 {
		t.Fatalf("%d of 300 increments acknowledged", acked)
	}
	c.waitConverged(20*time.Second, time.Now().Add(-time.Hour))
	// Per-replica detail agrees too: every node knows every replica's share.
	_, body := httpGet(t, "http://"+c.nodes["c1"].Addr()+"/v1/counters/x?detail=true")
	var d struct {
		Replicas []struct{ Node, DC string }
		ByDC     map[string]uint64 `json:"by_dc"`
	}
	json.Unmarshal([]byte(body), &d)
	if len(d.Replicas) != 5 || len(d.ByDC) != 3 {
		t.Fatalf("detail = %s", body)
	}
	for _, r := range d.Replicas {
		if r.Node == "" || r.DC == "" {
			t.Fatalf("replica without node or dc: %s", body)
		}
	}
}

// TestCluster_Partition: both sides of a partition take writes; after the
// partition heals every node reports exactly the sum of all acknowledged
// increments.
func TestCluster_Partition(t *testing.T) {
	c := newCluster(t, "a1", "a2", "b1", "b2")
	counters := []string{"p", "q"}
	c.writeLoad([]string{"a1", "b1"}, counters, 40, 1)
	c.net.Partition([]string{"a1", "a2"}, []string{"b1", "b2"})
	sideA := c.writeLoad([]string{"a1", "a2"}, counters, 100, 2)
	sideB := c.writeLoad([]string{"b1", "b2"}, counters, 100, 3)
	if sideA != 100 || sideB != 100 {
		t.Fatalf("writes refused during the partition: %d and %d of 100 acknowledged", sideA, sideB)
	}
	c.assertIsolated("a1", "b1", counters)
	c.net.Heal()
	c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
}

// TestCluster_PacketLoss: with 20% of packets and stream openings lost in
// every direction, the cluster still converges to the exact totals.
func TestCluster_PacketLoss(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.net.SetLoss(0.2)
	c.writeLoad([]string{"a1", "b1", "c1"}, []string{"l1", "l2", "l3"}, 300, 4)
	c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
	if c.net.Dropped() == 0 {
		t.Fatal("the lossy network dropped nothing")
	}
	t.Logf("%d packets and streams dropped", c.net.Dropped())
}

// TestCluster_LongPartition outlasts memberlist's GossipToTheDeadTime: each
// side declares the other dead and stops gossiping to it. The rejoin loop
// heals it without anyone calling Join.
func TestCluster_LongPartition(t *testing.T) {
	c := newCluster(t, "a1", "a2", "b1")
	c.net.Partition([]string{"a1", "a2"}, []string{"b1"})
	c.writeLoad([]string{"a1", "a2"}, []string{"lp"}, 30, 5)
	c.writeLoad([]string{"b1"}, []string{"lp"}, 30, 6)
	c.assertIsolated("a1", "b1", []string{"lp"})
	// Wait until both sides have given the other up as dead, and then past
	// GossipToTheDeadTime (2s here).
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		for _, m := range c.nodes["b1"].Gossip().Members() {
			if m.Name != "b1" && m.State == "alive" || m.State == "suspect" {
				return false, "b1 still sees " + m.Name + " " + m.State
			}
		}
		for _, m := range c.nodes["a1"].Gossip().Members() {
			if m.Name == "b1" && m.State != "dead" {
				return false, "a1 sees b1 " + m.State
			}
		}
		return true, ""
	})
	time.Sleep(3 * time.Second)
	c.net.Heal()
	c.waitMembers(3)
	c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
}

// TestCluster_RestartCatchesUp: a node stopped while the others take writes
// catches up on restart from its old data directory, as the same replica.
func TestCluster_RestartCatchesUp(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.writeLoad([]string{"a1", "b1", "c1"}, []string{"r"}, 30, 7)
	replica := c.nodes["c1"].Store().Replica()
	c.stop("c1")
	c.writeLoad([]string{"a1", "b1"}, []string{"r", "s"}, 60, 8)
	a := c.start("c1", c.dirs["c1"])
	if a.Store().Replica() != replica {
		t.Fatalf("restart changed the replica ID")
	}
	c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
}

// TestCluster_WipedNodeRejoins: a node whose data directory was lost comes
// back as a new replica and still reaches the full totals, its old replica's
// share included (from the others).
func TestCluster_WipedNodeRejoins(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.writeLoad([]string{"a1", "b1", "c1"}, []string{"w"}, 60, 9)
	old := c.nodes["c1"].Store().Replica()
	c.waitConverged(20*time.Second, time.Now().Add(-time.Hour))
	c.stop("c1")
	os.RemoveAll(c.dirs["c1"])
	a := c.start("c1", c.dirs["c1"])
	if a.Store().Replica() == old {
		t.Fatal("a wiped data directory kept its replica ID")
	}
	c.writeLoad([]string{"c1"}, []string{"w"}, 10, 10)
	c.waitConverged(30*time.Second, time.Now().Add(-time.Hour))
}

// TestCluster_DuplicateReplica: a node started on a copy of another's data
// directory is detected; the later one refuses writes and says why, the first
// keeps working.
func TestCluster_DuplicateReplica(t *testing.T) {
	c := newCluster(t, "a1", "b1")
	c.writeLoad([]string{"a1"}, []string{"d"}, 5, 11)
	// Copy a1's files while it runs, as a careless operator would.
	dup := t.TempDir()
	for _, f := range []string{"state.db", "journal.db"} {
		b, err := os.ReadFile(filepath.Join(c.dirs["a1"], f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dup, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.start("z9", dup)
	testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
		err := c.nodes["z9"].Gossip().WriteBlocked()
		return err != nil, "z9 still takes writes"
	})
	resp, err := http.Post("http://"+c.nodes["z9"].Addr()+"/v1/counters/d/increment", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "replica ID") {
		t.Fatalf("write to the duplicate = %d %s", resp.StatusCode, body)
	}
	if code, _ := httpGet(t, "http://"+c.nodes["z9"].Addr()+"/readyz"); code != 503 {
		t.Fatalf("duplicate readyz = %d", code)
	}
	if err := c.nodes["a1"].Gossip().WriteBlocked(); err != nil {
		t.Fatalf("the original refuses writes: %v", err)
	}
	if !c.inc("a1", "d", 1, time.Now()) {
		t.Fatal("the original refused a write")
	}
}

// TestCluster_Outsiders: a node with the wrong key, or of another cluster or
// window configuration, can neither join nor change any count.
func TestCluster_Outsiders(t *testing.T) {
	c := &testCluster{t: t, net: faultnet.New(2), nodes: map[string]*agent.Agent{}, dirs: map[string]string{}, want: map[string]uint64{}}
	c.key = []byte("0123456789abcdef0123456789abcdef")
	c.start("a1", t.TempDir())
	c.start("b1", t.TempDir())
	c.waitMembers(2)
	c.inc("a1", "o", 5, time.Now())
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))

	outsiders := map[string]func(*agent.Config){
		"x1": func(cfg *agent.Config) { cfg.GossipKeys = [][]byte{[]byte("fedcba9876543210fedcba9876543210")} },
		"x2": func(cfg *agent.Config) { cfg.GossipKeys = nil },
		"x3": func(cfg *agent.Config) { cfg.ClusterName = "other" },
		"x4": func(cfg *agent.Config) { cfg.Windows.Resolutions = cfg.Windows.Resolutions[:2] },
	}
	for name, mutate := range outsiders {
		a := c.start(name, t.TempDir(), mutate)
		delete(c.nodes, name) // not a member: leave it out of convergence checks
		if code, body := httpPostCode(a, "/v1/counters/o/increment?amount=1000"); code != 200 {
			t.Fatalf("%s: local write %d %s", name, code, body)
		}
		if err := a.Gossip().Join([]string{c.seed}); err == nil {
			t.Errorf("%s joined", name)
		}
		if code, _ := httpGet(t, "http://"+a.Addr()+"/readyz"); code != 503 {
			t.Errorf("%s is ready without having joined", name)
		}
	}
	// Give whatever they sent time to arrive, then check nothing changed.
	time.Sleep(2 * time.Second)
	for _, n := range []string{"a1", "b1"} {
		if got := c.total(n, "o"); got != 5 {
			t.Fatalf("%s: total = %d, want 5: an outsider changed a count", n, got)
		}
		if ms := c.nodes[n].Gossip().Members(); len(ms) != 2 {
			t.Fatalf("%s has members %+v", n, ms)
		}
	}
}

func httpPostCode(a *agent.Agent, path string) (int, string) {
	resp, err := http.Post("http://"+a.Addr()+path, "", nil)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCluster_KeyRotation: midway through a rotation some nodes encrypt with
// the old key and some with the new, each decrypting both; they still form
// one cluster and converge.
func TestCluster_KeyRotation(t *testing.T) {
	oldKey, newKey := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	c := &testCluster{t: t, net: faultnet.New(3), nodes: map[string]*agent.Agent{}, dirs: map[string]string{}, want: map[string]uint64{}}
	c.start("a1", t.TempDir(), func(cfg *agent.Config) { cfg.GossipKeys = [][]byte{oldKey, newKey} })
	c.start("b1", t.TempDir(), func(cfg *agent.Config) { cfg.GossipKeys = [][]byte{newKey, oldKey} })
	c.waitMembers(2)
	c.inc("a1", "k", 2, time.Now())
	c.inc("b1", "k", 3, time.Now())
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
}

// TestCluster_GracefulLeave: a node that shuts down is reported as left (not
// dead) and without a lag, and the others do not pull it back.
func TestCluster_GracefulLeave(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.writeLoad([]string{"a1", "c1"}, []string{"g"}, 10, 30)
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
	c.stop("c1")
	c.waitLeft("c1", []string{"a1", "b1"}, 10*time.Second)
}

// TestCluster_GracefulLeave_PacketsLost: a node whose UDP packets are all
// lost as it shuts down (its goodbye and memberlist's leave with them) is
// still reported as left: its goodbye goes over TCP too.
func TestCluster_GracefulLeave_PacketsLost(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.writeLoad([]string{"a1", "c1"}, []string{"g"}, 10, 30)
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
	c.net.CutPackets("c1")
	c.stop("c1")
	c.waitLeft("c1", []string{"a1", "b1"}, 20*time.Second)
}

// waitLeft waits until every node of at lists name as left, without a lag.
func (c *testCluster) waitLeft(name string, at []string, within time.Duration) {
	c.t.Helper()
	testenv.WaitFor(c.t, within, func() (bool, string) {
		for _, n := range at {
			for _, m := range c.nodes[n].Gossip().Members() {
				if m.Name == name && (m.State != "left" || m.Lag != nil) {
					return false, fmt.Sprintf("%s sees %s %s (lag %v)", n, name, m.State, m.Lag)
				}
			}
		}
		return true, ""
	})
}

// TestCluster_ShutdownTogether: nodes stopping at the same time each finish
// within their budget and without error, every commit closed.
func TestCluster_ShutdownTogether(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.writeLoad([]string{"a1", "b1", "c1"}, []string{"st"}, 30, 31)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for name, a := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Shutdown(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCluster_ReadyMeansCaughtUp: a node joining a cluster that already
// counts reports ready only once it holds what its peers held: at the moment
// /readyz first answers 200, every total is already complete.
func TestCluster_ReadyMeansCaughtUp(t *testing.T) {
	c := newCluster(t, "a1", "b1")
	ctx := context.Background()
	now := time.Now()
	for i := 0; i < 20; i++ {
		req := &store.Request{}
		for j := 0; j < 1000; j++ {
			req.Increments = append(req.Increments, store.Increment{Name: fmt.Sprintf("r%04d", (i*1000+j)%5000), Amount: 1, TS: now.Add(-time.Duration(j%3000) * time.Second)})
		}
		if _, err := c.nodes["a1"].Store().Apply(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := c.nodes["a1"].Store().Total("r0042")
	n := c.start("c1", t.TempDir())
	testenv.WaitFor(t, 30*time.Second, func() (bool, string) {
		code, body := httpGet(t, "http://"+n.Addr()+"/readyz")
		return code == 200, body
	})
	views := func() string {
		var b strings.Builder
		for _, name := range []string{"a1", "b1", "c1"} {
			fmt.Fprintf(&b, "\n%s: digest %v, members %+v", name, c.nodes[name].Store().Digest(), c.nodes[name].Gossip().Members())
		}
		return b.String()
	}
	if got, _ := n.Store().Total("r0042"); got != want {
		t.Fatalf("ready with total %d, want %d%s", got, want, views())
	}
	page, _, err := n.Store().List("r", "", 10_000)
	if err != nil || len(page) != 5000 {
		t.Fatalf("ready with %d counters, want 5000 (%v)%s", len(page), err, views())
	}
}

// TestCluster_LeaveHandsOff: a node stopped for good takes nothing with it.
// Its last increments (answered before the commit, with async durability)
// and the entries its broadcasts dropped are at its peer when Shutdown
// returns.
func TestCluster_LeaveHandsOff(t *testing.T) {
	c := newCluster(t, "b1", "a1") // b1 is the seed a1 rejoins
	c.stop("a1")
	c.start("a1", c.dirs["a1"], func(cfg *agent.Config) {
		cfg.Durability = store.Async
		cfg.Store = func(sc *store.Config) { sc.AsyncFlushInterval = time.Hour } // only Shutdown commits
		gcfg := cfg.Gossip
		cfg.Gossip = func(g *gossip.Config) {
			gcfg(g)
			g.OutboxLimit = 1 // broadcasts carry almost nothing: peers must pull
		}
	})
	c.waitMembers(2)
	var names []string
	for i := range 40 {
		name := fmt.Sprintf("h%02d", i)
		if !c.inc("a1", name, uint64(i+1), time.Now()) {
			t.Fatalf("increment %s refused", name)
		}
		names = append(names, name)
	}
	c.stop("a1")
	for _, name := range names {
		if got, want := c.total("b1", name), c.want[name]; got != want {
			t.Errorf("b1's total of %s right after a1 left: %d, want %d", name, got, want)
		}
	}
}

// A node whose version vector no longer fits a UDP packet (every replica it
// ever learned of stays in it) still tells its peers what it holds between
// push/pulls: a1 sees b1's lag fall to zero after a1's increments reach b1,
// with push/pull too rare to carry it.
func TestCluster_LargeDigestStillReachesPeers(t *testing.T) {
	c := &testCluster{t: t, net: faultnet.New(1), nodes: map[string]*agent.Agent{}, dirs: map[string]string{}, want: map[string]uint64{}}
	slowPushPull := func(cfg *agent.Config) {
		g := cfg.Gossip
		cfg.Gossip = func(gc *gossip.Config) {
			g(gc)
			tune := gc.Tune
			gc.Tune = func(mc *memberlist.Config) { tune(mc); mc.PushPullInterval = time.Hour }
		}
	}
	c.start("a1", t.TempDir(), slowPushPull)
	b := c.start("b1", t.TempDir(), slowPushPull)
	c.waitMembers(2)
	// 100 replicas b1 has heard of: a digest of well over 1,200 bytes.
	var covers []store.Cover
	for i := range 100 {
		covers = append(covers, store.Cover{Origin: crdt.ReplicaID{0xee, byte(i)}, From: 0, To: 1})
	}
	if _, err := b.Store().Merge(context.Background(), nil, covers); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if !c.inc("a1", fmt.Sprintf("big%d", i), 1, time.Now()) {
			t.Fatal("increment refused")
		}
	}
	testenv.WaitFor(t, 15*time.Second, func() (bool, string) {
		for _, m := range c.nodes["a1"].Gossip().Members() {
			if m.Name == "b1" {
				return m.Lag != nil && m.Lag.Seqs == 0, fmt.Sprintf("b1's lag seen from a1: %+v", m.Lag)
			}
		}
		return false, "a1 does not know b1"
	})
}

// TestCluster_DeadMemberAndForceLeave: a member that dies (here: cut off,
// then stopped, so its goodbye never arrives) is listed dead with the lag it
// had and since when; abacus force-leave at one node removes it from every
// live node's list, and a live member is refused.
func TestCluster_DeadMemberAndForceLeave(t *testing.T) {
	c := newCluster(t, "a1", "b1", "c1")
	c.writeLoad([]string{"a1", "c1"}, []string{"fl"}, 10, 40)
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
	c.net.Partition([]string{"a1", "b1"}, []string{"c1"})
	c.stop("c1")
	before := time.Now()
	c.writeLoad([]string{"a1"}, []string{"fl"}, 5, 41) // commits c1 never saw

	type member struct {
		Name, State string
		Lag         *struct{ Seqs uint64 }
		Since       *time.Time
	}
	clusterOf := func(node string) []member {
		_, body := httpGet(t, "http://"+c.nodes[node].Addr()+"/v1/cluster")
		var ci struct{ Members []member }
		if err := json.Unmarshal([]byte(body), &ci); err != nil {
			t.Fatalf("%s /v1/cluster: %v in %s", node, err, body)
		}
		return ci.Members
	}
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		for _, m := range clusterOf("a1") {
			if m.Name == "c1" && (m.State != "dead" || m.Lag == nil || m.Lag.Seqs < 5 || m.Since == nil) {
				return false, fmt.Sprintf("a1 sees c1 %s, lag %+v, since %v", m.State, m.Lag, m.Since)
			}
		}
		return true, ""
	})
	for _, m := range clusterOf("a1") {
		if m.Name == "c1" && (m.Since.After(time.Now()) || m.Since.Before(before.Add(-10*time.Second))) {
			t.Fatalf("c1 dead since %v, want about %v", m.Since, before)
		}
	}

	if code, body := httpPostCode(c.nodes["a1"], "/v1/cluster/members/b1/force-leave"); code != 409 || !strings.Contains(body, "member-alive") {
		t.Fatalf("force-leave of a live member = %d %s", code, body)
	}
	if code, body := httpPostCode(c.nodes["a1"], "/v1/cluster/members/zz/force-leave"); code != 404 || !strings.Contains(body, "unknown-member") {
		t.Fatalf("force-leave of an unknown member = %d %s", code, body)
	}
	if code, body := httpPostCode(c.nodes["a1"], "/v1/cluster/members/c1/force-leave"); code != 200 || body != `{"name":"c1","told":1}`+"\n" {
		t.Fatalf("force-leave c1 = %d %s", code, body)
	}
	testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
		for _, n := range []string{"a1", "b1"} {
			for _, m := range clusterOf(n) {
				if m.Name == "c1" {
					return false, n + " still lists c1 " + m.State
				}
			}
		}
		return true, ""
	})
	// Counts stay: c1's increments are part of the totals.
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
}

// TestCluster_JoinErrorsNameTheFix: a node whose gossip key, or lack of one,
// keeps it out says so in /readyz, naming the flag, instead of only
// "joining [...]".
func TestCluster_JoinErrorsNameTheFix(t *testing.T) {
	c := &testCluster{t: t, net: faultnet.New(5), nodes: map[string]*agent.Agent{}, dirs: map[string]string{}, want: map[string]uint64{}}
	c.key = []byte("0123456789abcdef0123456789abcdef")
	c.start("a1", t.TempDir())
	for name, mutate := range map[string]func(*agent.Config){
		"x1": func(cfg *agent.Config) { cfg.GossipKeys = [][]byte{[]byte("fedcba9876543210fedcba9876543210")} },
		"x2": func(cfg *agent.Config) { cfg.GossipKeys = nil },
	} {
		a := c.start(name, t.TempDir(), mutate)
		testenv.WaitFor(t, 10*time.Second, func() (bool, string) {
			code, body := httpGet(t, "http://"+a.Addr()+"/readyz")
			return code == 503 && strings.Contains(body, "--gossip-key-file") && strings.Contains(body, c.seed),
				fmt.Sprintf("%s /readyz = %d %s", name, code, body)
		})
		_, body := httpGet(t, "http://"+a.Addr()+"/readyz")
		t.Logf("%s: %s", name, body)
	}
}
