package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"
)

// Issue 14's targets for a node holding many slots, the same at every size.
const (
	scaleDiskPerSlot = 24  // bytes of state.db + journal.db per slot, at most
	scaleRSSPerSlot  = 64  // bytes of VmRSS per slot, at most
	scaleReady       = 2   // seconds from process start to ready, at most
	scaleRangeP99    = 5.0 // ms, p99 of a 2,880-point range, at most
)

// slotsOf counts the slots a load of counters with event times from..to
// (Unix seconds, at most a minute apart) creates: each counter's total and
// one window per minute, hour and day the times touch.
func slotsOf(counters int, from, to float64) int64 {
	windows := func(size float64) int64 {
		return int64(math.Floor(to/size)-math.Floor(from/size)) + 1
	}
	return int64(counters) * (windows(60) + windows(3600) + windows(86400) + 1)
}

// scaleRows are the rows of one scale scenario, keyed by its name.
type scaleRows struct {
	load, slots, disk              *Row
	rss, rssAnon, rssFile          *Row // after the load and a checkpoint
	ready, rssReady, rng, rngP50   *Row // after a restart
	rssAfter, anonAfter, fileAfter *Row // after the restart and the range queries
}

func (s *suite) newScaleRows(counters int) scaleRows {
	k := s.cur + "/"
	var r scaleRows
	r.load = s.row(k+"load", fmt.Sprintf("load: increments/s, POST /v1/increments, batches of 1,000, 4 clients, %s counters × 2,880 minutes of event times over 48 h", thousands(int64(counters))), "inc/s")
	r.slots = s.row(k+"slots", "slots held: counters × (minute + hour + day windows + total)", "slots")
	r.disk = s.row(k+"disk", "disk per slot: state.db + journal.db after the checkpoint", "B")
	r.disk.Target = &Target{AtMost: true, Bound: scaleDiskPerSlot, Desc: fmt.Sprintf("≤ %d B/slot", scaleDiskPerSlot)}
	r.rss = s.row(k+"rss", "resident memory per slot (VmRSS / slots) after the load and a checkpoint", "B")
	r.rss.Target = &Target{AtMost: true, Bound: scaleRSSPerSlot, Desc: fmt.Sprintf("≤ %d B/slot", scaleRSSPerSlot)}
	r.rssAnon = s.row(k+"rss-anon", "… of which RssAnon (Go heap, stacks, runtime)", "B")
	r.rssFile = s.row(k+"rss-file", "… of which RssFile (bbolt's mmap)", "B")
	r.ready = s.row(k+"ready", "restart: process start → first 200 of /readyz (polled every 10 ms)", "s")
	r.ready.Target = &Target{AtMost: true, Bound: scaleReady, Desc: fmt.Sprintf("≤ %d s", scaleReady)}
	r.rssReady = s.row(k+"rss-ready", "VmRSS once ready after the restart", "MiB")
	r.rng = s.row(k+"range", fmt.Sprintf("range reads/s: 48 h at 1 m step (2,880 points), 1 client cycling over the %s counters, restarted node", thousands(int64(counters))), "req/s")
	r.rng.Target = &Target{AtMost: true, Bound: scaleRangeP99, OnP99: true, Desc: fmt.Sprintf("p99 ≤ %g ms", scaleRangeP99)}
	r.rngP50 = s.row(k+"range-p50", "range p50 latency", "ms")
	r.rssAfter = s.row(k+"rss-after", "resident memory per slot after the restart and range queries over every counter's 48 h", "B")
	r.rssAfter.Target = &Target{AtMost: true, Bound: scaleRSSPerSlot, Desc: fmt.Sprintf("≤ %d B/slot", scaleRSSPerSlot)}
	r.anonAfter = s.row(k+"rss-after-anon", "… of which RssAnon", "B")
	r.fileAfter = s.row(k+"rss-after-file", "… of which RssFile", "B")
	return r
}

// runScale loads a node with counters × 2,880 minutes of event times (350
// counters make about a million slots), waits for the checkpoint, measures
// its memory and disk, restarts it, times its range queries and reads every
// counter's 48 h range, and measures its memory again.
func runScale(s *suite, counters int) error {
	rows := s.newScaleRows(counters)
	for range s.cfg.runs {
		if err := s.scaleRun(counters, rows); err != nil {
			return err
		}
	}
	return nil
}

