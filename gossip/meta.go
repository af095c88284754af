package gossip

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/abacus-counter/abacus/crdt"
)

// meta is what every node tells the cluster about itself in memberlist's node
// metadata (at most 512 bytes).
type meta struct {
	replica  crdt.ReplicaID
	dc       string
	cluster  string
	windows  [8]byte // hash of the window configuration
	httpAddr string
	started  int64 // Unix nanoseconds when this process started
}

const metaVersion = 1

func (m meta) encode() []byte {
	b := []byte{metaVersion}
	b = append(b, m.replica[:]...)
	b = appendString(b, m.dc)
	b = appendString(b, m.cluster)
	b = append(b, m.windows[:]...)
	b = appendString(b, m.httpAddr)
	return binary.AppendVarint(b, m.started)
}

func decodeMeta(b []byte) (meta, error) {
	d := crdt.NewDecoder(b)
	if v := d.Byte(); d.Err() == nil && v != metaVersion {
		return meta{}, fmt.Errorf("node meta version %d: %w", v, errUnknownType)
	}
	m := meta{replica: d.Replica(), dc: d.String(maxNodeName), cluster: d.String(maxNodeName)}
	copy(m.windows[:], d.Bytes(8))
	m.httpAddr = d.String(maxNodeName)
	m.started = d.Varint()
	return m, finish(d)
}

// windowsHash identifies a window configuration (its canonical string).
func windowsHash(s string) [8]byte {
	sum := sha256.Sum256([]byte(s))
	var h [8]byte
	copy(h[:], sum[:8])
	return h
}
