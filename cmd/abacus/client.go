package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/abacus-counter/abacus/client"
	"github.com/abacus-counter/abacus/window"
)

// The client subcommands: each talks HTTP to one node through package client.
// Output meant for scripts (a total, a raw JSON answer) is bare; tables are
// for people. Every failure is one line on stderr and exit status 1 (run
// prints it).

// command is one client subcommand's flags. Its own flags (--ts, --force, …)
// come from the command line only: taken from a forgotten variable in the
// shell, they would make a command do what its line does not say (a stale
// ABACUS_IDEMPOTENCY_KEY would turn every inc into a replay that counts
// nothing). The connection flags also come from ABACUS_<FLAG>, via parseFlags.
type command struct {
	name, args, about string // "abacus get", "NAME", what it does
	flags             *flag.FlagSet
	conn              *flag.FlagSet

	addr, token, caFile *string
	timeout             *time.Duration
}

func newCommand(name, args, about string) *command {
	c := &command{name: name, args: args, about: about,
		flags: flag.NewFlagSet(name, flag.ContinueOnError),
		conn:  flag.NewFlagSet(name, flag.ContinueOnError),
	}
	c.addr = c.conn.String("addr", client.DefaultBaseURL, "the node's API, http://host:port or https://host:port")
	c.token = c.conn.String("token", "", "bearer token, when the node has auth on")
	c.caFile = c.conn.String("ca-file", "", "PEM file of CA certificates to trust for https, besides the system's")
	c.timeout = c.conn.Duration("timeout", 10*time.Second, "give up on a request after this long; snapshot: after a pause this long (0: never)")
	c.conn.Usage = func() { c.usage(c.conn.Output()) }
	return c
}

func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n", c.synopsis(), c.about)
	for _, fs := range []*flag.FlagSet{c.flags, c.conn} {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			continue
		}
		if fs == c.conn {
			fmt.Fprint(w, "\nConnection flags (also ABACUS_ADDR, ABACUS_TOKEN, ABACUS_CA_FILE, ABACUS_TIMEOUT):\n")
		} else {
			fmt.Fprint(w, "\nFlags:\n")
		}
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// parse parses args, in which flags and positional arguments may mix
// ("abacus range NAME --from -6h"), and returns the positional ones.
func (c *command) parse(args []string, stdout io.Writer) ([]string, error) {
	own, conn, pos := c.split(args)
	c.flags.SetOutput(io.Discard)
	err := c.flags.Parse(own)
	if errors.Is(err, flag.ErrHelp) {
		c.usage(stdout)
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%v (see %s -h)", err, c.name)
	}
	if err := parseFlags(c.conn, conn, stdout); err != nil {
		return nil, err
	}
	return pos, nil
}

// split sorts args into the command's own flags, connection flags and
// positional arguments. A flag that takes a value takes the next argument
// unless written --flag=value, so "--from -6h" works. Anything after "--" is
// positional; an unknown flag goes with the command's own, to be reported.
func (c *command) split(args []string) (own, conn, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return own, conn, append(pos, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' || isNegativeNumber(a) {
			// "-3" is an AMOUNT gone wrong, not a flag: inc says why.
			pos = append(pos, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		dst := &own
		f := c.flags.Lookup(name)
		if f == nil {
			if f = c.conn.Lookup(name); f != nil {
				dst = &conn
			}
		}
		*dst = append(*dst, a)
		if f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
			i++
			*dst = append(*dst, args[i])
		}
	}
	return own, conn, pos
}

func isNegativeNumber(a string) bool {
	_, err := strconv.ParseFloat(a, 64)
	return len(a) > 1 && a[0] == '-' && a[1] >= '0' && a[1] <= '9' && err == nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (c *command) usageError(problem string) error {
	return fmt.Errorf("%s (usage: %s [flags]; see %s -h)", problem, c.synopsis(), c.name)
}

func (c *command) synopsis() string {
	if c.args == "" {
		return c.name
	}
	return c.name + " " + c.args
}

// client makes the HTTP client from the connection flags.
func (c *command) client() (*client.Client, error) {
	addr := *c.addr
	if !strings.Contains(addr, "://") {
		// "127.0.0.1:4000" means what it says; "localhost" alone would mean
		// port 80, where no agent listens by default.
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			return nil, fmt.Errorf("--addr %q has no port: give host:port, such as --addr %s, or a URL (also in ABACUS_ADDR)", addr, net.JoinHostPort(strings.Trim(addr, "[]/"), "4000"))
		}
		addr = "http://" + addr
	}
	cl, err := client.New(client.Config{BaseURL: addr, Token: *c.token, CAFile: *c.caFile, Timeout: *c.timeout})
	if err != nil {
		return nil, fmt.Errorf("--addr/--token/--ca-file/--timeout: %v", err)
	}
	return cl, nil
}

