// Package testenv lets tests get the system tools they need. The README's
// test command must work on a fresh machine with only Go installed: a test
// that needs a Debian package (chromium, iptables) installs it, as root, the
// first time, under a machine-wide lock so that test binaries running in
// parallel do not fight over dpkg.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/internal/syspath"
)

var mu sync.Mutex

// Require returns the path of command, installing Debian package pkg first if
// the command is missing. It fails the test (it does not skip it) when the
// command cannot be had: a missing tool must not pass for a passing test.
func Require(t testing.TB, command, pkg string) string {
	t.Helper()
	if p, err := syspath.LookPath(command); err == nil {
		return p
	}
	mu.Lock()
	defer mu.Unlock()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "abacus-testenv-apt.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("testenv: lock: %v", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if p, err := syspath.LookPath(command); err == nil {
		return p // another test binary installed it while we waited
	}
	if os.Geteuid() != 0 {
		t.Fatalf("testenv: %s is missing and installing Debian package %s needs root; install it (apt-get install %s) or run the tests as root", command, pkg, pkg)
	}
	t.Logf("testenv: installing Debian package %s for %s", pkg, command)
	for _, args := range [][]string{
		{"apt-get", "install", "-y", "--no-install-recommends", pkg},
		{"apt-get", "update"},
		{"apt-get", "install", "-y", "--no-install-recommends", pkg},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err == nil && args[1] == "install" {
			break
		}
		if err != nil && args[1] == "update" {
			t.Fatalf("testenv: apt-get update: %v\n%s", err, out)
		}
	}
	p, err := syspath.LookPath(command)
	if err != nil {
		t.Fatalf("testenv: %s still missing after installing %s", command, pkg)
	}
	return p
}

// RequireRoot fails the test unless it runs as root (network namespaces and
// iptables need it; CI runs as root).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test creates network namespaces and needs root (CI runs as root)")
	}
}

// WaitFor polls cond every 50 ms until it holds, and fails the test with
// cond's last reason if it does not within timeout.
func WaitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("not within %v: %s", timeout, why)
}
