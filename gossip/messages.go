package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/abacus-counter/abacus/crdt"
)

// Every gossip message starts with a type byte and a version byte. Types are
// append-only; a receiver drops (and counts) types and versions it does not
// know, so nodes of different versions can share a cluster.
type msgType byte

const (
	msgDeltas msgType = 1 // fresh entries, broadcast and relayed
	msgDigest msgType = 2 // a version vector: push/pull state and digest pings
	msgPull   msgType = 3 // "send me origin O's entries after seq s"
	msgChunk  msgType = 4 // the answer to a pull
	msgBye    msgType = 5 // "I am leaving": memberlist reports a leave as a death
	// msgRecords carries key records of idempotent requests, broadcast and
	// relayed like deltas.
	msgRecords msgType = 6
	// msgPullKeys is a pull whose answer is a msgChunkKeys: sent to peers
	// that say (memberlist's delegate protocol maximum) they know it.
	msgPullKeys  msgType = 7
	msgChunkKeys msgType = 8 // a chunk with the origin's key records and compensations
	msgForget    msgType = 9 // "forget dead member N": an operator's force-leave
	// msgPullBase is a msgPullKeys that also carries its chain's base: the
	// seq above which the chain wants entries (store.ChainChunk). Sent to
	// peers from baseProtocol on; a pull without it is answered as if its
	// base were 0.
	msgPullBase msgType = 10

	msgLast = msgPullBase // the highest type known
)

// keysProtocol is the delegate protocol version from which a node speaks
// msgRecords, msgPullKeys and msgChunkKeys. Nodes advertise it as their
// maximum and keep version 0 as their current one, so that older nodes still
// take them in.
const keysProtocol = 1

// baseProtocol is the delegate protocol version from which a node speaks
// msgPullBase; nodes advertise it as their maximum.
const baseProtocol = 2

const wireVersion = 1

func (t msgType) String() string {
	switch t {
	case msgDeltas:
		return "deltas"
	case msgDigest:
		return "digest"
	case msgPull:
		return "pull"
	case msgChunk:
		return "chunk"
	case msgBye:
		return "bye"
	case msgRecords:
		return "records"
	case msgPullKeys:
		return "pull_keys"
	case msgPullBase:
		return "pull_base"
	case msgChunkKeys:
		return "chunk_keys"
	case msgForget:
		return "forget"
	}
	return fmt.Sprintf("unknown(%d)", byte(t))
}

var errUnknownType = errors.New("gossip: unknown message type or version")

const maxNodeName = 256

// entry is one origin's entry of one slot; the origin is implied by context.
type entry struct {
	slot  crdt.Slot
	value uint64
	seq   uint64
}

func appendEntry(b []byte, e entry) []byte {
	b = crdt.AppendSlot(b, e.slot)
	b = binary.AppendUvarint(b, e.value)
	return binary.AppendUvarint(b, e.seq)
}

func entrySize(e entry) int { return len(appendEntry(make([]byte, 0, 64), e)) }

func readEntry(d *crdt.Decoder) entry {
	e := entry{slot: d.Slot()}
	e.value = d.Uvarint()
	e.seq = d.Uvarint()
	return e
}

const minEntrySize = crdt.MinSlotSize + 2

// originGroup is a run of entries of one origin replica.
type originGroup struct {
	origin  crdt.ReplicaID
	entries []entry
}

// deltasMsg: uvarint n, n × (origin (16), uvarint m, m × entry).
type deltasMsg struct {
	groups []originGroup
}

func (m *deltasMsg) appendTo(b []byte) []byte {
	b = append(b, byte(msgDeltas), wireVersion)
	b = binary.AppendUvarint(b, uint64(len(m.groups)))
	for _, g := range m.groups {
		b = append(b, g.origin[:]...)
		b = binary.AppendUvarint(b, uint64(len(g.entries)))
		for _, e := range g.entries {
			b = appendEntry(b, e)
		}
	}
	return b
}

func (m *deltasMsg) deltas() []crdt.Delta {
	var out []crdt.Delta
	for _, g := range m.groups {
		for _, e := range g.entries {
			out = append(out, crdt.Delta{Slot: e.slot, Entry: crdt.Entry{Replica: g.origin, Value: e.value, Seq: e.seq}})
		}
	}
	return out
}

func decodeDeltas(d *crdt.Decoder) (deltasMsg, error) {
	var m deltasMsg
	n := d.Count(16 + 1)
	for i := 0; i < n && d.Err() == nil; i++ {
		g := originGroup{origin: d.Replica()}
		k := d.Count(minEntrySize)
		for j := 0; j < k && d.Err() == nil; j++ {
			g.entries = append(g.entries, readEntry(d))
		}
		m.groups = append(m.groups, g)
	}
	return m, finish(d)
}

