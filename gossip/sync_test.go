package gossip

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
)

// coverStore records the covers merges carry.
type coverStore struct {
	nopStore
	covers [][]Cover
}

func (s *coverStore) Merge(_ context.Context, c Changes) ([]crdt.Delta, error) {
	s.covers = append(s.covers, c.Covers)
	return nil, nil
}

func chainTestGossip(st Store) *Gossip {
	return &Gossip{
		cfg:    Config{NodeName: "self", Now: timeNow, ChunkBytes: 1 << 16},
		log:    discard(),
		store:  st,
		ctx:    context.Background(),
		pullCh: make(chan pullReq, 4),
		peers:  map[string]*peer{},
		pulls:  map[pullKey]*pullState{},
	}
}

// A chain's chunks cover nothing until its last, which covers from the
// chain's start to the smallest Top any of its chunks reported.
func TestChunkChain_CoversOnlyWhenDone(t *testing.T) {
	st := &coverStore{}
	g := chainTestGossip(st)
	o := crdt.ReplicaID{7}
	k := pullKey{o, "peer"}
	g.pulls[k] = &pullState{start: 10, after: 10, top: math.MaxUint64}

	g.handleChunk(chunkMsg{from: "peer", origin: o, after: 10, next: 20, top: 15})
	if st.covers[0] != nil {
		t.Fatalf("an unfinished chain's chunk carried covers %+v", st.covers[0])
	}
	if r := <-g.pullCh; r.msg.after != 20 || r.to != "peer" {
		t.Fatalf("next pull: %+v, want after 20 from peer", r)
	}
	g.handleChunk(chunkMsg{from: "peer", origin: o, after: 20, next: 30, top: 30, done: true})
	want := Cover{Origin: o, From: 10, To: 15}
	if len(st.covers[1]) != 1 || st.covers[1][0] != want {
		t.Fatalf("last chunk's covers %+v, want %+v", st.covers[1], want)
	}
	if g.pulls[k] != nil {
		t.Fatal("the chain is still open after its last chunk")
	}
}

// A chunk the chain did not ask for (a repeated or stale answer) covers
// nothing and does not move the chain.
func TestChunkChain_IgnoresStrayChunks(t *testing.T) {
	st := &coverStore{}
	g := chainTestGossip(st)
	o := crdt.ReplicaID{7}
	k := pullKey{o, "peer"}
	g.pulls[k] = &pullState{start: 10, after: 20, top: 40, progress: timeNow()}

	g.handleChunk(chunkMsg{from: "peer", origin: o, after: 12, next: 50, top: 50, done: true})
	g.handleChunk(chunkMsg{from: "other", origin: o, after: 20, next: 50, top: 50, done: true})
	for i, c := range st.covers {
		if c != nil {
			t.Fatalf("stray chunk %d carried covers %+v", i, c)
		}
	}
	if ps := g.pulls[k]; ps == nil || ps.after != 20 {
		t.Fatalf("stray chunks moved the chain: %+v", ps)
	}
	if len(g.pullCh) != 0 {
		t.Fatal("a stray chunk asked for more")
	}
}

// A catch-up from a peer that died (a partition ate its answers) is
// abandoned at the next digest round, not after PullTimeout, and restarted
// from a live peer that is ahead; a live peer's pull in progress is kept.
func TestSchedulePulls_AbandonsPullFromDeadPeer(t *testing.T) {
	g := chainTestGossip(nopStore{})
	g.cfg.PullTimeout = time.Hour
	g.cfg.DigestInterval = time.Second
	now := timeNow()
	o, o2 := crdt.ReplicaID{7}, crdt.ReplicaID{8}
	g.peers["gone"] = &peer{state: "dead", digest: map[crdt.ReplicaID]uint64{o: 50}}
	g.peers["live"] = &peer{state: "alive", addr: "127.0.0.1:1", digest: map[crdt.ReplicaID]uint64{o: 40, o2: 9}}
	g.pulls[pullKey{o, "gone"}] = &pullState{after: 10, top: math.MaxUint64, progress: now}
	g.pulls[pullKey{o2, "live"}] = &pullState{after: 3, top: math.MaxUint64, progress: now}

	g.schedulePulls()

	if g.pulls[pullKey{o, "gone"}] != nil {
		t.Error("the pull from the dead peer is still open")
	}
	if g.pulls[pullKey{o2, "live"}] == nil {
		t.Error("the live peer's pull in progress was dropped")
	}
	select {
	case r := <-g.pullCh:
		if r.to != "live" || r.msg.origin != o {
			t.Fatalf("new pull %+v, want origin %v from live", r, o)
		}
	default:
		t.Fatal("no new pull from the live peer")
	}
	if len(g.pullCh) != 0 {
		t.Fatalf("%d more pulls queued, want none (o2 is under way)", len(g.pullCh))
	}
}