// explain rewrites the errors a newcomer meets talking to a node so that
// they say what went wrong and which flag or variable fixes it. Other errors
// pass through. Commands defer it on their named error.
func (c *command) explain(errp *error) {
	err := *errp
	if err == nil {
		return
	}
	addr := *c.addr
	var ce *client.Error
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ce):
		switch {
		case ce.Status == http.StatusUnauthorized && *c.token == "":
			*errp = fmt.Errorf("401 unauthorized: the node at %s has auth on and no token was sent: pass --token TOKEN or set ABACUS_TOKEN (a token of its --auth-token-file)", addr)
		case ce.Status == http.StatusUnauthorized:
			*errp = fmt.Errorf("401 unauthorized: the node at %s does not know the token in --token/ABACUS_TOKEN: check it against the node's --auth-token-file", addr)
		case ce.Status == http.StatusForbidden:
			*errp = fmt.Errorf("403 forbidden: %s: use a token with that role in --token or ABACUS_TOKEN", ce.Detail)
		case ce.Status == http.StatusBadRequest && strings.Contains(ce.Detail, "HTTP request to an HTTPS server"):
			*errp = fmt.Errorf("the node at %s serves HTTPS, and this request was plain HTTP: use --addr https://%s (or set ABACUS_ADDR)", addr, hostPort(addr))
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		*errp = fmt.Errorf("nothing answers at %s (connection refused): is the agent running, on that --http-addr? Point --addr or ABACUS_ADDR at a running node", addr)
	case errors.As(err, &dnsErr):
		*errp = fmt.Errorf("cannot find host %q of %s (%v): check --addr or ABACUS_ADDR", dnsErr.Name, addr, dnsErr.Err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		*errp = fmt.Errorf("the node at %s serves plain HTTP, not HTTPS: use --addr http://%s (or set ABACUS_ADDR)", addr, hostPort(addr))
	case errors.As(err, &unknownCA) || errors.As(err, &certErr) && errors.As(certErr.Err, &unknownCA):
		*errp = fmt.Errorf("the certificate of %s is signed by a CA this machine does not trust: pass the CA's PEM file with --ca-file (or ABACUS_CA_FILE)", addr)
	case errors.As(err, &hostErr):
		*errp = fmt.Errorf("the certificate of %s is not for this host name (%v): use the name it was issued for in --addr (or ABACUS_ADDR)", addr, hostErr)
	case errors.Is(err, context.DeadlineExceeded):
		*errp = fmt.Errorf("no answer from %s within --timeout %v: is that the node's address (--addr, ABACUS_ADDR)? A slow node needs a longer --timeout (ABACUS_TIMEOUT)", addr, *c.timeout)
	}
}

// hostPort is addr without its scheme and path.
func hostPort(addr string) string {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	h, _, _ := strings.Cut(addr, "/")
	return h
}

// connect makes the HTTP client and a context that SIGINT or SIGTERM
// cancels, so that an interrupted snapshot still removes its temporary file.
func (c *command) connect() (*client.Client, context.Context, context.CancelFunc, error) {
	cl, err := c.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return cl, ctx, cancel, nil
}

// parseWhen parses a time flag: RFC 3339, Unix seconds, "now", or a
// duration before now on this machine's clock ("-6h", "-7d"). Empty is zero:
// the node's default.
func parseWhen(flagName, s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "-"):
		if d, err := window.ParseDuration(s[1:]); err == nil {
			return now.Add(-d), nil
		}
	default:
		if t, err := window.ParseTime(s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-11-23T10:00:00Z), Unix seconds, now, or a time ago such as -90s, -6h or -7d", flagName, s)
}

// writeTable writes rows in columns two spaces apart, the columns listed in
// right aligned right (numbers).
func writeTable(w io.Writer, rows [][]string, right ...int) {
	var width []int
	for _, row := range rows {
		for i, cell := range row {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(cell))
		}
	}
	isRight := map[int]bool{}
	for _, i := range right {
		isRight[i] = true
	}
	var b strings.Builder
	for _, row := range rows {
		b.Reset()
		for i, cell := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(cell))
			if i > 0 {
				b.WriteString("  ")
			}
			switch {
			case isRight[i]:
				b.WriteString(pad + cell)
			case i < len(row)-1:
				b.WriteString(cell + pad)
			default:
				b.WriteString(cell) // no trailing spaces
			}
		}
		b.WriteByte('\n')
		io.WriteString(w, b.String())
	}
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func runInc(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus inc", "NAME [AMOUNT]", "Adds AMOUNT (default 1) to the counter NAME and prints the counter's new total on the node.")
	defer c.explain(&err)
	ts := c.flags.String("ts", "", "event time: RFC 3339, Unix seconds, or a time ago such as -5m (default: the node's clock)")
	key := c.flags.String("idempotency-key", "", "apply at most once: a retry with the same key counts once at the same node")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return c.usageError("want NAME and at most one AMOUNT")
	}
	amount := uint64(1)
	if len(pos) == 2 {
		if strings.HasPrefix(pos[1], "-") {
			return fmt.Errorf("AMOUNT %s: counters only count up, so amounts are positive (1 to 9007199254740991); count what goes down in a counter of its own, such as %s.removed", pos[1], pos[0])
		}
		if amount, err = strconv.ParseUint(pos[1], 10, 64); err != nil {
			return fmt.Errorf("AMOUNT %q: want a whole number from 1 to 9007199254740991", pos[1])
		}
	}
	opts := client.IncOptions{IdempotencyKey: *key}
	if opts.TS, err = parseWhen("ts", *ts, time.Now()); err != nil {
		return err
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	r, err := cl.Inc(ctx, pos[0], amount, opts)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, r.Total)
	if r.Replayed {
		fmt.Fprintf(stderr, "%s: the node had seen this idempotency key: nothing was applied, and the total is from the first request\n", c.name)
	}
	return nil
}

