// Package agent wires one Abacus node together: the store, the gossip layer,
// the HTTP API and its server. cmd/abacus runs it from flags; in-process tests
// run several.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/abacus-counter/abacus/api"
	"github.com/abacus-counter/abacus/gossip"
	"github.com/abacus-counter/abacus/store"
	"github.com/abacus-counter/abacus/ui"
	"github.com/abacus-counter/abacus/window"
)

// Config configures a node.
type Config struct {
	// DataDir holds the node's database; created if missing.
	DataDir string
	// HTTPAddr is where the API listens, host:port; port 0 picks one.
	HTTPAddr string
	// NodeName names the node in the cluster; empty means the hostname.
	NodeName string
	// DC is the node's datacenter.
	DC string
	// Windows is the resolution set; every node of a cluster must agree.
	Windows window.Config
	// Durability is store.Fsync (ack after fsync) or store.Async.
	Durability store.Durability
	// IdempotencyTTL is how long idempotency keys are remembered; zero means 24h.
	IdempotencyTTL time.Duration
	// Logger receives all logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. Tests inject their own.
	Now func() time.Time
	// Store, if not nil, adjusts the store configuration before opening (tests).
	Store func(*store.Config)

	// GossipAddr is host:port for gossip (UDP and TCP); port 0 picks one.
	GossipAddr string
	// Advertise is the host:port peers should reach gossip at; empty means
	// GossipAddr.
	Advertise string
	// Join lists host:port gossip addresses to join.
	Join []string
	// Profile is the gossip timing profile: lan, wan or local.
	Profile gossip.Profile
	// GossipKeys, if any, encrypt gossip (AES-GCM, 16, 24 or 32 bytes each);
	// the first encrypts, all decrypt.
	GossipKeys [][]byte
	// ClusterName separates clusters sharing a network.
	ClusterName string
	// Gossip, if not nil, adjusts the gossip configuration (tests: faults,
	// shorter timings).
	Gossip func(*gossip.Config)

	// AuthTokenFile, if set, holds "TOKEN ROLE" lines; requests then need a
	// bearer token. Reload re-reads it.
	AuthTokenFile string
	// MetricsPublic serves /metrics without a token.
	MetricsPublic bool
	// TLSCert and TLSKey, if set, serve HTTPS with this PEM certificate and
	// key. Reload re-reads them.
	TLSCert, TLSKey string

	// Limits of the Prometheus query API (/api/v1/…): samples held at once
	// and series selected per query, and the longest a query may run. Zero
	// means promapi's defaults.
	QueryMaxSamples int
	QueryMaxSeries  int
	QueryTimeout    time.Duration
}

// DefaultConfig is a single node on loopback with data in ./abacus-data.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DataDir:     "./abacus-data",
		HTTPAddr:    "127.0.0.1:4000",
		NodeName:    host,
		DC:          "dc1",
		Windows:     window.DefaultConfig(),
		GossipAddr:  "127.0.0.1:7946",
		Profile:     gossip.LAN,
		ClusterName: "abacus",
	}
}

// Agent is a running node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	gossip  *gossip.Gossip
	http    *http.Server
	ln      net.Listener
	reg     *prometheus.Registry
	closing atomic.Bool

	tokens    atomic.Pointer[api.Tokens]
	cert      atomic.Pointer[tls.Certificate]
	restoring atomic.Bool // restored from a snapshot and not yet caught up

	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens the data directory and binds the HTTP listener. Serve starts
