package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/abacus-counter/abacus/cmd/abacus/internal/agent"
	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/promapi"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/window"
)

func runAgent(args []string, stdout, stderr io.Writer) error {
	def := agent.DefaultConfig()
	fs := flag.NewFlagSet("abacus agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", def.DataDir, "data directory (created if missing)")
	httpAddr := fs.String("http-addr", def.HTTPAddr, "HTTP listen address")
	nodeName := fs.String("node-name", def.NodeName, "node name, unique in the cluster")
	dc := fs.String("dc", def.DC, "datacenter of this node")
	gossipAddr := fs.String("gossip-addr", def.GossipAddr, "gossip listen address, UDP and TCP (host:port)")
	advertise := fs.String("advertise", "", "gossip address peers should use, host:port (default: --gossip-addr)")
	join := fs.String("join", "", "gossip addresses of nodes to join, host:port,… (retried until one answers)")
	profile := fs.String("gossip-profile", string(def.Profile), "gossip timings: lan, wan or local")
	keyFile := fs.String("gossip-key-file", "", "file of base64 AES keys, one per line, that encrypt gossip: the first encrypts, all decrypt (make one with abacus keygen); without it, a node with no --join keeps a key of its own in its data directory")
	insecure := fs.Bool("gossip-insecure", false, "run gossip without a key: anyone who reaches the gossip port can change counts (testing only)")
	clusterName := fs.String("cluster-name", def.ClusterName, "cluster name; nodes of other clusters are refused")
	windows := fs.String("windows", def.Windows.String(), "resolutions and retention, size:retention,… (the whole cluster must agree)")
	authFile := fs.String("auth-token-file", "", `file of "TOKEN ROLE" lines (roles read, write, admin); requests then need "Authorization: Bearer TOKEN"; SIGHUP re-reads it`)
	metricsPublic := fs.Bool("metrics-public", false, "serve /metrics without a token even with --auth-token-file")
	tlsCert := fs.String("tls-cert", "", "PEM certificate to serve HTTPS with (with --tls-key); SIGHUP re-reads it")
	tlsKey := fs.String("tls-key", "", "PEM private key for --tls-cert")
	durability := fs.String("durability", "fsync", "fsync: acknowledge after fsync; async: acknowledge at once, commit at least every 10ms")
	idemTTL := fs.String("idempotency-ttl", "24h", "how long Idempotency-Keys are remembered")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "text or json")
	pprofAddr := fs.String("pprof-addr", "", "serve Go's net/http/pprof on this address (off when empty; keep it on loopback)")
	queryMaxSamples := fs.Int("query-max-samples", promapi.DefaultMaxSamples, "Prometheus query API: most samples one query may read from the counters, and hold in the engine at once")
	queryMaxSeries := fs.Int("query-max-series", promapi.DefaultMaxSeries, "Prometheus query API: most series one query may select")
	queryTimeout := fs.Duration("query-timeout", promapi.DefaultTimeout, "Prometheus query API: longest a query may run (a request's timeout parameter may shorten it)")
	clockOffset := fs.Duration("debug-clock-offset", 0, "testing only: run this node's clock this far ahead (or behind, if negative) of the machine's, to test clock skew")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: abacus agent [flags]\n\nRuns an Abacus node.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}

	cfg := def
	cfg.DataDir, cfg.HTTPAddr, cfg.NodeName, cfg.DC = *dataDir, *httpAddr, *nodeName, *dc
	cfg.GossipAddr, cfg.Advertise, cfg.ClusterName = *gossipAddr, *advertise, *clusterName
	cfg.AuthTokenFile, cfg.MetricsPublic, cfg.TLSCert, cfg.TLSKey = *authFile, *metricsPublic, *tlsCert, *tlsKey
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	var err error
	saveKey := func() error { return nil }
	if cfg.Profile, err = gossip.ParseProfile(*profile); err != nil {
		return fmt.Errorf("--gossip-profile: %v", err)
	}
	for _, a := range strings.Split(*join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Join = append(cfg.Join, a)
		}
	}
	switch {
	case *keyFile != "" && *insecure:
		return fmt.Errorf("--gossip-key-file and --gossip-insecure contradict each other")
	case *keyFile != "":
		if cfg.GossipKeys, err = readKeyFile(*keyFile); err != nil {
			return fmt.Errorf("--gossip-key-file: %v", err)
		}
	case *insecure:
	case len(cfg.Join) > 0:
		return fmt.Errorf("--join needs --gossip-key-file: make a key with abacus keygen and give every node the same file (or run without a key with --gossip-insecure, testing only)")
	default:
		if cfg.GossipKeys, saveKey, err = ownKey(cfg.DataDir); err != nil {
			return fmt.Errorf("data directory %s: gossip key: %v", cfg.DataDir, err)
		}
	}
	if cfg.Windows, err = window.ParseConfig(*windows); err != nil {
		return fmt.Errorf("--windows: %v", err)
	}
	if cfg.Durability, err = store.ParseDurability(*durability); err != nil {
		return fmt.Errorf("--durability: %v", err)
	}
	if cfg.IdempotencyTTL, err = window.ParseDuration(*idemTTL); err != nil || cfg.IdempotencyTTL <= 0 {
		return fmt.Errorf("--idempotency-ttl: want a positive duration such as 24h or 7d")
	}
	if *queryMaxSamples <= 0 || *queryMaxSeries <= 0 || *queryTimeout <= 0 {
		return fmt.Errorf("--query-max-samples, --query-max-series and --query-timeout must be positive")
	}
	cfg.QueryMaxSamples, cfg.QueryMaxSeries, cfg.QueryTimeout = *queryMaxSamples, *queryMaxSeries, *queryTimeout
	if cfg.Logger, err = newLogger(stderr, *logLevel, *logFormat); err != nil {
		return err
	}
	if off := *clockOffset; off != 0 {
		cfg.Now = func() time.Time { return time.Now().Add(off) }
		cfg.Logger.Warn("this node's clock is offset for testing", "offset", off)
	}

	if len(cfg.GossipKeys) == 0 {
		cfg.Logger.Warn("GOSSIP IS NOT ENCRYPTED (--gossip-insecure): anyone who reaches " + cfg.GossipAddr + " can join this cluster and change its counts; set --gossip-key-file (abacus keygen makes a key)")
	}
	a, err := agent.New(cfg)
	if de := (*store.DamagedError)(nil); errors.As(err, &de) {
		return fmt.Errorf("%s; stop here and run: abacus recover --data-dir %s (docs/OPERATIONS.md: \"A node says its data directory is damaged\")", oneLine(de.Error()), cfg.DataDir)
	}
	if err != nil {
		return err
	}
	if err := saveKey(); err != nil {
		a.Shutdown(context.Background())
		return fmt.Errorf("data directory %s: save the gossip key: %v", cfg.DataDir, err)
	}
	if *keyFile == "" && !*insecure {
		cfg.Logger.Info("gossip is encrypted with this node's own key; nodes that join it need the same file (--gossip-key-file)", "key_file", filepath.Join(cfg.DataDir, ownKeyFile))
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			a.Shutdown(context.Background())
			return fmt.Errorf("--pprof-addr: %v", err)
		}
		cfg.Logger.Info("serving pprof", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
		go http.Serve(ln, pprofMux())
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve() }()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case err := <-served:
			a.Shutdown(context.Background())
			return err
		case <-hup:
			if err := a.Reload(); err != nil {
				cfg.Logger.Error("reload failed; keeping the previous tokens and certificate", "err", err)
			} else {
				cfg.Logger.Info("reloaded tokens and certificate")
			}
		case sig := <-sigs:
			cfg.Logger.Info("shutting down; a second signal exits at once", "signal", sig.String())
			break wait
		}
	}
	go func() {
		sig := <-sigs
		cfg.Logger.Warn("exiting at once", "signal", sig.String())
		os.Exit(1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		return err
	}
	return <-served
}

