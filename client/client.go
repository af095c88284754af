package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-counter/abacus/window"
)

// DefaultBaseURL is where an agent serves its API unless told otherwise.
const DefaultBaseURL = "http://127.0.0.1:4000"

// ProblemTypePrefix starts the Type of every problem an Abacus node answers;
// the rest is a stable slug such as "overflow". (The same value as
// api.ProblemTypePrefix, which this package does not import: a client should
// not pull in the server's dependencies.)
const ProblemTypePrefix = "urn:abacus:problem:"

// maxAnswer bounds a JSON answer read into memory. The largest the API gives
// (a range of 11,000 points, a page of 1,000 names) is well under 1 MiB.
const maxAnswer = 16 << 20

// Config configures a Client.
type Config struct {
	// BaseURL is the node's API: http://host:port or https://host:port, with
	// an optional path prefix for a node behind a reverse proxy.
	BaseURL string
	// Token, if not empty, is sent on every request as
	// "Authorization: Bearer <Token>".
	Token string
	// Timeout bounds each request, from sending it to reading the whole
	// answer; zero means no limit beyond the context's. Snapshot, whose answer
	// can be large, uses it instead to bound the wait for the answer to start
	// and each pause in it.
	Timeout time.Duration
	// CAFile names a PEM file of CA certificates trusted for https in addition
	// to the system's roots, for deployments with their own CA or a
	// self-signed certificate. Empty means the system roots only.
	CAFile string
	// HTTPClient, if not nil, sends the requests; CAFile must then be empty
	// (configure TLS on its transport instead). Nil means a client of the
	// package's own with http.DefaultTransport's settings.
	HTTPClient *http.Client
}

// DefaultConfig is a local agent on its default port, with a 10 s timeout.
func DefaultConfig() Config {
	return Config{BaseURL: DefaultBaseURL, Timeout: 10 * time.Second}
}

// Client talks to one Abacus node. It is safe for concurrent use.
type Client struct {
	base    string // scheme://host[/prefix], no trailing slash
	token   string
	timeout time.Duration
	hc      *http.Client
}

