package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/internal/testenv"
	"github.com/abacus-counter/abacus/store"
)

// damagedDir makes a data directory holding counters c0…c(n-1), c_i = i+1,
// checkpointed and closed, and returns it with the expected totals.
func damagedDir(tb testing.TB, n int) (string, map[string]uint64) {
	tb.Helper()
	c := newClock("2026-11-23T10:00:00Z")
	dir := tb.TempDir()
	s := mustOpen(tb, testConfig(dir, c))
	want := map[string]uint64{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("counter-%04d", i)
		mustApply(tb, s, inc(name, uint64(i+1), c.Now()))
		want[name] = uint64(i + 1)
	}
	mustClose(tb, s)
	return dir, want
}

// openAndRead opens dir and reads every counter of want; it reports whether
// the store refused (with ErrDamaged), and fails the test on a wrong count
// served as right.
func openAndRead(tb testing.TB, dir string, want map[string]uint64) (refused bool) {
	tb.Helper()
	c := newClock("2026-11-23T10:00:00Z")
	s, err := store.Open(testConfig(dir, c))
	if err != nil {
		if !errors.Is(err, store.ErrDamaged) && !errors.Is(err, store.ErrIncompatible) {
			tb.Fatalf("open: %v: neither damaged nor incompatible", err)
		}
		return true
	}
	defer s.Close(context.Background())
	for name, w := range want {
		got, err := s.Total(name)
		if err != nil {
			if !errors.Is(err, store.ErrDamaged) {
				tb.Fatalf("total %s: %v", name, err)
			}
			if s.Err() == nil {
				tb.Fatalf("total %s found damage, but the store takes writes", name)
			}
			return true
		}
		if got != w && !s.Restored() {
			tb.Fatalf("total %s = %d, acknowledged %d, served as right", name, got, w)
		}
	}
	return false
}

func TestStore_Open_Damaged(t *testing.T) {
	src, want := damagedDir(t, 400)
	statePath := filepath.Join(src, store.StateFile)
	pages := testenv.BoltPages(t, statePath)
	size := func() int64 { fi, _ := os.Stat(statePath); return fi.Size() }()
	type damage func(t *testing.T, dir string)
	truncate := func(file string, n int64) damage {
		return func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, file), n); err != nil {
				t.Fatal(err)
			}
		}
	}
	overwrite := func(kind string, i int, at, n int64) damage {
		return func(t *testing.T, dir string) {
			offs := pages[kind]
			if len(offs) == 0 {
				t.Skipf("no %s page", kind)
			}
			f, err := os.OpenFile(filepath.Join(dir, store.StateFile), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := make([]byte, n)
			r := rand.New(rand.NewPCG(uint64(i), uint64(at)))
			for j := range junk {
				junk[j] = byte(r.Uint32())
			}
			if _, err := f.WriteAt(junk, offs[i%len(offs)]+at); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name        string
		damage      damage
		mustRefuse  bool
		mustRecover bool
	}{
		{"state truncated to 0", truncate(store.StateFile, 0), true, false},
		{"state truncated to 16KiB", truncate(store.StateFile, 16<<10), true, true},
		{"state truncated to half", truncate(store.StateFile, size/2), true, true},
		{"state cut by one page", truncate(store.StateFile, size-4096), false, true},
		{"journal truncated to 0", truncate(store.JournalFile, 0), false, true},
		{"journal truncated to 5000", truncate(store.JournalFile, 5000), true, true},
		{"journal deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, store.JournalFile)) }, false, true},
		{"state deleted", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, store.StateFile)) }, true, true},
		{"meta page 0", overwrite("meta", 0, 16, 64), false, true},
		{"both meta pages", func(t *testing.T, dir string) {
			overwrite("meta", 0, 16, 64)(t, dir)
			overwrite("meta", 1, 16, 64)(t, dir)
		}, true, true},
		{"freelist page", overwrite("freelist", 0, 16, 64), false, true},
	}
	for i := 0; i < 6; i++ {
		cases = append(cases,
			struct {
				name                    string
				damage                  damage
				mustRefuse, mustRecover bool
			}{fmt.Sprintf("leaf page %d", i), overwrite("leaf", i*7, int64(100+i*531), 64), false, true},
			struct {
				name                    string
				damage                  damage
				mustRefuse, mustRecover bool
			}{fmt.Sprintf("branch page %d", i), overwrite("branch", i, int64(16+i*37), 64), false, true},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tc.damage(t, dir)
			refused := openAndRead(t, dir, want)
			if tc.mustRefuse && !refused {
				t.Fatalf("opened and served a damaged directory")
			}
			if !refused {
				return
			}
			rep, err := store.Recover(store.RecoverConfig{Dir: dir, Now: newClock("2026-11-23T10:00:00Z").Now})
			if err != nil {
				if tc.mustRecover {
					t.Fatalf("recover: %v", err)
				}
				return
			}
			c := newClock("2026-11-23T10:00:00Z")
			s := mustOpen(t, testConfig(dir, c))
			if !s.Restored() || s.RestoredSeq() != 0 {
				t.Fatalf("recovered store: restored %v from %d, want restored from 0", s.Restored(), s.RestoredSeq())
			}
			got := 0
			for name, w := range want {
				if v := mustTotal(t, s, name); v == w {
					got++
				} else if v > w {
					t.Fatalf("recovered %s = %d > %d", name, v, w)
				}
			}
			t.Logf("salvaged %d of %d counters; lost: %v", got, len(want), rep.Lost)
		})
	}
}

