package main_test

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/api/apitest"
	"github.com/abacus-counter/abacus/internal/testenv"
	"github.com/abacus-counter/abacus/window"
)

// authServer is the real API over fakes, with tokens of each role.
func authServer(t *testing.T, cl *apitest.Cluster) *httptest.Server {
	t.Helper()
	tokens, err := api.ParseTokens(strings.NewReader("reader-0123456789abcdef read\nadmin-0123456789abcdef admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(api.Deps{
		Counters: apitest.NewCounters(time.Now()), Cluster: cl, ForceLeave: cl,
		Windows: window.DefaultConfig(), Auth: tokens,
	}))
	t.Cleanup(srv.Close)
	return srv
}

// freeAddr is a loopback address where nothing listens.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCLI_ErrorsNameTheFix: each mistake a newcomer makes talking to a node
// ends with exit status 1 and one line that says what is wrong and which
// flag or variable fixes it.
func TestCLI_ErrorsNameTheFix(t *testing.T) {
	tlsSrv := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes fail on purpose
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	auth := authServer(t, &apitest.Cluster{})
	down := freeAddr(t)
	tlsHost := strings.TrimPrefix(tlsSrv.URL, "https://")
	plainHost := strings.TrimPrefix(plain.URL, "http://")

	tests := []struct {
		name string
		env  []string
		args []string
		want []string // each must be in the line: the cause, then the fix
	}{
		{"addr without port", nil, []string{"get", "x", "--addr", "localhost"},
			[]string{`--addr "localhost" has no port`, "--addr localhost:4000", "ABACUS_ADDR"}},
		{"ABACUS_ADDR without port", []string{"ABACUS_ADDR=localhost"}, []string{"get", "x"},
			[]string{`"localhost" has no port`, "ABACUS_ADDR"}},
		{"plain http against TLS", nil, []string{"get", "x", "--addr", "http://" + tlsHost},
			[]string{"serves HTTPS", "plain HTTP", "--addr https://" + tlsHost, "ABACUS_ADDR"}},
		{"https against plain http", nil, []string{"get", "x", "--addr", "https://" + plainHost},
			[]string{"serves plain HTTP", "--addr http://" + plainHost, "ABACUS_ADDR"}},
		{"untrusted certificate", nil, []string{"get", "x", "--addr", tlsSrv.URL},
			[]string{"not trust", "--ca-file", "ABACUS_CA_FILE"}},
		{"node down", nil, []string{"get", "x", "--addr", down},
			[]string{"nothing answers at " + down, "connection refused", "is the agent running", "--addr", "ABACUS_ADDR"}},
		{"node down via ABACUS_ADDR", []string{"ABACUS_ADDR=http://" + down}, []string{"members"},
			[]string{"nothing answers at http://" + down, "ABACUS_ADDR"}},
		{"no token", nil, []string{"get", "x", "--addr", auth.URL},
			[]string{"401", "no token was sent", "--token", "ABACUS_TOKEN"}},
		{"unknown token", []string{"ABACUS_TOKEN=nobody-0123456789abcdef"}, []string{"get", "x", "--addr", auth.URL},
			[]string{"401", "does not know the token", "--token", "ABACUS_TOKEN", "--auth-token-file"}},
		{"token lacks the role", nil, []string{"inc", "x", "--addr", auth.URL, "--token", "reader-0123456789abcdef"},
			[]string{"403", "needs the write role; the token has read", "--token", "ABACUS_TOKEN"}},
		{"negative amount", nil, []string{"inc", "signups", "-3"},
			[]string{"AMOUNT -3", "amounts are positive", "signups.removed"}},
		{"bad boolean variable", []string{"ABACUS_METRICS_PUBLIC=maybe"}, []string{"agent"},
			[]string{`ABACUS_METRICS_PUBLIC="maybe"`, "want true or false", "yes/no", "unset it"}},
		{"bad duration variable", []string{"ABACUS_TIMEOUT=soon"}, []string{"get", "x"},
			[]string{`ABACUS_TIMEOUT="soon"`, "--timeout", "unset it"}},
		{"force-leave of an alive member", nil, []string{"force-leave", "n1", "--addr", auth.URL, "--token", "admin-0123456789abcdef"},
			[]string{"n1 is alive", "stop it", "abacus members"}},
		{"force-leave of an unknown member", nil, []string{"force-leave", "n9", "--addr", auth.URL, "--token", "admin-0123456789abcdef"},
			[]string{`knows no member "n9"`, "abacus members"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := wantFail(t, tt.env, tt.want[0], tt.args...)
			t.Log(line)
			for _, w := range tt.want[1:] {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
		})
	}

	// An empty variable is unset: the default address, not `base URL ""`.
	t.Run("empty ABACUS_ADDR", func(t *testing.T) {
		_, errOut, code := runCLI(t, []string{"ABACUS_ADDR=", "ABACUS_TIMEOUT=2s"}, "get", "x")
		if code != 0 && !strings.Contains(errOut, "127.0.0.1:4000") {
			t.Fatalf("ABACUS_ADDR= : exit %d, %q; want the default address", code, errOut)
		}
	})
}

// TestCLI_MetricsPublicYes: ABACUS_METRICS_PUBLIC=yes is taken as true.
func TestCLI_MetricsPublicYes(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("reader-0123456789abcdef read\n"), 0o600)
	t.Setenv("ABACUS_METRICS_PUBLIC", "yes")
	n := startNode(t, t.TempDir(), "--auth-token-file", tokens)
	if code, _ := httpGetCode(t, n.url+"/metrics"); code != 200 {
		t.Fatalf("/metrics without a token = %d, want 200 with ABACUS_METRICS_PUBLIC=yes", code)
	}
	if code, _ := httpGetCode(t, n.url+"/v1/counters"); code != 401 {
		t.Fatalf("/v1/counters without a token = %d, want 401", code)
	}
}

