package gossip

import (
	"math"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/crdt"
)

// Anti-entropy, after the scuttlebutt reconciliation: every node's digest is
// its version vector. A node that sees a peer ahead on some origin pulls that
// origin's entries after its own vector's seq, one bounded chunk at a time,
// each chunk saying how far it covers. The puller asks for the next chunk only
// after merging the last, so catch-up paces itself; a chain cut short (a lost
// stream, a peer gone) is simply started again from the vector.

// sawDigest records a peer's version vector and has the tick loop start the
// pulls it calls for.
// Delegates call it: it does not block.
func (g *Gossip) sawDigest(m digestMsg) {
	if m.name == "" || m.name == g.cfg.NodeName {
		return
	}
	now := g.cfg.Now()
	g.mu.Lock()
	p := g.peers[m.name]
	if p == nil || p.state == "" {
		// Never a member memberlist admitted (push/pull merges membership
		// before the delegate sees the state): nothing to record, and no
		// table to grow for whoever can reach the port. A member it calls
		// dead is still heard: it may have restarted at a new address.
		g.mu.Unlock()
		return
	}
	clear(p.digest)
	for _, e := range m.entries {
		p.digest[e.origin] = e.seq
	}
	p.seen = now
	if m.addr != "" {
		p.dataAddr = m.addr
	}
	if g.joined.Load() && !g.synced.Load() && g.syncBase[m.name] == nil {
		base := make(map[crdt.ReplicaID]uint64, len(p.digest))
		for o, s := range p.digest {
			base[o] = s
		}
		g.syncBase[m.name] = base
	}
	g.mu.Unlock()
	g.kickPulls()
}

// kickPulls asks the tick loop to schedule pulls now, without waiting for the
// next tick: delegates call it, and scheduling walks every peer's vector.
func (g *Gossip) kickPulls() {
	select {
	case g.pullKick <- struct{}{}:
	default: // a kick is pending already
	}
}

type pullReq struct {
	to  string
	msg pullMsg
}

// schedulePulls starts a pull for every origin some live peer is ahead on and
// no pull is already under way for.
func (g *Gossip) schedulePulls() {
	ours := g.store.Digest()
	now := g.cfg.Now()
	var reqs []pullReq
	g.mu.Lock()
	type best struct {
		peer string
		seq  uint64
	}
	ahead := map[crdt.ReplicaID]best{}
	for name, p := range g.peers {
		if p.state != "alive" && !g.heardLocked(p) {
			continue
		}
		for o, s := range p.digest {
			if o == g.self.replica && g.recover.active {
				continue // recovery pulls this replica's entries from its snapshot's seq
			}
			if s > ours[o] && s > ahead[o].seq {
				ahead[o] = best{name, s}
			}
		}
	}
	busy := map[crdt.ReplicaID]bool{}
	for k, ps := range g.pulls {
		// A pull whose peer went silent (its request or answers lost to a
		// partition) or made no progress for PullTimeout starts over, from
		// another peer if one is ahead.
		p := g.peers[k.peer]
		live := p != nil && (p.state == "alive" || g.heardLocked(p))
		if live && now.Sub(ps.progress) < g.cfg.PullTimeout {
			busy[k.origin] = true
		} else {
			delete(g.pulls, k)
		}
	}
	start := func(o crdt.ReplicaID, peer string, after uint64) {
		g.chains++
		g.pulls[pullKey{o, peer}] = &pullState{chain: g.chains, start: after, after: after, top: math.MaxUint64, progress: now}
		reqs = append(reqs, pullReq{to: peer, msg: pullMsg{from: g.cfg.NodeName, addr: g.addr, origin: o, after: after, base: after, maxBytes: uint64(g.cfg.ChunkBytes), chain: g.chains}})
	}
	for o, b := range ahead {
		if !busy[o] {
			start(o, b.peer, ours[o])
		}
	}
	if g.recover.active {
		// Pull this replica's own entries from every live peer, whatever its
		// digest says: a peer can hold values newer than its version vector
		// (from broadcasts), and a restored node must have them all.
		self := g.self.replica
		for name, p := range g.peers {
			if p.state == "alive" && !g.recover.done[name] && g.pulls[pullKey{self, name}] == nil {
				start(self, name, g.recover.from)
			}
		}
	}
	g.mu.Unlock()
	for _, r := range reqs {
		g.stats.pullsStarted.Add(1)
		g.queuePull(r)
	}
}

