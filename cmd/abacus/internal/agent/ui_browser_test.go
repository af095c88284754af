package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/abacus-counter/abacus/internal/testenv"
)

// TestUI_Browser drives the dashboard in headless Chromium against a real
// node: increments sent at known event times must show, point by point, in
// the chart the page draws, and the counter list and the members table must
// show what the API says. Set ABACUS_UI_SCREENSHOT=file.png to keep a copy of
// the screenshot it takes.
func TestUI_Browser(t *testing.T) {
	chromium := testenv.Require(t, "chromium", "chromium")
	a := startAgent(t, t.TempDir())

	// Increments at known minutes of the last quarter hour, two of them in
	// the same minute, and another counter so the list has two.
	const counter = "checkout.paid"
	now := time.Now().UTC()
	base := now.Truncate(time.Minute)
	sends := []struct {
		ago    time.Duration
		amount uint64
	}{{14 * time.Minute, 3}, {13 * time.Minute, 40}, {9 * time.Minute, 5}, {4 * time.Minute, 2}, {4 * time.Minute, 6}, {2 * time.Minute, 11}}
	perMinute := map[string]uint64{}
	perFive := map[string]uint64{}
	var total uint64
	for i, s := range sends {
		ts := base.Add(-s.ago).Add(time.Duration(i) * time.Second) // anywhere inside the minute
		body := fmt.Sprintf(`{"amount":%d,"ts":%q}`, s.amount, ts.Format(time.RFC3339))
		if code, _, resp := call(t, a, "POST", "/v1/counters/"+counter+"/increment", body, "Content-Type", "application/json"); code != 200 {
			t.Fatalf("increment %s = %d %s", body, code, resp)
		}
		perMinute[ts.Truncate(time.Minute).Format(time.RFC3339)] += s.amount
		perFive[ts.Truncate(5*time.Minute).Format(time.RFC3339)] += s.amount
		total += s.amount
	}
	if code, _, resp := call(t, a, "POST", "/v1/counters/signups/increment?amount=9", ""); code != 200 {
		t.Fatalf("increment signups = %d %s", code, resp)
	}

	ctx := newChromium(t, chromium)
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+a.Addr()+"/ui/")); err != nil {
		t.Fatalf("open /ui/: %v", err)
	}

	// (b) The counter list shows both counters with their totals.
	pageWait(t, ctx, "the counter list", `document.querySelectorAll('#counters tbody tr').length === 2`)
	type listRow struct {
		Name  string `json:"name"`
		Total string `json:"total"`
		Text  string `json:"text"`
	}
	rows := pageEval[[]listRow](t, ctx, `Array.from(document.querySelectorAll('#counters tbody tr'), tr =>
		({name: tr.dataset.name, total: tr.dataset.total, text: tr.querySelector('td.total').textContent}))`)
	wantRows := []listRow{{counter, strconv.FormatUint(total, 10), strconv.FormatUint(total, 10)}, {"signups", "9", "9"}}
	if fmt.Sprint(rows) != fmt.Sprint(wantRows) {
		t.Fatalf("counter list = %+v, want %+v", rows, wantRows)
	}

	// (c) The members table shows this node.
	pageWait(t, ctx, "the members table", `document.querySelector('#members tbody tr[data-name="n1"]') !== null`)
	type memberRow struct {
		Name  string `json:"name"`
		Cells string `json:"cells"`
	}
	members := pageEval[[]memberRow](t, ctx, `Array.from(document.querySelectorAll('#members tbody tr'), tr =>
		({name: tr.dataset.name, cells: Array.from(tr.cells, td => td.textContent).join('|')}))`)
	if len(members) != 1 || members[0].Name != "n1" || !strings.HasPrefix(members[0].Cells, "n1this node|dc1|alive|127.0.0.1:") {
		t.Fatalf("members = %+v, want this node n1 in dc1, alive", members)
	}

	// (a) Pick the counter in the list, then a span and a step: 5-minute
	// steps over 6 hours hold the sums of the minutes in them.
	pageClick(t, ctx, `#counters tr[data-name="`+counter+`"]`)
	pageClick(t, ctx, `button[data-span="6h"]`)
	pageClick(t, ctx, `button[data-step="5m"]`)
	pts := pageChart(t, ctx, counter, "6h", "5m")
	checkChartPoints(t, pts, 5*time.Minute, perFive, 72, 73)

	// 30 days of 5-minute steps reach past the 48 hours that minute windows
	// are kept: the page says the answer is partial.
	pageClick(t, ctx, `button[data-span="30d"]`)
	pageChart(t, ctx, counter, "30d", "5m")
	pageWait(t, ctx, "the partial notice", `document.getElementById('chart').dataset.partial === 'true' && !document.getElementById('partial').hidden`)

	// 30 days of minutes are too many points: the API's problem detail is
	// shown, and no stale chart stays up.
	pageClick(t, ctx, `button[data-step="1m"]`)
	pageWait(t, ctx, "the range error", `!document.getElementById('chart-error').hidden`)
	msg := pageEval[string](t, ctx, `document.getElementById('chart-error').textContent`)
	if !strings.Contains(msg, "(400)") || !strings.Contains(msg, "at most 11000 points") {
		t.Fatalf("chart error = %q, want the 400 problem's detail", msg)
	}
	if n := pageEval[int](t, ctx, `document.querySelectorAll('#chart [data-start]').length`); n != 0 {
		t.Fatalf("%d points still drawn after the error", n)
	}

	// One hour of minutes: every point is exactly what was sent in it.
	pageClick(t, ctx, `button[data-span="1h"]`)
	pts = pageChart(t, ctx, counter, "1h", "1m")
	checkChartPoints(t, pts, time.Minute, perMinute, 60, 61)
	if !pageEval[bool](t, ctx, `document.getElementById('chart-error').hidden && document.getElementById('partial').hidden`) {
		t.Fatal("error or partial notice still shown for a good, complete range")
	}

	// (d) A screenshot: a real image of the page, not a blank one.
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	file := filepath.Join(t.TempDir(), "abacus-ui.png")
	if err := os.WriteFile(file, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("ABACUS_UI_SCREENSHOT"); keep != "" {
		if err := os.WriteFile(keep, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkScreenshotPNG(t, shot)
}

// TestUI_Browser_Token checks the token field against a node that wants a
// token: until one is set the page says a token is needed, a token without
// the role is told apart, and once the right one is saved every request
// carries it, also after a reload. Auth lives in the API, not in this test:
// a proxy in front of the node plays its part, answering 401 and 403 as the
// API does.
func TestUI_Browser_Token(t *testing.T) {
	chromium := testenv.Require(t, "chromium", "chromium")
	a := startAgent(t, t.TempDir())
	target, _ := url.Parse("http://" + a.Addr())
	forward := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var seen []string // the Authorization header of each API request, in order
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			auth := r.Header.Get("Authorization")
			mu.Lock()
			seen = append(seen, auth)
			mu.Unlock()
			status, title := 0, ""
			switch auth {
			case "Bearer s3cret":
			case "Bearer weak":
				status, title = 403, "Token lacks the required role"
			default:
				status, title = 401, "Missing or invalid token"
			}
			if status != 0 {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(status)
				fmt.Fprintf(w, `{"type":"urn:abacus:problem:x","title":%q,"status":%d,"detail":"from the test proxy"}`, title, status)
				return
			}
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	requests := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}

	ctx := newChromium(t, chromium)
	if err := chromedp.Do(ctx, chromedp.Navigate(proxy.URL+"/ui/")); err != nil {
		t.Fatalf("open /ui/: %v", err)
	}
	banner := `document.getElementById('auth-banner')`
	pageWait(t, ctx, "the 401 message", `!`+banner+`.hidden && `+banner+`.textContent.includes('Authentication required (401)')`)
	if got := pageEval[string](t, ctx, `document.getElementById('status-text').textContent`); got != "Token needed" {
		t.Errorf("status = %q, want Token needed", got)
	}
	for i, auth := range requests() {
		if auth != "" {
			t.Fatalf("request %d carried %q before any token was set", i, auth)
		}
	}

	saveToken := func(token string) {
		t.Helper()
		if err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.ID("token"), token),
			chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		); err != nil {
			t.Fatalf("save token %q: %v", token, err)
		}
	}
	saveToken("weak")
	pageWait(t, ctx, "the 403 message", banner+`.textContent.includes('Permission denied (403)')`)

	saveToken("s3cret")
	pageWait(t, ctx, "the page with the token", banner+`.hidden && document.querySelector('#members tbody tr[data-name="n1"]') !== null`)
	if got := pageEval[string](t, ctx, `localStorage.getItem('abacus.token')`); got != "s3cret" {
		t.Fatalf("stored token = %q", got)
	}

	// After a reload the stored token is used from the first request on.
	mark := len(requests())
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	pageWait(t, ctx, "the page after a reload", `document.getElementById('token').value === 's3cret' && document.getElementById('status-text').textContent.startsWith('Live')`)
	after := requests()[mark:]
	if len(after) < 2 {
		t.Fatalf("%d API requests after the reload, want the list and the cluster at least", len(after))
	}
	for i, auth := range after {
		if auth != "Bearer s3cret" {
			t.Fatalf("request %d after the reload carried %q", i, auth)
		}
	}
}

