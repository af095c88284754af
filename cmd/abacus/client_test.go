package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The client subcommands, run as the built binary against a live node.

// runCLI runs the binary with args and env added to an environment cleared
// of ABACUS_* variables, and returns its stdout, stderr and exit status.
func runCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, abacusBinary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ABACUS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	switch e := err.(type) {
	case nil:
	case *exec.ExitError:
		code = e.ExitCode()
	default:
		t.Fatalf("abacus %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// mustRun runs a command that must succeed with nothing on stderr.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, nil, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("abacus %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// wantFail runs a command that must fail with exit status 1 and one line on
// stderr containing want, and nothing on stdout.
func wantFail(t *testing.T, env []string, want string, args ...string) string {
	t.Helper()
	out, errOut, code := runCLI(t, env, args...)
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if code != 1 || out != "" || len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.HasSuffix(errOut, "\n") {
		t.Fatalf("abacus %s: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q", strings.Join(args, " "), code, out, errOut, want)
	}
	return lines[0]
}

type clusterInfo struct {
	Self struct {
		Name    string `json:"name"`
		Replica string `json:"replica"`
		DC      string `json:"dc"`
	} `json:"self"`
}

func TestCLI_Client(t *testing.T) {
	n := startNode(t, t.TempDir(), "--node-name", "cli-node", "--dc", "dc-test")
	addr := "--addr=" + n.url
	var self clusterInfo
	getJSON(t, n.url+"/v1/cluster", &self)

	t.Run("inc then get", func(t *testing.T) {
		if out := mustRun(t, "inc", "cli.a", "5", addr); out != "5\n" {
			t.Fatalf("inc 5 printed %q", out)
		}
		if out := mustRun(t, "inc", addr, "cli.a"); out != "6\n" {
			t.Fatalf("inc printed %q", out)
		}
		if out := mustRun(t, "get", "cli.a", addr); out != "6\n" {
			t.Fatalf("get printed %q", out)
		}
		if out := mustRun(t, "get", "cli.never", addr); out != "0\n" {
			t.Fatalf("get of a new counter printed %q", out)
		}
	})

	t.Run("idempotency key", func(t *testing.T) {
		if out := mustRun(t, "inc", "cli.idem", "3", "--idempotency-key", "order-1", addr); out != "3\n" {
			t.Fatalf("first inc printed %q", out)
		}
		out, errOut, code := runCLI(t, nil, "inc", "cli.idem", "3", "--idempotency-key=order-1", addr)
		if code != 0 || out != "3\n" || !strings.Contains(errOut, "nothing was applied") {
			t.Fatalf("retry: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		wantFail(t, nil, "abacus inc: 422 idempotency-key-reused: ", "inc", "cli.idem", "4", "--idempotency-key", "order-1", addr)
		if out := mustRun(t, "get", "cli.idem", addr); out != "3\n" {
			t.Fatalf("total after a retry = %q, want 3", out)
		}
		// Only the connection flags come from the environment: a key left
		// in the shell does not turn the next increments into replays.
		for i := 1; i <= 2; i++ {
			out, errOut, code := runCLI(t, []string{"ABACUS_IDEMPOTENCY_KEY=order-1"}, "inc", "cli.idem-env", addr)
			if code != 0 || out != fmt.Sprintf("%d\n", i) || errOut != "" {
				t.Fatalf("inc %d with ABACUS_IDEMPOTENCY_KEY set: exit %d, %q, %q", i, code, out, errOut)
			}
		}
	})

	t.Run("get detail", func(t *testing.T) {
		mustRun(t, "inc", "cli.detail", "7", addr)
		out := mustRun(t, "get", "--detail", "cli.detail", addr)
		w := len(self.Self.Replica)
		want := fmt.Sprintf("%-*s  NODE      DC       COUNT\n", w, "REPLICA") +
			fmt.Sprintf("%s  cli-node  dc-test      7\n", self.Self.Replica) +
			"\n" +
			"DC       COUNT\n" +
			"dc-test      7\n" +
			"total        7\n"
		if out != want {
			t.Fatalf("get --detail printed\n%s\nwant\n%s", out, want)
		}
	})

	t.Run("range", func(t *testing.T) {
		base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
		mustRun(t, "inc", "cli.range", "3", "--ts", base.Add(10*time.Second).Format(time.RFC3339), addr)
		mustRun(t, "inc", "cli.range", "4", "--ts", strconv.FormatInt(base.Add(70*time.Second).Unix(), 10), addr)
		mustRun(t, "inc", "cli.range", "5", "--ts="+base.Add(3*time.Minute+59*time.Second).Format(time.RFC3339Nano), addr)
		// Before the range, and before any alignment of it to 5 minutes.
		mustRun(t, "inc", "cli.range", "100", "--ts", base.Add(-6*time.Minute).Format(time.RFC3339), addr)

		from, to := base.Format(time.RFC3339), base.Add(5*time.Minute).Format(time.RFC3339)
		out := mustRun(t, "range", "cli.range", "--from", from, "--to", to, "--step", "1m", addr)
		want := "START                 COUNT\n"
		for i, c := range []int{3, 4, 0, 5, 0} {
			want += fmt.Sprintf("%s  %5d\n", base.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), c)
		}
		want += "sum                      12\n"
		if out != want {
			t.Fatalf("range printed\n%s\nwant\n%s", out, want)
		}

		out = mustRun(t, "range", "cli.range", "--from", strconv.FormatInt(base.Unix(), 10), "--to", to, "--step", "5m", "--json", addr)
		var r struct {
			Name, From, To, Step, Resolution string
			Points                           []struct {
				Start string
				Count uint64
			}
			Sum     uint64
			Partial bool
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("range --json printed %q: %v", out, err)
		}
		// The 5m points are aligned to multiples of 5 minutes, so the range
		// covers base's 5-minute window and perhaps the next.
		var sum uint64
		for _, p := range r.Points {
			sum += p.Count
		}
		if r.Name != "cli.range" || r.Step != "5m" || r.Sum != 12 || sum != 12 || r.Partial || !strings.HasSuffix(out, "}\n") {
			t.Fatalf("range --json = %+v", r)
		}

		// Relative times count back from now: base is 10 to 11 minutes ago,
		// the 100 16 to 17.
		out = mustRun(t, "range", "cli.range", "--from=-20m", "--step", "1m", addr)
		if !strings.HasSuffix(out, "\nsum                     112\n") {
			t.Fatalf("range --from=-20m printed\n%s", out)
		}
		out = mustRun(t, "range", "cli.range", "--from", "-12m", "--to", "now", addr)
		if !strings.HasSuffix(out, "\nsum                      12\n") {
			t.Fatalf("range --from -12m printed\n%s", out)
		}
	})

	t.Run("list pages", func(t *testing.T) {
		for i := 1; i <= 5; i++ {
			mustRun(t, "inc", fmt.Sprintf("cli.pg.%d", i), strconv.Itoa(i), addr)
		}
		out := mustRun(t, "list", "--prefix", "cli.pg.", "--limit", "2", "--all", addr)
		want := "NAME      TOTAL\n" +
			"cli.pg.1      1\n" +
			"cli.pg.2      2\n" +
			"cli.pg.3      3\n" +
			"cli.pg.4      4\n" +
			"cli.pg.5      5\n"
		if out != want {
			t.Fatalf("list --all printed\n%s\nwant\n%s", out, want)
		}
		out, errOut, code := runCLI(t, nil, "list", "--prefix=cli.pg.", "--limit=2", "--after", "cli.pg.1", addr)
		if code != 0 || out != "NAME      TOTAL\ncli.pg.2      2\ncli.pg.3      3\n" || errOut != "abacus list: more after cli.pg.3: add --after cli.pg.3, or --all\n" {
			t.Fatalf("one page: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	})

	t.Run("members", func(t *testing.T) {
		out := mustRun(t, "members", addr)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME DC STATE ADDR HTTP LAG" {
			t.Fatalf("members printed\n%s", out)
		}
		f := strings.Fields(lines[1])
		if len(f) != 6 || f[0] != "cli-node" || f[1] != "dc-test" || f[2] != "alive" || "http://"+f[4] != n.url || f[5] != "-" {
			t.Fatalf("members row = %q, want cli-node in dc-test, alive, at %s", lines[1], n.url)
		}
	})

	t.Run("ABACUS_ADDR", func(t *testing.T) {
		mustRun(t, "inc", "cli.env", "2", addr)
		out, errOut, code := runCLI(t, []string{"ABACUS_ADDR=" + n.url}, "get", "cli.env")
		if code != 0 || out != "2\n" || errOut != "" {
			t.Fatalf("with ABACUS_ADDR: exit %d, %q, %q", code, out, errOut)
		}
		// The flag wins over the environment.
		out, _, code = runCLI(t, []string{"ABACUS_ADDR=http://127.0.0.1:1"}, "get", "cli.env", addr)
		if code != 0 || out != "2\n" {
			t.Fatalf("--addr over ABACUS_ADDR: exit %d, %q", code, out)
		}
		// A bare host:port means http.
		if out := mustRun(t, "get", "cli.env", "--addr", strings.TrimPrefix(n.url, "http://")); out != "2\n" {
			t.Fatalf("bare host:port: %q", out)
		}
	})

	t.Run("errors", func(t *testing.T) {
		line := wantFail(t, nil, "", "get", "bad name", addr)
		if line != "abacus get: 400 invalid-name: counter names are 1 to 128 bytes of A-Z a-z 0-9 _ . : -" {
			t.Fatalf("bad name: %q", line)
		}
		wantFail(t, nil, "abacus inc: 400 invalid-amount: ", "inc", "cli.a", "0", addr)
		wantFail(t, nil, "abacus inc: 400 future-time: ", "inc", "cli.a", "--ts", time.Now().Add(time.Hour).Format(time.RFC3339), addr)
		wantFail(t, nil, "abacus range: 400 invalid-step: ", "range", "cli.a", "--step", "90s", addr)
		wantFail(t, nil, "connection refused", "get", "cli.a", "--addr", "http://127.0.0.1:1")
		wantFail(t, []string{"ABACUS_ADDR=http://127.0.0.1:1"}, "abacus members: ", "members")
		if total := mustRun(t, "get", "cli.a", addr); total != "6\n" {
			t.Fatalf("failed increments changed the total: %q", total)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		tests := []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{"get without name", nil, []string{"get"}, "abacus get: want one NAME (usage: abacus get NAME [flags]"},
			{"get with two names", nil, []string{"get", "a", "b"}, "want one NAME"},
			{"bad amount", nil, []string{"inc", "x", "lots"}, `abacus inc: AMOUNT "lots": want a whole number`},
			{"bad ts", nil, []string{"inc", "x", "--ts", "tomorrow"}, `--ts "tomorrow": want RFC 3339`},
			{"bad from", nil, []string{"range", "x", "--from", "-6 hours"}, `--from "-6 hours"`},
			{"bad step", nil, []string{"range", "x", "--step", "0"}, `--step "0"`},
			{"unknown flag", nil, []string{"list", "--bogus"}, "abacus list: flag provided but not defined: -bogus (see abacus list -h)"},
			{"stray argument", nil, []string{"members", "extra"}, `abacus members: unexpected argument "extra"`},
			{"bad timeout env", []string{"ABACUS_TIMEOUT=soon"}, []string{"get", "x"}, "ABACUS_TIMEOUT="},
			{"bad addr", nil, []string{"get", "x", "--addr", "ftp://127.0.0.1"}, "want http://host:port"},
			{"missing CA file", nil, []string{"get", "x", "--ca-file", "/nonexistent/ca.pem"}, "CA file"},
			{"snapshot without file", nil, []string{"snapshot"}, "want one FILE"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { wantFail(t, tt.env, tt.want, tt.args...) })
		}
	})

	t.Run("help", func(t *testing.T) {
		for _, c := range []string{"inc", "get", "range", "list", "members", "snapshot"} {
			out := mustRun(t, c, "-h")
			if !strings.HasPrefix(out, "Usage: abacus "+c) || !strings.Contains(out, "-addr") {
				t.Fatalf("%s -h printed\n%s", c, out)
			}
		}
		if out := mustRun(t, "--help"); !strings.Contains(out, "abacus range NAME") {
			t.Fatalf("abacus --help printed\n%s", out)
		}
	})
}

// TestCLI_Snapshot runs abacus snapshot against a stand-in for GET
// /v1/snapshot that checks the token and serves numbered snapshots.
func TestCLI_Snapshot(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		truncate := r.URL.Path == "/truncating/v1/snapshot"
		switch {
		case r.Method != "GET" || r.URL.Path != "/v1/snapshot" && !truncate:
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer admin-token":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"type":"urn:abacus:problem:forbidden","title":"Token lacks the required role","status":403,"detail":"snapshot needs the admin role"}`)
		case truncate:
			// Promises more than it sends: the client sees the cut.
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "100000")
			io.WriteString(w, "partial")
		default:
			w.Header().Set("Content-Type", "application/octet-stream")
			fmt.Fprintf(w, "snapshot #%d\n%s", served.Add(1), bytes.Repeat([]byte{0xbb}, 200_000))
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	addr := "--addr=" + srv.URL
	token := "--token=admin-token"

	read := func() string {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	onlyFile := func() {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 || ents[0].Name() != "backup.db" {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("directory holds %v, want only backup.db (no temporary files)", names)
		}
	}

	want := fmt.Sprintf("wrote %d bytes to %s\n", len("snapshot #1\n")+200_000, file)
	if out := mustRun(t, "snapshot", file, addr, token); out != want {
		t.Fatalf("snapshot printed %q, want %q", out, want)
	}
	if got := read(); !strings.HasPrefix(got, "snapshot #1\n") || len(got) != len("snapshot #1\n")+200_000 {
		t.Fatalf("file holds %d bytes starting %q", len(got), got[:min(len(got), 12)])
	}
	onlyFile()
	if info, _ := os.Stat(file); info.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600: a snapshot holds every count", info.Mode().Perm())
	}

	// No overwrite without --force, and no request either.
	wantFail(t, nil, "backup.db exists; add --force to replace it", "snapshot", file, addr, token)
	if served.Load() != 1 || !strings.HasPrefix(read(), "snapshot #1\n") {
		t.Fatalf("refused snapshot changed something: served %d", served.Load())
	}

	// With --force it is replaced; the token may come from ABACUS_TOKEN.
	out, errOut, code := runCLI(t, []string{"ABACUS_TOKEN=admin-token", "ABACUS_ADDR=" + srv.URL}, "snapshot", "--force", file)
	if code != 0 || errOut != "" || !strings.HasPrefix(out, "wrote ") || !strings.HasPrefix(read(), "snapshot #2\n") {
		t.Fatalf("--force: exit %d, %q, %q; file starts %q", code, out, errOut, read()[:12])
	}
	onlyFile()

	// Failures leave the old file and no temporary file behind.
	line := wantFail(t, nil, "", "snapshot", "--force", file, addr, "--token", "read-token")
	if line != "abacus snapshot: 403 forbidden: snapshot needs the admin role: use a token with that role in --token or ABACUS_TOKEN" {
		t.Fatalf("wrong token: %q", line)
	}
	wantFail(t, nil, "unexpected EOF", "snapshot", "--force", file, "--addr", srv.URL+"/truncating", token)
	if !strings.HasPrefix(read(), "snapshot #2\n") {
		t.Fatal("a failed snapshot changed the file")
	}
	onlyFile()

	// A fresh file that fails never appears.
	fresh := filepath.Join(dir, "fresh.db")
	wantFail(t, nil, "403 forbidden", "snapshot", fresh, addr)
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("failed snapshot created %s: %v", fresh, err)
	}
	onlyFile()
}
