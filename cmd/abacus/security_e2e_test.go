package main_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abacus-counter/abacus/internal/testenv"
	"github.com/abacus-counter/abacus/store"
)

// TestCLI_LiveAuthTLSSnapshot runs the client commands against a live node
// serving HTTPS with tokens: the CA file, each role's 401/403, and a snapshot
// that opens as the node's database, same replica, same counts.
func TestCLI_LiveAuthTLSSnapshot(t *testing.T) {
	certFile, keyFile, _ := testenv.SelfSigned(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("reader-0123456789abcdef read\nwriter-0123456789abcdef write\nadmin-0123456789abcdef admin\n"), 0o600)
	n := startNode(t, t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile, "--auth-token-file", tokens)
	if !strings.HasPrefix(n.url, "https://") {
		t.Fatalf("node serves %s", n.url)
	}
	conn := []string{"--addr", n.url, "--ca-file", certFile}
	with := func(token string, args ...string) []string {
		return append(append(args, conn...), "--token", token)
	}

	if out := mustRun(t, with("writer-0123456789abcdef", "inc", "secure", "7")...); strings.TrimSpace(out) != "7" {
		t.Fatalf("inc = %q", out)
	}
	if out := mustRun(t, with("reader-0123456789abcdef", "get", "secure")...); strings.TrimSpace(out) != "7" {
		t.Fatalf("get = %q", out)
	}
	wantFail(t, nil, "401", append([]string{"get", "secure"}, conn...)...)
	wantFail(t, nil, "401", with("nobody-0123456789abcdef", "get", "secure")...)
	wantFail(t, nil, "403", with("reader-0123456789abcdef", "inc", "secure")...)
	wantFail(t, nil, "403", with("writer-0123456789abcdef", "snapshot", filepath.Join(t.TempDir(), "x.db"))...)
	// Without the CA the certificate is not trusted.
	wantFail(t, nil, "certificate", "get", "secure", "--addr", n.url, "--token", "reader-0123456789abcdef")

	dir := t.TempDir()
	file := filepath.Join(dir, store.StateFile)
	mustRun(t, with("admin-0123456789abcdef", "snapshot", file)...)
	s, err := store.Open(store.DefaultConfig(dir))
	if err != nil {
		t.Fatalf("the snapshot does not open as a database: %v", err)
	}
	defer s.Close(context.Background())
	if total, err := s.Total("secure"); err != nil || total != 7 {
		t.Fatalf("snapshot total = %d, %v", total, err)
	}
	if !s.Restored() {
		t.Fatal("a snapshot in an empty directory does not open as restored")
	}
}
