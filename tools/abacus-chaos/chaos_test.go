//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// These tests create network namespaces and iptables rules: they need root
// (CI is root), iproute2 and iptables.

func requireNet(t *testing.T) tools {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.Require(t, "ip", "iproute2")
	testenv.Require(t, "iptables", "iptables")
	tl, err := findTools()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(tl.iptables, "-V"); err != nil {
		t.Fatalf("iptables does not work: %v %s", err, out)
	}
	return tl
}

var (
	buildMu  sync.Mutex
	binaries = map[string]string{}
)

// build builds a package of the module once per test binary.
func build(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := binaries[pkg]; ok {
		return p
	}
	dir, err := os.MkdirTemp("", "abacus-chaos-test-bin")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", p, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	binaries[pkg] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range binaries {
		os.RemoveAll(filepath.Dir(p))
	}
	os.Exit(code)
}

// TestChaos_Short runs the short mode (every fault kind once, 3 nodes in 2
// DCs) against the real binary and expects a pass: nothing lost, nothing
// counted twice, every node agreeing soon after healing.
func TestChaos_Short(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run: about 2 minutes of real processes and namespaces")
	}
	requireNet(t)
	bin := build(t, "github.com/abacus-counter/abacus/cmd/abacus")
	out := t.TempDir()
	cfg, err := parseConfig([]string{"--mode", "short", "--seed", "1", "--binary", bin, "--out", out}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), cfg, &stdout, &stderr)
	t.Logf("short mode took %v\n%s", time.Since(start).Round(time.Second), stdout.String())
	if code != exitPass {
		t.Logf("log:\n%s", stderr.String())
		keepForInspection(t, out)
		t.Fatalf("exit code %d, want %d", code, exitPass)
	}
	var rep report
	b, err := os.ReadFile(filepath.Join(out, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	r := rep.Result
	if !r.Pass || r.Lost != 0 || r.DoubleCounted != 0 || !r.Converged {
		t.Errorf("result: pass %v, lost %d, double-counted %d, converged %v", r.Pass, r.Lost, r.DoubleCounted, r.Converged)
	}
	for _, k := range allFaults {
		if rep.Injected[k] == 0 {
			t.Errorf("fault %s was never injected", k)
		}
	}
	if r.IncrementsAcked < 1000 {
		t.Errorf("only %d increments acknowledged: the load did not run", r.IncrementsAcked)
	}
	// The roaming clients ran: retries at other nodes, and acknowledged
	// requests sent again elsewhere, all counted once (checked above).
	if r.OpsResent < 100 || r.OpsRoamed == 0 {
		t.Errorf("roaming clients: %d ops re-sent at another node, %d retried at another node: the cross-node load did not run", r.OpsResent, r.OpsRoamed)
	}
	if len(rep.Wipes) == 0 {
		t.Error("no wipe recorded its replication proof")
	}
	// Nothing of the run is left.
	tl, _ := findTools()
	if ns, _ := listNamespaces(tl); hasRun(ns, rep.RunID) {
		t.Errorf("namespaces left behind: %v", ns)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), namePrefix+rep.RunID)); !os.IsNotExist(err) {
		t.Errorf("work directory left behind: %v", err)
	}
}

// keepForInspection copies a failed run's out directory (history, agent logs,
// result.json) out of the test's temporary directory.
func keepForInspection(t *testing.T, out string) {
	dst, err := os.MkdirTemp("", namePrefix+"out-failed-")
	if err == nil {
		err = os.CopyFS(dst, os.DirFS(out))
	}
	if err != nil {
		t.Logf("could not keep %s: %v", out, err)
		return
	}
	t.Logf("the run's history, logs and result are kept in %s", dst)
}

func hasRun(names []string, runID string) bool {
	for _, n := range names {
		if runOf(n) == runID {
			return true
		}
	}
	return false
}

var runLine = regexp.MustCompile(`abacus-chaos: run ([0-9a-f]{6}):`)

