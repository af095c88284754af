package gossip

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/abacus-counter/abacus/crdt"
)

var timeNow = time.Now

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func delta(name string, origin byte, value, seq uint64) crdt.Delta {
	return crdt.Delta{Slot: crdt.TotalSlot(name), Entry: crdt.Entry{Replica: crdt.ReplicaID{origin}, Value: value, Seq: seq}}
}

func decodeTaken(t *testing.T, b []byte) []crdt.Delta {
	t.Helper()
	typ, d, err := header(b)
	if err != nil || typ != msgDeltas {
		t.Fatalf("not a deltas message: %v", err)
	}
	m, err := decodeDeltas(d)
	if err != nil {
		t.Fatal(err)
	}
	return m.deltas()
}

func TestOutbox_MessagesFitTheLimit(t *testing.T) {
	o := newOutbox(10_000)
	var ds []crdt.Delta
	for i := 0; i < 500; i++ {
		ds = append(ds, delta(fmt.Sprintf("counter-%03d", i), byte(i%3), uint64(i+1), uint64(i+1)))
	}
	o.add(ds, 1)
	seen := map[string]bool{}
	for _, limit := range []int{1360, 200, 64} {
		for {
			b := o.take(limit)
			if b == nil {
				break
			}
			if len(b) > limit {
				t.Fatalf("message of %d bytes for a limit of %d", len(b), limit)
			}
			for _, d := range decodeTaken(t, b) {
				seen[d.Slot.Name] = true
			}
		}
	}
	if len(seen) != 500 || o.len() != 0 {
		t.Fatalf("sent %d of 500 entries, %d still waiting", len(seen), o.len())
	}
}

func TestOutbox_Coalesces(t *testing.T) {
	o := newOutbox(100)
	for v := uint64(1); v <= 1000; v++ {
		o.add([]crdt.Delta{delta("hot", 1, v, v)}, 3)
	}
	o.add([]crdt.Delta{delta("hot", 1, 5, 5)}, 3) // a stale value never replaces a newer one
	if o.len() != 1 {
		t.Fatalf("%d entries for one hot slot", o.len())
	}
	for i := 0; i < 3; i++ {
		got := decodeTaken(t, o.take(1360))
		if len(got) != 1 || got[0].Entry.Value != 1000 {
			t.Fatalf("transmission %d = %+v, want the newest value once", i, got)
		}
	}
	if b := o.take(1360); b != nil {
		t.Fatalf("sent more than the transmit count")
	}
}

func TestOutbox_Bounded(t *testing.T) {
	o := newOutbox(50)
	for i := 0; i < 200; i++ {
		o.add([]crdt.Delta{delta(fmt.Sprintf("c%d", i), 1, 1, 1)}, 2)
	}
	if o.len() != 50 || o.dropped != 150 {
		t.Fatalf("len %d dropped %d, want 50 and 150", o.len(), o.dropped)
	}
	// The queue holds each waiting key once, and the oldest were dropped.
	if len(o.queue) != 50 {
		t.Fatalf("queue holds %d keys for 50 entries", len(o.queue))
	}
	for i, k := range o.queue {
		if _, waiting := o.entries[k]; k.slot.Name != fmt.Sprintf("c%d", 150+i) || !waiting {
			t.Fatalf("queue[%d] = %s (waiting: %v), want c%d", i, k.slot.Name, waiting, 150+i)
		}
	}
}

func TestCommitLog(t *testing.T) {
	var c commitLog
	c.init(4)
	t0 := time.Unix(1000, 0)
	for s := uint64(1); s <= 6; s++ {
		c.add(s*10, t0.Add(time.Duration(s)*time.Second))
	}
	if ts, ok := c.since(35); !ok || !ts.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("since(35) = %v %v", ts, ok)
	}
	if _, ok := c.since(5); ok {
		t.Fatal("a seq older than the log was found exactly")
	}
	if _, ok := c.since(61); ok {
		t.Fatal("a future seq was found")
	}
}

// TestGetBroadcasts_OneCopyPerCall: one call is one target; it must not carry
// the same entry twice, or a value's transmissions are spent on one peer.
func TestGetBroadcasts_OneCopyPerCall(t *testing.T) {
	g := &Gossip{box: &Outbox{entries: newOutbox(100), recs: newRecordbox(10)}}
	g.box.entries.add([]crdt.Delta{delta("a", 1, 1, 1), delta("b", 1, 1, 1)}, 4)
	for call := 1; call <= 4; call++ {
		msgs := (*delegate)(g).GetBroadcasts(3, 1400)
		seen := map[string]int{}
		for _, m := range msgs {
			for _, d := range decodeTaken(t, m) {
				seen[d.Slot.Name]++
			}
		}
		if seen["a"] != 1 || seen["b"] != 1 {
			t.Fatalf("call %d carried %v, want each entry once", call, seen)
		}
	}
	if msgs := (*delegate)(g).GetBroadcasts(3, 1400); len(msgs) != 0 {
		t.Fatal("entries sent more than their transmit count")
	}
}