func (g *Gossip) queuePull(r pullReq) {
	select {
	case g.pullCh <- r:
	default:
		g.abandonPull(r)
	}
}

// abandonPull ends the chain r belongs to, if it is still the one under way
// (a request of an abandoned chain that fails late must not end its
// successor).
func (g *Gossip) abandonPull(r pullReq) {
	k := pullKey{r.msg.origin, r.to}
	g.mu.Lock()
	if ps := g.pulls[k]; ps != nil && ps.chain == r.msg.chain {
		delete(g.pulls, k)
	}
	g.mu.Unlock()
}

// pullSender sends pull requests; a stream to an unreachable peer may block
// for memberlist's TCP timeout, so it does not run on a delegate.
func (g *Gossip) pullSender() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case r := <-g.pullCh:
			n := g.node(r.to)
			if n == nil {
				g.abandonPull(r)
				continue
			}
			g.mu.Lock()
			if p := g.peers[r.to]; p != nil {
				r.msg.keys, r.msg.hasBase = p.keys, p.base
			}
			g.mu.Unlock()
			b := r.msg.appendTo(nil)
			if err := g.ml.SendReliable(n, b); err != nil {
				g.log.Debug("pull not sent", "peer", r.to, "err", err)
				g.abandonPull(r)
				continue
			}
			g.stats.sent(msgType(b[0]), len(b))
		}
	}
}

// serveWorker answers pulls with chunks read from the store.
func (g *Gossip) serveWorker() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case m := <-g.serveCh:
			n := g.node(m.from)
			if n == nil && m.addr != "" {
				// A member memberlist has not taken back yet (restarted at a
				// new address): answer where it asks from. Only holders of
				// the cluster's key can send a pull at all.
				n = nodeAt(m.from, m.addr)
			}
			if n == nil {
				continue
			}
			out, err := g.answerPull(m)
			if err != nil {
				g.log.Error("reading entries for a peer", "peer", m.from, "origin", m.origin.String(), "err", err)
				continue
			}
			b := out.appendTo(nil)
			if err := g.ml.SendReliable(n, b); err != nil {
				g.log.Debug("chunk not sent", "peer", m.from, "err", err)
				continue
			}
			g.stats.sent(msgType(b[0]), len(b))
			g.stats.chunksServed.Add(1)
		}
	}
}

// answerPull reads the chunk that pull m asks for from the store.
func (g *Gossip) answerPull(m pullMsg) (chunkMsg, error) {
	size := int(min(max(m.maxBytes, 1<<10), uint64(g.cfg.ChunkBytes)))
	// A pull from a node that does not send its chain's base (an older
	// version) gets whole block columns: more bytes, still complete.
	base := uint64(0)
	if m.hasBase {
		base = m.base
	}
	c, err := g.store.ChainChunk(m.origin, base, m.after, size)
	if err != nil {
		return chunkMsg{}, err
	}
	out := chunkMsg{from: g.cfg.NodeName, origin: m.origin, chain: m.chain, after: c.After, next: c.Next, top: c.Top, done: c.Done}
	if m.keys {
		out.keys, out.records, out.comps = true, c.Records, c.Comps
	}
	out.node, out.dc, _ = g.store.ReplicaInfo(m.origin)
	out.entries = make([]entry, len(c.Deltas))
	for i, d := range c.Deltas {
		out.entries[i] = entry{slot: d.Slot, value: d.Entry.Value, seq: d.Entry.Seq}
	}
	return out, nil
}

