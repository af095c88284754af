package store

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// idemBegin looks req's idempotency key up. If the key is known it returns the
// stored response (replayed) or ErrIdempotencyMismatch. Otherwise it marks the
// key in flight, so that a concurrent retry waits for this request instead of
// applying twice; the committer clears the mark once the request is decided.
func (s *Store) idemBegin(ctx context.Context, req *Request) (Result, bool, error) {
	key := req.IdempotencyKey
	for {
		s.idemMu.Lock()
		if wait, ok := s.inflight[key]; ok {
			s.idemMu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return Result{}, false, ctx.Err()
			}
		}
		rec, found, err := s.lookupIdem(key)
		if err != nil {
			s.idemMu.Unlock()
			return Result{}, false, err
		}
		if found {
			s.idemMu.Unlock()
			if rec.Fingerprint != req.Fingerprint {
				return Result{}, false, ErrIdempotencyMismatch
			}
			return Result{Replayed: true, Response: rec.Response}, true, nil
		}
		s.inflight[key] = make(chan struct{})
		s.idemMu.Unlock()
		return Result{}, false, nil
	}
}

func (s *Store) idemEnd(key string) {
	s.idemMu.Lock()
	defer s.idemMu.Unlock()
	if ch, ok := s.inflight[key]; ok {
		delete(s.inflight, key)
		close(ch)
	}
}

// lookupIdem finds an unexpired record of key in mem or state.db.
func (s *Store) lookupIdem(key string) (idemRecord, bool, error) {
	now := s.cfg.Now().UnixNano()
	s.mu.RLock()
	rec, ok := s.idem[key]
	s.mu.RUnlock()
	if ok {
		return rec, rec.Expires > now, nil
	}
	err := s.state.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIdem).Get([]byte(key))
		if v == nil {
			return nil
		}
		var err error
		rec, err = decodeIdemValue(key, v)
		ok = err == nil
		return err
	})
	if err != nil {
		return idemRecord{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	return rec, ok && rec.Expires > now, nil
}

func idemValue(r idemRecord) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 40+len(r.Response)), uint64(r.Expires))
	v = append(v, r.Fingerprint[:]...)
	return append(v, r.Response...)
}

func decodeIdemValue(key string, v []byte) (idemRecord, error) {
	if len(v) < 40 {
		return idemRecord{}, fmt.Errorf("idempotency record of %d bytes: %w", len(v), ErrIncompatible)
	}
	r := idemRecord{Key: key, Expires: int64(binary.BigEndian.Uint64(v))}
	copy(r.Fingerprint[:], v[8:40])
	r.Response = append([]byte(nil), v[40:]...)
	return r, nil
}