// When little room is left, take looks at a bounded number of entries that
// do not fit, not the whole queue, and rotates them to the back, so that an
// entry that fits further back is reached by later calls.
func TestOutbox_TakeLooksAtFewEntriesThatDoNotFit(t *testing.T) {
	o := newOutbox(100_000)
	var ds []crdt.Delta
	for i := 0; i < 10_000; i++ {
		ds = append(ds, delta(fmt.Sprintf("a-rather-long-counter-name-%05d", i), 1, 1, 1))
	}
	ds = append(ds, delta("s", 1, 1, 1))
	o.add(ds, 1)
	const room = 40 // fits "s" alone, none of the long names
	calls := 0
	for {
		calls++
		if calls > 10_000/maxSkipped+2 {
			t.Fatal("the entry that fits was never reached")
		}
		if b := o.take(room); b != nil {
			got := decodeTaken(t, b)
			if len(got) != 1 || got[0].Slot.Name != "s" {
				t.Fatalf("took %+v, want only s", got)
			}
			break
		}
		if len(o.queue) != 10_001 {
			t.Fatalf("queue of %d keys after a take that sent nothing, want 10001", len(o.queue))
		}
	}
	if calls < 10_000/maxSkipped {
		t.Fatalf("reached the entry that fits after %d calls: take scanned more than %d entries per call", calls, maxSkipped)
	}
}

// TestRecordbox_Messages: waiting records leave in messages that decode to
// every record, in order, each message within the size asked (a record too
// big alone still goes, alone), and the box is then empty.
func TestRecordbox_Messages(t *testing.T) {
	b := newRecordbox(5)
	var rs []crdt.KeyRecord
	for i := range 7 {
		rs = append(rs, crdt.KeyRecord{Key: fmt.Sprint("key-", i), Origin: crdt.ReplicaID{1}, Seq: uint64(i + 1), Accepted: 1, Expires: 2, Response: make([]byte, 40*i)})
	}
	b.add(rs)
	if b.len() != 5 {
		t.Fatalf("%d records wait, want the limit's 5", b.len())
	}
	msgs := b.messages(300)
	var got []string
	for _, m := range msgs {
		typ, d, err := header(m)
		if err != nil || typ != msgRecords {
			t.Fatalf("message %x: %v %v", m[:2], typ, err)
		}
		rm, err := decodeRecords(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) > 300 && len(rm.records) > 1 {
			t.Fatalf("a message of %d bytes holds %d records", len(m), len(rm.records))
		}
		for _, r := range rm.records {
			got = append(got, r.Key)
		}
	}
	if want := []string{"key-2", "key-3", "key-4", "key-5", "key-6"}; !slices.Equal(got, want) {
		t.Fatalf("records sent %v, want the newest five %v", got, want)
	}
	if b.len() != 0 || len(b.messages(300)) != 0 {
		t.Fatal("the box is not empty after messages")
	}
}

// TestEncodeDeltas_SendsEveryEntry: the last send before leaving (flushOutbox)
// packs every waiting entry into messages that fit, and loses none.
func TestEncodeDeltas_SendsEveryEntry(t *testing.T) {
	var ds []crdt.Delta
	for i := range 300 {
		ds = append(ds, delta(fmt.Sprintf("counter-%03d", i), byte(i%3), uint64(i+1), uint64(i+2)))
	}
	msgs := encodeDeltas(ds, 1400)
	var got []crdt.Delta
	for _, m := range msgs {
		if len(m) > 1400 {
			t.Fatalf("message of %d bytes", len(m))
		}
		got = append(got, decodeTaken(t, m)...)
	}
	key := func(d crdt.Delta) string {
		return fmt.Sprintf("%s %v %d %d", d.Slot.Name, d.Entry.Replica, d.Entry.Value, d.Entry.Seq)
	}
	want := map[string]bool{}
	for _, d := range ds {
		want[key(d)] = true
	}
	for _, d := range got {
		delete(want, key(d))
	}
	if len(got) != len(ds) || len(want) != 0 {
		t.Fatalf("%d messages carried %d entries of %d; missing %d", len(msgs), len(got), len(ds), len(want))
	}
}