func httpGetCode(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Content-Type")
}

// TestCLI_MembersDeadAndForceLeave: abacus members shows a dead member's
// last lag and since when it is dead; force-leave removes it.
func TestCLI_MembersDeadAndForceLeave(t *testing.T) {
	since := time.Now().Add(-5*time.Minute - 3*time.Second).UTC().Truncate(time.Second)
	cl := &apitest.Cluster{Peers: []api.Member{
		{Name: "n2", Replica: "r2", DC: "dc2", Addr: "127.0.0.2:7946", HTTP: "127.0.0.2:4000", State: "alive", Lag: &api.Lag{}},
		{Name: "n3", Replica: "r3", DC: "dc3", Addr: "127.0.0.3:7946", HTTP: "127.0.0.3:4000", State: "dead", Lag: &api.Lag{Seqs: 42, Seconds: 303.5}, Since: &since},
	}}
	srv := authServer(t, cl)
	conn := []string{"--addr", srv.URL, "--token", "admin-0123456789abcdef"}

	out, errOut, code := runCLI(t, nil, append([]string{"members"}, conn...)...)
	if code != 0 {
		t.Fatalf("members: exit %d, %s", code, errOut)
	}
	row := regexp.MustCompile(`(?m)^n3 +dc3 +dead since ` + regexp.QuoteMeta(since.Format(time.RFC3339)) + ` \(5m ago\) +127\.0\.0\.3:7946 +127\.0\.0\.3:4000 +42 commits, 303\.5s$`)
	if !row.MatchString(out) {
		t.Fatalf("members printed\n%s\nwant a row for n3, dead since %s with its lag", out, since.Format(time.RFC3339))
	}
	if !strings.Contains(errOut, "abacus force-leave n3") {
		t.Fatalf("members said %q; want a hint at force-leave", errOut)
	}

	if out := mustRun(t, append([]string{"force-leave", "n3"}, conn...)...); out != "removed n3; told 1 live member(s)\n" {
		t.Fatalf("force-leave printed %q", out)
	}
	testenv.WaitFor(t, time.Second, func() (bool, string) {
		out := mustRun(t, append([]string{"members"}, conn...)...)
		return !strings.Contains(out, "n3"), "members still lists n3:\n" + out
	})
}

// TestCLI_Version: abacus version and --version print the build.
func TestCLI_Version(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		out := mustRun(t, arg)
		if !regexp.MustCompile(`^abacus \S+ \(commit \S+, go1\.\d+`).MatchString(out) {
			t.Fatalf("abacus %s printed %q", arg, out)
		}
	}
	// A release's version set at link time.
	bin := filepath.Join(t.TempDir(), "abacus")
	if out, err := exec.Command("go", "build", "-o", bin, "-ldflags", "-X github.com/abacus-counter/abacus/internal/buildinfo.version=v1.2.3", ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "abacus v1.2.3 (commit ") {
		t.Fatalf("ldflags version: %q, %v", out, err)
	}
}
