package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClient_FromAnotherModule builds a program in a module of its own that
// imports the client by the module path (a replace directive points it at
// this checkout, as `go get github.com/abacus-counter/abacus/client` would
// fetch it), then runs it against a live node.
func TestClient_FromAnotherModule(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/counterapp\n\ngo 1.26\n\n" +
			"require github.com/abacus-counter/abacus v0.0.0\n\n" +
			"replace github.com/abacus-counter/abacus => " + root + "\n",
		"main.go": `package main

import (
	"context"
	"fmt"
	"os"

	"github.com/abacus-counter/abacus/client"
)

func main() {
	cfg := client.DefaultConfig()
	cfg.BaseURL = os.Args[1]
	c, err := client.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx := context.Background()
	if _, err := c.Inc(ctx, "from.another.module", 3, client.IncOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	total, err := c.Get(ctx, "from.another.module")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("total", total)
}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	app := filepath.Join(dir, "counterapp")
	build := exec.Command("go", "build", "-o", app, ".")
	build.Dir = dir
	// The client needs nothing outside this repository and the standard
	// library, so the build needs no network and no go.sum.
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in a separate module: %v\n%s", err, out)
	}

	n := startNode(t, t.TempDir())
	out, err := exec.Command(app, n.url).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "total 3" {
		t.Fatalf("counterapp: %v\n%s", err, out)
	}
	if got := mustRun(t, "get", "from.another.module", "--addr", n.url); got != "3\n" {
		t.Fatalf("the node's total = %q, want 3", got)
	}
}