// TestOutbox_QueuesOnlyWithLivePeers: with no other member alive (transmits
// 0) a commit is noted but nothing waits for broadcast; with one, it does.
func TestOutbox_QueuesOnlyWithLivePeers(t *testing.T) {
	ob := NewOutbox(100, nil)
	ds := []crdt.Delta{delta("a", 1, 1, 1)}
	ob.Committed(ds)
	ob.CommittedRecords([]crdt.KeyRecord{{Key: "k", Origin: crdt.ReplicaID{1}, Seq: 1}})
	if n := ob.entries.len(); n != 0 || ob.committed.Load() != 0 || len(ob.recs.messages(1<<20)) != 0 {
		t.Fatalf("a lone node queued %d entries (%d counted) and records", n, ob.committed.Load())
	}
	if ob.committedSince(1).IsZero() {
		t.Fatal("the commit's time was not noted")
	}
	ob.transmits.Store(2)
	ob.Committed(ds)
	if n := ob.entries.len(); n != 1 || ob.committed.Load() != 1 {
		t.Fatalf("with a peer: %d entries waiting, %d counted; want 1 and 1", n, ob.committed.Load())
	}
}

// TestOutbox_FirstLivePeerStartsBroadcasts: a lone node queues nothing; the
// first member that joins turns broadcasting on at once (noteMember), and a
// node that finds no live member at its digest tick turns it off again.
func TestOutbox_FirstLivePeerStartsBroadcasts(t *testing.T) {
	ob := NewOutbox(100, nil)
	g := &Gossip{cfg: Config{NodeName: "self", Now: time.Now}, log: discard(), box: ob, retransmitMult: 4,
		store: nopStore{}, peers: map[string]*peer{}, forgot: map[string]time.Time{}, known: map[string]knownMember{}}
	g.setTransmits(0)
	ds := []crdt.Delta{delta("a", 1, 1, 1)}
	ob.Committed(ds)
	if n := ob.entries.len(); n != 0 {
		t.Fatalf("a lone node queued %d entries", n)
	}
	g.noteMember(&memberlist.Node{Name: "peer", Addr: net.IPv4(127, 0, 0, 1), Port: 7946}, "alive")
	ob.Committed(ds)
	if n := ob.entries.len(); n != 1 {
		t.Fatalf("after the first live peer joined: %d entries queued, want 1", n)
	}
	g.refreshTransmits() // the digest tick's
	if got := ob.transmits.Load(); got == 0 {
		t.Fatal("the digest tick turned broadcasting off with a live peer")
	}
	g.noteMember(&memberlist.Node{Name: "peer", Addr: net.IPv4(127, 0, 0, 1), Port: 7946}, "dead")
	g.refreshTransmits() // the digest tick's
	if got := ob.transmits.Load(); got != 0 {
		t.Fatalf("transmits %d with no live member, want 0", got)
	}
}

// TestNoteBye_AfterDeath: a member's goodbye that arrives just after
// memberlist reported it dead (its leave is handled first) lists it as left;
// one that arrives first makes the death a leave; one long after a death
// changes nothing.
func TestNoteBye_AfterDeath(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	g := &Gossip{cfg: Config{NodeName: "self", Now: func() time.Time { return now }}, log: discard(), box: NewOutbox(100, nil), retransmitMult: 4,
		store: nopStore{}, peers: map[string]*peer{}, forgot: map[string]time.Time{}, known: map[string]knownMember{}}
	state := func(name string) string {
		for _, m := range g.Members() {
			if m.Name == name {
				return m.State
			}
		}
		return ""
	}
	for _, name := range []string{"late", "early", "stale"} {
		g.noteMember(&memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: 7946}, "alive")
	}
	g.noteMember(&memberlist.Node{Name: "stale", Addr: net.IPv4(127, 0, 0, 1), Port: 7946}, "dead")
	now = now.Add(time.Minute)
	g.noteBye("stale")
	if got := state("stale"); got != "dead" {
		t.Errorf("goodbye a minute after the death: %s, want dead", got)
	}
	g.noteMember(&memberlist.Node{Name: "late", Addr: net.IPv4(127, 0, 0, 1), Port: 7946}, "dead")
	now = now.Add(time.Second)
	g.noteBye("late")
	g.noteBye("early")
	g.noteMember(&memberlist.Node{Name: "early", Addr: net.IPv4(127, 0, 0, 1), Port: 7946}, "dead")
	if got := state("late"); got != "left" {
		t.Errorf("goodbye after the death: %s, want left", got)
	}
	if got := state("early"); got != "left" {
		t.Errorf("goodbye before the death: %s, want left", got)
	}
	g.noteBye("stranger") // no such member: nothing to note
	if got := state("stranger"); got != "" {
		t.Errorf("a goodbye from a stranger listed it as %s", got)
	}
}