// readKeyFile reads base64 gossip keys of 16, 24 or 32 bytes, one per line
// (blank lines and # comments skipped). The first is the one that encrypts.
func readKeyFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: not base64", path, i+1)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("%s line %d: key of %d bytes; want 16, 24 or 32 (abacus keygen makes one)", path, i+1, n)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", path)
	}
	return keys, nil
}

// ownKeyFile is where a node with no --gossip-key-file and no --join keeps
// the gossip key it made for itself.
const ownKeyFile = "gossip.key"

// ownKey reads the data directory's own gossip key; if there is none, it
// makes one, which save writes into the data directory once the node has
// started (a node that fails to start leaves its directory untouched). A
// lone node thus has gossip that nobody else can write to, with no flag; to
// grow the cluster, give the other nodes this file (or a new one from
// abacus keygen, given to all) with --gossip-key-file.
func ownKey(dir string) (keys [][]byte, save func() error, err error) {
	path := filepath.Join(dir, ownKeyFile)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		keys, err := readKeyFile(path)
		return keys, func() error { return nil }, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, nil, err
	}
	save = func() error {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(f, base64.StdEncoding.EncodeToString(key))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return [][]byte{key}, save, nil
}

// oneLine folds an error onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// pprofMux serves net/http/pprof's handlers, registered on a private mux so
// that they never reach the API's listener.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