// chunkWorker merges chunks and asks for the next one.
func (g *Gossip) chunkWorker() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case m := <-g.chunkCh:
			g.handleChunk(m)
		}
	}
}

// handleChunk merges one chunk and asks for the chain's next one.
func (g *Gossip) handleChunk(m chunkMsg) {
	ds := make([]crdt.Delta, len(m.entries))
	for i, e := range m.entries {
		ds[i] = crdt.Delta{Slot: e.slot, Entry: crdt.Entry{Replica: m.origin, Value: e.value, Seq: e.seq}}
	}
	// A chain of chunks covers (start, smallest Top] once its last chunk is
	// in; a chunk alone covers nothing (see store.EntriesSince). A chunk that
	// is not the one the chain asked for (a stale or repeated answer, or an
	// answer to an abandoned chain, read before this chain's chunks were) is
	// merged, but neither covers nor continues anything.
	k := pullKey{m.origin, m.from}
	g.mu.Lock()
	ps := g.pulls[k]
	inChain := ps != nil && ps.chain == m.chain && ps.after == m.after
	var covers []Cover
	if inChain {
		ps.top = min(ps.top, m.top)
		if m.done && ps.top > ps.start {
			covers = []Cover{{Origin: m.origin, From: ps.start, To: ps.top}}
		}
	}
	g.mu.Unlock()
	// Catch-up data is not relayed: every peer pulls its own.
	_, err := g.store.Merge(g.ctx, Changes{Deltas: ds, Covers: covers, Records: m.records, Comps: m.comps})
	if err != nil {
		g.log.Warn("merging a chunk", "peer", m.from, "err", err)
	} else {
		g.stats.chunksMerged.Add(1)
		g.stats.entriesPulled.Add(uint64(len(ds)))
	}
	if m.node != "" {
		if _, _, ok := g.store.ReplicaInfo(m.origin); !ok {
			g.store.SetReplicaInfo(m.origin, m.node, m.dc)
		}
	}
	var next *pullReq
	g.mu.Lock()
	if p := g.peers[m.from]; p != nil && p.digest[m.origin] < m.top {
		p.digest[m.origin] = m.top
	}
	if inChain && g.pulls[k] == ps {
		if err == nil && !m.done {
			ps.after, ps.progress = m.next, g.cfg.Now()
			next = &pullReq{to: m.from, msg: pullMsg{from: g.cfg.NodeName, addr: g.addr, origin: m.origin, after: m.next, base: ps.start, maxBytes: uint64(g.cfg.ChunkBytes), chain: ps.chain}}
		} else {
			delete(g.pulls, k)
			if err == nil {
				g.stats.pullsDone.Add(1)
				if g.recover.active && m.origin == g.self.replica {
					g.recover.done[m.from] = true
				}
			}
		}
	}
	g.mu.Unlock()
	if next != nil {
		g.queuePull(*next)
	}
}

// mergeWorker merges broadcast deltas, several messages per commit, and
// relays what was news so that it spreads epidemically.
func (g *Gossip) mergeWorker() {
	defer g.wg.Done()
	for {
		var in inbound
		select {
		case <-g.ctx.Done():
			return
		case in = <-g.mergeCh:
		}
	more:
		for len(in.deltas)+len(in.records) < 8192 {
			select {
			case more := <-g.mergeCh:
				in.deltas = append(in.deltas, more.deltas...)
				in.records = append(in.records, more.records...)
			default:
				break more
			}
		}
		learned, err := g.store.Merge(g.ctx, Changes{Deltas: in.deltas, Records: in.records})
		if err != nil {
			if g.ctx.Err() == nil {
				g.log.Warn("merging broadcast deltas", "err", err)
			}
			continue
		}
		g.stats.entriesLearned.Add(uint64(len(learned)))
		if len(learned) > 0 {
			g.box.queue(learned)
		}
	}
}

// maxDigestPacket is the largest digest sent in one UDP packet.
const maxDigestPacket = 1200

