package crdt

import (
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
	for i := range id {
		switch {
		case id[i] < o[i]:
			return -1
		case id[i] > o[i]:
			return 1
		}
	}
	return 0
}
