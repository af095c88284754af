package gossip

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
)

var entryGen = rapid.Custom(func(t *rapid.T) entry {
	name := rapid.StringMatching(`[a-z0-9_.:-]{1,40}`).Draw(t, "name")
	slot := crdt.TotalSlot(name)
	if rapid.Bool().Draw(t, "window") {
		res := rapid.SampledFrom([]uint32{60, 3600, 86400}).Draw(t, "res")
		slot = crdt.Slot{Name: name, Res: res, Start: int64(res) * rapid.Int64Range(0, 1<<30).Draw(t, "k")}
	}
	return entry{slot: slot, value: rapid.Uint64().Draw(t, "value"), seq: rapid.Uint64().Draw(t, "seq")}
})

var idGen = rapid.Custom(func(t *rapid.T) crdt.ReplicaID {
	return crdt.ReplicaID(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "id"))
})

// roundTrip encodes m, decodes it with decode, and re-encodes the result.
func roundTrip[M interface{ appendTo([]byte) []byte }](t *rapid.T, m M, decode func(*crdt.Decoder) (M, error)) {
	b := m.appendTo(nil)
	_, d, err := header(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(d)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if again := got.appendTo(nil); !bytes.Equal(again, b) {
		t.Fatalf("round trip changed the encoding")
	}
}

func TestMessages_RoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var dm deltasMsg
		for _, o := range rapid.SliceOfN(idGen, 0, 4).Draw(t, "origins") {
			dm.groups = append(dm.groups, originGroup{origin: o, entries: rapid.SliceOfN(entryGen, 0, 5).Draw(t, "entries")})
		}
		roundTrip(t, &dm, func(d *crdt.Decoder) (*deltasMsg, error) { m, err := decodeDeltas(d); return &m, err })

		dg := digestMsg{name: rapid.StringMatching(`[a-z0-9-]{0,20}`).Draw(t, "node")}
		for _, o := range rapid.SliceOfN(idGen, 0, 6).Draw(t, "vv") {
			dg.entries = append(dg.entries, digestEntry{origin: o, seq: rapid.Uint64().Draw(t, "s")})
		}
		roundTrip(t, &dg, func(d *crdt.Decoder) (*digestMsg, error) { m, err := decodeDigest(d); return &m, err })

		pm := pullMsg{from: "n1", origin: idGen.Draw(t, "o"), after: rapid.Uint64().Draw(t, "after"), maxBytes: rapid.Uint64().Draw(t, "max"), chain: rapid.Uint64().Draw(t, "chain")}
		switch rapid.IntRange(0, 2).Draw(t, "pull kind") {
		case 1:
			pm.keys = true
		case 2:
			pm.keys, pm.hasBase, pm.base = true, true, rapid.Uint64().Draw(t, "base")
		}
		roundTrip(t, &pm, func(d *crdt.Decoder) (*pullMsg, error) {
			m, err := decodePull(msgType(pm.appendTo(nil)[0]), d)
			if err == nil && (m.keys != pm.keys || m.hasBase != pm.hasBase || m.base != pm.base) {
				t.Fatalf("pull decoded as %+v, sent %+v", m, pm)
			}
			return &m, err
		})

		after := rapid.Uint64Range(0, 1<<40).Draw(t, "cafter")
		cm := chunkMsg{from: "n2", origin: idGen.Draw(t, "co"), chain: rapid.Uint64().Draw(t, "cchain"), after: after, next: after + rapid.Uint64Range(0, 100).Draw(t, "dn"),
			top: rapid.Uint64Range(0, 1<<41).Draw(t, "top"), done: rapid.Bool().Draw(t, "done"), node: "n3", dc: "ams",
			entries: rapid.SliceOfN(entryGen, 0, 5).Draw(t, "centries")}
		roundTrip(t, &cm, func(d *crdt.Decoder) (*chunkMsg, error) { m, err := decodeChunk(d); return &m, err })

		var rs []crdt.KeyRecord
		for i := range rapid.IntRange(0, 3).Draw(t, "nrecs") {
			acc := rapid.Int64Range(0, 1<<62).Draw(t, "accepted")
			rs = append(rs, crdt.KeyRecord{Key: fmt.Sprint("k", i), Origin: idGen.Draw(t, "ro"), Seq: rapid.Uint64().Draw(t, "rseq"), Accepted: acc, Expires: acc + rapid.Int64Range(0, 1<<40).Draw(t, "ttl"),
				Increments: []crdt.KeyedIncrement{{Name: "a", Amount: rapid.Uint64Range(1, 1<<53).Draw(t, "amount"), TS: acc - rapid.Int64Range(0, 1<<40).Draw(t, "age")}}, Response: []byte("{}")})
		}
		rm := recordsMsg{records: rs}
		roundTrip(t, &rm, func(d *crdt.Decoder) (*recordsMsg, error) { m, err := decodeRecords(d); return &m, err })
		ck := cm
		ck.keys = true
		for _, r := range rs {
			r.Origin = cm.origin // a chunk carries its origin's records only
			ck.records = append(ck.records, r)
		}
		for range rapid.IntRange(0, 3).Draw(t, "ncomps") {
			ck.comps = append(ck.comps, crdt.CompDelta{Slot: crdt.TotalSlot("a"), Comp: crdt.Comp{Loser: cm.origin, Seq: rapid.Uint64().Draw(t, "cseq"), Key: rapid.Uint64().Draw(t, "key"), Value: rapid.Uint64().Draw(t, "value")}})
		}
		roundTrip(t, &ck, func(d *crdt.Decoder) (*chunkMsg, error) { m, err := decodeChunkKeys(d); return &m, err })
		// Another replica's record or compensation in it is refused.
		if len(ck.records)+len(ck.comps) > 0 {
			bad := ck
			other := cm.origin
			other[0] ^= 1
			if len(bad.records) > 0 {
				bad.records = append([]crdt.KeyRecord(nil), bad.records...)
				bad.records[0].Origin = other
			} else {
				bad.comps = append([]crdt.CompDelta(nil), bad.comps...)
				bad.comps[0].Comp.Loser = other
			}
			_, d, _ := header(bad.appendTo(nil))
			if _, err := decodeChunkKeys(d); err == nil {
				t.Fatal("a chunk with another replica's record or compensation was accepted")
			}
		}
		pk := pm
		pk.keys, pk.hasBase = true, false
		if b := pk.appendTo(nil); msgType(b[0]) != msgPullKeys {
			t.Fatalf("a keys pull encodes as %v", msgType(b[0]))
		}
		pk.hasBase = true
		if b := pk.appendTo(nil); msgType(b[0]) != msgPullBase {
			t.Fatalf("a pull with its base encodes as %v", msgType(b[0]))
		}

		mt := meta{replica: idGen.Draw(t, "r"), dc: "hkg", cluster: "prod", windows: windowsHash("1m:48h"), httpAddr: "10.0.0.1:4000", started: rapid.Int64().Draw(t, "started")}
		got, err := decodeMeta(mt.encode())
		if err != nil || got != mt {
			t.Fatalf("meta round trip: %+v, %v", got, err)
		}
	})
}