// refreshTransmits sets how often each broadcast is sent from the members
// alive now (none: nothing is queued for broadcast), and returns them.
func (g *Gossip) refreshTransmits() []*memberlist.Node {
	peers := g.alivePeers()
	g.setTransmits(len(peers))
	return peers
}

// tickLoop sends this node's digest to every live peer and starts the pulls
// the digests it has seen call for.
func (g *Gossip) tickLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.DigestInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.pullKick:
			g.schedulePulls()
			continue
		case <-t.C:
		}
		peers := g.refreshTransmits()
		b := g.digest().appendTo(nil)
		if len(b) <= maxDigestPacket {
			for _, n := range peers {
				if err := g.ml.SendToAddress(memberlist.Address{Addr: n.Address(), Name: n.Name}, b); err == nil {
					g.stats.sent(msgDigest, len(b))
				}
			}
		} else if g.bigDigest.CompareAndSwap(false, true) {
			// A vector of many replicas (every replica ever created stays in
			// it) does not fit a packet: send it over streams, off this loop,
			// which an unreachable peer would hold up for the TCP timeout;
			// skip a round while the last one is still going.
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer g.bigDigest.Store(false)
				for _, n := range peers {
					if g.ctx.Err() != nil {
						return
					}
					if err := g.ml.SendReliable(n, b); err == nil {
						g.stats.sent(msgDigest, len(b))
					}
				}
			}()
		}
		g.schedulePulls()
	}
}

// joinLoop joins the Join addresses, retrying with backoff until one
// answers, then keeps rejoining whenever members go missing: a partition that
// outlasts memberlist's dead-node reaping heals without an operator.
func (g *Gossip) joinLoop() {
	defer g.wg.Done()
	backoff := time.Second
	for len(g.cfg.Join) > 0 && !g.joined.Load() {
		if err := g.Join(g.cfg.Join); err != nil {
			err = joinError(err)
			g.joinErr.Store(&err)
			g.log.Warn("join failed; retrying", "join", g.cfg.Join, "in", backoff, "err", err.Error())
		} else {
			g.log.Info("joined", "via", g.cfg.Join, "members", g.ml.NumMembers())
			break
		}
		select {
		case <-g.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	t := time.NewTicker(g.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		if addrs := g.missing(); len(addrs) > 0 {
			if n, err := g.ml.Join(addrs); n > 0 {
				g.markJoined()
				g.log.Info("rejoined missing members", "contacted", n, "members", g.ml.NumMembers())
			} else {
				g.log.Debug("rejoin failed", "addrs", addrs, "err", joinError(err).Error())
			}
		}
	}
}

// forgetAfter is how long a member unseen is still tried when rejoining.
const forgetAfter = 72 * time.Hour

// missing lists the addresses to try when members are missing: the Join
// addresses and every known member not alive now. Nil when none is missing.
func (g *Gossip) missing() []string {
	now := g.cfg.Now()
	var addrs []string
	lost := false
	g.mu.Lock()
	alive := map[string]bool{g.cfg.NodeName: true}
	for name, p := range g.peers {
		switch {
		case p.state == "alive": // memberlist's view: the one rejoining mends
			alive[name] = true
		case now.Sub(p.changed) > forgetAfter:
			delete(g.peers, name) // gone for days: removed, not partitioned
		}
	}
	for name, t := range g.forgot {
		if now.Sub(t) > forgetAfter {
			delete(g.forgot, name)
		}
	}
	for name, k := range g.known {
		switch {
		case alive[name]:
			g.known[name] = knownMember{addr: k.addr, lastSeen: now}
		case now.Sub(k.lastSeen) > forgetAfter:
			delete(g.known, name)
		case g.peers[name] != nil && g.peers[name].state == "left":
			// It left on purpose: do not pull it back.
		default:
			lost = true
			addrs = append(addrs, k.addr)
		}
	}
	g.mu.Unlock()
	if !lost && (len(alive) > 1 || len(g.cfg.Join) == 0) {
		return nil
	}
	return append(addrs, g.cfg.Join...)
}
