// Command abacus runs an Abacus node (abacus agent) and talks to one (the
// client subcommands).
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/abacus-counter/abacus/internal/buildinfo"
)

const usage = `abacus: a clustered, persistent, time-windowed counting server

Usage:
  abacus agent [flags]            run a node
  abacus keygen                   print a new gossip encryption key
  abacus recover --data-dir DIR   rebuild a damaged data directory (node stopped)
  abacus version                  print the version, commit and Go version (also --version)
  abacus <command> -h             help for a command

Client commands, talking to the node at --addr (default http://127.0.0.1:4000):
  abacus inc NAME [AMOUNT]        add to a counter; prints its new total
  abacus get NAME                 print a counter's total (--detail: per replica and DC)
  abacus range NAME               counts per step: --from -6h --to now --step 1h [--json]
  abacus list                     counters and totals: --prefix, --limit, --all
  abacus members                  the cluster's members as the node sees them
  abacus force-leave NAME         remove a dead member from every member list (admin)
  abacus snapshot FILE            save a backup of the node's database (admin)

Every agent flag can also be set as ABACUS_<FLAG> in the environment, for
example ABACUS_DATA_DIR for --data-dir; of the client commands' flags, the
connection flags can: ABACUS_ADDR, ABACUS_TOKEN, ABACUS_CA_FILE, ABACUS_TIMEOUT.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	var err error
	switch args[0] {
	case "agent":
		err = runAgent(args[1:], stdout, stderr)
	case "keygen":
		err = runKeygen(args[1:], stdout)
	case "recover":
		err = runRecover(args[1:], stdout, stderr)
	case "inc":
		err = runInc(args[1:], stdout, stderr)
	case "get":
		err = runGet(args[1:], stdout, stderr)
	case "range":
		err = runRange(args[1:], stdout, stderr)
	case "list":
		err = runList(args[1:], stdout, stderr)
	case "members":
		err = runMembers(args[1:], stdout, stderr)
	case "force-leave":
		err = runForceLeave(args[1:], stdout, stderr)
	case "snapshot":
		err = runSnapshot(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		err = runVersion(args[1:], stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "abacus: unknown command %q\n\n%s", args[0], usage)
		return 1
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	}
	fmt.Fprintf(stderr, "abacus %s: %v\n", args[0], err)
	return 1
}

// parseFlags parses args, then fills every flag not given on the command line
// from ABACUS_<FLAG> in the environment. A bad flag is one line of error (the
// caller prints it); -h prints the usage to stdout.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return err
	}
	if err != nil {
		return fmt.Errorf("%v (see %s -h)", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see %s -h)", fs.Arg(0), fs.Name())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "ABACUS_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		// An empty variable is unset: "ABACUS_ADDR= abacus get x" means
		// the default, as in most tools.
		v := os.Getenv(env)
		if v == "" {
			return
		}
		if isBoolFlag(f) {
			b, ok := parseBoolEnv(v)
			if !ok {
				err = fmt.Errorf("%s=%q: want true or false (1/0, yes/no and on/off work too), or unset it", env, v)
				return
			}
			v = strconv.FormatBool(b)
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %v: want a value as for --%s (see %s -h), or unset it", env, v, e, f.Name, fs.Name())
		}
	})
	return err
}

// parseBoolEnv reads a boolean as people write it in an environment file.
func parseBoolEnv(v string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "t", "true", "yes", "y", "on":
		return true, true
	case "0", "f", "false", "no", "n", "off":
		return false, true
	}
	return false, false
}

// runVersion prints which build this is.
func runVersion(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("abacus version", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: abacus version\n\nPrints the version, the commit and the Go version of this binary.\n")
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, buildinfo.Get())
	return nil
}

// runKeygen prints a new random 32-byte AES key, base64, for --gossip-key-file.
func runKeygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("abacus keygen", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: abacus keygen\n\nPrints a new gossip key (32 random bytes, base64). Save it to a file\nreadable only by the agent and pass it with --gossip-key-file on every node.\n")
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	fmt.Fprintln(stdout, base64.StdEncoding.EncodeToString(key))
	return nil
}
