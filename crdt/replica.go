package crdt

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
)

// ReplicaID identifies one replica: one node's data directory. It is random,
// created with the directory, and never reused.
type ReplicaID [16]byte

// NewReplicaID reads a fresh random ID from r (crypto/rand.Reader in production).
func NewReplicaID(r io.Reader) (ReplicaID, error) {
	var id ReplicaID
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return ReplicaID{}, fmt.Errorf("new replica id: %w", err)
	}
	return id, nil
}

// ParseReplicaID parses the 32 hex digits String produces.
func ParseReplicaID(s string) (ReplicaID, error) {
	var id ReplicaID
	if len(s) != 2*len(id) {
		return ReplicaID{}, fmt.Errorf("replica id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ReplicaID{}, fmt.Errorf("replica id %q: %w", s, err)
	}
	return id, nil
}

// String returns the ID as 32 lowercase hex digits.
func (id ReplicaID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero value, which no real replica has.
func (id ReplicaID) IsZero() bool { return id == ReplicaID{} }

// Compare orders IDs bytewise: -1, 0 or +1.
func (id ReplicaID) Compare(o ReplicaID) int {
	// Bytewise order is the order of the two big-endian halves.
	if a, b := binary.BigEndian.Uint64(id[:8]), binary.BigEndian.Uint64(o[:8]); a != b {
		return cmp.Compare(a, b)
	}
	return cmp.Compare(binary.BigEndian.Uint64(id[8:]), binary.BigEndian.Uint64(o[8:]))
}
