package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// outcome is what a start of the real binary came to.
type outcome struct {
	n      *node  // serving, or nil
	code   int    // exit code when it did not serve
	output string // everything it wrote
}

// tryStart starts an agent like startNode, but reports an exit before
// serving instead of failing the test.
func tryStart(t *testing.T, dataDir string, extra ...string) outcome {
	t.Helper()
	args := append([]string{"agent", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--log-format", "text"}, extra...)
	cmd := exec.Command(abacusBinary(t), args...)
	logs := &syncBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = logs
	cmd.Stderr = io.MultiWriter(logs, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dataDir: dataDir, args: extra, cmd: cmd, logs: logs, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		pw.Close()
		close(n.exited)
	}()
	found := make(chan []string, 1)
	go func() {
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			k, err := pr.Read(tmp)
			buf = append(buf, tmp[:k]...)
			if m := servingRE.FindStringSubmatch(string(buf)); m != nil {
				found <- m
				io.Copy(io.Discard, pr)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case m := <-found:
		n.url, n.gossip = m[1], m[2]
		t.Cleanup(n.stop)
		return outcome{n: n}
	case <-n.exited:
		return outcome{code: cmd.ProcessState.ExitCode(), output: logs.String()}
	case <-time.After(60 * time.Second):
		n.kill()
		t.Fatalf("agent neither served nor exited within 60s:\n%s", logs)
	}
	return outcome{}
}

// postBatch sends one batch of increments and fails unless it is acknowledged.
func postBatch(t *testing.T, url string, amounts map[string]uint64) {
	t.Helper()
	type item struct {
		Name   string `json:"name"`
		Amount uint64 `json:"amount"`
	}
	var body struct {
		Increments []item `json:"increments"`
	}
	for name, a := range amounts {
		body.Increments = append(body.Increments, item{name, a})
	}
	b, _ := json.Marshal(body)
	resp, err := httpClient.Post(url+"/v1/increments", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("batch: %d %s", resp.StatusCode, msg)
	}
}

// listTotals reads every counter under prefix in one request; ok is false
// when the node refused (503) instead.
func listTotals(t *testing.T, url, prefix string) (totals map[string]uint64, status int, body string) {
	t.Helper()
	resp, err := httpClient.Get(url + "/v1/counters?limit=1000&prefix=" + prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, resp.StatusCode, string(b)
	}
	var page struct {
		Counters []struct {
			Name  string
			Total uint64
		}
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("list: %v in %s", err, b)
	}
	totals = map[string]uint64{}
	for _, c := range page.Counters {
		totals[c.Name] = c.Total
	}
	return totals, 200, ""
}

// checkRefusal checks what an agent that refused to start wrote: exit 1,
// nothing of a panic or a fault, and a last line naming the damaged file
// and the recovery command.
func checkRefusal(t *testing.T, o outcome, file string) {
	t.Helper()
	for _, bad := range []string{"panic:", "fatal error", "SIGSEGV", "SIGBUS", "goroutine "} {
		if strings.Contains(o.output, bad) {
			t.Fatalf("output holds %q:\n%s", bad, o.output)
		}
	}
	if o.code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", o.code, o.output)
	}
	lines := strings.Split(strings.TrimSpace(o.output), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "abacus agent: ") || !strings.Contains(last, file) || !strings.Contains(last, "abacus recover --data-dir") {
		t.Fatalf("last line %q: want one line naming %s and abacus recover --data-dir", last, file)
	}
}

// TestE2E_DamagedDataFiles damages the data files of a stopped node in many
// ways and starts the real binary on each: it either serves every
// acknowledged count right, or exits 1 with one line naming the file and
// the recovery command; never a panic, a fault or a crash loop (a node
// that served is started a second time and must come to the same).
func TestE2E_DamagedDataFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	// Two bases: stopped cleanly (everything checkpointed), and killed
	// right after its last acknowledged batch (the journal holds it).
	want := map[string]uint64{}
	first, second := map[string]uint64{}, map[string]uint64{}
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("d.%04d", i)
		first[name] = uint64(i + 1)
		if i%3 == 0 {
			second[name] = 1000
		}
	}
	for k, v := range first {
		want[k] = v + second[k]
	}
	base := func(clean bool) string {
		dir := t.TempDir()
		n := startNode(t, dir)
		postBatch(t, n.url, first)
		// The first batch reaches state.db before the second is sent.
		testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
			// 300 totals and their 1m, 1h and 1d windows.
			v := metricValue(t, n.url, "abacus_store_checkpoint_slots_sum")
			return v >= 1200, fmt.Sprintf("%v slots checkpointed", v)
		})
		postBatch(t, n.url, second)
		if clean {
			n.stop()
		} else {
			n.kill()
		}
		return dir
	}
	clean, unclean := base(true), base(false)

	copyTo := func(src string) string {
		dst := t.TempDir()
		for _, f := range []string{"state.db", "journal.db", "gossip.key"} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dst, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dst
	}
	size := func(path string) int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	truncate := func(file string, at func(size int64) int64) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, file)
			if err := os.Truncate(p, at(size(p))); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(file string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, file)) }
	}
	overwrite := func(file, kind string, i int, at, n int64) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, file)
			offs := testenv.BoltPages(t, p)[kind]
			if len(offs) == 0 {
				t.Skipf("%s has no %s page", file, kind)
			}
			junk := make([]byte, n)
			r := rand.New(rand.NewPCG(uint64(i), uint64(at)))
			for j := range junk {
				junk[j] = byte(r.Uint32())
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(junk, offs[i%len(offs)]+at); err != nil {
				t.Fatal(err)
			}
		}
	}
	type tc struct {
		name   string
		base   string
		damage func(t *testing.T, dir string)
		file   string // named in a refusal
	}
	cases := []tc{}
	for _, b := range []struct {
		name string
		dir  string
	}{{"clean", clean}, {"killed", unclean}} {
		cases = append(cases,
			tc{b.name + "/state.db cut to 0", b.dir, truncate("state.db", func(int64) int64 { return 0 }), "state.db"},
			tc{b.name + "/state.db cut to 16KiB", b.dir, truncate("state.db", func(int64) int64 { return 16 << 10 }), "state.db"},
			tc{b.name + "/state.db cut to 100KB", b.dir, truncate("state.db", func(int64) int64 { return 100_000 }), "state.db"},
			tc{b.name + "/state.db cut in half", b.dir, truncate("state.db", func(s int64) int64 { return s / 2 }), "state.db"},
			tc{b.name + "/state.db cut by a page", b.dir, truncate("state.db", func(s int64) int64 { return s - 4096 }), "state.db"},
			tc{b.name + "/journal.db cut to 0", b.dir, truncate("journal.db", func(int64) int64 { return 0 }), "journal.db"},
			tc{b.name + "/journal.db cut to 5000", b.dir, truncate("journal.db", func(int64) int64 { return 5000 }), "journal.db"},
			tc{b.name + "/journal.db cut in half", b.dir, truncate("journal.db", func(s int64) int64 { return s / 2 }), "journal.db"},
			tc{b.name + "/state.db deleted", b.dir, remove("state.db"), "state.db"},
			tc{b.name + "/journal.db deleted", b.dir, remove("journal.db"), "journal.db"},
			tc{b.name + "/state.db meta page 0", b.dir, overwrite("state.db", "meta", 0, 16, 64), "state.db"},
			tc{b.name + "/state.db both meta pages", b.dir, func(t *testing.T, dir string) {
				// Both offsets first: the first overwrite garbles the page
				// size that BoltPages reads.
				p := filepath.Join(dir, "state.db")
				metas := testenv.BoltPages(t, p)["meta"]
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				for _, off := range metas {
					f.WriteAt(bytes.Repeat([]byte{0x5a}, 64), off+16)
				}
			}, "state.db"},
			tc{b.name + "/state.db freelist page", b.dir, overwrite("state.db", "freelist", 0, 16, 64), "state.db"},
			tc{b.name + "/journal.db leaf page", b.dir, overwrite("journal.db", "leaf", 0, 200, 64), "journal.db"},
		)
		for i := 0; i < 3; i++ {
			// One byte of one stored value: the page stays well formed;
			// only the counters' checksums can tell.
			cases = append(cases, tc{fmt.Sprintf("%s/state.db value byte %d", b.name, i), b.dir, func(t *testing.T, dir string) {
				p := filepath.Join(dir, "state.db")
				vals := testenv.BoltValues(t, p)
				if len(vals) == 0 {
					t.Skip("no values")
				}
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				at := vals[(i*len(vals))/3+len(vals)/6]
				one := make([]byte, 1)
				f.ReadAt(one, at)
				one[0] ^= 0x04
				f.WriteAt(one, at)
			}, "state.db"})
		}
		for i := 0; i < 4; i++ {
			cases = append(cases,
				tc{fmt.Sprintf("%s/state.db leaf page %d", b.name, i), b.dir, overwrite("state.db", "leaf", i*5+1, int64(64+i*900), 64), "state.db"},
				tc{fmt.Sprintf("%s/state.db branch page %d", b.name, i), b.dir, overwrite("state.db", "branch", i, int64(16+i*40), 64), "state.db"},
			)
		}
	}
	served, refused := 0, 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyTo(c.base)
			c.damage(t, dir)
			for attempt := 1; attempt <= 2; attempt++ {
				o := tryStart(t, dir)
				if o.n == nil {
					checkRefusal(t, o, c.file)
					lines := strings.Split(strings.TrimSpace(o.output), "\n")
					t.Logf("start %d: refused, exit 1: %s", attempt, lines[len(lines)-1])
					refused++
					return
				}
				got, status, body := listTotals(t, o.n.url, "d.")
				if status != 200 {
					if status != 503 || !strings.Contains(body, "damaged") {
						t.Fatalf("list: %d %s", status, body)
					}
					refused++
					o.n.stop()
					return
				}
				for name, w := range want {
					if got[name] != w {
						t.Fatalf("served %s = %d, acknowledged %d", name, got[name], w)
					}
				}
				// It keeps serving writes through a checkpoint.
				postBatch(t, o.n.url, map[string]uint64{"d.new": 1})
				o.n.stop()
				select {
				case <-o.n.exited:
				default:
				}
				if code := o.n.cmd.ProcessState.ExitCode(); code != 0 {
					t.Fatalf("stopped with exit code %d:\n%s", code, o.n.logs)
				}
				delete(want, "d.new")
				t.Logf("start %d: served all %d counts right", attempt, len(want))
				served++
			}
		})
	}
	t.Logf("%d cases: %d starts served every count right, %d refused", len(cases), served, refused)
}