// TestStore_Damage_WhileRunning damages a leaf page under a running store:
// the read that meets it is an error, and the store then refuses writes
// instead of crashing.
func TestStore_Damage_WhileRunning(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	dir := t.TempDir()
	s := mustOpen(t, testConfig(dir, c))
	for i := 0; i < 300; i++ {
		mustApply(t, s, inc(fmt.Sprintf("counter-%04d", i), 1, c.Now()))
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	damageLeaves(t, dir)
	var found error
	for i := 0; i < 300 && found == nil; i++ {
		_, found = s.Total(fmt.Sprintf("counter-%04d", i))
	}
	if !errors.Is(found, store.ErrDamaged) {
		t.Fatalf("reads over damaged leaves: %v, want ErrDamaged", found)
	}
	testenv.WaitFor(t, 5*time.Second, func() (bool, string) {
		_, err := s.Apply(context.Background(), &store.Request{Increments: []store.Increment{inc("x", 1, c.Now())}})
		return errors.Is(err, store.ErrFailed) || errors.Is(err, store.ErrDamaged), fmt.Sprintf("apply: %v", err)
	})
	if !errors.Is(s.Err(), store.ErrDamaged) {
		t.Fatalf("Err = %v, want ErrDamaged", s.Err())
	}
}

// TestStore_Damage_WhileStaging: once a read of state.db fails in a commit,
// the commit's other ops are refused, not staged over the slot whose counter
// the read did not load: a second increment of that counter in the same
// group commit used to crash the node. The writer is held in one commit and
// the committer in the next (both of a counter in mem, which reads nothing)
// while two increments of a counter on a damaged leaf queue up behind them,
// so both land in one group.
func TestStore_Damage_WhileStaging(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	h := openHeldWriter(t, c)
	s := h.s
	defer s.Close(context.Background())
	for i := 0; i < 300; i++ {
		mustApply(t, s, inc(fmt.Sprintf("counter-%04d", i), 1, c.Now()))
	}
	if err := s.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, inc("in-mem", 1, c.Now()))
	damageLeaves(t, h.dir)

	h.hold.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { mustApply(t, s, inc("in-mem", 1, c.Now())) })
	<-h.held
	select {
	case <-h.over: // the held group's own staging
	default:
	}
	wg.Go(func() { mustApply(t, s, inc("in-mem", 1, c.Now())) })
	<-h.over // the committer now waits for the held group
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Apply(context.Background(), &store.Request{Increments: []store.Increment{inc("counter-0100", 1, c.Now())}})
		})
	}
	testenv.WaitFor(t, 5*time.Second, func() (bool, string) {
		return s.QueuedOps() == 2, fmt.Sprintf("%d requests queued, want 2", s.QueuedOps())
	})
	close(h.release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, store.ErrDamaged) {
			t.Fatalf("increment %d over a damaged leaf: %v, want ErrDamaged", i+1, err)
		}
	}
	if !errors.Is(s.Err(), store.ErrDamaged) {
		t.Fatalf("Err = %v, want ErrDamaged", s.Err())
	}
}