// TestChaos_Interrupt sends SIGINT to the tool while faults are active and
// checks that it leaves nothing behind: no namespaces, links, iptables rules,
// processes or work directory.
func TestChaos_Interrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run")
	}
	tl := requireNet(t)
	bin := build(t, "github.com/abacus-counter/abacus/cmd/abacus")
	chaos := build(t, "github.com/abacus-counter/abacus/tools/abacus-chaos")
	linksBefore, _ := runCmd(tl.ip, "-o", "link", "show")
	rulesBefore, _ := runCmd(tl.iptables, "-w", "5", "-S")

	out := t.TempDir()
	cmd := exec.Command(chaos, "--mode", "long", "--seed", "3", "--nodes", "3", "--dcs", "2", "--clients", "4", "--duration", "2m", "--binary", bin, "--out", out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 1000)
	var logBuf strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logBuf.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	defer func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("tool log:\n%s", logBuf.String())
			logMu.Unlock()
		}
	}()

	// Wait until faults are being injected.
	var runID string
	faults := 0
	deadline := time.After(90 * time.Second)
	for faults < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the tool exited early: %v", <-exited)
			}
			if m := runLine.FindStringSubmatch(l); m != nil {
				runID = m[1]
			}
			if strings.Contains(l, "abacus-chaos: fault: ") {
				faults++
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("no fault injected within 90s")
		}
	}
	time.Sleep(time.Second)
	if runID == "" {
		t.Fatal("no run ID in the log")
	}
	ns, _ := listNamespaces(tl)
	var pids []int
	var ours []string
	for _, n := range ns {
		if runOf(n) != runID {
			continue
		}
		ours = append(ours, n)
		o, _ := runCmd(tl.ip, "netns", "pids", n)
		for _, f := range strings.Fields(o) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	if len(ours) != 4 || len(pids) < 2 {
		t.Fatalf("mid-run: namespaces %v, processes %v; want 4 namespaces and the agents", ours, pids)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var werr error
	select {
	case werr = <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the tool did not exit within 60s of SIGINT")
	}
	if ee, ok := werr.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted {
		t.Errorf("exit: %v, want code %d", werr, exitInterrupted)
	}

	ns, _ = listNamespaces(tl)
	if hasRun(ns, runID) {
		t.Errorf("namespaces left behind: %v", ns)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); err == nil {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if bytes.Contains(cmdline, []byte("abacus")) {
				t.Errorf("process %d left behind: %q", p, cmdline)
			}
		}
	}
	if after, _ := runCmd(tl.ip, "-o", "link", "show"); linkNames(after) != linkNames(linksBefore) {
		t.Errorf("links changed in the root namespace:\nbefore %s\nafter  %s", linkNames(linksBefore), linkNames(after))
	}
	if after, _ := runCmd(tl.iptables, "-w", "5", "-S"); after != rulesBefore {
		t.Errorf("root namespace iptables rules changed:\nbefore:\n%s\nafter:\n%s", rulesBefore, after)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), namePrefix+runID)); !os.IsNotExist(err) {
		t.Errorf("work directory left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(lockDir(), runID+".lock")); !os.IsNotExist(err) {
		t.Errorf("lock file left behind: %v", err)
	}
	// The history so far was written.
	if b, err := os.ReadFile(filepath.Join(out, "history.jsonl")); err != nil || !bytes.Contains(b, []byte(`"type":"op"`)) {
		t.Errorf("history: %v, %d bytes", err, len(b))
	}
}

// linkNames is the sorted names of the links in `ip -o link` output.
func linkNames(out string) string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return strings.Join(names, " ")
}

// TestRemoveStale: leftovers of a run that no longer holds its lock are
// removed, with the processes inside; a live run's are left alone.
func TestRemoveStale(t *testing.T) {
	tl := requireNet(t)
	dead, live := newRunID(), newRunID()
	lock, err := takeRunLock(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()
	deadNS, liveNS := netnsName(dead, "hub"), netnsName(live, "hub")
	for _, ns := range []string{deadNS, liveNS} {
		if _, err := runCmd(tl.ip, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		defer runCmd(tl.ip, "netns", "del", ns)
	}
	// A process left inside the dead run's namespace.
	sleeper := exec.Command(tl.ip, "netns", "exec", deadNS, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { sleeper.Wait(); close(done) }()
	defer sleeper.Process.Kill()
	deadDir := filepath.Join(os.TempDir(), namePrefix+dead)
	os.MkdirAll(deadDir, 0o755)
	defer os.RemoveAll(deadDir)

	removed, err := removeStale(tl, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("removed: %v", removed)
	ns, _ := listNamespaces(tl)
	if hasRun(ns, dead) {
		t.Errorf("the dead run's namespace is still there: %v", ns)
	}
	if !hasRun(ns, live) {
		t.Errorf("the live run's namespace was removed: %v", ns)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("the process in the dead run's namespace survived")
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("the dead run's directory is still there: %v", err)
	}
}