// metricValue is the sum of a metric's samples in /metrics.
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// TestE2E_DamageWhileRunning damages state.db under a running node: reads
// that meet the damage and every write are 503s that say why, /readyz too,
// the process stays up; stopped and started again, it refuses to start with
// one line (no crash loop).
func TestE2E_DamageWhileRunning(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the binary")
	}
	dir := t.TempDir()
	n := startNode(t, dir)
	batch := map[string]uint64{}
	for i := 0; i < 300; i++ {
		batch[fmt.Sprintf("w.%04d", i)] = uint64(i + 1)
	}
	postBatch(t, n.url, batch)
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		v := metricValue(t, n.url, "abacus_store_checkpoint_slots_sum")
		return v >= 1200, fmt.Sprintf("%v slots checkpointed", v)
	})
	state := filepath.Join(dir, "state.db")
	f, err := os.OpenFile(state, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range testenv.BoltPages(t, state)["leaf"] {
		f.WriteAt(bytes.Repeat([]byte{0xa5}, 4096-16), off+16)
	}
	f.Close()

	_, status, body := listTotals(t, n.url, "w.")
	if status != 503 || !strings.Contains(body, "state.db is damaged") {
		t.Fatalf("a read over damaged pages: %d %s, want a 503 naming state.db", status, body)
	}
	resp, err := httpClient.Post(n.url+"/v1/counters/w.0001/increment", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "abacus recover") {
		t.Fatalf("a write after damage: %d %s, want a 503 naming abacus recover", resp.StatusCode, b)
	}
	resp, err = httpClient.Get(n.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "damaged") {
		t.Fatalf("/readyz after damage: %d %s", resp.StatusCode, b)
	}
	select {
	case <-n.exited:
		t.Fatalf("the node exited:\n%s", n.logs)
	default:
	}
	for _, bad := range []string{"panic:", "fatal error", "SIGSEGV", "SIGBUS"} {
		if strings.Contains(n.logs.String(), bad) {
			t.Fatalf("log holds %q:\n%s", bad, n.logs)
		}
	}
	n.stop()
	o := tryStart(t, dir)
	if o.n != nil {
		t.Fatalf("restarted on a damaged state.db and served")
	}
	checkRefusal(t, o, "state.db")
}