func runGet(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus get", "NAME", "Prints the counter's total on the node (0 if it was never incremented).")
	defer c.explain(&err)
	detail := c.flags.Bool("detail", false, "print the count of each replica and the sum of each datacenter")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return c.usageError("want one NAME")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if !*detail {
		total, err := cl.Get(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, total)
		return nil
	}
	d, err := cl.Detail(ctx, pos[0])
	if err != nil {
		return err
	}
	rows := [][]string{{"REPLICA", "NODE", "DC", "COUNT"}}
	for _, r := range d.Replicas {
		rows = append(rows, []string{r.Replica, orDash(r.Node), orDash(r.DC), u64(r.Count)})
	}
	writeTable(stdout, rows, 3)
	fmt.Fprintln(stdout)
	dcs := make([]string, 0, len(d.ByDC))
	for dc := range d.ByDC {
		dcs = append(dcs, dc)
	}
	sort.Strings(dcs)
	rows = [][]string{{"DC", "COUNT"}}
	for _, dc := range dcs {
		rows = append(rows, []string{dc, u64(d.ByDC[dc])})
	}
	rows = append(rows, []string{"total", u64(d.Total)})
	writeTable(stdout, rows, 1)
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runRange(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus range", "NAME", "Prints the counter's count per step over [--from, --to), with their sum.\nTimes are RFC 3339, Unix seconds, now, or a time ago on this machine's clock (-6h).")
	defer c.explain(&err)
	from := c.flags.String("from", "", "start of the range (default: --to minus 1h)")
	to := c.flags.String("to", "", "end of the range, excluded (default: now)")
	step := c.flags.String("step", "", "time per point, a multiple of a resolution: 1m, 15m, 1h, 1d (default: the finest resolution kept at --from)")
	asJSON := c.flags.Bool("json", false, "print the node's JSON answer as is")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return c.usageError("want one NAME")
	}
	now := time.Now()
	var q client.RangeQuery
	if q.From, err = parseWhen("from", *from, now); err != nil {
		return err
	}
	if q.To, err = parseWhen("to", *to, now); err != nil {
		return err
	}
	if *step != "" {
		if q.Step, err = window.ParseDuration(*step); err != nil || q.Step == 0 {
			return fmt.Errorf("--step %q: want a positive duration such as 1m, 15m, 1h or 1d", *step)
		}
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	if *asJSON {
		b, err := cl.RangeJSON(ctx, pos[0], q)
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	r, err := cl.Range(ctx, pos[0], q)
	if err != nil {
		return err
	}
	rows := [][]string{{"START", "COUNT"}}
	for _, p := range r.Points {
		rows = append(rows, []string{p.Start.UTC().Format(time.RFC3339), u64(p.Count)})
	}
	rows = append(rows, []string{"sum", u64(r.Sum)})
	writeTable(stdout, rows, 1)
	if r.Partial {
		fmt.Fprintf(stdout, "partial: part of the range is older than the %s windows are kept; it reads 0 for lack of data\n", window.FormatDuration(r.Resolution))
	}
	return nil
}

func runList(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus list", "", "Prints counters and their totals on the node, sorted by name, a page at a time.")
	defer c.explain(&err)
	prefix := c.flags.String("prefix", "", "only names that start with this")
	after := c.flags.String("after", "", "start after this name (the next page of an earlier listing)")
	limit := c.flags.Int("limit", 0, "names per page, 1 to 1000 (default: the node's, 100)")
	all := c.flags.Bool("all", false, "follow the pages to the end")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return c.usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	rows := [][]string{{"NAME", "TOTAL"}}
	next := ""
	if *all {
		for nt, err := range cl.ListAfter(ctx, *prefix, *after, *limit) {
			if err != nil {
				return err
			}
			rows = append(rows, []string{nt.Name, u64(nt.Total)})
		}
	} else {
		page, n, err := cl.List(ctx, *prefix, *after, *limit)
		if err != nil {
			return err
		}
		for _, nt := range page {
			rows = append(rows, []string{nt.Name, u64(nt.Total)})
		}
		if n > *after {
			next = n
		}
	}
	writeTable(stdout, rows, 1)
	if next != "" {
		fmt.Fprintf(stderr, "%s: more after %s: add --after %s, or --all\n", c.name, next, next)
	}
	return nil
}

func runMembers(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus members", "", "Prints the cluster's members as the node sees them, itself included.\nLAG is how far behind a member's copy of this node's data is: commits and age.")
	defer c.explain(&err)
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return c.usageError(fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	ci, err := cl.Cluster(ctx)
	if err != nil {
		return err
	}
	rows := [][]string{{"NAME", "DC", "STATE", "ADDR", "HTTP", "LAG"}}
	now := time.Now()
	for _, m := range ci.Members {
		lag := "-"
		if m.Lag != nil {
			lag = fmt.Sprintf("%d commits, %.1fs", m.Lag.Seqs, m.Lag.Seconds)
		}
		state := orDash(m.State)
		if m.Since != nil {
			state += " since " + m.Since.UTC().Format(time.RFC3339) + " (" + ago(now.Sub(*m.Since)) + ")"
		}
		rows = append(rows, []string{m.Name, orDash(m.DC), state, orDash(m.Addr), orDash(m.HTTP), lag})
	}
	writeTable(stdout, rows)
	for _, m := range ci.Members {
		if m.State == "dead" {
			fmt.Fprintf(stderr, "%s: %s is dead; its LAG is what it lacks of this node's commits. If it is gone for good: abacus force-leave %s\n", c.name, m.Name, m.Name)
		}
	}
	return nil
}

// ago is a duration for people: 42s ago, 5m ago, 3h10m ago, 2d4h ago.
func ago(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh ago", int(d.Hours())/24, int(d.Hours())%24)
}

func runForceLeave(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus force-leave", "NAME", "Removes the dead member NAME from the node's member list and has it tell every\nlive member to do the same (needs the admin role). Use it for a node that is\ngone for good; its counts stay. A live member is refused: stop it instead.")
	defer c.explain(&err)
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return c.usageError("want one NAME")
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	told, err := cl.ForceLeave(ctx, pos[0])
	var ce *client.Error
	if errors.As(err, &ce) {
		switch ce.Slug() {
		case "member-alive":
			return fmt.Errorf("%s is alive, so it stays: stop it (it then leaves by itself), or check the NAME with abacus members", pos[0])
		case "unknown-member":
			return fmt.Errorf("the node at %s knows no member %q: abacus members lists them (names are case-sensitive)", *c.addr, pos[0])
		}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s; told %d live member(s)\n", pos[0], told)
	return nil
}

func runSnapshot(args []string, stdout, stderr io.Writer) (err error) {
	c := newCommand("abacus snapshot", "FILE", "Saves a consistent backup of the node's database to FILE (needs the admin role).\nFILE appears whole or not at all: the backup goes to a temporary file next to it first.")
	defer c.explain(&err)
	force := c.flags.Bool("force", false, "replace FILE if it exists")
	pos, err := c.parse(args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] == "" {
		return c.usageError("want one FILE")
	}
	file := pos[0]
	if _, err := os.Lstat(file); err == nil && !*force {
		return fmt.Errorf("%s exists; add --force to replace it", file)
	}
	cl, ctx, cancel, err := c.connect()
	if err != nil {
		return err
	}
	defer cancel()
	n, err := saveSnapshot(ctx, cl, file, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d bytes to %s\n", n, file)
	return nil
}

// saveSnapshot writes the node's snapshot to a temporary file in file's
// directory, fsyncs it, then puts it in place: by rename when replacing is
// allowed, else by a hard link, which fails rather than replace a file that
// appeared meanwhile.
func saveSnapshot(ctx context.Context, cl *client.Client, file string, replace bool) (n int64, err error) {
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return 0, err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // gone already after a rename
	}()
	if n, err = cl.Snapshot(ctx, tmp); err != nil {
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, err
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	if replace {
		err = os.Rename(tmp.Name(), file)
	} else if err = os.Link(tmp.Name(), file); errors.Is(err, os.ErrExist) {
		return n, fmt.Errorf("%s exists; add --force to replace it", file)
	} else if err != nil {
		// A file system without hard links: check, then rename.
		if _, e := os.Lstat(file); e == nil {
			return n, fmt.Errorf("%s exists; add --force to replace it", file)
		}
		err = os.Rename(tmp.Name(), file)
	}
	if err != nil {
		return n, err
	}
	// Make the new name durable too.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return n, nil
}