// chartPoint is one bar of the chart as the page drew it.
type chartPoint struct {
	Start string `json:"start"`
	Count string `json:"count"`
}

// checkChartPoints checks that the points are consecutive, that those in want
// carry exactly its counts, and that every other one is zero.
func checkChartPoints(t *testing.T, pts []chartPoint, step time.Duration, want map[string]uint64, minN, maxN int) {
	t.Helper()
	if len(pts) < minN || len(pts) > maxN {
		t.Fatalf("%d points, want %d to %d", len(pts), minN, maxN)
	}
	seen := map[string]bool{}
	var prev time.Time
	for i, p := range pts {
		start, err := time.Parse(time.RFC3339, p.Start)
		if err != nil {
			t.Fatalf("point %d: data-start %q: %v", i, p.Start, err)
		}
		if i > 0 && !start.Equal(prev.Add(step)) {
			t.Fatalf("point %d at %s does not follow %s by %v", i, p.Start, prev.Format(time.RFC3339), step)
		}
		prev = start
		if want[p.Start] > 0 {
			seen[p.Start] = true
		}
		if got := strconv.FormatUint(want[p.Start], 10); p.Count != got {
			t.Errorf("point %s: data-count %q, want %s", p.Start, p.Count, got)
		}
	}
	for start := range want {
		if !seen[start] {
			t.Errorf("no point at %s, which holds %d", start, want[start])
		}
	}
}

