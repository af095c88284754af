package gossip

import (
	"slices"

	"github.com/hashicorp/memberlist"
)

// delegate is the Gossip seen as memberlist.Delegate. Its methods run on
// memberlist's goroutines, under its locks: they decode, record and hand work
// to the workers without blocking, never touch the disk, and never panic on
// any input.
type delegate Gossip

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) g() *Gossip { return (*Gossip)(d) }

func (d *delegate) NodeMeta(limit int) []byte {
	b := d.self.encode()
	if len(b) > limit {
		d.log.Error("node metadata too large; peers will not know this node's replica", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (d *delegate) NotifyMsg(b []byte) {
	d.g().handleMsg(b)
}

// GetBroadcasts returns at most one message: memberlist calls it for every
// packet it sends, and a taken entry goes back in line with transmissions left, so a
// second take in the same call would send the same entries to the same peer
// again and spend transmissions meant for others. (Key records do not travel
// here: see recordbox.)
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	g := d.g()
	m := g.box.entries.take(limit - overhead)
	if m == nil {
		return nil
	}
	g.stats.sent(msgDeltas, len(m))
	return [][]byte{m}
}

func (d *delegate) LocalState(join bool) []byte {
	g := d.g()
	b := g.digest().appendTo(nil)
	g.stats.sent(msgDigest, len(b))
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	g := d.g()
	g.stats.received(msgDigest, len(buf))
	t, dec, err := header(buf)
	if err != nil || t != msgDigest {
		g.stats.decodeErrors.Add(1)
		g.log.Debug("dropping push/pull state", "err", err, "type", t)
		return
	}
	m, err := decodeDigest(dec)
	if err != nil {
		g.stats.decodeErrors.Add(1)
		g.log.Debug("dropping push/pull state", "err", err)
		return
	}
	if !g.knownNode(m.name) {
		g.reject(msgDigest, "push/pull state from a node that is not a member")
		return
	}
	g.stats.exchanges.Add(1)
	g.sawDigest(m)
}

// digest is this node's version vector as a message.
func (g *Gossip) digest() *digestMsg {
	vv := g.store.Digest()
	m := &digestMsg{name: g.cfg.NodeName, addr: g.addr, entries: make([]digestEntry, 0, len(vv))}
	for o, s := range vv {
		m.entries = append(m.entries, digestEntry{origin: o, seq: s})
	}
	slices.SortFunc(m.entries, func(a, b digestEntry) int { return a.origin.Compare(b.origin) })
	return m
}

// handleMsg decodes a user message and queues the work it asks for.
func (g *Gossip) handleMsg(b []byte) {
	t, dec, err := header(b)
	if err != nil {
		g.malformed(t)
		return
	}
	g.stats.received(t, len(b))
	switch t {
	case msgDeltas:
		m, err := decodeDeltas(dec)
		if err != nil {
			break
		}
		if g.dropEchoes(&m) {
			return
		}
		if why := g.checkDeltas(&m); why != "" {
			g.reject(t, why)
			return
		}
		select {
		case g.mergeCh <- inbound{deltas: m.deltas()}:
		default:
			g.stats.dropped.Add(1) // anti-entropy delivers it
		}
		return
	case msgRecords:
		m, err := decodeRecords(dec)
		if err != nil {
			break
		}
		if why := g.checkRecords(&m); why != "" {
			g.reject(t, why)
			return
		}
		select {
		case g.mergeCh <- inbound{records: m.records}:
		default:
			g.stats.dropped.Add(1) // anti-entropy delivers it
		}
		return
	case msgDigest:
		m, err := decodeDigest(dec)
		if err != nil {
			break
		}
		if !g.knownNode(m.name) {
			g.reject(t, "from a node that is not a member")
			return
		}
		g.sawDigest(m)
		return
	case msgPull, msgPullKeys, msgPullBase:
		m, err := decodePull(t, dec)
		if err != nil {
			break
		}
		if !g.knownNode(m.from) {
			g.reject(t, "from a node that is not a member")
			return
		}
		select {
		case g.serveCh <- m:
		default:
			g.stats.dropped.Add(1) // the puller retries
		}
		return
	case msgChunk, msgChunkKeys:
		var m chunkMsg
		if t == msgChunk {
			m, err = decodeChunk(dec)
		} else {
			m, err = decodeChunkKeys(dec)
		}
		if err != nil {
			break
		}
		if !g.knownNode(m.from) {
			g.reject(t, "from a node that is not a member")
			return
		}
		if m.origin == g.store.Replica() && !g.recovering() {
			g.reject(t, "entries of this node's own replica, which only this node raises")
			return
		}
		select {
		case g.chunkCh <- m:
		default:
			g.stats.dropped.Add(1)
		}
		return
	case msgBye:
		m, err := decodeBye(dec)
		if err != nil {
			break
		}
		g.noteBye(m.name)
		return
	case msgForget:
		m, err := decodeForget(dec)
		if err != nil {
			break
		}
		g.forgetFromPeer(m.name)
		return
	}
	g.malformed(t)
}
