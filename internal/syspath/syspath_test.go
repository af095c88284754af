package syspath

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "abacus-syspath-test")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if p, err := LookPath("abacus-syspath-test"); err != nil || p != exe {
		t.Fatalf("LookPath on PATH = %q, %v; want %q", p, err, exe)
	}
	// sh lives in /bin or /usr/bin, found even with PATH lacking them.
	if _, err := LookPath("sh"); err != nil {
		t.Fatalf("LookPath(sh) outside PATH: %v", err)
	}
	if p, err := LookPath("abacus-no-such-command"); err == nil {
		t.Fatalf("LookPath found a missing command at %q", p)
	}
}
