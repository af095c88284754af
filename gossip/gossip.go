package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/crdt"
)

// Gossip is one node's membership and replication. Create it with New after
// the store is open; feed it the store's commits with Committed.
type Gossip struct {
	cfg   Config
	log   *slog.Logger
	store Store
	self  meta
	ml    *memberlist.Memberlist
	addr  string // this node's gossip address

	box            *Outbox // the store's commits, waiting to be sent
	pushMu         sync.Mutex
	pushing        map[string]bool // peers a records push is under way to
	bigDigest      atomic.Bool     // a digest too big for a packet is being sent over streams
	retransmitMult int

	// Inbound work, filled by delegates without blocking.
	mergeCh chan inbound
	chunkCh chan chunkMsg
	serveCh chan pullMsg
	pullCh  chan pullReq
	// pullKick wakes the tick loop to schedule pulls (a digest arrived).
	pullKick chan struct{}

	mu      sync.Mutex // guards the fields below
	peers   map[string]*peer
	pulls   map[pullKey]*pullState
	chains  uint64                 // the last pull chain ID handed out
	known   map[string]knownMember // every member ever seen, for rejoining
	recover recovery
	forgot  map[string]time.Time // members removed by force-leave, and when
	// syncBase holds, until the node has caught up once after joining, the
	// first digest heard from each peer since joining: the node is ready when
	// it holds all that.
	syncBase map[string]map[crdt.ReplicaID]uint64
	synced   atomic.Bool

	joined    atomic.Bool
	joinedCh  chan struct{}
	joinErr   atomic.Pointer[error] // the last join attempt's error, for Ready
	duplicate atomic.Pointer[error]

	stats   stats
	dropLog *rateLimit // bounds the log lines about dropped packets
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	closeOnce sync.Once
}

// peer is what this node knows of another.
type peer struct {
	meta    meta
	digest  map[crdt.ReplicaID]uint64
	seen    time.Time // when the digest was last updated
	state   string
	addr    string // gossip address, as memberlist last announced it
	changed time.Time
	// dataAddr is the address the peer's own digests give. A node restarted
	// at a new address is refused by memberlist until its old entry can be
	// reclaimed; replication need not wait for that.
	dataAddr string
	// leaving: the peer said goodbye, so its departure is a leave, not a
	// death (memberlist v0.7.0 hands event delegates a node whose state
	// does not say which).
	leaving bool
	// keys: the peer speaks msgPullKeys, and base msgPullBase (its delegate
	// protocol maximum).
	keys, base bool
}

// inbound is one broadcast message's worth of news.
type inbound struct {
	deltas  []crdt.Delta
	records []crdt.KeyRecord
}

type knownMember struct {
	addr     string
	lastSeen time.Time
}

// pullKey names one catch-up chain: origin's entries from peer.
type pullKey struct {
	origin crdt.ReplicaID
	peer   string
}

// pullState is one catch-up in progress: a chain of chunks from one peer.
type pullState struct {
	chain    uint64 // the chain's ID, echoed by its chunks
	start    uint64 // the chain's first cursor
	after    uint64 // the cursor of the chunk asked for
	top      uint64 // the smallest Top of the chain's chunks so far
	progress time.Time
}

// recovery is the state of a node restored from a snapshot: it pulls its own
// replica's entries after the restored seq from every live peer before it
// takes writes.
type recovery struct {
	active bool
	from   uint64          // this replica's seq in the snapshot
	done   map[string]bool // peers whose entries of this replica are all here
}

// New starts gossiping: it binds the gossip port, and if Join is set, joins
// in the background (Ready reports when it has).
func New(cfg Config, st Store) (*Gossip, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gossip{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    st,
		pushing:  make(map[string]bool),
		mergeCh:  make(chan inbound, 1024),
		chunkCh:  make(chan chunkMsg, 16),
		serveCh:  make(chan pullMsg, 64),
		pullCh:   make(chan pullReq, 256),
		pullKick: make(chan struct{}, 1),
		peers:    make(map[string]*peer),
		dropLog:  newRateLimit(cfg.Logger, 5, 10*time.Second),
		pulls:    make(map[pullKey]*pullState),
		known:    make(map[string]knownMember),
		syncBase: make(map[string]map[crdt.ReplicaID]uint64),
		joinedCh: make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	g.self = meta{
		replica:  st.Replica(),
		dc:       cfg.DC,
		cluster:  cfg.ClusterName,
		windows:  windowsHash(cfg.Windows),
		httpAddr: cfg.HTTPAddr,
		started:  cfg.Now().UnixNano(),
	}
	g.box = cfg.Outbox
	if g.box == nil {
		g.box = NewOutbox(cfg.OutboxLimit, cfg.Now)
	}
	mc, err := g.memberlistConfig()
	if err != nil {
		cancel()
		return nil, err
	}
	g.retransmitMult = mc.RetransmitMult
	g.setTransmits(0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		cancel()
		if t, ok := mc.Transport.(interface{ Shutdown() error }); ok {
			t.Shutdown()
		}
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.BindAddr, err)
	}
	g.ml = ml
	// Taken once: memberlist's LocalNode points into state it rewrites under
	// its own lock, so reading it later would race.
	self := ml.LocalNode()
	g.addr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	if len(cfg.Join) == 0 {
		g.markJoined()
	}
	g.wg.Add(7)
	go g.recordsPusher()
	go g.mergeWorker()
	go g.chunkWorker()
	go g.serveWorker()
	go g.pullSender()
	go g.tickLoop()
	go g.joinLoop()
	return g, nil
}