// FuzzOpenState mutates a small state.db and opens and reads it: an error
// is fine, a panic or a fault is not.
func FuzzOpenState(f *testing.F) {
	src, want := damagedDir(f, 40)
	base, err := os.ReadFile(filepath.Join(src, store.StateFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(0), []byte{0xff}, uint32(0))
	f.Add(uint32(4096+16), []byte("0123456789abcdef"), uint32(0))
	f.Add(uint32(3*4096+20), []byte{0, 0, 0, 0}, uint32(0))
	f.Add(uint32(0), []byte{}, uint32(20000))
	f.Fuzz(func(t *testing.T, at uint32, patch []byte, cut uint32) {
		b := append([]byte(nil), base...)
		if off := int(at) % len(b); len(patch) > 0 {
			copy(b[off:], patch)
		}
		if cut > 0 {
			b = b[:int(cut)%len(b)]
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, store.StateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		c := newClock("2026-11-23T10:00:00Z")
		s, err := store.Open(testConfig(dir, c))
		if err != nil {
			return
		}
		defer s.Close(context.Background())
		for name := range want {
			s.Total(name)
		}
		s.List("", "", 100)
	})
}

// TestStore_Close_MarksClean: a journal lost after a clean Close loses
// nothing, and even a lone node opens; after an unclean stop it refuses.
func TestStore_Close_MarksClean(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool
	}{{"clean", true}, {"unclean", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock("2026-11-23T10:00:00Z")
			dir := t.TempDir()
			cfg := testConfig(dir, c)
			cfg.RefuseLostJournal = true
			s := mustOpen(t, cfg)
			mustApply(t, s, inc("a", 5, c.Now()))
			if tc.clean {
				mustClose(t, s)
			} else {
				// An unclean stop: the files as a kill -9 leaves them.
				dir = copyDir(t, dir)
				mustClose(t, s)
			}
			os.Remove(filepath.Join(dir, store.JournalFile))
			cfg = testConfig(dir, c)
			cfg.RefuseLostJournal = true
			s2, err := store.Open(cfg)
			if tc.clean {
				if err != nil {
					t.Fatalf("open after a clean close without journal: %v", err)
				}
				if got := mustTotal(t, s2, "a"); got != 5 {
					t.Fatalf("total %d, want 5", got)
				}
				s2.Close(context.Background())
				return
			}
			if err == nil {
				s2.Close(context.Background())
			}
			if !errors.Is(err, store.ErrDamaged) {
				t.Fatalf("open after an unclean stop without journal: %v, want ErrDamaged", err)
			}
			// A node with peers takes it as a restored snapshot: it waits
			// for them to give back its entries before taking writes.
			s3 := mustOpen(t, testConfig(dir, c))
			if !s3.Restored() {
				t.Fatalf("a journal lost after an unclean stop: not restored")
			}
		})
	}
}

// TestStore_Open_BigFileChecks: a state.db above the size that is checked at
// every start is checked after an unclean shutdown only; after a clean one
// its damage is found when read, and stops writes.
func TestStore_Open_BigFileChecks(t *testing.T) {
	src, want := damagedDir(t, 400)
	// Every state.db is "big" to these stores.
	testConfig := func(dir string, c *clock) store.Config {
		return store.WithHooks(testConfig(dir, c), store.Hooks{CheckpointTxSlots: 7, CleanCheckMax: 1})
	}
	damage := func(dir string) {
		p := filepath.Join(dir, store.StateFile)
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, off := range testenv.BoltValues(t, p) {
			one := []byte{0}
			f.ReadAt(one, off)
			one[0] ^= 0x10
			f.WriteAt(one, off)
		}
	}
	c := newClock("2026-11-23T10:00:00Z")

	clean := copyDir(t, src)
	damage(clean)
	s, err := store.Open(testConfig(clean, c))
	if err != nil {
		t.Fatalf("open after a clean close: %v (a big file is not walked then)", err)
	}
	var found error
	for name := range want {
		if _, found = s.Total(name); found != nil {
			break
		}
	}
	if !errors.Is(found, store.ErrDamaged) || !errors.Is(s.Err(), store.ErrDamaged) {
		t.Fatalf("read: %v, Err: %v; want ErrDamaged for both", found, s.Err())
	}
	s.Close(context.Background())

	// The same damage after an unclean stop is found on open.
	unclean := t.TempDir()
	live := mustOpen(t, testConfig(unclean, c))
	for name, v := range want {
		mustApply(t, live, inc(name, v, c.Now()))
	}
	if err := live.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	crashed := copyDir(t, unclean)
	damage(crashed)
	if _, err := store.Open(testConfig(crashed, c)); !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("open after an unclean stop: %v, want ErrDamaged", err)
	}
}

