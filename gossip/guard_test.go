package gossip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/crdt"
)

func guardTestGossip(logs *bytes.Buffer) *Gossip {
	log := slog.New(slog.NewTextHandler(logs, nil))
	g := &Gossip{
		cfg:     Config{NodeName: "self", Now: timeNow},
		log:     log,
		store:   nopStore{}, // replica ff…
		box:     &Outbox{entries: newOutbox(100), recs: newRecordbox(10)},
		mergeCh: make(chan inbound, 64),
		chunkCh: make(chan chunkMsg, 64),
		serveCh: make(chan pullMsg, 64),
		pullCh:  make(chan pullReq, 64),
		peers:   map[string]*peer{},
		pulls:   map[pullKey]*pullState{},
		known:   map[string]knownMember{},
		dropLog: newRateLimit(log, 5, time.Hour),
	}
	g.peers["n1"] = &peer{state: "alive", meta: meta{replica: crdt.ReplicaID{1}}, digest: map[crdt.ReplicaID]uint64{}}
	return g
}

// deltasFor is a deltas message with one group per origin.
func deltasFor(origins ...crdt.ReplicaID) []byte {
	m := &deltasMsg{}
	for _, o := range origins {
		m.groups = append(m.groups, originGroup{origin: o, entries: []entry{{slot: crdt.TotalSlot("c"), value: 1 << 40, seq: 1}}})
	}
	return m.appendTo(nil)
}

// recordsFor is a records message with one record per origin.
func recordsFor(origins ...crdt.ReplicaID) []byte {
	m := &recordsMsg{}
	for i, o := range origins {
		m.records = append(m.records, crdt.KeyRecord{Key: "k", Origin: o, Seq: uint64(i + 1), Accepted: 1, Expires: 1 << 62, Increments: []crdt.KeyedIncrement{{Name: "c", Amount: 1 << 40, TS: 1}}})
	}
	return m.appendTo(nil)
}

// TestGuard_UserMessages: what a node takes from the gossip port, by sender
// and origin, and whether it is recovering.
func TestGuard_UserMessages(t *testing.T) {
	self := nopStore{}.Replica()
	for _, tc := range []struct {
		name       string
		msg        []byte
		recovering bool
		taken      bool
	}{
		{"deltas of a member's replica", deltasFor(crdt.ReplicaID{1}), false, true},
		{"deltas of a stranger's replica", deltasFor(crdt.ReplicaID{9}), false, false},
		{"deltas of this node's replica", deltasFor(self), false, false},
		{"deltas of this node's replica while recovering", deltasFor(self), true, true},
		{"digest from a member", (&digestMsg{name: "n1"}).appendTo(nil), false, true},
		{"digest from a stranger", (&digestMsg{name: "mallory"}).appendTo(nil), false, false},
		{"digest in this node's name", (&digestMsg{name: "self"}).appendTo(nil), false, false},
		{"pull from a member", (&pullMsg{from: "n1", origin: self}).appendTo(nil), false, true},
		{"pull from a stranger", (&pullMsg{from: "mallory", origin: self}).appendTo(nil), false, false},
		{"chunk from a member", (&chunkMsg{from: "n1", origin: crdt.ReplicaID{1}}).appendTo(nil), false, true},
		{"chunk of this node's replica", (&chunkMsg{from: "n1", origin: self}).appendTo(nil), false, false},
		{"chunk of this node's replica while recovering", (&chunkMsg{from: "n1", origin: self}).appendTo(nil), true, true},
		{"chunk from a stranger", (&chunkMsg{from: "mallory", origin: crdt.ReplicaID{1}}).appendTo(nil), false, false},
		{"key records of a member's replica", recordsFor(crdt.ReplicaID{1}), false, true},
		{"key records of a stranger's replica", recordsFor(crdt.ReplicaID{9}), false, false},
		{"key records of this node's replica", recordsFor(self), false, false},
		{"key pull from a stranger", (&pullMsg{from: "mallory", origin: self, keys: true}).appendTo(nil), false, false},
		{"key chunk from a stranger", (&chunkMsg{from: "mallory", origin: crdt.ReplicaID{1}, keys: true}).appendTo(nil), false, false},
		{"key chunk of this node's replica", (&chunkMsg{from: "n1", origin: self, keys: true}).appendTo(nil), false, false},
		{"deltas of a member's replica, then a stranger's", deltasFor(crdt.ReplicaID{1}, crdt.ReplicaID{9}), false, false},
		{"key records of a member's replica, then a stranger's", recordsFor(crdt.ReplicaID{1}, crdt.ReplicaID{1}, crdt.ReplicaID{9}), false, false},
		{"garbage", []byte{1, 1, 0xff}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			g := guardTestGossip(&logs)
			g.recover.active = tc.recovering
			(*delegate)(g).NotifyMsg(tc.msg)
			queued := len(g.mergeCh) + len(g.chunkCh) + len(g.serveCh)
			rejected := g.stats.rejected.Load() + g.stats.decodeErrors.Load() + g.stats.echoes.Load()
			switch {
			case tc.taken && rejected != 0:
				t.Fatalf("dropped (%d): %s", rejected, logs.String())
			case !tc.taken && (rejected != 1 || queued != 0):
				t.Fatalf("rejected %d, queued %d; want dropped and counted once", rejected, queued)
			}
		})
	}
}

