// Package syspath finds system commands (ip, iptables, redis-server, …) that
// the tests and the chaos and performance tools run.
package syspath

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// LookPath finds command on PATH or in the sbin and bin directories, which a
// non-login shell's PATH may lack.
func LookPath(command string) (string, error) {
	if p, err := exec.LookPath(command); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, command)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", command)
}