// TestStore_Open_FreelistCountOverflow opens a hand-made state.db whose
// freelist claims 2^61+1 ids: the count times 8 wraps to 8 in an int, and a
// check that multiplies lets the walk read past the page. Open must refuse
// the file, not panic.
func TestStore_Open_FreelistCountOverflow(t *testing.T) {
	const ps = 4096
	le := binary.LittleEndian
	file := make([]byte, 5*ps)
	for i := uint64(0); i < 2; i++ { // meta pages 0 and 1
		p := file[i*ps:]
		le.PutUint64(p, i)
		le.PutUint16(p[8:], 0x04)
		m := p[16:]
		le.PutUint32(m, 0xED0CDAED)
		le.PutUint32(m[4:], 2)
		le.PutUint32(m[8:], ps)
		le.PutUint64(m[16:], 3) // root bucket: page 3
		le.PutUint64(m[32:], 2) // freelist: page 2
		le.PutUint64(m[40:], 5) // high-water mark
		le.PutUint64(m[48:], i) // txid
		h := fnv.New64a()
		h.Write(m[:56])
		le.PutUint64(m[56:], h.Sum64())
	}
	free := file[2*ps:]
	le.PutUint64(free, 2)
	le.PutUint16(free[8:], 0x10)
	le.PutUint16(free[10:], 0xFFFF)
	le.PutUint64(free[16:], 1<<61+1)
	for off := 24; off+8 <= ps; off += 8 {
		le.PutUint64(free[off:], 4) // a page nothing else uses
	}
	leaf := file[3*ps:]
	le.PutUint64(leaf, 3)
	le.PutUint16(leaf[8:], 0x02)
	le.PutUint64(file[4*ps:], 4)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, store.StateFile), file, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(testConfig(dir, newClock("2026-11-23T10:00:00Z")))
	if err == nil {
		s.Close(context.Background())
		t.Fatal("open: a freelist of 2^61+1 ids in one page was taken")
	}
	if !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("open: %v, want ErrDamaged", err)
	}
}

// damageLeaves overwrites every leaf page of the state.db in dir, past its
// header, with junk: bbolt's element headers then point far outside the map.
func damageLeaves(tb testing.TB, dir string) {
	tb.Helper()
	path := filepath.Join(dir, store.StateFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, 4096-16)
	for i := range junk {
		junk[i] = 0xA5
	}
	for _, off := range testenv.BoltPages(tb, path)["leaf"] {
		f.WriteAt(junk, off+16)
	}
}

