//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/abacus-counter/abacus/internal/syspath"
)

// The network: one namespace per node plus a hub namespace holding a bridge.
// Every node's eth0 is one end of a veth pair whose other end is a port of
// the bridge, so nodes reach each other over 10.77.0.0/24 and nothing else:
// no namespace has a default route, and nothing is created in the root
// namespace. The tool's own HTTP clients dial from the hub namespace (the
// bridge's address, hubIP) through setns, so client traffic never crosses a
// node-to-node fault rule.
//
// Every name starts with namePrefix and the run's ID, so leftovers of a run
// that was killed can be found and removed (removeStale).

const (
	namePrefix = "abchaos-"
	subnet     = "10.77.0"
	hubIP      = subnet + ".1"
	httpPort   = 4000
	gossipPort = 7946
	// Chains in each node namespace's filter table that hold every fault rule;
	// healing flushes them.
	chainIn  = "CHAOS_IN"
	chainOut = "CHAOS_OUT"
)

func nodeIP(i int) string { return fmt.Sprintf("%s.%d", subnet, 11+i) }

// netnsName names a namespace of run id: "hub" or a node name.
func netnsName(runID, what string) string { return namePrefix + runID + "-" + what }

// tools holds the paths of the system commands the tool runs.
type tools struct{ ip, iptables string }

func findTools() (tools, error) {
	var t tools
	var err error
	if t.ip, err = syspath.LookPath("ip"); err != nil {
		return t, fmt.Errorf("iproute2's ip is needed: %w", err)
	}
	if t.iptables, err = syspath.LookPath("iptables"); err != nil {
		return t, fmt.Errorf("iptables is needed (apt-get install iptables): %w", err)
	}
	return t, nil
}

// runCmd runs a short system command, bounded to 20s, and returns its
// combined output.
func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// network is the namespaces of one run.
type network struct {
	t      tools
	runID  string
	hub    string   // hub namespace
	nodes  []string // node namespaces, by node index
	hubFd  *os.File // the hub namespace, for setns
	logf   func(string, ...any)
	closed bool
}

// setupNetwork creates the hub and n node namespaces, the bridge and the
// veths, and the fault chains in every node namespace. On error it removes
// what it made.
func setupNetwork(t tools, runID string, n int, logf func(string, ...any)) (_ *network, err error) {
	nw := &network{t: t, runID: runID, hub: netnsName(runID, "hub"), logf: logf}
	defer func() {
		if err != nil {
			nw.remove()
		}
	}()
	ip := func(args ...string) error { _, err := runCmd(t.ip, args...); return err }
	if err := ip("netns", "add", nw.hub); err != nil {
		return nw, err
	}
	steps := [][]string{
		{"-n", nw.hub, "link", "set", "lo", "up"},
		{"-n", nw.hub, "link", "add", "br0", "type", "bridge"},
		{"-n", nw.hub, "addr", "add", hubIP + "/24", "dev", "br0"},
		{"-n", nw.hub, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return nw, err
		}
	}
	for i := 0; i < n; i++ {
		ns := netnsName(runID, nodeName(i))
		if err := ip("netns", "add", ns); err != nil {
			return nw, err
		}
		nw.nodes = append(nw.nodes, ns)
		veth := "v" + strconv.Itoa(i+1)
		steps := [][]string{
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", nw.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", nw.hub, "link", "set", veth, "master", "br0", "up"},
			{"-n", ns, "addr", "add", nodeIP(i) + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
		}
		for _, s := range steps {
			if err := ip(s...); err != nil {
				return nw, err
			}
		}
		for _, args := range [][]string{
			{"-N", chainIn}, {"-N", chainOut},
			{"-A", "INPUT", "-j", chainIn}, {"-A", "OUTPUT", "-j", chainOut},
		} {
			if err := nw.iptables(i, args...); err != nil {
				return nw, err
			}
		}
	}
	f, err := os.Open(filepath.Join("/run/netns", nw.hub))
	if err != nil {
		return nw, fmt.Errorf("open hub namespace: %w", err)
	}
	nw.hubFd = f
	return nw, nil
}

// iptables runs iptables inside node i's namespace.
func (nw *network) iptables(i int, args ...string) error {
	full := append([]string{"netns", "exec", nw.nodes[i], nw.t.iptables, "-w", "5"}, args...)
	_, err := runCmd(nw.t.ip, full...)
	return err
}