func checkScreenshotPNG(t *testing.T, shot []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 1000 || b.Dy() < 600 {
		t.Fatalf("screenshot is %dx%d, want at least 1000x600", b.Dx(), b.Dy())
	}
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 4 {
		for x := b.Min.X; x < b.Max.X; x += 4 {
			r, g, bl, al := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, al}] = true
		}
	}
	if len(colours) < 16 {
		t.Fatalf("screenshot has %d colours: a blank page", len(colours))
	}
}

// newChromium starts headless Chromium for this test, on a fresh profile,
// with everything that would reach beyond 127.0.0.1 turned off, and returns
// a tab. Uncaught exceptions in the page fail the test.
func newChromium(t *testing.T, path string) context.Context {
	t.Helper()
	profile := filepath.Join(t.TempDir(), "profile")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1366, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	var mu sync.Mutex
	var thrown []string
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser to exit
		cancel()
		stopChromiumLeftovers(t, profile)
		mu.Lock()
		defer mu.Unlock()
		for _, e := range thrown {
			t.Errorf("uncaught exception in the page: %s", e)
		}
	})
	if err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			mu.Lock()
			thrown = append(thrown, msg)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return tab
}

// stopChromiumLeftovers kills any process still running on profile (Chromium's
// helpers can outlive the browser for a moment) and waits until none is, so
// that the profile directory can be removed.
func stopChromiumLeftovers(t *testing.T, profile string) {
	t.Helper()
	want := []byte("--user-data-dir=" + profile)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var pids []int
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			cmd, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(cmd, want) {
				continue
			}
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
				pids = append(pids, pid)
			}
		}
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("chromium processes %v still run on %s", pids, profile)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond) // polling for the kernel to reap them
	}
}

func pageEval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// pageWait polls the page until js is true, for at most 10 seconds.
func pageWait(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %s: %v\nthe page says:\n%s", what, err, text)
	}
}

func pageClick(t *testing.T, ctx context.Context, css string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(css))); err != nil {
		t.Fatalf("click %s: %v", css, err)
	}
}

// pageChart waits until the chart shows counter over span in steps of step,
// and returns its points, read in one go so a refresh cannot mix two
// renderings.
func pageChart(t *testing.T, ctx context.Context, counter, span, step string) []chartPoint {
	t.Helper()
	sel := fmt.Sprintf(`#chart[data-counter=%q][data-span=%q][data-step=%q]`, counter, span, step)
	pageWait(t, ctx, "the chart of "+counter+" over "+span+" by "+step, `document.querySelector('`+sel+`') !== null`)
	return pageEval[[]chartPoint](t, ctx, `Array.from(document.querySelectorAll('#chart [data-start]'), e => ({start: e.dataset.start, count: e.dataset.count}))`)
}
