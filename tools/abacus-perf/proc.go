package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs keeps every long-running process the suite started (nodes, Redis,
// the trivial server), so that they can be stopped by PID on every way out:
// a finished scenario, an error, or SIGINT. Nothing else is ever signalled.
type procs struct {
	logDir string
	mu     sync.Mutex
	tag    string // the scenario running, for log file names
	live   map[int]*proc
	seq    int
}

// proc is one started process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	log     string
	started time.Time
	done    chan struct{} // closed when it exited
	err     error         // its exit status, once done
}

func newProcs(logDir string) *procs {
	return &procs{logDir: logDir, live: map[int]*proc{}}
}

// sysProcAttr puts a child in its own process group, so that a Ctrl-C at
// the terminal reaches only this program, which then stops its children
// itself, and asks the kernel to kill it should this program die first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// logFile opens a new log file named after name in the log directory.
func (ps *procs) logFile(name string) (*os.File, error) {
	ps.mu.Lock()
	ps.seq++
	n, tag := ps.seq, ps.tag
	ps.mu.Unlock()
	if tag != "" {
		name = tag + "-" + name
	}
	return os.Create(filepath.Join(ps.logDir, fmt.Sprintf("%03d-%s.log", n, sanitize(name))))
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// start runs a long-lived process with its output in a log file.
func (ps *procs) start(name, path string, args ...string) (*proc, error) {
	f, err := ps.logFile(name)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "$ %s %s\n", path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	p := &proc{name: name, cmd: cmd, log: f.Name(), done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ps.mu.Lock()
	ps.live[cmd.Process.Pid] = p
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		f.Close()
		ps.mu.Lock()
		delete(ps.live, cmd.Process.Pid)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process (by PID) and waits up to grace for it to
// exit, then kills it. It reports how the process ended.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.err
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, grace)
}

// stopAll stops every process still running, in parallel.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	var all []*proc
	for _, p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(15 * time.Second)
		}()
	}
	wg.Wait()
}

// logTail returns the end of a log file, for error messages.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// run runs a command to completion within timeout and returns its standard
// output; both streams also go to a log file. The context's end (SIGINT)
// sends it SIGTERM, then SIGKILL after 5 s.
func (ps *procs) run(ctx context.Context, timeout time.Duration, name, path string, args ...string) (string, error) {
	return ps.runIn(ctx, timeout, "", nil, name, path, args...)
}

func (ps *procs) runIn(ctx context.Context, timeout time.Duration, dir string, env []string, name, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := ps.logFile(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fmt.Fprintf(f, "$ %s %s\n", path, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, f)
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if err != nil {
		why := err.Error()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("did not finish within %v", timeout)
		} else if ctx.Err() != nil {
			why = "interrupted"
		}
		return out.String(), fmt.Errorf("%s: %s; log %s: %s", name, why, f.Name(), oneLine(logTail(f.Name(), 600), 400))
	}
	return out.String(), nil
}

// freePort returns a loopback port that is free for TCP and, with udp, for
// UDP too (gossip uses both). Another process could take it before it is
// used; the caller's start then fails with a clear error.
func freePort(udp bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !udp {
			l.Close()
			return port, nil
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free loopback port found")
}

// waitTCP waits until addr accepts connections, p is still running and the
// deadline has not passed.
func waitTCP(ctx context.Context, p *proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v: %s", p.name, p.err, oneLine(logTail(p.log, 600), 400))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: nothing listens on %s after %v", p.name, addr, within)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// procCPUTicks is a process's user+system CPU time in clock ticks.
func procCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatTicks(string(b))
}

// procMemory reads VmRSS, RssAnon and RssFile of a process, in bytes.
func procMemory(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := parseProcStatus(string(b))
	if _, ok := m["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}
