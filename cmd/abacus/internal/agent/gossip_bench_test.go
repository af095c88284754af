package agent_test

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/gossip/faultnet"
	"github.com/abacus-counter/abacus/store"
)

// The gossip-traffic measurements of the README. They are benchmarks, not
// tests: they report figures and assert nothing about time.
//
//	go test -run XXX -bench 'PushPull|HotCounter' -benchtime 1x ./cmd/abacus/internal/agent/
//	go test -run XXX -bench PushPull -benchtime 1x ./cmd/abacus/internal/agent/ -pushpull.counters 250000

// pushPullCounters sets the size of BenchmarkPushPull_Converged's state:
// each counter holds 4 slots (its total and a minute, hour and day window).
var pushPullCounters = flag.Int("pushpull.counters", 25_000, "counters BenchmarkPushPull_Converged loads (4 slots each)")

var benchKey = [][]byte{[]byte("0123456789abcdef0123456789abcdef")}

// benchNode starts a node on the given gossip profile, counted by net.
func benchNode(b *testing.B, net *faultnet.Network, name string, profile gossip.Profile, join string) *agent.Agent {
	b.Helper()
	cfg := agent.DefaultConfig()
	cfg.NodeName, cfg.DC = name, "dc1"
	cfg.DataDir = b.TempDir()
	cfg.HTTPAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Profile = profile
	cfg.GossipKeys = benchKey
	if join != "" {
		cfg.Join = []string{join}
	}
	cfg.Gossip = func(g *gossip.Config) { g.WrapTransport = net.Wrap(name) }
	a, err := agent.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	go a.Serve()
	b.Cleanup(func() { a.Shutdown(context.Background()) })
	return a
}

// sameDigests compares version vectors; a missing origin counts as zero.
func sameDigests(a, b *agent.Agent) bool {
	da, db := a.Store().Digest(), b.Store().Digest()
	for k, v := range da {
		if db[k] != v {
			return false
		}
	}
	for k, v := range db {
		if da[k] != v {
			return false
		}
	}
	return true
}

// BenchmarkPushPull_Converged measures the bytes of one push/pull exchange
// (both directions, memberlist's framing, membership and encryption
// included) between two converged nodes holding 4 × -pushpull.counters slots
// (100,000 by default).
func BenchmarkPushPull_Converged(b *testing.B) {
	net := faultnet.New(1)
	a1 := benchNode(b, net, "a1", gossip.LAN, "")
	b1 := benchNode(b, net, "b1", gossip.LAN, a1.Gossip().Addr())
	ctx := context.Background()
	now := time.Now()
	n := *pushPullCounters
	for i := 0; i < n; i += 1000 {
		req := &store.Request{}
		for j := i; j < min(i+1000, n); j++ {
			req.Increments = append(req.Increments, store.Increment{Name: fmt.Sprintf("slot.%07d", j), Amount: 1, TS: now})
		}
		if _, err := a1.Store().Apply(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Minute)
	for !sameDigests(a1, b1) {
		if time.Now().After(deadline) {
			b.Fatal("no convergence")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := a1.Store().Checkpoint(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total int64
	for i := 0; i < b.N; i++ {
		before := net.Traffic()["b1"].StreamBytes
		if err := b1.Gossip().Join([]string{a1.Gossip().Addr()}); err != nil {
			b.Fatal(err)
		}
		total += net.Traffic()["b1"].StreamBytes - before
	}
	b.ReportMetric(float64(total)/float64(b.N), "bytes/exchange")
	b.ReportMetric(float64(4*n), "slots")
	if !sameDigests(a1, b1) {
		b.Fatal("the exchange changed a converged pair")
	}
}

// BenchmarkHotCounter_10kPerSecond increments one counter 10,000 times a
// second on a1 for ten seconds in a three-node LAN-profile cluster and
// reports the gossip bytes the nodes sent per increment and per peer, idle
// membership traffic included and, separately, measured alone first.
func BenchmarkHotCounter_10kPerSecond(b *testing.B) {
	const (
		rate     = 10_000
		duration = 10 * time.Second
	)
	net := faultnet.New(2)
	a1 := benchNode(b, net, "a1", gossip.LAN, "")
	b1 := benchNode(b, net, "b1", gossip.LAN, a1.Gossip().Addr())
	c1 := benchNode(b, net, "c1", gossip.LAN, a1.Gossip().Addr())
	nodes := []*agent.Agent{a1, b1, c1}
	for len(a1.Gossip().Members()) < 3 || len(c1.Gossip().Members()) < 3 {
		time.Sleep(50 * time.Millisecond)
	}
	sum := func() (all, fromA int64) {
		for name, tr := range net.Traffic() {
			all += tr.PacketBytes + tr.StreamBytes
			if name == "a1" {
				fromA += tr.PacketBytes + tr.StreamBytes
			}
		}
		return
	}
	idle0, _ := sum()
	time.Sleep(duration)
	idle1, _ := sum()
	idlePerSec := float64(idle1-idle0) / duration.Seconds()

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		all0, a0 := sum()
		var sent atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					// Pace to rate: increment k is due at start + k/rate.
					k := sent.Add(1)
					if k > rate*int64(duration/time.Second) {
						return
					}
					if d := time.Until(start.Add(time.Duration(k) * time.Second / rate)); d > 0 {
						time.Sleep(d)
					}
					req := &store.Request{Increments: []store.Increment{{Name: "hot", Amount: 1, TS: time.Now()}}}
					if _, err := a1.Store().Apply(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		all1, a1b := sum()
		incs := float64(rate * int64(duration/time.Second))
		peers := float64(len(nodes) - 1)
		b.ReportMetric(incs/elapsed.Seconds(), "inc/s")
		b.ReportMetric(float64(all1-all0)/incs/peers, "bytes/inc/peer(all-nodes)")
		b.ReportMetric(float64(a1b-a0)/incs/peers, "bytes/inc/peer(writer)")
		b.ReportMetric((float64(all1-all0)-idlePerSec*elapsed.Seconds())/incs/peers, "bytes/inc/peer(over-idle)")
		b.ReportMetric(idlePerSec, "idle-bytes/s")
	}
	b.StopTimer()
	want, _ := a1.Store().Total("hot")
	deadline := time.Now().Add(time.Minute)
	for _, n := range nodes[1:] {
		for {
			got, _ := n.Store().Total("hot")
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no convergence: %d vs %d", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
