package main_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the real binary as separate processes.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary abacusBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// abacusBinary builds cmd/abacus once per test run (TestMain removes it).
func abacusBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "abacus-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "abacus")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// node is one abacus agent process.
type node struct {
	t       testing.TB
	dataDir string
	args    []string
	cmd     *exec.Cmd
	url     string
	gossip  string // gossip address
	logs    *syncBuffer
	exited  chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingRE = regexp.MustCompile(`msg=serving http=(https?://[0-9.:]+) gossip=([0-9.:]+)`)

// startNode starts an agent on dataDir with an ephemeral HTTP port and waits
// until it serves.
func startNode(t testing.TB, dataDir string, extra ...string) *node {
	t.Helper()
	n := &node{t: t, dataDir: dataDir, args: extra}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	n.t.Helper()
	args := append([]string{"agent", "--data-dir", n.dataDir, "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--log-format", "text"}, n.args...)
	cmd := exec.Command(abacusBinary(n.t), args...)
	pr, pw := io.Pipe()
	n.logs = &syncBuffer{}
	cmd.Stdout = n.logs
	cmd.Stderr = io.MultiWriter(n.logs, pw)
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	go func() {
		cmd.Wait()
		pw.Close()
		close(n.exited)
	}()
	found := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case m := <-found:
		n.url, n.gossip = m[1], m[2]
	case <-n.exited:
		n.t.Fatalf("agent exited before serving:\n%s", n.logs)
	case <-time.After(30 * time.Second):
		n.t.Fatalf("agent did not serve within 30s:\n%s", n.logs)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop sends SIGTERM and waits, then SIGKILL if it lingers.
func (n *node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	select {
	case <-n.exited:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		n.t.Errorf("agent ignored SIGTERM for 30s; killing it:\n%s", n.logs)
		n.kill()
	}
}

func (n *node) restart() {
	n.t.Helper()
	n.start()
}

var httpClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256},
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, body)
	}
}

// gossipKey writes a new gossip key file (as abacus keygen makes) and
// returns its path.
func gossipKey(t testing.TB) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
