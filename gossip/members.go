package gossip

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Member is a node as the cluster sees it.
type Member struct {
	Name     string
	Addr     string // gossip address
	HTTPAddr string
	DC       string
	Replica  string
	State    string // alive, dead or left
	// Since is when the member entered State; zero for this node and for
	// alive members.
	Since time.Time
	// Lag is how far this member's copy of this node's data is behind,
	// measured from its last digest: for a dead member, what it lacks now
	// of what this node committed. Nil for this node, members that left and
	// members never heard from.
	Lag *Lag
}

// Lag is a peer's replication lag, seen from here.
type Lag struct {
	// Seqs is how many of this node's commits the peer had not confirmed.
	Seqs uint64
	// Seconds is the age of the oldest of those commits (0 if none).
	Seconds float64
}

// Self is this node.
func (g *Gossip) Self() Member {
	return Member{
		Name: g.cfg.NodeName, Addr: g.Addr(), HTTPAddr: g.cfg.HTTPAddr, DC: g.cfg.DC,
		Replica: g.self.replica.String(), State: "alive",
	}
}

// Members is every node this node knows of, itself included, by name.
// (memberlist's suspect state is not reported: its only exported view is the
// node structures it mutates under its own lock.)
func (g *Gossip) Members() []Member {
	own := g.store.Digest()[g.self.replica]
	now := g.cfg.Now()
	out := []Member{g.Self()}
	g.mu.Lock()
	for name, p := range g.peers {
		if p.state == "" {
			continue
		}
		m := Member{Name: name, Addr: p.addr, HTTPAddr: p.meta.httpAddr, DC: p.meta.dc, State: p.state}
		if !p.meta.replica.IsZero() {
			m.Replica = p.meta.replica.String()
		}
		if !p.seen.IsZero() && p.state != "left" {
			// A member that left handed its data off first; a dead one
			// lacks what its last digest lacked, and all since.
			m.Lag = g.lagLocked(p, own, now)
		}
		if p.state != "alive" {
			m.Since = p.changed
		}
		out = append(out, m)
	}
	g.mu.Unlock()
	slices.SortFunc(out[1:], func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (g *Gossip) lagLocked(p *peer, own uint64, now time.Time) *Lag {
	have := p.digest[g.self.replica]
	if have >= own {
		return &Lag{}
	}
	l := &Lag{Seqs: own - have}
	if t := g.box.committedSince(have + 1); !t.IsZero() {
		l.Seconds = now.Sub(t).Seconds()
	}
	return l
}

// ForceLeave drops the member name, which must be dead or have left, from
// this node's member list, stops trying to rejoin it, and tells every live
// member to do the same (msgForget over TCP). It returns how many were told.
// memberlist has no such operation for another node: without it a dead
// member stays listed, and rejoined, for forgetAfter. The member's counts
// stay; if it starts again it joins as any node does.
func (g *Gossip) ForceLeave(name string) (told int, err error) {
	if name == g.cfg.NodeName {
		return 0, ErrMemberAlive
	}
	g.mu.Lock()
	p := g.peers[name]
	switch {
	case p == nil || p.state == "":
		g.mu.Unlock()
		return 0, ErrUnknownMember
	case p.state == "alive":
		g.mu.Unlock()
		return 0, ErrMemberAlive
	}
	g.forgetLocked(name)
	g.mu.Unlock()
	g.log.Info("member removed (force-leave)", "node", name)
	msg := (&forgetMsg{name: name}).appendTo(nil)
	for _, n := range g.alivePeers() {
		if err := g.ml.SendReliable(n, msg); err != nil {
			g.log.Warn("force-leave: could not tell a member; run it there too", "node", name, "member", n.Name, "err", err)
			continue
		}
		g.stats.sent(msgForget, len(msg))
		told++
	}
	return told, nil
}

// forgetFromPeer handles a peer's msgForget: a member this node sees dead
// goes at once; one it still sees alive goes when it dies (the tombstone),
// unless it comes back alive first.
func (g *Gossip) forgetFromPeer(name string) {
	if name == g.cfg.NodeName {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if p := g.peers[name]; p != nil && p.state == "alive" {
		g.forgetNote(name)
		return
	}
	g.forgetLocked(name)
	g.log.Info("member removed (force-leave from a peer)", "node", name)
}

// forgetLocked removes name from the member and rejoin lists and keeps a
// tombstone, so that a late "dead" from memberlist does not bring it back.
func (g *Gossip) forgetLocked(name string) {
	delete(g.peers, name)
	delete(g.known, name)
	if g.syncBase != nil {
		delete(g.syncBase, name)
	}
	g.forgetNote(name)
}

// forgetNote records the tombstone of name.
func (g *Gossip) forgetNote(name string) {
	if g.forgot == nil {
		g.forgot = make(map[string]time.Time)
	}
	g.forgot[name] = g.cfg.Now()
}

// MemberCounts counts members (this node included) by state.
func (g *Gossip) MemberCounts() map[string]int {
	c := map[string]int{"alive": 0, "dead": 0, "left": 0}
	for _, m := range g.Members() {
		c[m.State]++
	}
	return c
}

// Recover makes a node restored from a snapshot pull its own replica's
// entries after seq (the snapshot's) from every live peer; CaughtUpOnSelf
// reports when it has them all.
func (g *Gossip) Recover(seq uint64) {
	g.mu.Lock()
	g.recover = recovery{active: true, from: seq, done: map[string]bool{}}
	g.mu.Unlock()
	g.schedulePulls()
}

// CaughtUpOnSelf reports whether a recovering node holds every entry of its
// own replica that any live peer holds: it has joined, and a pull of its own
// entries from every live peer has completed. A node not recovering, or
// without peers and Join addresses, is caught up.
func (g *Gossip) CaughtUpOnSelf() (bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.recover.active {
		return true, ""
	}
	if !g.joined.Load() {
		return false, fmt.Sprintf("joining %v", g.cfg.Join)
	}
	for name, p := range g.peers {
		if p.state == "alive" && !g.recover.done[name] {
			return false, "fetching this replica's entries from " + name
		}
	}
	g.recover.active = false
	return true, ""
}
