package store

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
)

// ReplicaInfo says where a replica lives, as far as this node knows.
type ReplicaInfo struct {
	ID   crdt.ReplicaID
	Node string // node name; empty if never seen
	DC   string // datacenter; empty if never seen
}

// replicaTable maps replica IDs to the small local indexes state.db stores.
// A table is immutable once published; changes publish a new one, so readers
// load it with one atomic read and never lock.
type replicaTable struct {
	infos []ReplicaInfo // by local index
	index map[crdt.ReplicaID]uint32
}

func (t *replicaTable) lookup(id crdt.ReplicaID) (uint32, bool) {
	i, ok := t.index[id]
	return i, ok
}

func (t *replicaTable) id(idx uint32) (crdt.ReplicaID, bool) {
	if int(idx) >= len(t.infos) {
		return crdt.ReplicaID{}, false
	}
	return t.infos[idx].ID, true
}

func (t *replicaTable) clone() *replicaTable {
	c := &replicaTable{infos: append([]ReplicaInfo(nil), t.infos...), index: make(map[crdt.ReplicaID]uint32, len(t.index)+1)}
	for k, v := range t.index {
		c.index[k] = v
	}
	return c
}

// replicas holds the published table and what is not yet on disk.
type replicas struct {
	cur atomic.Pointer[replicaTable]

	mu        sync.Mutex // serialises changes
	persisted int        // entries [0, persisted) are in state.db as they are in cur
	dirty     map[uint32]bool
}

func (r *replicas) table() *replicaTable { return r.cur.Load() }

// ensure returns the local index of id, adding it if new.
func (r *replicas) ensure(id crdt.ReplicaID) uint32 {
	if i, ok := r.table().lookup(id); ok {
		return i
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.table()
	if i, ok := t.lookup(id); ok {
		return i
	}
	c := t.clone()
	i := uint32(len(c.infos))
	c.infos = append(c.infos, ReplicaInfo{ID: id})
	c.index[id] = i
	r.cur.Store(c)
	return i
}

// setInfo records where replica info.ID lives; it reports whether anything
// changed.
func (r *replicas) setInfo(info ReplicaInfo) bool {
	i := r.ensure(info.ID)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.table()
	if t.infos[i] == info {
		return false
	}
	c := t.clone()
	c.infos[i] = info
	r.cur.Store(c)
	if r.dirty == nil {
		r.dirty = make(map[uint32]bool)
	}
	r.dirty[i] = true
	return true
}

// pending reports whether some entries are not yet in state.db.
func (r *replicas) pending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dirty) > 0 || r.persisted < len(r.table().infos)
}

func replicaValue(info ReplicaInfo) []byte {
	v := append([]byte(nil), info.ID[:]...)
	v = binary.AppendUvarint(v, uint64(len(info.Node)))
	v = append(v, info.Node...)
	v = binary.AppendUvarint(v, uint64(len(info.DC)))
	return append(v, info.DC...)
}

// persist writes the entries that are new or changed since the last persist
// into tx, and returns a function to call once tx has committed. If tx does
// not commit, the next persist writes the same entries again.
func (r *replicas) persist(tx *bolt.Tx) (func(), error) {
	r.mu.Lock()
	t := r.table()
	from := r.persisted
	var dirty []uint32
	for i := range r.dirty {
		dirty = append(dirty, i)
	}
	r.mu.Unlock()
	b := tx.Bucket(bucketReplicas)
	write := func(i int) error {
		return b.Put(binary.BigEndian.AppendUint32(nil, uint32(i)), replicaValue(t.infos[i]))
	}
	for i := from; i < len(t.infos); i++ {
		if err := write(i); err != nil {
			return nil, err
		}
	}
	for _, i := range dirty {
		if int(i) < from {
			if err := write(int(i)); err != nil {
				return nil, err
			}
		}
	}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.persisted = max(r.persisted, len(t.infos))
		now := r.table()
		for _, i := range dirty {
			if now.infos[i] == t.infos[i] {
				delete(r.dirty, i)
			}
		}
	}, nil
}

func loadReplicas(tx *bolt.Tx) (*replicaTable, error) {
	t := &replicaTable{index: make(map[crdt.ReplicaID]uint32)}
	err := tx.Bucket(bucketReplicas).ForEach(func(k, v []byte) error {
		if len(k) != 4 || binary.BigEndian.Uint32(k) != uint32(len(t.infos)) {
			return fmt.Errorf("replica table: key %x out of order: %w", k, ErrIncompatible)
		}
		d := crdt.NewDecoder(v)
		info := ReplicaInfo{ID: d.Replica(), Node: d.String(1024), DC: d.String(1024)}
		if d.Err() != nil {
			return fmt.Errorf("replica table entry %x: %w", k, d.Err())
		}
		t.index[info.ID] = uint32(len(t.infos))
		t.infos = append(t.infos, info)
		return nil
	})
	return t, err
}
