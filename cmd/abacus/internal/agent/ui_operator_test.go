package agent_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/internal/buildinfo"
	"github.com/abacus-counter/abacus/internal/testenv"
)

// TestUI_Browser_Operator drives the dashboard of a node whose peer in
// another datacenter has died, as an operator keeps it open: the node's
// health, the Range panel already showing the busiest counter, its split by
// datacenter, a second counter to compare, the still-filling last step, the
// counter list sorted by total and by rate, and the dead member with its
// last lag and since when. It takes screenshots in light and dark mode and
// in a narrow window; ABACUS_UI_SCREENSHOT_DIR=dir keeps them.
func TestUI_Browser_Operator(t *testing.T) {
	chromium := testenv.Require(t, "chromium", "chromium")
	c := newCluster(t, "a1", "b1")
	now := time.Now().UTC()
	// checkout.paid: 30 from dc-a, 12 from dc-b; signups only at a1.
	for i, amount := range []uint64{10, 20} {
		c.inc("a1", "checkout.paid", amount, now.Add(-time.Duration(10+i)*time.Minute))
	}
	c.inc("b1", "checkout.paid", 12, now.Add(-5*time.Minute))
	for i := range 4 {
		c.inc("a1", "signups", 1, now.Add(-time.Duration(i*7)*time.Minute))
	}
	c.waitConverged(10*time.Second, now.Add(-time.Hour))
	// b1 dies: cut off first, so that its goodbye never arrives.
	c.net.Partition([]string{"a1"}, []string{"b1"})
	c.stop("b1")
	c.inc("a1", "signups", 1, time.Now()) // a commit b1 never saw
	testenv.WaitFor(t, 20*time.Second, func() (bool, string) {
		for _, m := range c.nodes["a1"].Gossip().Members() {
			if m.Name == "b1" && (m.State != "dead" || m.Lag == nil) {
				return false, "a1 sees b1 " + m.State
			}
		}
		return true, ""
	})
	a := c.nodes["a1"]

	ctx := newChromium(t, chromium)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+a.Addr()+"/ui/#refresh=1")); err != nil {
		t.Fatalf("open /ui/: %v", err)
	}

	// The Range panel shows the counter with the largest total unasked, and
	// its split by datacenter.
	pageChart(t, ctx, "checkout.paid", "1h", "1m")
	pageWait(t, ctx, "the per-DC split", `document.querySelectorAll('#bydc .dc-row').length === 2`)
	type dcRow struct {
		DC    string `json:"dc"`
		Count string `json:"count"`
	}
	dcs := pageEval[[]dcRow](t, ctx, `Array.from(document.querySelectorAll('#bydc .dc-row'), r => ({dc: r.dataset.dc, count: r.dataset.count}))`)
	if fmt.Sprint(dcs) != fmt.Sprint([]dcRow{{"dc-a", "30"}, {"dc-b", "12"}}) {
		t.Fatalf("by DC = %+v, want dc-a 30 and dc-b 12", dcs)
	}

	// The last step is still going on: marked as filling, and only it.
	filling := pageEval[[]string](t, ctx, `Array.from(document.querySelectorAll('#chart [data-filling]'), e => e.dataset.start)`)
	last := pageEval[string](t, ctx, `Array.from(document.querySelectorAll('#chart [data-start]')).pop().dataset.start`)
	if len(filling) != 1 || filling[0] != last {
		t.Fatalf("filling points %v, want only the last, %s", filling, last)
	}

	// Node health, from /readyz and /metrics.
	pageWait(t, ctx, "the node's health", `document.getElementById('node-version').dataset.value !== undefined`)
	tile := func(id string) string {
		return pageEval[string](t, ctx, `document.getElementById('`+id+`').dataset.value || ''`)
	}
	if got := tile("node-ready"); got != "Ready" {
		t.Errorf("ready tile = %q", got)
	}
	if got := tile("node-writes"); got != "Taking writes" {
		t.Errorf("writes tile = %q", got)
	}
	if got := tile("node-reqs"); !strings.HasSuffix(got, "/s") && !strings.HasSuffix(got, "/min") || got == "0/s" {
		t.Errorf("requests tile = %q, want a rate above 0", got)
	}
	if got := tile("node-commit"); !strings.HasSuffix(got, "ms") && !strings.HasSuffix(got, " s") {
		t.Errorf("commit latency tile = %q", got)
	}
	if got := tile("node-disk"); !strings.HasSuffix(got, "iB") && !strings.HasSuffix(got, " B") {
		t.Errorf("disk tile = %q", got)
	}
	if got := tile("node-version"); got != buildinfo.Get().Version {
		t.Errorf("version tile = %q, want %q", got, buildinfo.Get().Version)
	}

	// Compare with signups: its points are drawn over the bars.
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("compare"), "signups"),
		chromedp.Click(chromedp.CSS(`#compare-form button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	pageWait(t, ctx, "the comparison", `document.getElementById('chart').dataset.compare === 'signups'`)
	var cmpSum uint64
	for _, s := range pageEval[[]string](t, ctx, `Array.from(document.querySelectorAll('#chart [data-cmp-count]'), e => e.dataset.cmpCount)`) {
		n, _ := strconv.ParseUint(s, 10, 64)
		cmpSum += n
	}
	if cmpSum != 5 {
		t.Fatalf("compared signups sum to %d over the hour, want 5", cmpSum)
	}

	// Sort by total, then by rate once signups has moved between refreshes.
	names := func() string {
		return pageEval[string](t, ctx, `Array.from(document.querySelectorAll('#counters tbody tr'), tr => tr.dataset.name).join(',')`)
	}
	pageClick(t, ctx, `#sorts button[data-sort="total"]`)
	pageWait(t, ctx, "the list by total", `document.getElementById('counters').dataset.sort === 'total'`)
	if got := names(); got != "checkout.paid,signups" {
		t.Fatalf("by total: %s", got)
	}
	pageWait(t, ctx, "a first sighting of the totals", `document.querySelector('#counters tr[data-name="signups"]') !== null`)
	c.inc("a1", "signups", 50, time.Now())
	pageWait(t, ctx, "a rate for signups", `Number((document.querySelector('#counters tr[data-name="signups"]') || {dataset: {}}).dataset.rate) > 0`)
	pageClick(t, ctx, `#sorts button[data-sort="rate"]`)
	pageWait(t, ctx, "the list by rate", `document.getElementById('counters').dataset.sort === 'rate' && document.querySelector('#counters tbody tr').dataset.name === 'signups'`)

	// The dead member: its state, since when, and the lag it had.
	pageWait(t, ctx, "the dead member", `document.querySelector('#members tr[data-name="b1"][data-state="dead"] td[data-since]') !== null`)
	row := pageEval[string](t, ctx, `Array.from(document.querySelector('#members tr[data-name="b1"]').cells, td => td.textContent).join('|')`)
	if !strings.Contains(row, "dead since ") || !strings.Contains(row, "ago)") || !strings.Contains(row, "(last seen)") {
		t.Fatalf("b1's row = %q, want dead since …, with its last lag", row)
	}

	// Screenshots: light, dark, narrow.
	dir := os.Getenv("ABACUS_UI_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shoot := func(name string) {
		t.Helper()
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		checkScreenshotPNG(t, shot)
		if err := os.WriteFile(filepath.Join(dir, "abacus-ui-"+name+".png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shoot("light")
	scheme := func(v string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: v}}})
			return err
		})
	}
	if err := chromedp.Do(ctx, scheme("dark")); err != nil {
		t.Fatal(err)
	}
	if !pageEval[bool](t, ctx, `matchMedia('(prefers-color-scheme: dark)').matches`) {
		t.Fatal("dark mode not in effect")
	}
	shoot("dark")
	if err := chromedp.Do(ctx, scheme("light"), chromedp.EmulateViewport(420, 900)); err != nil {
		t.Fatal(err)
	}
	pageWait(t, ctx, "the narrow layout", `document.documentElement.clientWidth <= 420`)
	// Narrow: one column, nothing wider than the window.
	if w := pageEval[int](t, ctx, `document.documentElement.scrollWidth`); w > 420 {
		t.Errorf("the narrow page is %d px wide: it scrolls sideways", w)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "abacus-ui-narrow.png"), shot, 0o644); err != nil {
		t.Fatal(err)
	}

	// A node that cannot join says why it is not ready, and the fix.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := ln.Addr().String()
	ln.Close()
	lone := startAgent(t, t.TempDir(), func(cfg *agent.Config) { cfg.NodeName = "lone"; cfg.Join = []string{nobody} })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 900), chromedp.Navigate("http://"+lone.Addr()+"/ui/")); err != nil {
		t.Fatal(err)
	}
	pageWait(t, ctx, "the reason it is not ready", `document.getElementById('node-ready').dataset.value === 'Not ready' && !document.getElementById('node-reason').hidden`)
	reason := pageEval[string](t, ctx, `document.getElementById('node-reason').textContent`)
	if !strings.Contains(reason, "joining ["+nobody+"]") || !strings.Contains(reason, "--join") {
		t.Fatalf("not-ready reason = %q, want the join address and the flag", reason)
	}
	if got := tile("node-writes"); got != "Taking writes" {
		t.Errorf("a joining node's writes tile = %q (it takes writes while joining)", got)
	}
	shoot("not-ready")
}