func (s *suite) scaleRun(c int, rows scaleRows) error {
	const mib = 1 << 20
	prefix := "perf.scale"
	n, err := s.newNode(s.cur)
	if err != nil {
		return err
	}
	if err := s.startReady(n); err != nil {
		return err
	}
	lr, err := s.bench(time.Hour, "abacus-bench-scale-load", "--addr", n.url(), "--mode", "load",
		"--increments", strconv.FormatInt(int64(c)*2880, 10), "--counters", strconv.Itoa(c), "--prefix", prefix,
		"--spread", "48h", "--clients", "4", "--batch", "1000")
	if err != nil {
		return err
	}
	rows.load.addWithP99(lr.IncPerSec, lr.P99ms)
	nslots := slotsOf(c, lr.TSFrom, lr.TSTo)
	slots := float64(nslots)
	rows.slots.add(slots)
	got, err := totals(s.ctx, n.url(), prefix+".")
	if err != nil {
		return err
	}
	if len(got) != c {
		return fmt.Errorf("after loading: %d counters listed, want %d", len(got), c)
	}
	for name, t := range got {
		if t != 2880 {
			return fmt.Errorf("after loading: %s total %d, want 2880", name, t)
		}
	}
	if err := s.waitCheckpointed(n, 10*time.Minute); err != nil {
		return err
	}
	m, err := procMemory(n.p.pid())
	if err != nil {
		return err
	}
	rows.rss.add(float64(m["VmRSS"]) / slots)
	rows.rssAnon.add(float64(m["RssAnon"]) / slots)
	rows.rssFile.add(float64(m["RssFile"]) / slots)
	size, err := dirFileSize(n.dataDir, "state.db", "journal.db")
	if err != nil {
		return err
	}
	rows.disk.add(float64(size) / slots)

	if err := s.stopNode(n); err != nil {
		return err
	}
	if err := s.startNode(n); err != nil {
		return err
	}
	took, err := s.waitReady(n, 5*time.Minute, 10*time.Millisecond)
	if err != nil {
		return err
	}
	rows.ready.add(took.Seconds())
	m2, err := procMemory(n.p.pid())
	if err != nil {
		return err
	}
	rows.rssReady.add(float64(m2["VmRSS"]) / mib)
	rr, err := s.bench(s.cfg.scaleRange+5*time.Minute, "abacus-bench-scale-range", "--addr", n.url(), "--mode", "range",
		"--counters", strconv.Itoa(c), "--prefix", prefix, "--clients", "1",
		"--duration", s.cfg.scaleRange.String(), "--warmup", "500ms", "--pid", strconv.Itoa(n.p.pid()))
	if err != nil {
		return err
	}
	rows.rng.addWithP99(rr.ReqPerSec, rr.P99ms)
	rows.rngP50.add(rr.P50ms)
	// The timed run may not have reached every counter: read each one's
	// 48 h once more, which also checks the restarted node serves them.
	for i := range c {
		name := prefix + "." + strconv.Itoa(i)
		points, nonzero, err := s.windowsWithData(n, name)
		if err != nil {
			return err
		}
		if points < 2879 || nonzero < points*9/10 {
			return fmt.Errorf("after the restart: the range of %s has %d points, %d of them above zero; want 2,880 mostly above zero", name, points, nonzero)
		}
	}
	m3, err := procMemory(n.p.pid())
	if err != nil {
		return err
	}
	rows.rssAfter.add(float64(m3["VmRSS"]) / slots)
	rows.anonAfter.add(float64(m3["RssAnon"]) / slots)
	rows.fileAfter.add(float64(m3["RssFile"]) / slots)
	s.record(map[string]any{"counters": c, "slots": nslots, "load": lr, "memory_checkpointed": m, "memory_ready": m2,
		"memory_after_range": m3, "disk_bytes": size, "ready_seconds": took.Seconds()})
	if err := s.stopNode(n); err != nil {
		return err
	}
	if !s.cfg.keep {
		os.RemoveAll(n.dataDir)
	}
	return nil
}

// waitCheckpointed waits until the checkpointer (every second, or sooner
// once 100,000 slots wait) has folded every slot into state.db and trimmed
// the journal: nothing pending in memory, no journal record left. The agent
// has no way to ask for a checkpoint; after a load nothing else commits, so
// the next one empties both.
func (s *suite) waitCheckpointed(n *node, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		text, err := getText(s.ctx, n.url()+"/metrics")
		if err != nil {
			return err
		}
		pending, ok1 := metricSum(text, "abacus_store_pending_slots")
		records, ok2 := metricSum(text, "abacus_store_journal_records")
		if !ok1 || !ok2 {
			return fmt.Errorf("%s: no abacus_store_pending_slots or abacus_store_journal_records in /metrics", n.name)
		}
		if pending == 0 && records == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%v slots pending and %v journal records left %v after the load", pending, records, within)
		}
		if err := sleep(s.ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}
