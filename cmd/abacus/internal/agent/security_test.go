package agent_test

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/internal/testenv"
)

func TestAgent_TLS(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	a := startAgent(t, t.TempDir(), func(c *agent.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Post("https://"+a.Addr()+"/v1/counters/tls/increment?amount=2", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"total":2`) || resp.TLS == nil {
		t.Fatalf("https increment: %d %s", resp.StatusCode, body)
	}
	// Plain HTTP to the TLS port gets no API answer.
	if resp, err := http.Get("http://" + a.Addr() + "/v1/counters/tls"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatalf("plain HTTP answered %s", b)
		}
	}
	// An untrusting client refuses the certificate.
	if _, err := http.Get("https://" + a.Addr() + "/healthz"); err == nil {
		t.Fatal("a client without the CA accepted the self-signed certificate")
	}
	cfg := agent.DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr, cfg.GossipAddr = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLSCert, cfg.TLSKey = keyFile, certFile // swapped: unusable
	if _, err := agent.New(cfg); err == nil {
		t.Fatal("an agent started with an unusable certificate")
	}
}

func TestAgent_Auth_Reload(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokens, []byte("first-token-0123456789 write\n"), 0o600)
	a := startAgent(t, t.TempDir(), func(c *agent.Config) { c.AuthTokenFile = tokens })
	post := func(token string) int {
		code, _, _ := call(t, a, "POST", "/v1/counters/z/increment", "", "Authorization", "Bearer "+token)
		return code
	}
	if code := post("first-token-0123456789"); code != 200 {
		t.Fatalf("first token: %d", code)
	}
	os.WriteFile(tokens, []byte("second-token-0123456789 read\n"), 0o600)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if code := post("first-token-0123456789"); code != 401 {
		t.Fatalf("a removed token: %d, want 401", code)
	}
	if code := post("second-token-0123456789"); code != 403 {
		t.Fatalf("a read token writing: %d, want 403", code)
	}
	os.WriteFile(tokens, []byte("garbage\n"), 0o600)
	if err := a.Reload(); err == nil {
		t.Fatal("a broken token file reloaded")
	}
	if code, _, _ := call(t, a, "GET", "/v1/counters/z", "", "Authorization", "Bearer second-token-0123456789"); code != 200 {
		t.Fatalf("after a failed reload the previous tokens stopped working: %d", code)
	}
	if code, _, _ := call(t, a, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz needs a token: %d", code)
	}
}

// TestCluster_SnapshotRestore takes a snapshot of a1, lets a1 count on, then
// restores a1 from the snapshot onto an empty data directory. The restored
// node keeps its replica ID, refuses writes until peers have given it back
// its own newer entries, and then every count is exact.
func TestCluster_SnapshotRestore(t *testing.T) {
	c := newCluster(t, "a1", "b1")
	c.writeLoad([]string{"a1", "b1"}, []string{"s"}, 40, 21)
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
	replica := c.nodes["a1"].Store().Replica()
	code, hdr, snap := call(t, c.nodes["a1"], "GET", "/v1/snapshot", "")
	if code != 200 || len(snap) == 0 || !strings.Contains(hdr.Get("Content-Disposition"), "abacus-a1-") {
		t.Fatalf("snapshot: %d, %d bytes, %q", code, len(snap), hdr.Get("Content-Disposition"))
	}
	// a1 counts on after the snapshot; these reach b1.
	c.writeLoad([]string{"a1"}, []string{"s"}, 30, 22)
	c.waitConverged(10*time.Second, time.Now().Add(-time.Hour))
	c.stop("a1")
	os.RemoveAll(c.dirs["a1"])
	os.MkdirAll(c.dirs["a1"], 0o700)
	if err := os.WriteFile(filepath.Join(c.dirs["a1"], "state.db"), []byte(snap), 0o600); err != nil {
		t.Fatal(err)
	}
	// Start the restored node cut off from its peer: it must refuse writes
	// while it cannot know what the peer holds of it.
	c.net.Cut("b1", "a1")
	c.net.Cut("a1", "b1")
	peer := c.nodes["b1"].Gossip().Addr()
	a := c.start("a1", c.dirs["a1"], func(cfg *agent.Config) { cfg.Join = []string{peer} })
	if a.Store().Replica() != replica {
		t.Fatal("the restored node has another replica ID")
	}
	if code, _, body := call(t, a, "POST", "/v1/counters/s/increment", ""); code != 503 || !strings.Contains(body, "restored") {
		t.Fatalf("write to the restored node before catching up: %d %s", code, body)
	}
	if code, _, _ := call(t, a, "GET", "/readyz", ""); code != 503 {
		t.Fatalf("restored node ready before catching up: %d", code)
	}
	// Restarted before it caught up, it is still a restored node.
	c.stop("a1")
	a = c.start("a1", c.dirs["a1"], func(cfg *agent.Config) { cfg.Join = []string{peer} })
	if code, _, body := call(t, a, "POST", "/v1/counters/s/increment", ""); code != 503 || !strings.Contains(body, "restored") {
		t.Fatalf("write to the restored node restarted before catching up: %d %s", code, body)
	}
	c.net.Heal()
	// Once it has its own newer entries back from the peer, writes resume.
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		if !c.inc("a1", "s", 1, time.Now()) {
			return false, "a1 still refuses writes"
		}
		return true, ""
	})
	c.waitConverged(20*time.Second, time.Now().Add(-time.Hour))
	testenv.WaitFor(t, 5*time.Second, func() (bool, string) {
		return !a.Store().Restored(), "the restored mark is still on disk"
	})
}