// TestStore_Damage_WhileRunning_RawTx: the reads that open their own
// transaction with Begin, outside View (by-datacenter reads, and the
// committer's look-up of an idempotency key), turn a damaged page into an
// error too, not a fault that kills the process.
func TestStore_Damage_WhileRunning_RawTx(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(s *store.Store, i int, now time.Time) error
	}{
		{"CountsByDC", func(s *store.Store, i int, now time.Time) error {
			_, err := s.CountsByDC(fmt.Sprintf("counter-%04d", i), []store.Span{{Res: 60, From: now.Add(-time.Hour).Unix(), To: now.Unix()}})
			return err
		}},
		{"MergeChanges of a key record", func(s *store.Store, i int, now time.Time) error {
			r := crdt.KeyRecord{Key: fmt.Sprintf("key-%04d", i), Origin: crdt.ReplicaID{7}, Seq: uint64(i + 1), Accepted: now.UnixNano(), Expires: now.Add(time.Hour).UnixNano(), Increments: []crdt.KeyedIncrement{{Name: fmt.Sprintf("counter-%04d", i), Amount: 1, TS: now.UnixNano()}}}
			_, err := s.MergeChanges(context.Background(), store.Changes{Records: []crdt.KeyRecord{r}})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock("2026-11-23T10:00:00Z")
			dir := t.TempDir()
			s := mustOpen(t, testConfig(dir, c))
			defer s.Close(context.Background())
			for i := 0; i < 300; i++ {
				_, err := s.Apply(context.Background(), &store.Request{IdempotencyKey: fmt.Sprintf("key-%04d", i), Increments: []store.Increment{inc(fmt.Sprintf("counter-%04d", i), 1, c.Now())}})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			damageLeaves(t, dir)
			var found error
			for i := 0; i < 300 && found == nil; i++ {
				found = tc.read(s, i, c.Now())
			}
			if !errors.Is(found, store.ErrDamaged) && !errors.Is(found, store.ErrFailed) {
				t.Fatalf("reads over damaged leaves: %v, want ErrDamaged", found)
			}
		})
	}
}

// TestStore_Open_DamagedJournalRecord: a journal record that does not decode,
// or a key that is not a record number, refuses the open with a DamagedError
// naming journal.db; a record of a newer build refuses it as incompatible:
// that is not damage (and abacus recover refuses it too). The refused open
// writes nothing to either file, whether the previous process crashed or
// closed cleanly (a state.db left marked open would make the next start look
// like one after a crash).
func TestStore_Open_DamagedJournalRecord(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	crashed, closed := journalDirs(t, c)
	bases := map[string]string{"crashed": crashed, "closed": closed}
	read := func(t *testing.T, path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for base, from := range bases {
		for _, tc := range []struct {
			name     string
			key, val []byte
			newer    bool // written by a newer build: incompatible, not damaged
		}{
			{"record that does not decode", binary.BigEndian.AppendUint64(nil, 3), []byte{2, 0xff, 0xff}, false},
			{"record of version 0", binary.BigEndian.AppendUint64(nil, 3), []byte{0}, false},
			{"record of the version after this build's", binary.BigEndian.AppendUint64(nil, 3), store.NewerRecord(), true},
			{"record of the version after this build's, its sum wrong", binary.BigEndian.AppendUint64(nil, 3), []byte{store.RecordVersion + 1, 0, 0, 0, 0}, false},
			{"key that is not a record number", []byte("junk"), []byte{2, 0, 0, 0, 0, 0, 0}, false},
		} {
			t.Run(base+"/"+tc.name, func(t *testing.T) {
				dir := copyDir(t, from)
				journal, state := filepath.Join(dir, store.JournalFile), filepath.Join(dir, store.StateFile)
				if err := store.PutJournalValue(journal, tc.key, tc.val); err != nil {
					t.Fatal(err)
				}
				journalBefore, stateBefore := read(t, journal), read(t, state)
				r, err := store.Open(testConfig(dir, c))
				if err == nil {
					r.Close(context.Background())
					t.Fatal("opened a journal with a record it cannot read")
				}
				var de *store.DamagedError
				switch {
				case tc.newer && (!errors.Is(err, store.ErrIncompatible) || errors.Is(err, store.ErrDamaged)):
					t.Fatalf("open: %v, want ErrIncompatible and not damage: nothing to recover from", err)
				case !tc.newer && (!errors.As(err, &de) || de.File != journal):
					t.Fatalf("open: %v, want a DamagedError naming %s", err, journal)
				}
				if !bytes.Equal(journalBefore, read(t, journal)) {
					t.Error("the refused open wrote to journal.db")
				}
				if !bytes.Equal(stateBefore, read(t, state)) {
					t.Error("the refused open wrote to state.db")
				}
			})
		}
	}
}

// TestRecover_RefusesWhatANewerBuildWrote: abacus recover salvages what
// decodes and sets the rest aside, but a journal record of a newer build, or
// a state.db of a newer schema, is not damage, and this build would misread
// it: recover refuses and changes nothing, rather than dropping what that
// build would read.
func TestRecover_RefusesWhatANewerBuildWrote(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"journal record", func(dir string) error {
			return store.PutJournalValue(filepath.Join(dir, store.JournalFile), binary.BigEndian.AppendUint64(nil, 3), store.NewerRecord())
		}},
		{"state.db schema", func(dir string) error {
			return store.SetSchema(filepath.Join(dir, store.StateFile), store.SchemaVersion+1)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := journalDirs(t, c)
			if err := tc.damage(dir); err != nil {
				t.Fatal(err)
			}
			before := dirContents(t, dir)
			_, err := store.Recover(store.RecoverConfig{Dir: dir, Now: c.Now})
			if !errors.Is(err, store.ErrIncompatible) {
				t.Fatalf("recover: %v, want ErrIncompatible", err)
			}
			if after := dirContents(t, dir); !maps.EqualFunc(before, after, bytes.Equal) {
				t.Errorf("the refused recover changed the data directory: %d files before, %d after", len(before), len(after))
			}
		})
	}
}