// answering.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NodeName == "" {
		cfg.NodeName, _ = os.Hostname()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge())
	if err := a.loadTokens(); err != nil {
		return nil, err
	}
	if err := a.loadCert(); err != nil {
		return nil, err
	}

	// Bind first: a port in use then fails before the data directory is
	// touched.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	a.ln = ln
	if err := checkGossipAddr(cfg.GossipAddr); err != nil {
		ln.Close()
		return nil, err
	}
	scfg := store.DefaultConfig(cfg.DataDir)
	scfg.Windows = cfg.Windows
	scfg.Durability = cfg.Durability
	scfg.IdempotencyTTL = cfg.IdempotencyTTL
	scfg.Logger = cfg.Logger.With("component", "store")
	scfg.Now = cfg.Now
	// With no --join, no peer is sure to give back what a lost journal held.
	scfg.RefuseLostJournal = len(cfg.Join) == 0
	newStoreMetrics(a.reg).hook(&scfg)
	gcfg := gossip.Config{
		NodeName:      cfg.NodeName,
		BindAddr:      cfg.GossipAddr,
		AdvertiseAddr: cfg.Advertise,
		Join:          cfg.Join,
		Profile:       cfg.Profile,
		Keys:          cfg.GossipKeys,
		ClusterName:   cfg.ClusterName,
		DC:            cfg.DC,
		Windows:       cfg.Windows.String(),
		HTTPAddr:      ln.Addr().String(),
		Logger:        cfg.Logger.With("component", "gossip"),
		Now:           cfg.Now,
	}
	if cfg.Gossip != nil {
		cfg.Gossip(&gcfg)
	}
	// The outbox links store and gossip: the store fills it after each
	// commit, and gossip, which starts once the store is open, drains it.
	outbox := gossip.NewOutbox(gcfg.OutboxLimit, gcfg.Now)
	gcfg.Outbox = outbox
	scfg.Sink = outbox
	if cfg.Store != nil {
		cfg.Store(&scfg)
	}
	st, err := store.Open(scfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	a.store = st
	a.reg.MustRegister(storeCollector{st})
	prom, err := a.newPromAPI()
	if err != nil {
		ln.Close()
		st.Close(context.Background())
		return nil, err
	}
	st.SetReplicaInfo(store.ReplicaInfo{ID: st.Replica(), Node: cfg.NodeName, DC: cfg.DC})

	gs, err := gossip.New(gcfg, replicator{st})
	if err != nil {
		ln.Close()
		st.Close(context.Background())
		return nil, err
	}
	a.gossip = gs
	a.reg.MustRegister(gossipCollector{gs}, nodeCollector{a})
	if st.Restored() {
		a.restoring.Store(true)
		gs.Recover(st.RestoredSeq())
		a.log.Warn("restored (from a snapshot, or by abacus recover): refusing writes until every live peer has sent this replica's newer entries")
	}

	deps := api.Deps{
		Counters:      counters{a},
		Cluster:       (*cluster)(a),
		Windows:       cfg.Windows,
		Logger:        cfg.Logger.With("component", "api"),
		Registerer:    a.reg,
		Metrics:       promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}),
		MetricsPublic: cfg.MetricsPublic,
		Snapshot:      snapshotter{a},
		ForceLeave:    (*cluster)(a),
		Durability:    cfg.Durability.String(),
		UI:            ui.Handler(),
		PromAPI:       prom,
	}
	if cfg.AuthTokenFile != "" {
		deps.Auth = (*authorizer)(a)
	}
	handler := api.NewHandler(deps)
	a.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.With("component", "http").Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.cert.Load(), nil },
		},
	}
	return a, nil
}

// checkGossipAddr fails if the gossip port is taken, before the data
// directory is touched (memberlist binds it only after the store is open).
func checkGossipAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return nil // gossip reports a malformed address itself; 0 picks a free port
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("gossip address %s: %w", addr, err)
	}
	l.Close()
	p, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("gossip address %s: %w", addr, err)
	}
	p.Close()
	return nil
}

func (a *Agent) loadTokens() error {
	if a.cfg.AuthTokenFile == "" {
		return nil
	}
	t, err := api.LoadTokens(a.cfg.AuthTokenFile)
	if err != nil {
		return fmt.Errorf("auth tokens: %w", err)
	}
	a.tokens.Store(t)
	return nil
}

func (a *Agent) loadCert() error {
	if a.cfg.TLSCert == "" && a.cfg.TLSKey == "" {
		return nil
	}
	c, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	a.cert.Store(&c)
	return nil
}

// Reload re-reads the token file and the TLS certificate (SIGHUP). On an
// error the previous ones stay in force.
func (a *Agent) Reload() error {
	if err := a.loadTokens(); err != nil {
		return err
	}
	return a.loadCert()
}

// authorizer checks tokens against the current token file.
type authorizer Agent

func (z *authorizer) Role(token string) (api.Role, bool) {
	if t := z.tokens.Load(); t != nil {
		return t.Role(token)
	}
	return api.RoleNone, false
}

// snapshotter serves /v1/snapshot from the store.
type snapshotter struct{ a *Agent }

func (s snapshotter) Snapshot(ctx context.Context, w io.Writer) error {
	_, err := s.a.store.Snapshot(ctx, w)
	return err
}

func (s snapshotter) SnapshotName() string {
	return "abacus-" + s.a.cfg.NodeName + "-" + time.Now().UTC().Format("20060102T150405Z") + ".db"
}

