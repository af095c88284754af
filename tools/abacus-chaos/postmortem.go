//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/abacus-counter/abacus/crdt"
	"github.com/abacus-counter/abacus/store"
)

// Postmortem: after a failed run kept with --keep, attribute every count to
// the replica that acknowledged it. For each data directory (the nodes' and
// the wiped ones kept aside), it opens a copy of the store and compares, for
// every replica, that store's entry of each total and minute window with the
// increments that replica acknowledged (acked ≤ entry ≤ acked +
// indeterminate). This tells a loss at the origin (the replica's own store
// lacks what it acknowledged) from a loss in replication (the origin has it,
// a peer that claims to be up to date does not).

// era is one replica's life on a node: from the agent's "serving" log line.
type era struct {
	node    string
	replica string
	from    time.Time
}

// readEras reads the replica every agent served with, and since when.
func readEras(outDir string) ([]era, error) {
	logs, err := filepath.Glob(filepath.Join(outDir, "n*.log"))
	if err != nil {
		return nil, err
	}
	var eras []era
	for _, l := range logs {
		node := strings.TrimSuffix(filepath.Base(l), ".log")
		f, err := os.Open(l)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Time    time.Time `json:"time"`
				Msg     string    `json:"msg"`
				Replica string    `json:"replica"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" && line.Replica != "" {
				eras = append(eras, era{node, line.Replica, line.Time})
			}
		}
		f.Close()
	}
	sort.Slice(eras, func(i, j int) bool { return eras[i].from.Before(eras[j].from) })
	return eras, nil
}

// replicaAt is the replica node served with at t.
func replicaAt(eras []era, node string, t time.Time) string {
	r := ""
	for _, e := range eras {
		if e.node == node && !e.from.After(t) {
			r = e.replica
		}
	}
	return r
}

type pmKey struct {
	name    string
	start   int64 // 0: the total
	replica string
}

func (k pmKey) String() string {
	w := "total"
	if k.start != 0 {
		w = "window " + time.Unix(k.start, 0).UTC().Format("15:04")
	}
	return fmt.Sprintf("%s %s of replica %.8s", k.name, w, k.replica)
}

// postmortem writes its findings to w; outDir holds the history and the
// agents' logs, dataDir the nodes' data directories.
func postmortem(w io.Writer, outDir, dataDir string) error {
	f, err := os.Open(filepath.Join(outDir, "history.jsonl"))
	if err != nil {
		return err
	}
	ops, _, err := readHistory(f)
	f.Close()
	if err != nil {
		return err
	}
	eras, err := readEras(outDir)
	if err != nil {
		return err
	}
	owner := map[string]string{}
	for _, e := range eras {
		owner[e.replica] = e.node
		fmt.Fprintf(w, "replica %.8s: %s from %s\n", e.replica, e.node, e.from.Format("15:04:05.000"))
	}
	acked, indet := map[pmKey]uint64{}, map[pmKey]uint64{}
	for _, op := range ops {
		r := replicaAt(eras, op.Node, op.Start)
		for _, it := range op.Items {
			m := acked
			if op.Outcome == OutcomeIndeterminate {
				m = indet
			} else if op.Outcome != OutcomeOK {
				continue
			}
			m[pmKey{it.Name, 0, r}] += it.Amount
			if !it.TS.IsZero() {
				m[pmKey{it.Name, minute(it.TS), r}] += it.Amount
			} else {
				// Unknown event time: it may be in any window it spans.
				for s := minute(it.TSLo); s <= minute(it.TSHi); s += 60 {
					indet[pmKey{it.Name, s, r}] += it.Amount
				}
			}
		}
	}

	dirs, err := filepath.Glob(filepath.Join(dataDir, "*"))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", namePrefix+"postmortem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var stores []storeDump
	origin := map[string]*storeDump{} // replica → its own store
	for _, dir := range dirs {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		// A copy: opening a store replays and checkpoints.
		cp := filepath.Join(tmp, filepath.Base(dir))
		if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
			return err
		}
		entries, self, digest, err := dumpStore(cp)
		if err != nil {
			fmt.Fprintf(w, "%s: %v\n", filepath.Base(dir), err)
			continue
		}
		stores = append(stores, storeDump{filepath.Base(dir), self, entries, digest})
	}
	for i := range stores {
		origin[stores[i].self] = &stores[i]
	}
	bad := 0
	report := func(out []string) {
		sort.Strings(out)
		bad += len(out)
		for i, l := range out {
			if i == 40 {
				fmt.Fprintf(w, "  … and %d more\n", len(out)-40)
				break
			}
			fmt.Fprintln(w, l)
		}
	}
	for _, st := range stores {
		fmt.Fprintf(w, "\nstore %s: replica %.8s (%s); version vector:", st.name, st.self, owner[st.self])
		for _, o := range slices.Sorted(maps.Keys(st.digest)) {
			fmt.Fprintf(w, " %.8s(%s)=%d", o, owner[o], st.digest[o])
		}
		fmt.Fprintln(w)
		// 1. The store's own replica against what it acknowledged: a
		// shortfall here is lost at the origin.
		var out []string
		keys := map[pmKey]bool{}
		for k := range acked {
			if k.replica == st.self {
				keys[k] = true
			}
		}
		for k := range st.entries {
			if k.replica == st.self {
				keys[k] = true
			}
		}
		for k := range keys {
			e := st.entries[k]
			lo, hi := acked[k], acked[k]+indet[k]
			if e.Value < lo || e.Value > hi {
				what := "lacks"
				if e.Value > hi {
					what = "exceeds"
				}
				out = append(out, fmt.Sprintf("  own %s: %d (seq %d) %s acknowledged %d + indeterminate %d", k, e.Value, e.Seq, what, lo, hi-lo))
			}
		}
		// 2. Other replicas against their origin's store: an entry the
		// origin wrote at a seq this store's version vector claims to
		// cover, but which this store does not hold, is a replication gap.
		for k, oe := range originEntries(origin, st.self) {
			have := st.entries[k]
			if oe.Seq <= st.digest[k.replica] && (have.Value < oe.Value) {
				out = append(out, fmt.Sprintf("  gap %s: %d (seq %d) here, but its origin %s holds %d (seq %d) and this store's vector claims %.8s up to %d", k, have.Value, have.Seq, owner[k.replica], oe.Value, oe.Seq, k.replica, st.digest[k.replica]))
			}
		}
		report(out)
	}
	fmt.Fprintf(w, "\n%d entries lost at their origin or missing despite the version vector\n", bad)
	return nil
}

// storeDump is one store's entries of totals and minute windows.
type storeDump struct {
	name    string
	self    string
	entries map[pmKey]crdt.Entry
	digest  map[string]uint64
}

// originEntries is every entry each origin store holds of its own replica,
// for the replicas other than self.
func originEntries(origin map[string]*storeDump, self string) map[pmKey]crdt.Entry {
	out := map[pmKey]crdt.Entry{}
	for r, st := range origin {
		if r == self {
			continue
		}
		for k, e := range st.entries {
			if k.replica == r {
				out[k] = e
			}
		}
	}
	return out
}

// dumpStore reads every replica's entries of totals and 1m windows.
func dumpStore(dir string) (map[pmKey]crdt.Entry, string, map[string]uint64, error) {
	st, err := store.Open(store.DefaultConfig(dir))
	if err != nil {
		return nil, "", nil, err
	}
	defer st.Close(context.Background())
	out := map[pmKey]crdt.Entry{}
	digest := map[string]uint64{}
	for o, seq := range st.Digest() {
		digest[o.String()] = seq
		after := uint64(0)
		for range 1_000_000 {
			c, err := st.ChainChunk(o, 0, after, 4<<20)
			if err != nil {
				return nil, "", nil, err
			}
			for _, d := range c.Deltas {
				switch d.Slot.Res {
				case 0:
					out[pmKey{d.Slot.Name, 0, d.Entry.Replica.String()}] = d.Entry
				case 60:
					out[pmKey{d.Slot.Name, d.Slot.Start, d.Entry.Replica.String()}] = d.Entry
				}
			}
			if c.Done || c.Next <= after {
				break
			}
			after = c.Next
		}
	}
	return out, st.Replica().String(), digest, nil
}