// A node is not caught up while a peer that memberlist calls dead still
// sends digests (a false death under load) and this node has not matched
// what that peer held, even if every peer memberlist calls alive is matched.
func TestCaughtUp_CountsPeersHeardLately(t *testing.T) {
	o := crdt.ReplicaID{7}
	g := chainTestGossip(nopStore{})
	g.cfg.DigestInterval = time.Second
	g.syncBase = map[string]map[crdt.ReplicaID]uint64{}
	g.joined.Store(true)
	g.peers["a1"] = &peer{state: "dead", digest: map[crdt.ReplicaID]uint64{}}
	g.peers["b1"] = &peer{state: "alive", digest: map[crdt.ReplicaID]uint64{}}
	g.mu.Lock()
	g.syncBase["b1"] = map[crdt.ReplicaID]uint64{o: 0} // b1 is behind too
	g.mu.Unlock()

	// a1 is dead and silent: only b1 counts.
	if ok, why := g.caughtUp(); !ok {
		t.Fatalf("not caught up with only a silent dead peer unmatched: %s", why)
	}
	g.synced.Store(false)
	g.syncBase = map[string]map[crdt.ReplicaID]uint64{"b1": {o: 0}}

	// a1 is dead to memberlist but its digest just arrived: it counts.
	g.sawDigest(digestMsg{name: "a1", addr: "127.0.0.1:1", entries: []digestEntry{{origin: o, seq: 20}}})
	if ok, _ := g.caughtUp(); ok {
		t.Fatal("caught up while a peer heard just now holds replica entries up to 20 and this node none")
	}
}

// An answer to an abandoned chain to the same peer, arriving when the new
// chain happens to ask from the same cursor, is not taken as the new chain's
// chunk: it may have been read before the new chain's earlier chunks, and a
// chain whose chunks were not read in order proves nothing.
func TestChunkChain_IgnoresAnswersToAbandonedChains(t *testing.T) {
	st := &coverStore{}
	g := chainTestGossip(st)
	o := crdt.ReplicaID{7}
	k := pullKey{o, "peer"}
	g.pulls[k] = &pullState{chain: 2, start: 0, after: 20, top: 30, progress: timeNow()}

	g.handleChunk(chunkMsg{from: "peer", origin: o, chain: 1, after: 20, next: 30, top: 30, done: true})
	if st.covers[0] != nil {
		t.Fatalf("an abandoned chain's answer carried covers %+v", st.covers[0])
	}
	if ps := g.pulls[k]; ps == nil || ps.after != 20 || len(g.pullCh) != 0 {
		t.Fatalf("an abandoned chain's answer moved the chain: %+v, %d pulls queued", ps, len(g.pullCh))
	}
	g.handleChunk(chunkMsg{from: "peer", origin: o, chain: 2, after: 20, next: 30, top: 30, done: true})
	if want := (Cover{Origin: o, From: 0, To: 30}); len(st.covers[1]) != 1 || st.covers[1][0] != want {
		t.Fatalf("the chain's own last chunk covered %+v, want %+v", st.covers[1], want)
	}
}

// A request of an abandoned chain that fails to go out late ends only its
// own chain, not the one that replaced it.
func TestAbandonPull_EndsOnlyItsOwnChain(t *testing.T) {
	g := chainTestGossip(nopStore{})
	o := crdt.ReplicaID{7}
	k := pullKey{o, "peer"}
	g.pulls[k] = &pullState{chain: 2, after: 5, top: math.MaxUint64, progress: timeNow()}
	g.abandonPull(pullReq{to: "peer", msg: pullMsg{origin: o, after: 0, chain: 1}})
	if g.pulls[k] == nil {
		t.Fatal("a late failure of chain 1 ended chain 2")
	}
	g.abandonPull(pullReq{to: "peer", msg: pullMsg{origin: o, after: 5, chain: 2}})
	if g.pulls[k] != nil {
		t.Fatal("chain 2's own failure did not end it")
	}
}

// chainStore records the arguments of ChainChunk.
type chainStore struct {
	nopStore
	base, after []uint64
}

func (s *chainStore) ChainChunk(_ crdt.ReplicaID, base, after uint64, _ int) (Chunk, error) {
	s.base, s.after = append(s.base, base), append(s.after, after)
	return Chunk{After: after, Next: after + 1, Top: after + 1}, nil
}

// Every pull of a chain carries the chain's start as its base, not the
// cursor it continues from, and the answer reads entries above that base:
// a chunk scanning per-block keys must take a visited block's entries above
// the chain's start (store.ChainChunk), and base 0, what an older node's pull
// gets, is complete but bigger.
func TestChunkChain_PullsAndAnswersUseTheChainsBase(t *testing.T) {
	g := chainTestGossip(&coverStore{})
	o := crdt.ReplicaID{7}
	g.pulls[pullKey{o, "peer"}] = &pullState{start: 10, after: 10, top: math.MaxUint64}
	g.handleChunk(chunkMsg{from: "peer", origin: o, after: 10, next: 20, top: 15})
	r := <-g.pullCh
	if r.msg.after != 20 || r.msg.base != 10 {
		t.Fatalf("next pull after %d with base %d, want after 20 with base 10", r.msg.after, r.msg.base)
	}

	st := &chainStore{}
	g = chainTestGossip(st)
	if _, err := g.answerPull(pullMsg{origin: o, after: 20, base: 10, hasBase: true, keys: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.answerPull(pullMsg{origin: o, after: 20, base: 10, keys: true}); err != nil {
		t.Fatal(err)
	}
	if st.base[0] != 10 || st.after[0] != 20 {
		t.Fatalf("a pull with its base read entries above %d after %d, want above 10 after 20", st.base[0], st.after[0])
	}
	if st.base[1] != 0 || st.after[1] != 20 {
		t.Fatalf("a pull without a base read entries above %d after %d, want above 0 after 20", st.base[1], st.after[1])
	}
}
