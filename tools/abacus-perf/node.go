package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/abacus-counter/abacus/client"
)

// node is one abacus agent the suite runs.
type node struct {
	name       string
	dataDir    string
	httpAddr   string
	gossipAddr string
	extra      []string // further agent flags
	p          *proc
}

func (n *node) url() string { return "http://" + n.httpAddr }

// newNode picks free ports for a node with its data directory under the
// suite's temporary directory.
func (s *suite) newNode(name string, extra ...string) (*node, error) {
	hp, err := freePort(false)
	if err != nil {
		return nil, err
	}
	// Both ports are closed again when picked, so the kernel may hand out
	// the same one twice.
	gp := hp
	for i := 0; gp == hp && i < 20; i++ {
		if gp, err = freePort(true); err != nil {
			return nil, err
		}
	}
	if gp == hp {
		return nil, fmt.Errorf("no gossip port apart from HTTP port %d", hp)
	}
	dir, err := os.MkdirTemp(s.tmp, "data-"+name+"-")
	if err != nil {
		return nil, err
	}
	return &node{
		name: name, dataDir: dir,
		httpAddr:   "127.0.0.1:" + strconv.Itoa(hp),
		gossipAddr: "127.0.0.1:" + strconv.Itoa(gp),
		extra:      extra,
	}, nil
}

// start starts the node's process (on its existing data directory) without
// waiting for it.
func (s *suite) startNode(n *node) error {
	args := append([]string{"agent", "--data-dir", n.dataDir, "--http-addr", n.httpAddr,
		"--gossip-addr", n.gossipAddr, "--node-name", n.name, "--cluster-name", "abacus-perf",
		"--log-level", "warn"}, n.extra...)
	p, err := s.procs.start("abacus-"+n.name, s.bin.abacus, args...)
	if err != nil {
		return err
	}
	n.p = p
	return nil
}

// startReady starts the node and waits for its /readyz.
func (s *suite) startReady(n *node) error {
	if err := s.startNode(n); err != nil {
		return err
	}
	_, err := s.waitReady(n, 60*time.Second, 20*time.Millisecond)
	return err
}

// stopNode stops the node with SIGTERM and waits for it to exit; a node
// that needs SIGKILL is an error (the figures after it would not be of a
// clean shutdown).
func (s *suite) stopNode(n *node) error {
	if n.p == nil {
		return nil
	}
	err := n.p.stop(60 * time.Second)
	if err != nil {
		return fmt.Errorf("stop %s: %v: %s", n.name, err, oneLine(logTail(n.p.log, 400), 300))
	}
	return nil
}

// waitReady polls /readyz every poll until it answers 200 and returns the
// time from the process start to that answer.
func (s *suite) waitReady(n *node, within, poll time.Duration) (time.Duration, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := c.Get(n.url() + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(n.p.started), nil
			}
		}
		if n.p.exited() {
			return 0, fmt.Errorf("node %s exited: %v: %s", n.name, n.p.err, oneLine(logTail(n.p.log, 600), 400))
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("node %s not ready after %v", n.name, within)
		}
		if err := sleep(s.ctx, poll); err != nil {
			return 0, err
		}
	}
}

var httpc = &http.Client{Timeout: 30 * time.Second}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func getText(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %d", u, resp.StatusCode)
	}
	return string(b), err
}

// totals lists every counter whose name starts with prefix.
func totals(ctx context.Context, base, prefix string) (map[string]uint64, error) {
	c, err := client.New(client.Config{BaseURL: base, Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for nt, err := range c.ListAll(ctx, prefix, 1000) {
		if err != nil {
			return nil, err
		}
		out[nt.Name] = nt.Total
	}
	return out, nil
}

func sumOf(m map[string]uint64) uint64 {
	var s uint64
	for _, v := range m {
		s += v
	}
	return s
}

func sameTotals(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// metric reads one metric's sum over the series matching labels from the
// node's /metrics.
func metric(ctx context.Context, n *node, name string, labels ...string) (float64, error) {
	text, err := getText(ctx, n.url()+"/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := metricSum(text, name, labels...)
	if !ok {
		return 0, fmt.Errorf("%s: no metric %s", n.name, name)
	}
	return v, nil
}

// dirFileSize adds up the sizes of the named files in a directory.
func dirFileSize(dir string, names ...string) (int64, error) {
	var sum int64
	for _, f := range names {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			return 0, err
		}
		sum += fi.Size()
	}
	return sum, nil
}