// block cuts node a off from node b in both directions: each side drops
// what it receives from the other, so packets vanish silently, as on a real
// broken link (an OUTPUT rule would fail the sender's sendto with EPERM).
func (nw *network) block(a, b int) error {
	for _, p := range [][2]int{{a, b}, {b, a}} {
		if err := nw.iptables(p[0], "-A", chainIn, "-s", nodeIP(p[1]), "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// dropReplies drops what node i sends to the clients (the hub) for a while:
// requests arrive and apply, their answers are lost, and the clients retry
// with the same key. TCP retransmits, so the answers come late or never.
func (nw *network) dropReplies(i int) error {
	return nw.iptables(i, "-A", chainOut, "-d", hubIP, "-p", "tcp", "--sport", strconv.Itoa(httpPort), "-j", "DROP")
}

// loss drops each packet node i receives from another node with probability
// p (client traffic from the hub is spared).
func (nw *network) loss(i int, p float64) error {
	for j := range nw.nodes {
		if j == i {
			continue
		}
		err := nw.iptables(i, "-A", chainIn, "-s", nodeIP(j), "-m", "statistic", "--mode", "random",
			"--probability", strconv.FormatFloat(p, 'f', 3, 64), "-j", "DROP")
		if err != nil {
			return err
		}
	}
	return nil
}

// heal flushes every fault rule of every node namespace.
func (nw *network) heal() error {
	var errs []error
	for i := range nw.nodes {
		errs = append(errs, nw.iptables(i, "-F", chainIn), nw.iptables(i, "-F", chainOut))
	}
	return errors.Join(errs...)
}

// healLinks flushes the node-to-node rules (partitions, loss) of every node
// namespace, and leaves reply-loss rules alone.
func (nw *network) healLinks() error {
	var errs []error
	for i := range nw.nodes {
		errs = append(errs, nw.iptables(i, "-F", chainIn))
	}
	return errors.Join(errs...)
}

// remove deletes the namespaces; the veths, the bridge and the iptables
// rules live in them and go with them. Processes must be gone first.
func (nw *network) remove() {
	if nw.closed {
		return
	}
	nw.closed = true
	if nw.hubFd != nil {
		nw.hubFd.Close()
	}
	for _, ns := range append(slices.Clone(nw.nodes), nw.hub) {
		if _, err := runCmd(nw.t.ip, "netns", "del", ns); err != nil && nw.logf != nil {
			nw.logf("remove namespace %s: %v", ns, err)
		}
	}
}

// dialer dials from the hub namespace: the goroutine's thread enters it for
// the socket() and connect() calls and leaves it before going back to the Go
// scheduler. A thread that cannot leave is retired (stays locked and exits).
func (nw *network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		c, err, restored := dialInNamespace(ctx, nw.hubFd, network, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func dialInNamespace(ctx context.Context, ns *os.File, network, addr string) (net.Conn, error, bool) {
	if ns == nil {
		return nil, errors.New("the network is closed"), true
	}
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, err, true
	}
	defer orig.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns hub: %w", err), true
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	c, derr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err), false
	}
	return c, derr, true
}

// Leftovers. A run holds an exclusive flock on lockDir()/<id>.lock for its
// whole life; a namespace or work directory whose run holds no lock is a
// leftover of a run that was killed.

// keptMarker in a work directory marks it kept on purpose (--keep).
const keptMarker = "KEPT"

func lockDir() string { return filepath.Join(os.TempDir(), "abchaos-locks") }

// runLock is the lock of a live run.
type runLock struct{ f *os.File }

func takeRunLock(runID string) (*runLock, error) {
	if err := os.MkdirAll(lockDir(), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(lockDir(), runID+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("run %s is already running", runID)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return &runLock{f}, nil
}

func (l *runLock) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.f.Name())
	l.f.Close()
	l.f = nil
}

// runAlive reports whether run id's owner still holds its lock.
func runAlive(runID string) bool {
	f, err := os.OpenFile(filepath.Join(lockDir(), runID+".lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// listNamespaces returns the namespaces named with our prefix.
func listNamespaces(t tools) ([]string, error) {
	out, err := runCmd(t.ip, "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], namePrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// runOf extracts the run ID (six hex digits, see newRunID) of a namespace or
// directory name, or "" if name is not one of ours.
func runOf(name string) string {
	rest, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "-")
	if len(id) != 6 || strings.Trim(id, "0123456789abcdef") != "" {
		return ""
	}
	return id
}

// removeStale removes every leftover of runs that are no longer alive: the
// processes inside their namespaces (agents that run started), the
// namespaces, work directories and lock files. Runs still alive are left
// alone. It returns what it removed.
func removeStale(t tools, logf func(string, ...any)) ([]string, error) {
	var removed []string
	names, err := listNamespaces(t)
	if err != nil {
		return nil, err
	}
	for _, ns := range names {
		id := runOf(ns)
		if id == "" || runAlive(id) {
			continue
		}
		// Only processes inside a namespace of ours: the agents a dead run
		// started there.
		if out, err := runCmd(t.ip, "netns", "pids", ns); err == nil {
			for _, f := range strings.Fields(out) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					syscall.Kill(pid, syscall.SIGKILL)
					removed = append(removed, fmt.Sprintf("process %d in %s", pid, ns))
				}
			}
		}
		if _, err := runCmd(t.ip, "netns", "del", ns); err != nil {
			logf("remove %s: %v", ns, err)
			continue
		}
		removed = append(removed, "namespace "+ns)
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), namePrefix+"*"))
	for _, d := range dirs {
		base := filepath.Base(d)
		if base == "abchaos-locks" || strings.HasPrefix(base, namePrefix+"out-") {
			continue // results are kept on purpose
		}
		if _, err := os.Stat(filepath.Join(d, keptMarker)); err == nil {
			continue // kept with --keep
		}
		if id := runOf(base); id != "" && !runAlive(id) {
			if err := os.RemoveAll(d); err == nil {
				removed = append(removed, "directory "+d)
			}
		}
	}
	locks, _ := filepath.Glob(filepath.Join(lockDir(), "*.lock"))
	for _, l := range locks {
		id := strings.TrimSuffix(filepath.Base(l), ".lock")
		if !runAlive(id) {
			os.Remove(l)
		}
	}
	return removed, nil
}