func TestMessages_RejectMalformed(t *testing.T) {
	good := (&chunkMsg{from: "a", after: 5, next: 6, top: 6}).appendTo(nil)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"one byte", []byte{byte(msgDeltas)}},
		{"unknown type", []byte{99, wireVersion}},
		{"unknown version", []byte{byte(msgDeltas), 9}},
		{"truncated chunk", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"next below after", (&chunkMsg{from: "a", after: 5, next: 4, top: 6}).appendTo(nil)},
		{"huge count", []byte{byte(msgDeltas), wireVersion, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"bad slot", (&deltasMsg{groups: []originGroup{{entries: []entry{{slot: crdt.Slot{Name: "a b"}}}}}}).appendTo(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := decodeAny(tt.in); err == nil {
				t.Fatalf("accepted %x", tt.in)
			}
		})
	}
}

// decodeAny decodes one message of any type.
func decodeAny(b []byte) error {
	t, d, err := header(b)
	if err != nil {
		return err
	}
	switch t {
	case msgDeltas:
		_, err = decodeDeltas(d)
	case msgDigest:
		_, err = decodeDigest(d)
	case msgPull, msgPullKeys, msgPullBase:
		_, err = decodePull(t, d)
	case msgChunk:
		_, err = decodeChunk(d)
	case msgBye:
		_, err = decodeBye(d)
	case msgForget:
		_, err = decodeForget(d)
	}
	return err
}

