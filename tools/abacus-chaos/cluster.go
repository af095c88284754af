//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node states, as the tool drove them.
const (
	stateRunning = "running"
	statePaused  = "paused" // SIGSTOP
	stateDead    = "dead"
)

func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// node is one abacus agent process in its namespace. The tool only ever
// signals the PID it started.
type node struct {
	idx     int
	name    string
	dc      string
	ip      string
	ns      string
	dataDir string
	url     string
	logPath string

	// gate: each client op holds it shared from its first attempt at this
	// node (a roaming op: at every node it reaches) until it ends, re-send
	// included; wiping the node's data holds it exclusively, so that no
	// retry crosses a wipe (the wiped node forgets its idempotency keys, and
	// what it had not replicated).
	gate sync.RWMutex

	mu     sync.Mutex
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}
	state  string
	offset time.Duration // --debug-clock-offset of the current process
	starts int
}

// cluster is the agents of one run.
type cluster struct {
	bin     string
	keyFile string
	nw      *network
	nodes   []*node
	http    *http.Client // control reads, from the hub namespace
	logf    func(string, ...any)
}

func newCluster(bin, keyFile, dataRoot, outDir string, nw *network, dcs int, logf func(string, ...any)) *cluster {
	c := &cluster{bin: bin, keyFile: keyFile, nw: nw, logf: logf}
	c.http = &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DialContext: nw.DialContext, MaxIdleConnsPerHost: 4, DisableCompression: true},
	}
	for i := range nw.nodes {
		n := &node{
			idx: i, name: nodeName(i), dc: fmt.Sprintf("dc%d", dcOf(i, len(nw.nodes), dcs)+1), ip: nodeIP(i), ns: nw.nodes[i],
			dataDir: filepath.Join(dataRoot, nodeName(i)), state: stateDead,
		}
		n.url = fmt.Sprintf("http://%s:%d", n.ip, httpPort)
		n.logPath = filepath.Join(outDir, n.name+".log")
		c.nodes = append(c.nodes, n)
	}
	return c
}

// dcOf spreads n nodes over dcs datacenters in contiguous blocks: 3 nodes in
// 2 DCs are {n1, n2} {n3}; 5 in 3 are {n1, n2} {n3, n4} {n5}.
func dcOf(i, n, dcs int) int { return i * dcs / n }

func (c *cluster) args(n *node) []string {
	var join []string
	for _, m := range c.nodes {
		if m != n {
			join = append(join, fmt.Sprintf("%s:%d", m.ip, gossipPort))
		}
	}
	args := []string{"agent",
		"--data-dir", n.dataDir,
		"--http-addr", fmt.Sprintf("%s:%d", n.ip, httpPort),
		"--gossip-addr", fmt.Sprintf("%s:%d", n.ip, gossipPort),
		"--node-name", n.name,
		"--dc", n.dc,
		"--gossip-profile", "wan",
		"--gossip-key-file", c.keyFile,
		"--cluster-name", "abchaos",
		"--join", strings.Join(join, ","),
		"--log-format", "json",
	}
	if n.offset != 0 {
		args = append(args, "--debug-clock-offset", n.offset.String())
	}
	return args
}

// start runs the node's agent inside its namespace. `ip netns exec` execs
// the agent in place, so the PID is the agent's.
func (c *cluster) start(n *node) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != stateDead {
		return fmt.Errorf("%s: start while %s", n.name, n.state)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "{\"chaos\":\"start\",\"time\":%q,\"offset\":%q}\n", time.Now().UTC().Format(time.RFC3339Nano), n.offset.String())
	cmd := exec.Command(c.nw.t.ip, append([]string{"netns", "exec", n.ns, c.bin}, c.args(n)...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a terminal's ^C reaches the tool, which cleans up,
	// not the agents. Pdeathsig: if the tool itself is SIGKILLed, the
	// kernel kills the agents.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: start: %w", n.name, err)
	}
	logf.Close() // the child has its own copy
	n.cmd, n.pid, n.state = cmd, cmd.Process.Pid, stateRunning
	n.starts++
	exited := make(chan struct{})
	n.exited = exited
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		if n.cmd == cmd {
			n.state = stateDead
		}
		n.mu.Unlock()
		c.logf("%s (pid %d) exited: %v", n.name, cmd.Process.Pid, err)
		close(exited)
	}()
	c.logf("%s started: pid %d, dc %s, %s, clock offset %v", n.name, n.pid, n.dc, n.url, n.offset)
	return nil
}

// signal sends sig to the node's process, if it runs.
func (n *node) signal(sig syscall.Signal) (chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state == stateDead || n.pid == 0 {
		return nil, fmt.Errorf("%s is not running", n.name)
	}
	if err := syscall.Kill(n.pid, sig); err != nil {
		return nil, fmt.Errorf("%s: kill -%d %d: %w", n.name, sig, n.pid, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		n.state = statePaused
	case syscall.SIGCONT:
		n.state = stateRunning
	}
	return n.exited, nil
}

func (n *node) getState() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// kill SIGKILLs the node and waits until the process is gone.
func (c *cluster) kill(n *node) error {
	exited, err := n.signal(syscall.SIGKILL)
	if err != nil {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
		return fmt.Errorf("%s: still there 15s after SIGKILL", n.name)
	}
}

// stop ends the node: SIGTERM (graceful) or SIGKILL, then SIGKILL after
// grace if it lingers.
func (c *cluster) stop(n *node, graceful bool, grace time.Duration) {
	sig := syscall.SIGKILL
	if graceful {
		sig = syscall.SIGTERM
		if n.getState() == statePaused {
			n.signal(syscall.SIGCONT)
		}
	}
	exited, err := n.signal(sig)
	if err != nil {
		return
	}
	select {
	case <-exited:
		return
	case <-time.After(grace):
	}
	if exited, err = n.signal(syscall.SIGKILL); err == nil {
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			c.logf("%s: pid %d survived SIGKILL for 10s", n.name, n.pid)
		}
	}
}