func (g *Gossip) memberlistConfig() (*memberlist.Config, error) {
	cfg := g.cfg
	mc := cfg.memberlist()
	mc.Name = cfg.NodeName
	host, port, err := splitHostPort(cfg.BindAddr, 7946)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.BindAddr, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr, port)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	mc.Label = cfg.ClusterName
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keys: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Logger = log.New(logWriter{log: cfg.Logger, drops: &g.stats.rejected, limit: g.dropLog}, "", 0)
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	mc.Alive = (*aliveDelegate)(g)
	mc.Merge = (*mergeDelegate)(g)
	// Say that this node speaks the key messages without requiring it of
	// others: older nodes still join, and are sent the older pulls.
	mc.DelegateProtocolMax = baseProtocol
	// A node restarted under the same name at a new address is taken back
	// after this long instead of being ignored until it is reaped.
	mc.DeadNodeReclaimTime = 10 * time.Second
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	// Build the transport here so that tests can wrap it and port 0 works.
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{mc.BindAddr},
		BindPort:  mc.BindPort,
		Logger:    mc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("gossip address %s: %w", cfg.BindAddr, err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		if mc.AdvertisePort == 0 || cfg.AdvertiseAddr == "" {
			mc.AdvertisePort = mc.BindPort
		}
	}
	var t memberlist.NodeAwareTransport = nt
	if cfg.WrapTransport != nil {
		t = cfg.WrapTransport(nt)
	}
	mc.Transport = t
	return mc, nil
}

func splitHostPort(addr string, defPort int) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		// A bare host takes the default port.
		if _, _, err2 := net.SplitHostPort(addr + ":" + strconv.Itoa(defPort)); err2 == nil {
			return addr, defPort, nil
		}
		return "", 0, err
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, p, nil
}

// setTransmits sets how often a broadcast value is sent, for n other live
// members: memberlist's rule, and 0 (queue nothing) when there are none.
func (g *Gossip) setTransmits(n int) {
	t := 0
	if n > 0 {
		t = retransmits(g.retransmitMult, n+1)
	}
	g.box.transmits.Store(int32(t))
}

// retransmits is memberlist's rule: mult × ⌈log10(n+1)⌉.
func retransmits(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}

// recordsPusher sends this node's fresh key records to every peer that
// speaks them, one stream message per peer every RecordsInterval. A peer
// still busy with the previous push (slow or unreachable) is skipped: it
// gets those records from anti-entropy. Records are not relayed: their
// origin sends them to every peer itself.
func (g *Gossip) recordsPusher() {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.RecordsInterval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		msgs := g.box.recs.messages(maxRecordsMessage)
		if len(msgs) == 0 {
			continue
		}
		for _, n := range g.alivePeers() {
			if !g.keysPeer(n.Name) || !g.startPush(n.Name) {
				continue
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer g.endPush(n.Name)
				for _, m := range msgs {
					if g.ctx.Err() != nil {
						return
					}
					if err := g.ml.SendReliable(n, m); err != nil {
						g.log.Debug("key records not pushed", "peer", n.Name, "err", err)
						return
					}
					g.stats.sent(msgRecords, len(m))
				}
			}()
		}
	}
}

func (g *Gossip) keysPeer(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peers[name]
	return p != nil && p.keys
}

func (g *Gossip) startPush(peer string) bool {
	g.pushMu.Lock()
	defer g.pushMu.Unlock()
	if g.pushing[peer] {
		return false
	}
	g.pushing[peer] = true
	return true
}

func (g *Gossip) endPush(peer string) {
	g.pushMu.Lock()
	delete(g.pushing, peer)
	g.pushMu.Unlock()
}

// Addr is the address peers reach this node's gossip at.
func (g *Gossip) Addr() string { return g.addr }