// FuzzDecode feeds arbitrary bytes to every decoder: no input may panic, and
// what is accepted re-encodes to no more bytes than it came in.
func FuzzDecode(f *testing.F) {
	f.Add((&deltasMsg{groups: []originGroup{{origin: crdt.ReplicaID{1}, entries: []entry{{slot: crdt.TotalSlot("a"), value: 3, seq: 1}}}}}).appendTo(nil))
	f.Add((&digestMsg{name: "n1", entries: []digestEntry{{origin: crdt.ReplicaID{2}, seq: 9}}}).appendTo(nil))
	f.Add((&byeMsg{name: "n1"}).appendTo(nil))
	f.Add((&forgetMsg{name: "n1"}).appendTo(nil))
	f.Add((&pullMsg{from: "n1", origin: crdt.ReplicaID{3}, after: 4, maxBytes: 1 << 18}).appendTo(nil))
	f.Add((&chunkMsg{from: "n2", origin: crdt.ReplicaID{4}, after: 1, next: 7, top: 7, done: true, node: "n9", dc: "ams"}).appendTo(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, d, err := header(b)
		if err != nil {
			return
		}
		var re []byte
		switch typ {
		case msgDeltas:
			m, err := decodeDeltas(d)
			if err != nil {
				return
			}
			for _, g := range m.groups {
				for _, e := range g.entries {
					if !e.slot.Valid() {
						t.Fatalf("accepted invalid slot %+v", e.slot)
					}
				}
			}
			re = m.appendTo(nil)
		case msgDigest:
			m, err := decodeDigest(d)
			if err != nil {
				return
			}
			re = m.appendTo(nil)
		case msgPull, msgPullKeys, msgPullBase:
			m, err := decodePull(typ, d)
			if err != nil {
				return
			}
			re = m.appendTo(nil)
		case msgChunk:
			m, err := decodeChunk(d)
			if err != nil {
				return
			}
			if m.next < m.after {
				t.Fatalf("accepted a chunk whose next is below its after")
			}
			re = m.appendTo(nil)
		}
		if len(re) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(re))
		}
	})
}

// FuzzMeta feeds arbitrary node metadata to the decoder and the admission
// check.
func FuzzMeta(f *testing.F) {
	f.Add(meta{replica: crdt.ReplicaID{1}, dc: "dc1", cluster: "abacus", httpAddr: "127.0.0.1:4000", started: 1}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if got, err := decodeMeta(m.encode()); err != nil || got != m {
			t.Fatalf("re-decoding accepted meta: %+v, %v", got, err)
		}
	})
}

