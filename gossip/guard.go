package gossip

import (
	"bytes"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/abacus-counter/abacus/crdt"
)

// The key authenticates packets; these checks are the defense behind it.
// User messages are accepted only from current members: a message that
// names its sender (digest, pull, chunk, bye) must name a node memberlist
// told this node about, and a deltas or records message, which does not name
// its sender, may carry only entries and key records of replicas of such
// nodes (or of this one, while it recovers). Anything else is
// dropped, counted, and logged at a bounded rate.

// knownNode reports whether name is a member this node knows, other than itself.
func (g *Gossip) knownNode(name string) bool {
	if name == g.cfg.NodeName {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peers[name] != nil
}

// recovering reports whether this node is catching up on its own entries
// (see Recover): the only time it takes entries of its own replica.
func (g *Gossip) recovering() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recover.active
}

// checkOrigins says why a message carrying entries or key records of the
// origins origin(0) … origin(n-1) must be dropped, or "". This node holds
// every entry of its own replica it ever committed, unless it is recovering:
// one of its own from a peer is then news of nothing, and one forged (any
// value, any seq) could raise its counts for good or push an entry to the
// top of uint64, where every later increment overflows. It runs in
// NotifyMsg, so it takes g.mu once for the whole message, and checks a run
// of one origin (a records message's usual shape) once.
func (g *Gossip) checkOrigins(n int, origin func(i int) crdt.ReplicaID) string {
	self := g.store.Replica()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := 0; i < n; i++ {
		o := origin(i)
		if i > 0 && o == origin(i-1) {
			continue
		}
		if o == self {
			if g.recover.active {
				continue
			}
			return "entries of this node's own replica, which only this node raises"
		}
		if !g.memberReplicaLocked(o) {
			return "entries of a replica of no member"
		}
	}
	return ""
}

// memberReplicaLocked reports whether origin is the replica of a member.
// The caller holds g.mu.
func (g *Gossip) memberReplicaLocked(origin crdt.ReplicaID) bool {
	for _, p := range g.peers {
		if p.meta.replica == origin {
			return true
		}
	}
	return false
}

// dropEchoes removes from m the entries of this node's own replica, unless
// it is recovering, and reports whether nothing is left. Peers relay what they
// learn to random members, this node among them, so its own entries come
// back to it in a healthy cluster: they are news of nothing, dropped without
// a log line and counted apart (own_replica) from the messages checkDeltas
// refuses. A forged message of this replica's entries ends here too, harmless.
func (g *Gossip) dropEchoes(m *deltasMsg) bool {
	self := g.store.Replica()
	if !slices.ContainsFunc(m.groups, func(grp originGroup) bool { return grp.origin == self }) || g.recovering() {
		return false
	}
	m.groups = slices.DeleteFunc(m.groups, func(grp originGroup) bool { return grp.origin == self })
	if len(m.groups) > 0 {
		return false
	}
	g.stats.echoes.Add(1)
	return true
}

// checkDeltas is checkOrigins for every origin of a deltas message.
func (g *Gossip) checkDeltas(m *deltasMsg) string {
	return g.checkOrigins(len(m.groups), func(i int) crdt.ReplicaID { return m.groups[i].origin })
}

// checkRecords is checkOrigins for the origin of every key record of a
// records message, which does not name its sender either.
func (g *Gossip) checkRecords(m *recordsMsg) string {
	return g.checkOrigins(len(m.records), func(i int) crdt.ReplicaID { return m.records[i].Origin })
}

// reject drops a message that did not pass the checks above.
func (g *Gossip) reject(t msgType, why string) {
	g.stats.rejected.Add(1)
	if g.dropLog.allow() {
		g.log.Warn("dropping gossip message", "type", t.String(), "reason", why)
	}
}

// malformed drops a message that does not decode: counted as a decode
// error, logged at the same bounded rate.
func (g *Gossip) malformed(t msgType) {
	g.stats.decodeErrors.Add(1)
	if g.dropLog.allow() {
		g.log.Warn("dropping gossip message", "type", t.String(), "reason", "malformed")
	}
}

// rateLimit lets through at most n log lines per period and then reports,
// once the period is over, how many it held back.
type rateLimit struct {
	log    *slog.Logger
	n      int
	period time.Duration

	mu         sync.Mutex
	start      time.Time
	used, held int
}

func newRateLimit(log *slog.Logger, n int, period time.Duration) *rateLimit {
	return &rateLimit{log: log, n: n, period: period}
}

func (r *rateLimit) allow() bool {
	if r == nil {
		return true // a Gossip built by hand in a test
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.start) >= r.period {
		if r.held > 0 {
			r.log.Warn("held back log lines about dropped gossip packets", "lines", r.held, "period", r.period)
		}
		r.start, r.used, r.held = now, 0, 0
	}
	if r.used < r.n {
		r.used++
		return true
	}
	r.held++
	return false
}

// packetDrops are the memberlist log lines that say it dropped a packet or
// a stream it could not accept: they are counted as dropped, and logged
// at a bounded rate.
var packetDrops = [][]byte{
	[]byte("Decrypt packet failed"), []byte("unacceptable label"), []byte("double packet label"),
	[]byte("double stream label"), []byte("missing message type"), []byte("not supported"),
	[]byte("Failed to decode"), []byte("invalid checksum"), []byte("Failed to decompress"),
	[]byte("Failed to receive"), []byte("stream label header"), []byte("No installed keys could decrypt"),
	[]byte("Received invalid msgType"), []byte("truncated messages"), []byte("Failed to read remote state"),
	[]byte("Blocked alive"), []byte("Got ping for unexpected node"),
}

func isPacketDrop(line []byte) bool {
	for _, p := range packetDrops {
		if bytes.Contains(line, p) {
			return true
		}
	}
	return false
}
