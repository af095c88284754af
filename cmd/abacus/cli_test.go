package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLI_AgentStartupErrors: bad flags, an unusable data directory and a
// port in use each end the agent with one line of error and exit status 1.
func TestCLI_AgentStartupErrors(t *testing.T) {
	bin := abacusBinary(t)
	running := startNode(t, t.TempDir())
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown flag", []string{"agent", "--no-such-flag"}, nil, "flag provided but not defined"},
		{"bad durability", []string{"agent", "--durability", "maybe"}, nil, "--durability"},
		{"bad windows", []string{"agent", "--windows", "1m:30s"}, nil, "--windows"},
		{"bad env", []string{"agent"}, []string{"ABACUS_LOG_LEVEL=loud"}, "--log-level"},
		{"data dir is a file", []string{"agent", "--data-dir", filepath.Join(notADir, "data"), "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"}, nil, "data directory"},
		{"data dir in use", []string{"agent", "--data-dir", running.dataDir, "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"}, nil, "in use"},
		{"port in use", []string{"agent", "--data-dir", t.TempDir(), "--http-addr", strings.TrimPrefix(running.url, "http://"), "--gossip-addr", "127.0.0.1:0"}, nil, "address already in use"},
		{"gossip port in use", []string{"agent", "--data-dir", filepath.Join(t.TempDir(), "never"), "--http-addr", "127.0.0.1:0", "--gossip-addr", running.gossip}, nil, "gossip address"},
		{"stray argument", []string{"agent", "extra"}, nil, "unexpected argument"},
		{"join without a key", []string{"agent", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0", "--join", running.gossip}, nil, "abacus keygen"},
		{"join without a key, from the environment", []string{"agent", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"}, []string{"ABACUS_JOIN=" + running.gossip}, "--gossip-key-file"},
		{"key and insecure", []string{"agent", "--gossip-insecure", "--gossip-key-file", notADir}, nil, "contradict"},
		{"recover a directory in use", []string{"recover", "--data-dir", running.dataDir}, nil, "stop the node first"},
		{"recover nothing", []string{"recover", "--data-dir", filepath.Join(t.TempDir(), "empty")}, nil, "replica ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit = %v, want status 1; output:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("output = %q, want one line mentioning %q", out, tt.want)
			}
		})
	}
}

func TestCLI_Help(t *testing.T) {
	out, err := exec.Command(abacusBinary(t), "agent", "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--data-dir") && !strings.Contains(string(out), "-data-dir") {
		t.Fatalf("agent -h: %v\n%s", err, out)
	}
}