// digestMsg is a node's version vector: for each origin, the seq up to which
// the node holds every change. name says whose, addr where it gossips.
type digestMsg struct {
	name    string
	addr    string
	entries []digestEntry
}

type digestEntry struct {
	origin crdt.ReplicaID
	seq    uint64
}

func (m *digestMsg) appendTo(b []byte) []byte {
	b = append(b, byte(msgDigest), wireVersion)
	b = appendString(b, m.name)
	b = appendString(b, m.addr)
	b = binary.AppendUvarint(b, uint64(len(m.entries)))
	for _, e := range m.entries {
		b = append(b, e.origin[:]...)
		b = binary.AppendUvarint(b, e.seq)
	}
	return b
}

func decodeDigest(d *crdt.Decoder) (digestMsg, error) {
	m := digestMsg{name: d.String(maxNodeName), addr: d.String(maxNodeName)}
	n := d.Count(17)
	for i := 0; i < n && d.Err() == nil; i++ {
		m.entries = append(m.entries, digestEntry{origin: d.Replica(), seq: d.Uvarint()})
	}
	return m, finish(d)
}

// pullMsg asks a peer for origin's entries with a seq above after.
type pullMsg struct {
	from     string // the requester, to answer to
	addr     string // its gossip address
	origin   crdt.ReplicaID
	after    uint64
	maxBytes uint64
	chain    uint64 // the requester's chain ID, echoed by the answer
	keys     bool   // a msgPullKeys or msgPullBase: answer with a msgChunkKeys
	// base is the seq above which the chain wants origin's entries; it
	// travels only in a msgPullBase (hasBase).
	base    uint64
	hasBase bool
}

func (m *pullMsg) appendTo(b []byte) []byte {
	t := msgPull
	switch {
	case m.hasBase:
		t = msgPullBase
	case m.keys:
		t = msgPullKeys
	}
	b = append(b, byte(t), wireVersion)
	b = appendString(b, m.from)
	b = appendString(b, m.addr)
	b = append(b, m.origin[:]...)
	b = binary.AppendUvarint(b, m.after)
	b = binary.AppendUvarint(b, m.maxBytes)
	b = binary.AppendUvarint(b, m.chain)
	if m.hasBase {
		b = binary.AppendUvarint(b, m.base)
	}
	return b
}

// decodePull decodes a pull of type t.
func decodePull(t msgType, d *crdt.Decoder) (pullMsg, error) {
	m := pullMsg{from: d.String(maxNodeName), addr: d.String(maxNodeName), origin: d.Replica(), after: d.Uvarint(), maxBytes: d.Uvarint(), chain: d.Uvarint()}
	m.keys, m.hasBase = t != msgPull, t == msgPullBase
	if m.hasBase {
		m.base = d.Uvarint()
	}
	return m, finish(d)
}

// chunkMsg answers a pull: origin's entries with a seq in (after, next], and
// the sender's version vector entry for origin as it read them (see
// store.EntriesSince for what a chain of chunks proves).
type chunkMsg struct {
	from    string
	origin  crdt.ReplicaID
	chain   uint64 // the pull's chain ID
	after   uint64
	next    uint64
	top     uint64
	done    bool
	node    string // where origin lives, as far as the sender knows
	dc      string
	entries []entry
	// A msgChunkKeys also carries the origin's key records in (after, next]
	// and the compensations of its copies in the slots of entries.
	keys    bool
	records []crdt.KeyRecord
	comps   []crdt.CompDelta
}

func (m *chunkMsg) appendTo(b []byte) []byte {
	t := msgChunk
	if m.keys {
		t = msgChunkKeys
	}
	b = append(b, byte(t), wireVersion)
	b = appendString(b, m.from)
	b = append(b, m.origin[:]...)
	b = binary.AppendUvarint(b, m.chain)
	b = binary.AppendUvarint(b, m.after)
	b = binary.AppendUvarint(b, m.next)
	b = binary.AppendUvarint(b, m.top)
	done := byte(0)
	if m.done {
		done = 1
	}
	b = append(b, done)
	b = appendString(b, m.node)
	b = appendString(b, m.dc)
	b = binary.AppendUvarint(b, uint64(len(m.entries)))
	for _, e := range m.entries {
		b = appendEntry(b, e)
	}
	if m.keys {
		b = appendRecords(b, m.records)
		b = binary.AppendUvarint(b, uint64(len(m.comps)))
		for _, c := range m.comps {
			b = crdt.AppendSlot(b, c.Slot)
			b = crdt.AppendComp(b, c.Comp)
		}
	}
	return b
}