// Join asks the cluster at addrs to take this node in, now.
func (g *Gossip) Join(addrs []string) error {
	n, err := g.ml.Join(addrs)
	if n > 0 {
		g.markJoined()
		return nil
	}
	return err
}

func (g *Gossip) markJoined() {
	if g.joined.CompareAndSwap(false, true) {
		close(g.joinedCh)
	}
}

// Joined is closed once the node has joined (at once without Join).
func (g *Gossip) Joined() <-chan struct{} { return g.joinedCh }

// Ready is nil when the node may take traffic, else why not: it has joined,
// and it holds everything its live peers (alive, or heard from lately) held
// when it first heard from them after joining, so that its reads are not
// missing what the cluster knew.
func (g *Gossip) Ready() error {
	if err := g.WriteBlocked(); err != nil {
		return err
	}
	if !g.joined.Load() {
		if p := g.joinErr.Load(); p != nil {
			return fmt.Errorf("joining %v: %v", g.cfg.Join, *p)
		}
		return fmt.Errorf("joining %v", g.cfg.Join)
	}
	if ok, why := g.caughtUp(); !ok {
		return errors.New(why)
	}
	return nil
}

// caughtUp reports whether the node has caught up with its peers since
// joining (see Ready). Once it has, it stays so.
func (g *Gossip) caughtUp() (bool, string) {
	if g.synced.Load() {
		return true, ""
	}
	ours := g.store.Digest()
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, p := range g.peers {
		// A peer memberlist calls dead but that still sends digests (a
		// false death under load) counts: skipping it would let this node
		// call itself caught up with only what slower peers hold.
		if p.state != "alive" && !g.heardLocked(p) {
			continue
		}
		base, ok := g.syncBase[name]
		if !ok {
			return false, "waiting to hear from " + name
		}
		for o, s := range base {
			if ours[o] < s {
				return false, fmt.Sprintf("catching up: %s holds replica %s up to seq %d, this node up to %d", name, o, s, ours[o])
			}
		}
	}
	g.synced.Store(true)
	g.syncBase = nil
	return true, ""
}

// WriteBlocked is non-nil when this node must refuse writes: another live
// member holds the same replica ID and was there first (a copied data
// directory).
func (g *Gossip) WriteBlocked() error {
	if p := g.duplicate.Load(); p != nil {
		return *p
	}
	return nil
}

// leaveTimeout bounds memberlist's Leave, which waits for its leave message
// to spread: when peers are leaving too, nobody may be left to hear it.
const leaveTimeout = 3 * time.Second

// Close sends what waits in the outbox to every peer, says goodbye, leaves
// the cluster and stops. It is safe to call more than once. ctx bounds the
// handoff and the wait for goodbyes, not Close itself: it then waits for
// every goroutine it started, and a send still dialling a peer out of reach
// ends only at memberlist's TCP timeout (1 s on local, 10 s on lan, 30 s
// on wan).
func (g *Gossip) Close(ctx context.Context) error {
	var err error
	g.closeOnce.Do(func() {
		g.handoff(ctx)
		// Stop the loops: the rejoin loop would join peers back while this
		// node leaves.
		g.cancel()
		g.sayBye(ctx)
		timeout := leaveTimeout
		if d, ok := ctx.Deadline(); ok {
			timeout = min(timeout, max(time.Until(d), 100*time.Millisecond))
		}
		if e := g.ml.Leave(timeout); e != nil {
			g.log.Warn("leaving the cluster", "err", e)
		}
		err = g.ml.Shutdown()
		g.wg.Wait()
	})
	return err
}

// byeTimeout bounds how long a leaving node waits for its goodbyes.
const byeTimeout = time.Second