// New validates cfg and returns a Client. It reads CAFile, if any, once.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("base URL %q: want http://host:port or https://host:port", cfg.BaseURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("base URL %q: want no user, query or fragment", cfg.BaseURL)
	}
	for i := 0; i < len(cfg.Token); i++ {
		// Printable ASCII without spaces: anything else cannot travel in a
		// header, and http would refuse it with a less helpful error.
		if c := cfg.Token[i]; c <= ' ' || c > '~' {
			return nil, errors.New("token: must be printable ASCII without spaces")
		}
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v: must not be negative", cfg.Timeout)
	}
	hc := cfg.HTTPClient
	switch {
	case hc != nil && cfg.CAFile != "":
		return nil, errors.New("CAFile and HTTPClient are exclusive: set the CA on the HTTPClient's transport")
	case hc == nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if cfg.CAFile != "" {
			pool, err := loadCAFile(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: tr}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return &Client{base: u.String(), token: cfg.Token, timeout: cfg.Timeout, hc: hc}, nil
}

// loadCAFile returns the system roots plus the certificates in path.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %v", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Error is a node's answer other than 2xx, decoded from its RFC 9457 problem
// details.
type Error struct {
	Status int    // HTTP status code
	Type   string // problem type, urn:abacus:problem:<slug>; empty if the answer was not a problem
	Title  string // the type's fixed title, or the status text
	Detail string // what went wrong with this request; may be empty
}

// Slug is the last part of an Abacus problem type ("overflow"), or the whole
// type for any other.
func (e *Error) Slug() string { return strings.TrimPrefix(e.Type, ProblemTypePrefix) }

// Error is one line: "409 overflow: the increment would carry …", or
// "502 Bad Gateway" for an answer that was not a problem.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(e.Status))
	b.WriteByte(' ')
	switch {
	case e.Type != "" && e.Type != "about:blank":
		b.WriteString(e.Slug())
	case e.Title != "":
		b.WriteString(e.Title)
	default:
		b.WriteString(http.StatusText(e.Status))
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// decodeError turns a non-2xx answer into an *Error.
func decodeError(status int, contentType string, body []byte) *Error {
	e := &Error{Status: status}
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/problem+json", "application/json":
		var p struct {
			Type   string `json:"type"`
			Title  string `json:"title"`
			Detail string `json:"detail"`
		}
		if json.Unmarshal(body, &p) == nil {
			e.Type, e.Title, e.Detail = oneLine(p.Type, 200), oneLine(p.Title, 200), oneLine(p.Detail, 500)
		}
	case "text/plain", "":
		// A proxy, an older server, or Go's own answer to plain HTTP on a
		// TLS port (no Content-Type): its first line is the best detail.
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		e.Detail = oneLine(line, 200)
	}
	if e.Title == "" {
		e.Title = http.StatusText(status)
	}
	return e
}

// oneLine keeps an error one line long and of bounded size, whatever a
// server sent: control characters become spaces.
func oneLine(s string, max int) string {
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
}

// answer is a read 2xx answer.
type answer struct {
	header http.Header
	body   []byte
}

// call sends one request and reads its whole answer. A non-2xx answer is an
// *Error.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body []byte, idemKey string) (answer, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := c.newRequest(ctx, method, path, query, body)
	if err != nil {
		return answer{}, err
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{}, err // a *url.Error: it names the method and URL
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return answer{}, fmt.Errorf("%s %s: reading the answer: %w", method, req.URL.Redacted(), err)
	case len(b) > maxAnswer:
		return answer{}, fmt.Errorf("%s %s: answer larger than %d bytes", method, req.URL.Redacted(), maxAnswer)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return answer{}, decodeError(resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return answer{header: resp.Header, body: b}, nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, query url.Values, body []byte) (*http.Request, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("User-Agent", "abacus-client")
	return req, nil
}

// decode parses a JSON answer into v.
// getJSON sends a GET and decodes its JSON answer as a T (what names it in
// errors); on any error it returns T's zero value.
func getJSON[T any](ctx context.Context, c *Client, path string, q url.Values, what string) (T, error) {
	var v, zero T
	a, err := c.call(ctx, http.MethodGet, path, q, nil, "")
	if err == nil {
		err = decode(a, what, &v)
	}
	if err != nil {
		return zero, err
	}
	return v, nil
}

func decode(a answer, what string, v any) error {
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("decoding the %s answer: %v", what, err)
	}
	return nil
}

func counterPath(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty counter name")
	}
	return "/v1/counters/" + url.PathEscape(name), nil
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// IncOptions are the optional parts of an increment.
type IncOptions struct {
	// TS is the event time; zero means the node's clock when it arrives.
	TS time.Time
	// IdempotencyKey, if not empty, makes a retry with the same key (and the
	// same increment) count once at this node.
	IdempotencyKey string
}

// IncResult is what an increment did.
type IncResult struct {
	Name   string
	Amount uint64
	TS     time.Time // the event time the node used
	Total  uint64    // the counter's total on the node right after the increment
	// Replayed means the node had seen the idempotency key: nothing was
	// applied, and the rest is the first request's answer.
	Replayed bool
}

// Inc adds amount (1 to 2^53−1) to the counter name.
func (c *Client) Inc(ctx context.Context, name string, amount uint64, opts IncOptions) (IncResult, error) {
	p, err := counterPath(name)
	if err != nil {
		return IncResult{}, err
	}
	body := struct {
		Amount uint64 `json:"amount"`
		TS     string `json:"ts,omitempty"`
	}{Amount: amount}
	if !opts.TS.IsZero() {
		body.TS = formatTime(opts.TS)
	}
	b, _ := json.Marshal(body)
	a, err := c.call(ctx, http.MethodPost, p+"/increment", nil, b, opts.IdempotencyKey)
	if err != nil {
		return IncResult{}, err
	}
	var r struct {
		Name   string    `json:"name"`
		Amount uint64    `json:"amount"`
		TS     time.Time `json:"ts"`
		Total  uint64    `json:"total"`
	}
	if err := decode(a, "increment", &r); err != nil {
		return IncResult{}, err
	}
	return IncResult{Name: r.Name, Amount: r.Amount, TS: r.TS, Total: r.Total, Replayed: replayed(a)}, nil
}

func replayed(a answer) bool { return a.header.Get("Idempotent-Replayed") == "true" }

// Increment is one item of a batch.
type Increment struct {
	Name   string
	Amount uint64
	TS     time.Time // zero means the node's clock when the batch arrives
}

// BatchResult is what a batch did.
type BatchResult struct {
	Accepted int  // increments applied (all of them: a batch applies whole or not at all)
	Replayed bool // as in IncResult
}

// IncBatch applies incs (up to 10,000) all or nothing, in one durable commit.
// idempotencyKey may be empty.
func (c *Client) IncBatch(ctx context.Context, incs []Increment, idempotencyKey string) (BatchResult, error) {
	type item struct {
		Name   string `json:"name"`
		Amount uint64 `json:"amount"`
		TS     string `json:"ts,omitempty"`
	}
	body := struct {
		Increments []item `json:"increments"`
	}{make([]item, len(incs))}
	for i, inc := range incs {
		body.Increments[i] = item{Name: inc.Name, Amount: inc.Amount}
		if !inc.TS.IsZero() {
			body.Increments[i].TS = formatTime(inc.TS)
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return BatchResult{}, err
	}
	a, err := c.call(ctx, http.MethodPost, "/v1/increments", nil, b, idempotencyKey)
	if err != nil {
		return BatchResult{}, err
	}
	var r struct {
		Accepted int `json:"accepted"`
	}
	if err := decode(a, "batch", &r); err != nil {
		return BatchResult{}, err
	}
	return BatchResult{Accepted: r.Accepted, Replayed: replayed(a)}, nil
}

// Get returns the counter's total on the node (0 if never incremented).
func (c *Client) Get(ctx context.Context, name string) (uint64, error) {
	p, err := counterPath(name)
	if err != nil {
		return 0, err
	}
	r, err := getJSON[struct {
		Total uint64 `json:"total"`
	}](ctx, c, p, nil, "counter")
	return r.Total, err
}

// Detail is a counter's total with its share per replica and per datacenter.
type Detail struct {
	Name     string            `json:"name"`
	Total    uint64            `json:"total"`
	Replicas []ReplicaCount    `json:"replicas"`
	ByDC     map[string]uint64 `json:"by_dc"`
}

// ReplicaCount is one replica's share of a counter.
type ReplicaCount struct {
	Replica string `json:"replica"`
	Node    string `json:"node"` // empty if the node is not known here
	DC      string `json:"dc"`
	Count   uint64 `json:"count"`
}

// Detail returns the counter's total, per replica and per datacenter.
func (c *Client) Detail(ctx context.Context, name string) (Detail, error) {
	p, err := counterPath(name)
	if err != nil {
		return Detail{}, err
	}
	return getJSON[Detail](ctx, c, p, url.Values{"detail": {"true"}}, "counter")
}

// RangeQuery asks for counts per Step over [From, To). A zero field takes the
// node's default: To now, From To−1h, Step the finest resolution retained at
// From.
type RangeQuery struct {
	From, To time.Time
	Step     time.Duration
}

// Range is a range query's answer.
type Range struct {
	Name       string
	From, To   time.Time     // the aligned range the points cover
	Step       time.Duration // the time each point covers
	Resolution time.Duration // the stored windows the points were summed from
	Points     []Point       // one per step, zeros included
	Sum        uint64
	// Partial is true when part of the range is older than the resolution's
	// retention: those points read zero for lack of data.
	Partial bool
}

// Point is the count of one step.
type Point struct {
	Start time.Time
	Count uint64
}

// Range returns the counter's counts per step.
func (c *Client) Range(ctx context.Context, name string, q RangeQuery) (Range, error) {
	b, err := c.RangeJSON(ctx, name, q)
	if err != nil {
		return Range{}, err
	}
	var r struct {
		Name       string    `json:"name"`
		From       time.Time `json:"from"`
		To         time.Time `json:"to"`
		Step       string    `json:"step"`
		Resolution string    `json:"resolution"`
		Points     []struct {
			Start time.Time `json:"start"`
			Count uint64    `json:"count"`
		} `json:"points"`
		Sum     uint64 `json:"sum"`
		Partial bool   `json:"partial"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Range{}, fmt.Errorf("decoding the range answer: %v", err)
	}
	out := Range{Name: r.Name, From: r.From, To: r.To, Sum: r.Sum, Partial: r.Partial, Points: make([]Point, len(r.Points))}
	if out.Step, err = window.ParseDuration(r.Step); err != nil {
		return Range{}, fmt.Errorf("decoding the range answer: step: %v", err)
	}
	if out.Resolution, err = window.ParseDuration(r.Resolution); err != nil {
		return Range{}, fmt.Errorf("decoding the range answer: resolution: %v", err)
	}
	for i, p := range r.Points {
		out.Points[i] = Point{Start: p.Start, Count: p.Count}
	}
	return out, nil
}

// RangeJSON is Range's answer as the node sent it, for tools that pass it on.
func (c *Client) RangeJSON(ctx context.Context, name string, q RangeQuery) ([]byte, error) {
	p, err := counterPath(name)
	if err != nil {
		return nil, err
	}
	v := url.Values{}
	if !q.From.IsZero() {
		v.Set("from", formatTime(q.From))
	}
	if !q.To.IsZero() {
		v.Set("to", formatTime(q.To))
	}
	switch {
	case q.Step < 0:
		return nil, fmt.Errorf("step %v: must be positive", q.Step)
	case q.Step > 0:
		v.Set("step", window.FormatDuration(q.Step))
	}
	a, err := c.call(ctx, http.MethodGet, p+"/range", v, nil, "")
	if err != nil {
		return nil, err
	}
	return a.body, nil
}

// NameTotal is one counter in a listing.
type NameTotal struct {
	Name  string `json:"name"`
	Total uint64 `json:"total"`
}

// List returns one page of counters whose names start with prefix, sorted by
// name, after the name after ("" for the first page), at most limit of them
// (0 means the node's default, 100; at most 1000). next is the after of the
// following page, "" on the last.
func (c *Client) List(ctx context.Context, prefix, after string, limit int) (page []NameTotal, next string, err error) {
	v := url.Values{}
	if prefix != "" {
		v.Set("prefix", prefix)
	}
	if after != "" {
		v.Set("after", after)
	}
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	r, err := getJSON[struct {
		Counters []NameTotal `json:"counters"`
		Next     *string     `json:"next"`
	}](ctx, c, "/v1/counters", v, "list")
	if err != nil {
		return nil, "", err
	}
	if r.Next != nil {
		next = *r.Next
	}
	return r.Counters, next, nil
}

// ListAll yields every counter whose name starts with prefix, fetching pages
// of pageSize (0: the node's default) as it goes. An error is yielded once,
// last. Counters created while it runs may or may not be seen.
func (c *Client) ListAll(ctx context.Context, prefix string, pageSize int) iter.Seq2[NameTotal, error] {
	return c.ListAfter(ctx, prefix, "", pageSize)
}

// ListAfter is ListAll starting after the name after.
func (c *Client) ListAfter(ctx context.Context, prefix, after string, pageSize int) iter.Seq2[NameTotal, error] {
	return func(yield func(NameTotal, error) bool) {
		for {
			page, next, err := c.List(ctx, prefix, after, pageSize)
			if err != nil {
				yield(NameTotal{}, err)
				return
			}
			for _, nt := range page {
				if !yield(nt, nil) {
					return
				}
			}
			if next == "" || next <= after {
				// The second test guards against a server that never
				// advances: a loop forever is worse than a short listing.
				return
			}
			after = next
		}
	}
}

// Member is one node of the cluster.
type Member struct {
	Name    string `json:"name"`
	Replica string `json:"replica"`
	DC      string `json:"dc"`
	Addr    string `json:"addr"`  // gossip address
	HTTP    string `json:"http"`  // API address, if known
	State   string `json:"state"` // alive, suspect, dead, left; empty for Self
	// Lag is how far behind the member's copy of the answering node's data
	// is; nil when unknown (and for the answering node itself). For a dead
	// member it is measured from the last digest heard from it.
	Lag *Lag `json:"lag"`
	// Since is when a dead member died, or a member left; nil otherwise.
	Since *time.Time `json:"since"`
}

// Lag is a member's replication lag.
type Lag struct {
	Seqs    uint64  `json:"seqs"`    // commits not yet confirmed by the member
	Seconds float64 `json:"seconds"` // age of the oldest of them
}

// ClusterInfo is the answering node and the members it knows, itself
// included.
type ClusterInfo struct {
	Self    Member   `json:"self"`
	Members []Member `json:"members"`
}

// Cluster returns the node's view of the cluster.
func (c *Client) Cluster(ctx context.Context) (ClusterInfo, error) {
	return getJSON[ClusterInfo](ctx, c, "/v1/cluster", nil, "cluster")
}

// ForceLeave removes the dead member name from the node's member list and
// has the node tell every live member to do the same; it returns how many
// were told. It needs the admin role. A live member is refused (an *Error,
// 409 member-alive), an unknown one too (404 unknown-member).
func (c *Client) ForceLeave(ctx context.Context, name string) (told int, err error) {
	if name == "" {
		return 0, errors.New("empty member name")
	}
	a, err := c.call(ctx, http.MethodPost, "/v1/cluster/members/"+url.PathEscape(name)+"/force-leave", nil, nil, "")
	if err != nil {
		return 0, err
	}
	var r struct {
		Told int `json:"told"`
	}
	if err := decode(a, "force-leave", &r); err != nil {
		return 0, err
	}
	return r.Told, nil
}

// Healthy is nil while the node's process runs and answers.
func (c *Client) Healthy(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodGet, "/healthz", nil, nil, "")
	return err
}

// Ready is nil when the node takes traffic; else an *Error (503) says why,
// or the request failed.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodGet, "/readyz", nil, nil, "")
	return err
}

// Snapshot streams a consistent backup of the node's database (a bbolt file)
// to w and returns the bytes written. It needs the admin role. Timeout bounds
// the wait for the answer and each pause in it, not the whole transfer. On an
// error, w may hold part of a snapshot: write to a temporary file and rename
// it only on success.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var idle *time.Timer
	if c.timeout > 0 {
		idle = time.AfterFunc(c.timeout, func() {
			cancel(fmt.Errorf("snapshot: nothing received for %v", c.timeout))
		})
		defer idle.Stop()
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/snapshot", nil, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, causeOf(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return 0, decodeError(resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/octet-stream" {
		// Whatever it is, it is not a database: better no file than a wrong one.
		return 0, fmt.Errorf("GET %s: answer is %q, not application/octet-stream", req.URL.Redacted(), resp.Header.Get("Content-Type"))
	}
	var body io.Reader = resp.Body
	if idle != nil {
		body = &idleReader{r: resp.Body, t: idle, d: c.timeout}
	}
	n, err := io.Copy(w, body)
	if err != nil {
		return n, fmt.Errorf("GET %s: after %d bytes: %w", req.URL.Redacted(), n, causeOf(ctx, err))
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return n, fmt.Errorf("GET %s: got %d of %d bytes", req.URL.Redacted(), n, resp.ContentLength)
	}
	return n, nil
}

// causeOf prefers the reason ctx was cancelled (the idle timer's) to the
// bare "context canceled" that the transport reports.
func causeOf(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(err, context.Canceled) && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// idleReader restarts t each time a read begins, so that t fires only when
// the stream (or whoever drains it) stalls for d.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.t.Reset(ir.d)
	return ir.r.Read(p)
}