// writeBlocked says why the node refuses writes, or nil.
func (a *Agent) writeBlocked() error {
	if why := damaged(a.store.Err()); why != "" {
		return errors.New(why)
	}
	if err := a.gossip.WriteBlocked(); err != nil {
		return err
	}
	if a.restoring.Load() {
		ok, why := a.gossip.CaughtUpOnSelf()
		if !ok {
			return errors.New("restored (from a snapshot, or by abacus recover); catching up on this replica's own entries first: " + why)
		}
		if a.restoring.CompareAndSwap(true, false) {
			a.log.Info("restored node caught up on its own entries; taking writes")
			// Off the request path. Should it fail, or the node stop first,
			// the next start catches up again: slower, never wrong.
			go func() {
				if err := a.store.CaughtUp(); err != nil {
					a.log.Warn("restored node caught up, but the mark stays", "err", err)
				}
			}()
		}
	}
	return nil
}

// Addr is the HTTP listener's address.
func (a *Agent) Addr() string { return a.ln.Addr().String() }

// Store is the node's store (tests and tools look inside).
func (a *Agent) Store() *store.Store { return a.store }

// Serve answers HTTP until Shutdown, returning nil then.
func (a *Agent) Serve() error {
	scheme := "http://"
	if a.cert.Load() != nil {
		scheme = "https://"
	}
	a.log.Info("serving", "http", scheme+a.Addr(), "gossip", a.gossip.Addr(), "data_dir", a.cfg.DataDir, "replica", a.store.Replica().String(),
		"node", a.cfg.NodeName, "dc", a.cfg.DC, "durability", a.cfg.Durability.String())
	var err error
	if a.cert.Load() != nil {
		err = a.http.ServeTLS(a.ln, "", "")
	} else {
		err = a.http.Serve(a.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Gossip is the node's gossip layer (tests look inside).
func (a *Agent) Gossip() *gossip.Gossip { return a.gossip }

// Shutdown stops taking requests, lets requests in flight finish (their
// commits included), sends the deltas still waiting to every peer, leaves the
// cluster, and closes the store. ctx bounds the whole; it is safe to call
// more than once.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() {
		a.closing.Store(true)
		if err := a.http.Shutdown(ctx); err != nil {
			a.shutdownErr = fmt.Errorf("stop http: %w", err)
			a.http.Close()
		}
		// The store gets its own budget: requests and goodbyes may have used
		// up ctx, and the commits in flight must finish whatever happened.
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// Commit what was answered (Async) before gossip hands this node's
		// entries to its peers and leaves.
		if err := a.store.Flush(sctx); err != nil && !errors.Is(err, store.ErrClosed) {
			a.log.Warn("committing answered increments before leaving", "err", err)
		}
		if err := a.gossip.Close(ctx); err != nil && a.shutdownErr == nil {
			a.shutdownErr = fmt.Errorf("leave cluster: %w", err)
		}
		if err := a.store.Close(sctx); err != nil && a.shutdownErr == nil {
			a.shutdownErr = err
		}
		a.log.Info("stopped")
	})
	return a.shutdownErr
}

// cluster is the agent seen as api.Cluster.
type cluster Agent

func (c *cluster) Self() api.Member {
	return apiMember(c.gossip.Self())
}

func (c *cluster) Members() []api.Member {
	ms := c.gossip.Members()
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		out[i] = apiMember(m)
	}
	return out
}

func apiMember(m gossip.Member) api.Member {
	out := api.Member{Name: m.Name, Replica: m.Replica, DC: m.DC, Addr: m.Addr, HTTP: m.HTTPAddr, State: m.State}
	if m.Lag != nil {
		out.Lag = &api.Lag{Seqs: m.Lag.Seqs, Seconds: m.Lag.Seconds}
	}
	if !m.Since.IsZero() {
		since := m.Since.UTC()
		out.Since = &since
	}
	return out
}

// ForceLeave removes a dead member everywhere (api.ForceLeaver).
func (c *cluster) ForceLeave(name string) (int, error) {
	told, err := c.gossip.ForceLeave(name)
	switch {
	case errors.Is(err, gossip.ErrUnknownMember):
		return 0, api.ErrUnknownMember
	case errors.Is(err, gossip.ErrMemberAlive):
		return 0, api.ErrMemberAlive
	}
	return told, err
}

// Ready says why the node should not take traffic, in words for clients:
// the store's own errors (which may wrap the operating system's) stay in the
// log.
func (c *cluster) Ready() error {
	if c.closing.Load() {
		return errors.New("shutting down")
	}
	switch err := c.store.Err(); {
	case errors.Is(err, store.ErrClosed):
		return errors.New("shutting down")
	case damaged(err) != "":
		return errors.New(damaged(err))
	case err != nil:
		return errors.New("a disk write failed; restart the node (the log says why)")
	}
	if err := c.gossip.Ready(); err != nil {
		return err
	}
	return (*Agent)(c).writeBlocked()
}