// waitHTTP polls path on the node until it answers 200 or timeout passes.
func (c *cluster) waitHTTP(ctx context.Context, n *node, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", n.url+path, nil)
		resp, err := c.http.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if n.getState() == stateDead {
			return fmt.Errorf("%s exited (see %s)", n.name, n.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not 200 after %v: %s", n.name, path, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// getJSON reads path from node n into v.
func (c *cluster) getJSON(ctx context.Context, n *node, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", n.url+path, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s%s: %s: %s", n.name, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s%s: %v", n.name, path, err)
	}
	return nil
}

// clusterView is GET /v1/cluster.
type clusterView struct {
	Self struct {
		Name    string `json:"name"`
		Replica string `json:"replica"`
	} `json:"self"`
	Members []struct {
		Name    string `json:"name"`
		Replica string `json:"replica"`
		State   string `json:"state"`
		Lag     *struct {
			Seqs    uint64  `json:"seqs"`
			Seconds float64 `json:"seconds"`
		} `json:"lag"`
	} `json:"members"`
}

// waitReplicated waits until every other node has all of n's data, by two
// measures: every peer has confirmed (by its digest, as n's /v1/cluster lag
// shows) every commit of n, and every peer reports the same count for n's
// replica in every counter's total (GET /v1/counters/{name}?detail=true) as
// n does. Nothing may write to n meanwhile. It returns what showed it; the
// second return says how long the lag said 0 while a peer still lacked
// some of n's counts (0 if never).
func (c *cluster) waitReplicated(ctx context.Context, n *node, counters []string, timeout time.Duration) (string, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	var last string
	var lagZeroAt time.Time // when the lag first said 0
	var behindAfterLag time.Duration
	for {
		var v clusterView
		err := c.getJSON(ctx, n, "/v1/cluster", &v)
		if err == nil {
			done := true
			var parts []string
			for _, o := range c.nodes {
				if o == n {
					continue
				}
				found := false
				for _, m := range v.Members {
					if m.Name != o.name {
						continue
					}
					found = true
					if m.State != "alive" || m.Lag == nil || m.Lag.Seqs != 0 {
						done = false
					}
					lag := "unknown"
					if m.Lag != nil {
						lag = fmt.Sprintf("%d seqs", m.Lag.Seqs)
					}
					parts = append(parts, fmt.Sprintf("%s %s lag %s", m.Name, m.State, lag))
				}
				if !found {
					done = false
					parts = append(parts, o.name+" unknown")
				}
			}
			last = strings.Join(parts, ", ")
			if done {
				if lagZeroAt.IsZero() {
					lagZeroAt = time.Now()
				}
				diff, err := c.replicaCountsDiffer(ctx, n, v.Self.Replica, counters)
				switch {
				case err != nil:
					last += "; " + err.Error()
				case diff != "":
					behindAfterLag = time.Since(lagZeroAt)
					last += "; but " + diff
				default:
					return fmt.Sprintf("replica %s confirmed by %s, and every peer holds its counts of every total", v.Self.Replica, last), behindAfterLag, nil
				}
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return last, behindAfterLag, fmt.Errorf("%s's data not on every peer within %v: %s", n.name, timeout, last)
		}
		select {
		case <-ctx.Done():
			return last, behindAfterLag, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// replicaCountsDiffer compares replica's count in each counter's total on n
// (its origin) with the count every other node holds for it; "" if they all
// match.
func (c *cluster) replicaCountsDiffer(ctx context.Context, n *node, replica string, counters []string) (string, error) {
	type detail struct {
		Replicas []struct {
			Replica string `json:"replica"`
			Count   uint64 `json:"count"`
		} `json:"replicas"`
	}
	countOf := func(m *node, name string) (uint64, error) {
		var d detail
		if err := c.getJSON(ctx, m, "/v1/counters/"+name+"?detail=true", &d); err != nil {
			return 0, err
		}
		for _, r := range d.Replicas {
			if r.Replica == replica {
				return r.Count, nil
			}
		}
		return 0, nil
	}
	for _, name := range counters {
		want, err := countOf(n, name)
		if err != nil {
			return "", err
		}
		for _, m := range c.nodes {
			if m == n {
				continue
			}
			got, err := countOf(m, name)
			if err != nil {
				return "", err
			}
			if got != want {
				return fmt.Sprintf("%s holds %d of replica %.8s's %d in %s", m.name, got, replica, want, name), nil
			}
		}
	}
	return "", nil
}

// makeKey writes a fresh gossip key with `abacus keygen`.
func makeKey(bin, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "keygen").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("abacus keygen: %v: %s", err, ee.Stderr)
		}
		return fmt.Errorf("abacus keygen: %v", err)
	}
	return os.WriteFile(path, out, 0o600)
}