// TestRecover_IgnoreSchema: a schema value damaged into a newer build's
// (3 with a bit flipped: 7) is refused like a newer build's, by Open and by
// recover, whose refusal names --ignore-schema; with it, recover salvages the
// directory as this build's schema. A schema of 0 is damage.
func TestRecover_IgnoreSchema(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	_, dir := journalDirs(t, c)
	state := filepath.Join(dir, store.StateFile)
	if err := store.SetSchema(state, store.SchemaVersion^4); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Recover(store.RecoverConfig{Dir: dir, Now: c.Now}); !errors.Is(err, store.ErrIncompatible) || !strings.Contains(err.Error(), "--ignore-schema") {
		t.Fatalf("recover: %v, want ErrIncompatible naming --ignore-schema", err)
	}
	if _, err := store.Recover(store.RecoverConfig{Dir: dir, Now: c.Now, IgnoreSchema: true}); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, testConfig(dir, c))
	for i := range 5 {
		if got := mustTotal(t, s, fmt.Sprintf("c%d", i)); got != 1 {
			t.Errorf("c%d = %d after recover --ignore-schema, want 1", i, got)
		}
	}
	mustClose(t, s)

	_, dir = journalDirs(t, c)
	state = filepath.Join(dir, store.StateFile)
	if err := store.SetSchema(state, 0); err != nil {
		t.Fatal(err)
	}
	var damaged *store.DamagedError
	if _, err := store.Open(testConfig(dir, c)); !errors.As(err, &damaged) || damaged.File != state || !strings.HasPrefix(damaged.Reason, "schema ") {
		t.Fatalf("open of schema 0: %v, want state.db damaged for its schema", err)
	}
}

// TestStore_Open_NewerSchemaChangesNothing: Open refuses a state.db of a
// newer build's schema, with its journal or without one (a newer build's
// snapshot), before it writes anything: no restored mark, no new journal.
func TestStore_Open_NewerSchemaChangesNothing(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	for _, withJournal := range []bool{true, false} {
		t.Run(fmt.Sprintf("journal %v", withJournal), func(t *testing.T) {
			_, dir := journalDirs(t, c)
			if err := store.SetSchema(filepath.Join(dir, store.StateFile), store.SchemaVersion+1); err != nil {
				t.Fatal(err)
			}
			if !withJournal {
				if err := os.Remove(filepath.Join(dir, store.JournalFile)); err != nil {
					t.Fatal(err)
				}
			}
			before := dirContents(t, dir)
			if _, err := store.Open(testConfig(dir, c)); !errors.Is(err, store.ErrIncompatible) || errors.Is(err, store.ErrDamaged) {
				t.Fatalf("open: %v, want ErrIncompatible and not damage", err)
			}
			if after := dirContents(t, dir); !maps.EqualFunc(before, after, bytes.Equal) {
				t.Errorf("the refused open changed the data directory: %d files before, %d after", len(before), len(after))
			}
		})
	}
}

