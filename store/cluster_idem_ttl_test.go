package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

// TestClusterIdem_PropertyLifecycle: keyed requests retried at random
// replicas over several key TTLs, with partial exchanges, broadcasts that
// carry only entries or only records, checkpoints, the janitor, restarts,
// crashes between commits and restores from a fresh snapshot, and a full
// exchange at least every 58 minutes (a 1h TTL: no partition outlives it).
// Once synced, every replica reports the same total and hours, and the total
// counts each application that no earlier live copy of its request precedes
// (docs/ARCHITECTURE.md, "A deterministic verdict").
func TestClusterIdem_PropertyLifecycle(t *testing.T) {
	const ttl = time.Hour
	rapid.Check(t, func(rt *rapid.T) {
		c := newClock(t0)
		ctx := context.Background()
		n := rapid.IntRange(2, 4).Draw(rt, "replicas")
		async := rapid.Bool().Draw(rt, "async")
		rs := make([]*store.Store, n)
		dirs := make([]string, n)
		open := func(i int) {
			cfg := testConfig(dirs[i], c)
			cfg.IdempotencyTTL = ttl
			if async {
				cfg.Durability = store.Async
			}
			s, err := store.Open(cfg)
			if err != nil {
				rt.Fatal(err)
			}
			rs[i] = s
		}
		for i := range rs {
			dirs[i] = t.TempDir()
			open(i)
		}
		defer func() {
			for _, s := range rs {
				s.Close(ctx)
			}
		}()
		flush := func(s *store.Store) {
			if err := s.Flush(ctx); err != nil {
				rt.Fatal(err)
			}
		}
		mesh := func() {
			for range 3 {
				for _, a := range rs {
					for _, b := range rs {
						if a != b {
							flush(a)
							syncAll(t, a, b, 1<<10)
							flush(b)
						}
					}
				}
			}
		}
		type application struct {
			at time.Time
			r  crdt.ReplicaID
		}
		applied := map[int][]application{}
		nkeys := 0
		var sinceMesh time.Duration
		ops := 10
		if async {
			ops = 8 // an async crash or restore loses acknowledged requests
		}
		for range rapid.IntRange(1, 50).Draw(rt, "steps") {
			switch rapid.IntRange(0, ops).Draw(rt, "op") {
			case 0, 1: // a keyed request, new or retried
				k := rapid.IntRange(0, nkeys).Draw(rt, "key")
				if k == nkeys {
					nkeys++
				}
				at := rs[rapid.IntRange(0, n-1).Draw(rt, "at")]
				res, err := at.Apply(ctx, idemReq(fmt.Sprint("key", k), 1, inc("a", uint64(k+1), c.Now().Add(-time.Duration(k%3)*time.Minute))))
				if err != nil {
					rt.Fatal(err)
				}
				if !res.Replayed {
					applied[k] = append(applied[k], application{c.Now(), at.Replica()})
				}
			case 2: // anti-entropy, possibly cut short
				from, to := rs[rapid.IntRange(0, n-1).Draw(rt, "from")], rs[rapid.IntRange(0, n-1).Draw(rt, "to")]
				if from != to {
					flush(from)
					syncSome(t, from, to, rapid.IntRange(40, 400).Draw(rt, "chunk"), rapid.IntRange(-1, 2).Draw(rt, "chunks"))
					flush(to)
				}
			case 3: // a broadcast: entries only or records only
				from, to := rs[rapid.IntRange(0, n-1).Draw(rt, "bfrom")], rs[rapid.IntRange(0, n-1).Draw(rt, "bto")]
				if from == to {
					continue
				}
				flush(from)
				for o := range from.Digest() {
					ch, err := from.EntriesSince(o, uint64(rapid.IntRange(0, 5).Draw(rt, "bafter")), 1<<20)
					if err != nil {
						rt.Fatal(err)
					}
					chg := store.Changes{Deltas: ch.Deltas}
					if rapid.Bool().Draw(rt, "records") {
						chg = store.Changes{Records: ch.Records}
					}
					if _, err := to.MergeChanges(ctx, chg); err != nil {
						rt.Fatal(err)
					}
				}
				flush(to)
			case 4:
				d := time.Duration(rapid.IntRange(1, 58).Draw(rt, "advance")) * time.Minute
				if sinceMesh+d > 58*time.Minute {
					mesh()
					sinceMesh = 0
				}
				sinceMesh += d
				c.Advance(d)
			case 5:
				if err := rs[rapid.IntRange(0, n-1).Draw(rt, "ckpt")].Checkpoint(ctx); err != nil {
					rt.Fatal(err)
				}
			case 6:
				if err := rs[rapid.IntRange(0, n-1).Draw(rt, "janitor")].Expire(ctx); err != nil {
					rt.Fatal(err)
				}
			case 7, 8: // a restart
				i := rapid.IntRange(0, n-1).Draw(rt, "restart")
				if err := rs[i].Close(ctx); err != nil {
					rt.Fatal(err)
				}
				open(i)
			case 9: // a crash between commits
				i := rapid.IntRange(0, n-1).Draw(rt, "crash")
				d := copyDir(t, dirs[i])
				rs[i].Close(ctx)
				dirs[i] = d
				open(i)
			case 10: // restored from a snapshot, caught up before writes
				i := rapid.IntRange(0, n-1).Draw(rt, "restore")
				d := t.TempDir()
				f, err := os.Create(filepath.Join(d, store.StateFile))
				if err != nil {
					rt.Fatal(err)
				}
				if _, err := rs[i].Snapshot(ctx, f); err != nil {
					rt.Fatal(err)
				}
				f.Close()
				rs[i].Close(ctx)
				dirs[i] = d
				open(i)
				for j := range rs {
					if j != i {
						syncAll(t, rs[j], rs[i], 1<<10)
					}
				}
			}
		}
		mesh()
		var want uint64
		for k, as := range applied {
			for i, ai := range as {
				loses := false
				for j, aj := range as {
					earlier := aj.at.Before(ai.at) || (aj.at.Equal(ai.at) && aj.r.Compare(ai.r) < 0)
					if i != j && earlier && ai.at.Before(aj.at.Add(ttl)) {
						loses = true
					}
				}
				if !loses {
					want += uint64(k + 1)
				}
			}
		}
		q := window.Query{From: c.Now().Add(-47 * time.Hour), To: c.Now().Add(time.Minute), Step: time.Hour}
		ref, _ := mustRange(t, rs[0], "a", q, c.Now())
		for i, s := range rs {
			if got := mustTotal(t, s, "a"); got != want {
				rt.Fatalf("replica %d: total %d, want %d", i, got, want)
			}
			pts, _ := mustRange(t, s, "a", q, c.Now())
			for j := range pts {
				if pts[j] != ref[j] {
					rt.Fatalf("replica %d disagrees with replica 0 on hour %d: %d vs %d", i, j, pts[j], ref[j])
				}
			}
		}
	})
}
