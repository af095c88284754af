// Package faultnet wraps memberlist transports to inject network faults into
// in-process cluster tests: partitions between any pairs of nodes, random
// packet loss, and delay. It also counts what each node sends, for the
// gossip-traffic benchmarks. Faults apply on the sending side: a partitioned pair
// drops both directions because both sides send.
//
// Loss applies to UDP packets and, with the same probability, to the opening
// of TCP streams (push/pull, reliable messages), which then fail as a refused
// connection would. Delay applies to packets and stream openings.
package faultnet

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrPartitioned is what a stream opened across a partition fails with.
var ErrPartitioned = errors.New("faultnet: partitioned")

// Network is the set of faults between the nodes it wraps.
type Network struct {
	mu      sync.Mutex
	rnd     *rand.Rand
	names   map[string]string // address → node name
	blocked map[[2]string]bool
	mute    map[string]bool // nodes whose UDP packets are all lost
	loss    float64
	delay   time.Duration
	jitter  time.Duration
	dropped int
	sent    map[string]*Traffic // by sending node
}

// Traffic is what one node sent: UDP packets, and bytes both ways on the TCP
// streams it opened.
type Traffic struct {
	Packets, PacketBytes int64
	Streams, StreamBytes int64
}

// New returns a network without faults; seed makes the losses repeatable.
func New(seed uint64) *Network {
	return &Network{rnd: rand.New(rand.NewPCG(seed, 0xabac05)), names: map[string]string{}, blocked: map[[2]string]bool{}, mute: map[string]bool{}, sent: map[string]*Traffic{}}
}

// Partition cuts every pair of nodes in different groups. Nodes in no group
// keep their links.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i, a := range groups {
		for j, b := range groups {
			if i == j {
				continue
			}
			for _, x := range a {
				for _, y := range b {
					n.blocked[[2]string{x, y}] = true
				}
			}
		}
	}
}

// Cut blocks traffic from one node to another, one way.
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	n.blocked[[2]string{from, to}] = true
	n.mu.Unlock()
}

// CutPackets drops every UDP packet node sends, to anyone; the streams it
// opens still connect.
func (n *Network) CutPackets(node string) {
	n.mu.Lock()
	n.mute[node] = true
	n.mu.Unlock()
}

// Heal removes every partition and cut (loss and delay stay).
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.blocked)
	clear(n.mute)
	n.mu.Unlock()
}

// SetLoss drops each packet and stream opening with probability p.
func (n *Network) SetLoss(p float64) {
	n.mu.Lock()
	n.loss = p
	n.mu.Unlock()
}

// SetDelay delays each packet and stream opening by d plus up to jitter.
func (n *Network) SetDelay(d, jitter time.Duration) {
	n.mu.Lock()
	n.delay, n.jitter = d, jitter
	n.mu.Unlock()
}

// Dropped is how many packets and streams the faults have eaten.
func (n *Network) Dropped() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dropped
}

// Traffic returns a copy of what each node has sent so far.
func (n *Network) Traffic() map[string]Traffic {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]Traffic, len(n.sent))
	for k, v := range n.sent {
		out[k] = *v
	}
	return out
}

func (n *Network) count(from string, f func(*Traffic)) {
	n.mu.Lock()
	t := n.sent[from]
	if t == nil {
		t = &Traffic{}
		n.sent[from] = t
	}
	f(t)
	n.mu.Unlock()
}

// muted reports whether node's packets are cut, and counts the drop.
func (n *Network) muted(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mute[node] {
		n.dropped++
		return true
	}
	return false
}

// fate decides what happens to one send from → to.
func (n *Network) fate(from, toAddr, toName string) (drop bool, delay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if toName == "" {
		toName = n.names[toAddr]
	}
	if n.blocked[[2]string{from, toName}] || (n.loss > 0 && n.rnd.Float64() < n.loss) {
		n.dropped++
		return true, 0
	}
	delay = n.delay
	if n.jitter > 0 {
		delay += time.Duration(n.rnd.Int64N(int64(n.jitter)))
	}
	return false, delay
}

// Wrap returns a wrapper for node name's transport, for gossip.Config's
// WrapTransport.
func (n *Network) Wrap(name string) func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	return func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		if nt, ok := inner.(*memberlist.NetTransport); ok {
			n.mu.Lock()
			n.names[net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort()))] = name
			n.mu.Unlock()
		}
		return &transport{NodeAwareTransport: inner, net: n, name: name}
	}
}

type transport struct {
	memberlist.NodeAwareTransport
	net  *Network
	name string
}

func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.net.count(t.name, func(tr *Traffic) { tr.Packets++; tr.PacketBytes += int64(len(b)) })
	if t.net.muted(t.name) {
		return time.Now(), nil
	}
	drop, delay := t.net.fate(t.name, a.Addr, a.Name)
	switch {
	case drop:
		return time.Now(), nil // lost on the wire: the sender cannot tell
	case delay > 0:
		c := append([]byte(nil), b...)
		time.AfterFunc(delay, func() { t.NodeAwareTransport.WriteToAddress(c, a) })
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	drop, delay := t.net.fate(t.name, a.Addr, a.Name)
	if drop {
		return nil, ErrPartitioned
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	t.net.count(t.name, func(tr *Traffic) { tr.Streams++ })
	return &countingConn{Conn: c, net: t.net, name: t.name}, nil
}

// countingConn counts both directions of a stream against the node that
// opened it.
type countingConn struct {
	net.Conn
	net  *Network
	name string
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.net.count(c.name, func(tr *Traffic) { tr.StreamBytes += int64(n) })
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.net.count(c.name, func(tr *Traffic) { tr.StreamBytes += int64(n) })
	return n, err
}