// TestRecover_SalvagesRecordsPastADamagedOne: recover merges every journal
// record that decodes, those after a damaged one too: each holds absolute
// values. Only the damaged record's increments are lost (to come back from
// peers), and the report names it.
func TestRecover_SalvagesRecordsPastADamagedOne(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	dir, _ := journalDirs(t, c) // records 1–5: one increment to each of c0…c4
	if err := store.PutJournalValue(filepath.Join(dir, store.JournalFile), binary.BigEndian.AppendUint64(nil, 2), []byte{3, 0xff}); err != nil {
		t.Fatal(err)
	}
	rep, err := store.Recover(store.RecoverConfig{Dir: dir, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Journal != 4 || len(rep.Lost) != 1 || !strings.Contains(rep.Lost[0], "record 0000000000000002") {
		t.Errorf("report: %d records salvaged, lost %q; want 4, and record 2 named lost", rep.Journal, rep.Lost)
	}
	s := mustOpen(t, testConfig(dir, c))
	defer mustClose(t, s)
	for i, want := range []uint64{1, 0, 1, 1, 1} {
		if got := mustTotal(t, s, fmt.Sprintf("c%d", i)); got != want {
			t.Errorf("c%d = %d after recover, want %d", i, got, want)
		}
	}
}

// TestStore_Open_MissingBucket: a state.db that lost a bucket (a root page
// damaged into another valid page) is damaged. Open made a missing bucket
// anew and empty, serving no counts where there were some, and a state.db
// that lost its meta bucket became a new replica.
func TestStore_Open_MissingBucket(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	crashed, closed := journalDirs(t, c)
	for _, base := range []struct{ name, dir string }{{"crashed", crashed}, {"closed", closed}} {
		// Every bucket at once leaves a file like a new one, but journal.db
		// names the replica it belonged to.
		for _, lost := range append(store.StateBuckets(), "every bucket") {
			t.Run(base.name+"/"+lost, func(t *testing.T) {
				dir := copyDir(t, base.dir)
				state := filepath.Join(dir, store.StateFile)
				buckets := []string{lost}
				if lost == "every bucket" {
					buckets = store.StateBuckets()
				}
				for _, b := range buckets {
					if err := store.DeleteStateBucket(state, b); err != nil {
						t.Fatal(err)
					}
				}
				before := dirContents(t, dir)
				_, err := store.Open(testConfig(dir, c))
				var damaged *store.DamagedError
				if !errors.As(err, &damaged) || damaged.File != state {
					t.Fatalf("open: %v, want state.db damaged", err)
				}
				if after := dirContents(t, dir); !maps.EqualFunc(before, after, bytes.Equal) {
					t.Errorf("the refused open changed the data directory")
				}
			})
		}
	}
}

// TestStore_Open_LostIndexKey: a state.db whose seq index lost a key (a
// page cut from the index's tree: every page it still has is sound) is
// damaged. Anti-entropy finds a replica's changes through that index, so the
// change it named would never reach a peer, and the digests would match.
func TestStore_Open_LostIndexKey(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	_, closed := journalDirs(t, c)
	keys, err := store.StateKeys(filepath.Join(closed, store.StateFile), "seqidx")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 10 { // c0…c4: a total and three blocks each
		t.Fatalf("%d seq index keys: the test checks too little", len(keys))
	}
	if got := openTotal(t, copyDir(t, closed), c, "c3"); got != 1 {
		t.Fatalf("the undamaged copy opened with c3 = %d, want 1", got)
	}
	for i, k := range keys {
		dir := copyDir(t, closed)
		state := filepath.Join(dir, store.StateFile)
		if err := store.DeleteStateKey(state, "seqidx", k); err != nil {
			t.Fatal(err)
		}
		_, err := store.Open(testConfig(dir, c))
		var damaged *store.DamagedError
		if !errors.As(err, &damaged) || damaged.File != state {
			t.Fatalf("seq index key %d of %d (%x) deleted: open %v, want state.db damaged", i, len(keys), k, err)
		}
	}
}

// journalDirs returns two copies of a data directory that took one increment
// to each of c0…c4: one as a crash would leave it, the increments in journal
// records only, and one after a clean stop.
func journalDirs(t *testing.T, c *clock) (crashed, closed string) {
	t.Helper()
	src := t.TempDir()
	s := mustOpen(t, testConfig(src, c))
	for i := range 5 {
		mustApply(t, s, inc(fmt.Sprintf("c%d", i), 1, c.Now()))
	}
	crashed = copyDir(t, src)
	mustClose(t, s)
	return crashed, copyDir(t, src)
}

// dirContents returns every file of dir by name.
func dirContents(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string][]byte)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// TestStore_Open_JournalOfAnotherReplica: a journal.db beside the state.db
// of another replica (files mixed up between data directories) is refused
// as incompatible, and neither file changes: replaying it would take the
// other replica's changes for this one's.
func TestStore_Open_JournalOfAnotherReplica(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	for _, mine := range []string{"crashed", "closed"} {
		t.Run(mine, func(t *testing.T) {
			crashedA, closedA := journalDirs(t, c)
			other, _ := journalDirs(t, c) // another replica, its records in its journal
			dir := crashedA
			if mine == "closed" {
				dir = closedA
			}
			b, err := os.ReadFile(filepath.Join(other, store.JournalFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, store.JournalFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := dirContents(t, dir)
			s, err := store.Open(testConfig(dir, c))
			if err == nil {
				s.Close(context.Background())
				t.Fatal("opened with another replica's journal")
			}
			if !errors.Is(err, store.ErrIncompatible) {
				t.Fatalf("open: %v, want ErrIncompatible", err)
			}
			if after := dirContents(t, dir); !maps.EqualFunc(before, after, bytes.Equal) {
				t.Error("the refused open changed the data directory")
			}
		})
	}
}

// TestStore_Open_JournalBitFlip: a bit flipped in a journal record on disk
// makes Open refuse the directory as damaged; it is never replayed as some
// other count. (Every bit of a record is flipped in
// TestRecord_EveryBitFlipIsRefused; here one bit of each byte, through a
// real journal.db.)
func TestStore_Open_JournalBitFlip(t *testing.T) {
	c := newClock("2026-11-23T10:00:00Z")
	src := t.TempDir()
	s := mustOpen(t, testConfig(src, c))
	mustApply(t, s, inc("a", 5, c.Now()))
	crashed := copyDir(t, src)
	mustClose(t, s)

	journal := filepath.Join(crashed, store.JournalFile)
	db, err := bolt.Open(journal, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var val []byte
	err = db.View(func(tx *bolt.Tx) error {
		val = bytes.Clone(tx.Bucket([]byte("journal")).Get(binary.BigEndian.AppendUint64(nil, 1)))
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil || val == nil {
		t.Fatalf("record 1: %v, %d bytes", err, len(val))
	}
	file, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(file, val)
	if at < 0 || bytes.Contains(file[at+1:], val) {
		t.Fatalf("record 1 is not in journal.db exactly once")
	}
	if got := openTotal(t, crashed, c, "a"); got != 5 {
		t.Fatalf("the undamaged copy opened with total %d, want 5", got)
	}
	for i := range val {
		dir := copyDir(t, crashed)
		b := bytes.Clone(file)
		b[at+i] ^= 1 << (i % 8)
		if err := os.WriteFile(filepath.Join(dir, store.JournalFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := store.Open(testConfig(dir, c))
		if err == nil {
			total, _ := r.Total("a")
			mustClose(t, r)
			t.Fatalf("bit %d of record byte %d flipped: opened, total(a) = %d", i%8, i, total)
		}
		var damaged *store.DamagedError
		if !errors.As(err, &damaged) || damaged.File != filepath.Join(dir, store.JournalFile) {
			t.Fatalf("bit %d of record byte %d flipped: %v, want journal.db damaged", i%8, i, err)
		}
	}
}

// openTotal opens dir, reads name's total and closes it.
func openTotal(t *testing.T, dir string, c *clock, name string) uint64 {
	t.Helper()
	s := mustOpen(t, testConfig(dir, c))
	defer mustClose(t, s)
	total, err := s.Total(name)
	if err != nil {
		t.Fatal(err)
	}
	return total
}