// FuzzNotifyMsg sends arbitrary bytes through the delegate, as a peer or an
// attacker on the gossip port could: nothing panics, and queues stay bounded.
func FuzzNotifyMsg(f *testing.F) {
	f.Add((&pullMsg{from: "n1", origin: crdt.ReplicaID{3}, after: 4, maxBytes: 1 << 18}).appendTo(nil))
	f.Add((&digestMsg{name: "n1", entries: []digestEntry{{origin: crdt.ReplicaID{2}, seq: 9}}}).appendTo(nil))
	rec := crdt.KeyRecord{Key: "k", Origin: crdt.ReplicaID{3}, Seq: 2, Accepted: 5, Expires: 9, Increments: []crdt.KeyedIncrement{{Name: "a", Amount: 1, TS: 4}}}
	f.Add((&recordsMsg{records: []crdt.KeyRecord{rec}}).appendTo(nil))
	f.Add((&chunkMsg{from: "n1", keys: true, after: 1, next: 2, records: []crdt.KeyRecord{rec}, comps: []crdt.CompDelta{{Slot: crdt.TotalSlot("a"), Comp: crdt.Comp{Loser: crdt.ReplicaID{3}, Seq: 2, Key: 1, Value: 1}}}}).appendTo(nil))
	f.Add((&pullMsg{from: "n1", origin: crdt.ReplicaID{3}, after: 4, maxBytes: 1 << 18, keys: true}).appendTo(nil))
	f.Add((&pullMsg{from: "n1", origin: crdt.ReplicaID{3}, after: 4, maxBytes: 1 << 18, keys: true, hasBase: true, base: 2}).appendTo(nil))
	g := &Gossip{
		cfg:      Config{NodeName: "self", Now: timeNow},
		log:      discard(),
		store:    nopStore{},
		box:      &Outbox{entries: newOutbox(100), recs: newRecordbox(10)},
		mergeCh:  make(chan inbound, 4),
		chunkCh:  make(chan chunkMsg, 4),
		serveCh:  make(chan pullMsg, 4),
		pullCh:   make(chan pullReq, 4),
		peers:    map[string]*peer{},
		pulls:    map[pullKey]*pullState{},
		known:    map[string]knownMember{},
		syncBase: map[string]map[crdt.ReplicaID]uint64{},
	}
	g.cfg.PullTimeout = 1
	g.joined.Store(true)
	// A member the digests can come from, so that recording them, the
	// readiness base and pull scheduling are fuzzed too.
	g.peers["n1"] = &peer{state: "alive", digest: map[crdt.ReplicaID]uint64{}}
	f.Fuzz(func(t *testing.T, b []byte) {
		clear(g.peers["n1"].digest) // what a digest records comes from this input
		(*delegate)(g).NotifyMsg(b)
		(*delegate)(g).MergeRemoteState(b, false)
		g.schedulePulls() // what the tick loop does when a digest kicks it
		for _, ch := range []int{len(g.mergeCh), len(g.chunkCh), len(g.serveCh), len(g.pullCh)} {
			if ch > 4 {
				t.Fatal("a queue grew past its bound")
			}
		}
		// Drain so that later inputs are not all dropped for full queues.
		for len(g.mergeCh) > 0 {
			<-g.mergeCh
		}
		for len(g.chunkCh) > 0 {
			<-g.chunkCh
		}
		for len(g.serveCh) > 0 {
			<-g.serveCh
		}
		for len(g.pullCh) > 0 {
			<-g.pullCh
		}
		if len(g.peers) > 10_000 {
			t.Fatal("peer table grows without bound")
		}
		// Every open pull has its request queued (at most 4 fit) or was
		// abandoned; stale ones (PullTimeout 1 ns) go at the next round.
		if len(g.pulls) > 4 {
			t.Fatalf("%d pulls open with room for 4 requests", len(g.pulls))
		}
		if p := g.peers["n1"]; p == nil || len(p.digest) > len(b)/17+1 {
			t.Fatal("a digest recorded more origins than its bytes can name")
		}
	})
}

type nopStore struct{}

func (nopStore) Replica() crdt.ReplicaID                       { return crdt.ReplicaID{0xff} }
func (nopStore) Digest() map[crdt.ReplicaID]uint64             { return map[crdt.ReplicaID]uint64{} }
func (nopStore) SetReplicaInfo(crdt.ReplicaID, string, string) {}
func (nopStore) ReplicaInfo(crdt.ReplicaID) (string, string, bool) {
	return "", "", false
}
func (nopStore) ChainChunk(crdt.ReplicaID, uint64, uint64, int) (Chunk, error) {
	return Chunk{Done: true}, nil
}
func (nopStore) Merge(context.Context, Changes) ([]crdt.Delta, error) {
	return nil, nil
}