// decodeChunkKeys reads a msgChunkKeys.
func decodeChunkKeys(d *crdt.Decoder) (chunkMsg, error) {
	m, err := decodeChunkBody(d)
	if err != nil {
		return m, err
	}
	m.keys = true
	m.records = readRecords(d)
	n := d.Count(crdt.MinSlotSize + crdt.MinCompSize)
	for i := 0; i < n && d.Err() == nil; i++ {
		m.comps = append(m.comps, crdt.CompDelta{Slot: d.Slot(), Comp: d.Comp()})
	}
	// A chunk of origin O carries O's records and the compensations of O's
	// copies only (store.EntriesSince): anything else is forged or corrupt,
	// and would let one chunk change other replicas' counts.
	for _, r := range m.records {
		if r.Origin != m.origin {
			d.Fail(crdt.ErrMalformed)
		}
	}
	for _, c := range m.comps {
		if c.Comp.Loser != m.origin {
			d.Fail(crdt.ErrMalformed)
		}
	}
	return m, finish(d)
}

func decodeChunk(d *crdt.Decoder) (chunkMsg, error) {
	m, err := decodeChunkBody(d)
	if err != nil {
		return m, err
	}
	return m, finish(d)
}

// recordsMsg: uvarint n, n × key record.
type recordsMsg struct {
	records []crdt.KeyRecord
}

func (m *recordsMsg) appendTo(b []byte) []byte {
	return appendRecords(append(b, byte(msgRecords), wireVersion), m.records)
}

func decodeRecords(d *crdt.Decoder) (recordsMsg, error) {
	return recordsMsg{records: readRecords(d)}, finish(d)
}

func appendRecords(b []byte, rs []crdt.KeyRecord) []byte {
	b = binary.AppendUvarint(b, uint64(len(rs)))
	for i := range rs {
		b = crdt.AppendKeyRecord(b, &rs[i])
	}
	return b
}

func readRecords(d *crdt.Decoder) []crdt.KeyRecord {
	n := d.Count(crdt.MinKeyRecordSize)
	var out []crdt.KeyRecord
	for i := 0; i < n && d.Err() == nil; i++ {
		out = append(out, d.KeyRecord())
	}
	return out
}

func decodeChunkBody(d *crdt.Decoder) (chunkMsg, error) {
	m := chunkMsg{from: d.String(maxNodeName), origin: d.Replica(), chain: d.Uvarint(), after: d.Uvarint(), next: d.Uvarint(), top: d.Uvarint()}
	switch d.Byte() {
	case 0:
	case 1:
		m.done = true
	default:
		d.Fail(crdt.ErrMalformed)
	}
	m.node = d.String(maxNodeName)
	m.dc = d.String(maxNodeName)
	n := d.Count(minEntrySize)
	for i := 0; i < n && d.Err() == nil; i++ {
		m.entries = append(m.entries, readEntry(d))
	}
	if d.Err() == nil && m.next < m.after {
		d.Fail(crdt.ErrMalformed)
	}
	return m, d.Err()
}

// byeMsg says that node name is leaving the cluster on purpose.
type byeMsg struct {
	name string
}

func (m *byeMsg) appendTo(b []byte) []byte {
	return appendString(append(b, byte(msgBye), wireVersion), m.name)
}

func decodeBye(d *crdt.Decoder) (byeMsg, error) {
	m := byeMsg{name: d.String(maxNodeName)}
	return m, finish(d)
}

// forgetMsg asks the receiver to drop the dead member name from its member
// list (abacus force-leave). memberlist has no cluster-wide force-leave of
// another node: this message is ours, sent over TCP to each live member.
type forgetMsg struct {
	name string
}

func (m *forgetMsg) appendTo(b []byte) []byte {
	return appendString(append(b, byte(msgForget), wireVersion), m.name)
}

func decodeForget(d *crdt.Decoder) (forgetMsg, error) {
	m := forgetMsg{name: d.String(maxNodeName)}
	if d.Err() == nil && m.name == "" {
		d.Fail(crdt.ErrMalformed)
	}
	return m, finish(d)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// finish checks that the decoder met no error and consumed everything.
func finish(d *crdt.Decoder) error {
	if d.Err() == nil && d.Len() != 0 {
		d.Fail(crdt.ErrMalformed)
	}
	if err := d.Err(); err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	return nil
}

// header splits a message into its type and payload decoder.
func header(b []byte) (msgType, *crdt.Decoder, error) {
	if len(b) < 2 {
		return 0, nil, fmt.Errorf("gossip: message of %d bytes: %w", len(b), crdt.ErrTruncated)
	}
	t := msgType(b[0])
	if b[1] != wireVersion || t < msgDeltas || t > msgLast {
		return t, nil, errUnknownType
	}
	return t, crdt.NewDecoder(b[2:]), nil
}