// TestGuard_EchoesOfOwnEntries: a relayed message that carries this node's
// own entries beside a member's is taken without them, and writes no log
// line; one that carries only this node's entries is dropped, counted apart,
// and writes none either.
func TestGuard_EchoesOfOwnEntries(t *testing.T) {
	var logs bytes.Buffer
	g := guardTestGossip(&logs)
	self := nopStore{}.Replica()
	e := []entry{{slot: crdt.TotalSlot("c"), value: 1, seq: 1}}
	mixed := (&deltasMsg{groups: []originGroup{{origin: self, entries: e}, {origin: crdt.ReplicaID{1}, entries: e}}}).appendTo(nil)
	(*delegate)(g).NotifyMsg(mixed)
	in := <-g.mergeCh
	if len(in.deltas) != 1 || in.deltas[0].Entry.Replica != (crdt.ReplicaID{1}) {
		t.Fatalf("queued %+v, want the member's entry alone", in.deltas)
	}
	(*delegate)(g).NotifyMsg(deltasFor(self))
	if len(g.mergeCh) != 0 || g.stats.echoes.Load() != 1 || g.stats.rejected.Load() != 0 {
		t.Fatalf("own entries alone: queued %d, echoes %d, rejected %d", len(g.mergeCh), g.stats.echoes.Load(), g.stats.rejected.Load())
	}
	if logs.Len() != 0 {
		t.Fatalf("echoes were logged: %s", logs.String())
	}
}

// TestGuard_LogIsBounded: a flood of bad messages writes a few lines, then
// one that says how many were held back.
func TestGuard_LogIsBounded(t *testing.T) {
	var logs bytes.Buffer
	g := guardTestGossip(&logs)
	g.dropLog = newRateLimit(g.log, 5, time.Hour)
	for i := 0; i < 3000; i++ {
		(*delegate)(g).NotifyMsg(deltasFor(crdt.ReplicaID{9}))
	}
	if n := strings.Count(logs.String(), "\n"); n != 5 {
		t.Fatalf("3000 bad messages wrote %d log lines, want 5", n)
	}
	if got := g.stats.rejected.Load(); got != 3000 {
		t.Fatalf("rejected %d, want 3000", got)
	}
	// memberlist's own lines about packets it dropped count and are bounded too.
	w := logWriter{log: g.log, drops: &g.stats.rejected, limit: g.dropLog}
	w.Write([]byte("[ERR] memberlist: Decrypt packet failed: cipher: message authentication failed from=127.0.0.1:1"))
	if got := g.stats.rejected.Load(); got != 3001 {
		t.Fatalf("a memberlist drop line: rejected %d, want 3001", got)
	}
	if n := strings.Count(logs.String(), "\n"); n != 5 {
		t.Fatalf("%d log lines after the limit, want 5", n)
	}
	r := newRateLimit(g.log, 1, time.Millisecond)
	r.allow()
	r.allow() // held back
	r.start = r.start.Add(-time.Second)
	r.allow()
	if !strings.Contains(logs.String(), "held back log lines") {
		t.Fatalf("no line about what was held back:\n%s", logs.String())
	}
}