// sayBye tells every live peer that this node is leaving, over TCP and to
// all at once: memberlist reports a leave as a death, and a goodbye lost on
// UDP would leave this node listed dead where it left. It returns once every
// goodbye is sent, or at byeTimeout or ctx's end, so that the leave goes
// on; a send still dialling then ends within memberlist's TCP timeout, and
// Close waits for it with the other goroutines.
func (g *Gossip) sayBye(ctx context.Context) {
	bye := (&byeMsg{name: g.cfg.NodeName}).appendTo(nil)
	peers := g.alivePeers()
	sent := make(chan struct{}, len(peers))
	for _, n := range peers {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			if g.ml.SendReliable(n, bye) == nil {
				g.stats.sent(msgBye, len(bye))
			}
			sent <- struct{}{}
		}()
	}
	timer := time.NewTimer(byeTimeout)
	defer timer.Stop()
	for range peers {
		select {
		case <-sent:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// handoffTimeout bounds how long a leaving node waits for its peers to hold
// its entries.
const handoffTimeout = 5 * time.Second

// handoff gives live peers what this node committed before it leaves, so
// that a node stopped for good takes nothing with it. It sends the outbox
// over TCP, then waits, while still answering pulls, until every peer heard
// from lately reports in its digest that it holds this replica's entries up
// to the node's seq: broadcasts lost on the way are pulled meanwhile. The
// wait ends at handoffTimeout or ctx's deadline; peers out of reach are not
// waited for (they get the entries from the others).
func (g *Gossip) handoff(ctx context.Context) {
	g.flushOutbox(ctx)
	seq := g.store.Digest()[g.self.replica]
	deadline := time.Now().Add(handoffTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	t := time.NewTicker(max(g.cfg.DigestInterval/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		behind := g.peersBehind(seq)
		if len(behind) == 0 {
			return
		}
		if !time.Now().Before(deadline) {
			g.log.Warn("leaving before every peer holds this node's entries; they will get them from the others, or when it returns", "seq", seq, "behind", behind)
			return
		}
		select {
		case <-ctx.Done():
			g.log.Warn("leaving before every peer holds this node's entries; they will get them from the others, or when it returns", "seq", seq, "behind", behind, "err", ctx.Err())
			return
		case <-t.C:
		}
	}
}

// peersBehind names the peers heard from lately, and not gone, whose
// version vector lacks this replica's entries up to seq.
func (g *Gossip) peersBehind(seq uint64) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var behind []string
	for name, p := range g.peers {
		if p.state != "left" && g.heardLocked(p) && p.digest[g.self.replica] < seq {
			behind = append(behind, name)
		}
	}
	return behind
}

// flushOutbox sends every waiting entry to every live peer over TCP, so that
// nothing committed here waits on this node's next start to spread.
func (g *Gossip) flushOutbox(ctx context.Context) {
	ds := g.box.entries.drain()
	var msgs [][]byte
	if len(ds) > 0 {
		msgs = encodeDeltas(ds, 1<<20)
	}
	msgs = append(msgs, g.box.recs.messages(maxRecordsMessage)...)
	if len(msgs) == 0 {
		return
	}
	for _, n := range g.alivePeers() {
		for _, m := range msgs {
			if ctx.Err() != nil {
				return
			}
			if err := g.ml.SendReliable(n, m); err != nil {
				g.log.Debug("final deltas not delivered", "peer", n.Name, "err", err)
				break
			}
			g.stats.sent(msgType(m[0]), len(m))
		}
	}
}

// encodeDeltas packs deltas into messages of at most size bytes each.
func encodeDeltas(ds []crdt.Delta, size int) [][]byte {
	ob := newOutbox(len(ds) + 1)
	ob.add(ds, 1)
	var msgs [][]byte
	for {
		m := ob.take(size)
		if m == nil {
			return msgs
		}
		msgs = append(msgs, m)
	}
}

// The nodes memberlist's Members and LocalNode return point into state it
// rewrites under its own lock when a node's alive message changes, so reading
// them races. This package keeps its own copy of each member's address, taken
// in the event callbacks (which run under that lock), and sends with nodes
// built from it.

// node returns a node to send data to: a live member, or a member that
// memberlist has not taken back yet but whose digests arrive (see dataAddr).
// Nil when neither.
func (g *Gossip) node(name string) *memberlist.Node {
	g.mu.Lock()
	var addr string
	if p := g.peers[name]; p != nil {
		addr = g.dataAddrLocked(p)
	}
	g.mu.Unlock()
	if addr == "" {
		return nil
	}
	return nodeAt(name, addr)
}

// heardLocked reports whether a member has sent digests lately, from an
// address it gave.
func (g *Gossip) heardLocked(p *peer) bool {
	return p.dataAddr != "" && g.cfg.Now().Sub(p.seen) < 3*g.cfg.DigestInterval
}

// dataAddrLocked is where to send a member data: the address its own recent
// digests give (right after a restart at a new address memberlist may still
// know the old one, alive or dead), else memberlist's address if alive.
func (g *Gossip) dataAddrLocked(p *peer) string {
	switch {
	case g.heardLocked(p):
		return p.dataAddr
	case p.state == "alive":
		return p.addr
	}
	return ""
}

// alivePeers lists the other members memberlist reports alive or that sent
// digests lately, at the address to send them data.
func (g *Gossip) alivePeers() []*memberlist.Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*memberlist.Node
	for name, p := range g.peers {
		if p.state == "alive" || g.heardLocked(p) {
			if n := nodeAt(name, g.dataAddrLocked(p)); n != nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func nodeAt(name, addr string) *memberlist.Node {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	port, _ := strconv.Atoi(ps)
	return &memberlist.Node{Name: name, Addr: net.ParseIP(host), Port: uint16(port)}
}
