package gossip

import (
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/crdt"
)

// events is the Gossip seen as memberlist.EventDelegate: it keeps the member
// table. It must not call back into memberlist.
type events Gossip

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Gossip)(e).noteMember(n, "alive") }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Gossip)(e).noteMember(n, "alive") }

func (e *events) NotifyLeave(n *memberlist.Node) {
	// memberlist v0.7.0 passes the node without its new state (the state
	// it sets is another field), so a leave is told from a death by the
	// goodbye the leaving node sent (msgBye).
	(*Gossip)(e).noteMember(n, "dead")
}

// byeGrace is how long after a member was reported dead its goodbye still
// makes it a leave: the goodbye is sent just before memberlist's leave, so
// it arrives within seconds or not at all.
const byeGrace = 10 * time.Second

// noteBye marks a member that said goodbye as leaving. memberlist handles
// its leave (a dead message, in its high-priority queue) before user
// messages that arrived with it, so the goodbye may come just after the
// member was reported dead: it left all the same. A goodbye long after a
// death says nothing about it.
func (g *Gossip) noteBye(name string) {
	g.mu.Lock()
	p := g.peers[name]
	if p == nil {
		g.mu.Unlock()
		return
	}
	p.leaving = true
	left := p.state == "dead" && g.cfg.Now().Sub(p.changed) <= byeGrace
	if left {
		p.state = "left" // since it went: changed stays the time of its death
	}
	g.mu.Unlock()
	if left {
		g.log.Info("member left", "node", name, "after", "reported dead")
	}
}

func (g *Gossip) noteMember(n *memberlist.Node, state string) {
	if n.Name == g.cfg.NodeName {
		return
	}
	m, err := decodeMeta(n.Meta)
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	now := g.cfg.Now()
	g.mu.Lock()
	if _, gone := g.forgot[n.Name]; gone {
		if state != "alive" {
			// Forced out (force-leave): its death does not list it again.
			delete(g.peers, n.Name)
			g.mu.Unlock()
			return
		}
		delete(g.forgot, n.Name) // back: a member like any other
	}
	p := g.peerLocked(n.Name)
	if err == nil {
		p.meta = m
	}
	p.keys = n.DMax >= keysProtocol
	p.base = n.DMax >= baseProtocol
	switch {
	case state == "alive":
		p.leaving = false
		if g.box.transmits.Load() == 0 {
			// The first live peer: broadcast from now, not from the next
			// digest tick (which sets the count from every live member).
			g.setTransmits(1)
		}
	case p.leaving || n.State == memberlist.StateLeft:
		state = "left"
	}
	if p.state != state {
		p.changed = now
	}
	p.state, p.addr = state, addr
	g.known[n.Name] = knownMember{addr: addr, lastSeen: now}
	g.mu.Unlock()
	if err == nil && !m.replica.IsZero() {
		g.store.SetReplicaInfo(m.replica, n.Name, m.dc)
	}
	g.log.Info("member "+state, "node", n.Name, "addr", addr, "dc", m.dc)
}

func (g *Gossip) peerLocked(name string) *peer {
	p := g.peers[name]
	if p == nil {
		p = &peer{digest: make(map[crdt.ReplicaID]uint64)}
		g.peers[name] = p
	}
	return p
}
