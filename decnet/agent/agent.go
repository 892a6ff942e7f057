package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/state"
	"github.com/decnet-swarm/sdk/internal/atomicfile"
)

// Defaults for the zero fields of Config.
const (
	// DefaultDeployTimeout bounds one deploy, mutate or teardown, independently
	// of the request that started it.
	DefaultDeployTimeout = 10 * time.Minute
	// DefaultStatusTimeout bounds the runtime lookup of GET /status.
	DefaultStatusTimeout = 10 * time.Second
	// DefaultShutdownTimeout bounds the drain of in-flight requests when Serve's
	// context ends.
	DefaultShutdownTimeout = 30 * time.Second
	// ComposeFileName is the name of the compose file the agent writes in its
	// state directory.
	ComposeFileName = "compose.yaml"
)

// Engine is what the agent needs from the Docker side; *engine.Engine
// implements it.
type Engine interface {
	// Render returns the compose file for cfg.
	Render(cfg decnet.Config) ([]byte, error)
	// Plan says what Apply would do, touching nothing.
	Plan(ctx context.Context, cfg decnet.Config) (decnet.DeployPlan, error)
	// Apply reconciles the whole fleet.
	Apply(ctx context.Context, cfg decnet.Config) error
	// ApplyDecky reconciles one decky of cfg.
	ApplyDecky(ctx context.Context, cfg decnet.Config, name string) error
	// Teardown removes one decky, or everything when name is "".
	Teardown(ctx context.Context, name string) error
	// Status returns the runtime state of cfg's deckies.
	Status(ctx context.Context, cfg decnet.Config) ([]decnet.DeckyStatus, error)
}

var _ Engine = (*engine.Engine)(nil)

// Store is the worker's state; *state.Store implements it.
type Store interface {
	Dir() string
	Load(ctx context.Context) (*state.State, error)
	Save(ctx context.Context, st *state.State) error
	Clear(ctx context.Context) error
	Lock(ctx context.Context) (unlock func(), err error)
}

var _ Store = (*state.Store)(nil)

// Reaper carries out a self-destruct. SelfDestruct must only schedule the
// work (spawn a detached reaper) and return; the agent answers the master
// after it returns.
type Reaper interface {
	SelfDestruct(ctx context.Context) error
}

// BaseImager makes sure the base (pause) image exists before the agent
// applies anything. It is called before every apply until it succeeds once.
type BaseImager interface {
	EnsureBaseImage(ctx context.Context) error
}

// Config configures an Agent. Engine, State and Network are required; zero
// values of the other fields mean the documented defaults.
type Config struct {
	// TLS is the server TLS configuration (pki.ServerTLSConfig); a lower
	// MinVersion is raised to TLS 1.3. When nil and
	// BundleDir is set, New builds it from the bundle. Serve needs one of them;
	// Handler needs neither.
	TLS *tls.Config
	// BundleDir is the worker's identity directory (ca.crt, tls.crt, tls.key
	// and, optionally, master.fingerprint).
	BundleDir string
	// MasterFingerprint pins the master's certificate. When empty and
	// BundleDir holds master.fingerprint, that pin is used. Without a pin any
	// certificate of role master signed by the CA is accepted.
	MasterFingerprint string
	// Engine applies fleets to Docker.
	Engine Engine
	// State persists the worker's desired state.
	State Store
	// Network is the worker's LAN; it replaces the network of every deployed
	// config, and deckies sent without an IP get one from Network.Pool().
	Network decnet.Network
	// Catalog is the set of services deckies may run; nil = decnet.DefaultCatalog().
	Catalog *decnet.Catalog
	// Reaper carries out POST /self-destruct; nil answers it with 500.
	Reaper Reaper
	// BaseImage, when set, is ensured before the first apply.
	BaseImage BaseImager
	// ComposeFile is the absolute path of the compose file; "" = ComposeFileName
	// in the state directory.
	ComposeFile string
	// Logger receives the request log; nil discards.
	Logger *slog.Logger
	// Metrics, when set, receives the agent's Prometheus collectors.
	Metrics prometheus.Registerer
	// DeployTimeout bounds each state-changing operation; 0 = DefaultDeployTimeout.
	DeployTimeout time.Duration
	// StatusTimeout bounds the runtime lookup of /status; 0 = DefaultStatusTimeout.
	StatusTimeout time.Duration
	// ShutdownTimeout bounds the drain in Serve; 0 = DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Now returns the current time (last_mutated, updated_at); nil = time.Now.
	Now func() time.Time
}

// Agent is the worker agent: an HTTPS API over the engine and the state.
type Agent struct {
	tls             *tls.Config
	masterFP        string
	engine          Engine
	store           Store
	network         decnet.Network
	catalog         *decnet.Catalog
	reaper          Reaper
	baseImage       BaseImager
	baseReady       atomic.Bool
	composePath     string
	log             *slog.Logger
	metrics         *metrics
	deployTimeout   time.Duration
	statusTimeout   time.Duration
	shutdownTimeout time.Duration
	now             func() time.Time
	handshakes      atomic.Int64
	routes          map[string]map[string]http.HandlerFunc
}

// New checks cfg and returns an Agent. It does no Docker I/O.
func New(cfg Config) (*Agent, error) {
	v := &decnet.ValidationError{}
	if cfg.Engine == nil {
		v.Add("engine", "required")
	}
	if cfg.State == nil {
		v.Add("state", "required")
	}
	if err := cfg.Network.Validate(); err != nil {
		var nv *decnet.ValidationError
		if !errors.As(err, &nv) {
			return nil, err // never drop a rejection
		}
		v.Merge("network", nv)
	}
	if cfg.ComposeFile != "" && !filepath.IsAbs(cfg.ComposeFile) {
		v.Add("compose_file", "%q is not an absolute path", cfg.ComposeFile)
	}
	if cfg.DeployTimeout < 0 || cfg.StatusTimeout < 0 || cfg.ShutdownTimeout < 0 {
		v.Add("timeouts", "must not be negative")
	}
	fp := cfg.MasterFingerprint
	if fp != "" {
		p, err := pki.ParseFingerprint(fp)
		if err != nil {
			v.Add("master_fingerprint", "%v", err)
		}
		fp = p
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	tlsCfg := cfg.TLS
	if cfg.BundleDir != "" {
		b, err := pki.LoadBundle(cfg.BundleDir)
		if err != nil {
			return nil, err
		}
		if fp == "" {
			fp = b.MasterFingerprint
		}
		if tlsCfg == nil {
			if tlsCfg, err = pki.ServerTLSConfig(cfg.BundleDir, pki.ServerOptions{Logger: cfg.Logger}); err != nil {
				return nil, err
			}
		}
	}
	a := &Agent{
		masterFP:        fp,
		engine:          cfg.Engine,
		store:           cfg.State,
		network:         cfg.Network,
		catalog:         cfg.Catalog,
		reaper:          cfg.Reaper,
		baseImage:       cfg.BaseImage,
		composePath:     cfg.ComposeFile,
		log:             cfg.Logger,
		deployTimeout:   cfg.DeployTimeout,
		statusTimeout:   cfg.StatusTimeout,
		shutdownTimeout: cfg.ShutdownTimeout,
		now:             cfg.Now,
	}
	if a.catalog == nil {
		a.catalog = decnet.DefaultCatalog()
	}
	if a.composePath == "" {
		a.composePath = filepath.Join(cfg.State.Dir(), ComposeFileName)
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.deployTimeout == 0 {
		a.deployTimeout = DefaultDeployTimeout
	}
	if a.statusTimeout == 0 {
		a.statusTimeout = DefaultStatusTimeout
	}
	if a.shutdownTimeout == 0 {
		a.shutdownTimeout = DefaultShutdownTimeout
	}
	if a.now == nil {
		a.now = time.Now
	}
	if tlsCfg != nil {
		a.tls = a.countingTLS(tlsCfg)
	}
	if cfg.Metrics != nil {
		m, err := newMetrics(cfg.Metrics)
		if err != nil {
			return nil, err
		}
		a.metrics = m
	}
	a.routes = map[string]map[string]http.HandlerFunc{
		"/health":        {http.MethodGet: a.handleHealth},
		"/status":        {http.MethodGet: a.handleStatus},
		"/deploy":        {http.MethodPost: a.handleDeploy},
		"/teardown":      {http.MethodPost: a.handleTeardown},
		"/mutate":        {http.MethodPost: a.handleMutate},
		"/self-destruct": {http.MethodPost: a.handleSelfDestruct},
	}
	return a, nil
}

// countingTLS returns a copy of c that counts completed handshakes and
// never negotiates less than TLS 1.3, whatever the caller's c allows.
func (a *Agent) countingTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS13)
	inner := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if inner != nil {
			if err := inner(cs); err != nil {
				return err
			}
		}
		a.handshakes.Add(1)
		if a.metrics != nil {
			a.metrics.handshakes.Inc()
		}
		return nil
	}
	return c
}

// Handshakes returns how many TLS handshakes Serve's listeners completed.
func (a *Agent) Handshakes() int64 { return a.handshakes.Load() }

// Serve answers HTTPS requests on ln (a plain TCP listener: Serve adds the
// TLS layer) until ctx ends, then stops accepting, drains in-flight requests
// for at most Config.ShutdownTimeout and returns nil. When the drain times
// out, Serve cancels the operations still running, waits for their handlers
// to return and returns the error. It closes ln.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	if a.tls == nil {
		_ = ln.Close()
		return decnet.Errorf(decnet.ErrInvalid, "tls", "", "agent: Serve needs Config.TLS or Config.BundleDir")
	}
	// abort ends the operations of this server's requests, which otherwise
	// outlive their request (opContext); handlers counts the running handlers.
	abort, abortOps := context.WithCancel(context.WithoutCancel(ctx))
	defer abortOps()
	var handlers sync.WaitGroup
	h := a.Handler()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			h.ServeHTTP(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return context.WithValue(abort, abortKey{}, abort) },
		TLSConfig:         a.tls,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn), // failed handshakes: worth seeing on a honeypot
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	a.log.InfoContext(ctx, "agent_listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		abortOps()
		_ = srv.Close()
		handlers.Wait()
		return fmt.Errorf("agent: serve: %w", err)
	case <-ctx.Done():
	}
	a.log.InfoContext(ctx, "agent_draining", "timeout", a.shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		abortOps()
		_ = srv.Close()
		handlers.Wait()
		return fmt.Errorf("agent: shutdown: %w", err)
	}
	handlers.Wait() // already done: Shutdown waited for every connection to go idle
	a.log.InfoContext(ctx, "agent_stopped")
	return nil
}

// abortKey carries, in a request's context, the context whose end aborts the
// request's operation (Serve ends it when its drain times out).
type abortKey struct{}

// opContext returns the context a state-changing operation runs under: not
// cancelled when the client goes away, bounded by the deploy timeout, and
// cancelled when Serve gives up draining.
func (a *Agent) opContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), a.deployTimeout)
	if abort, ok := r.Context().Value(abortKey{}).(context.Context); ok {
		stop := context.AfterFunc(abort, cancel)
		return ctx, func() { stop(); cancel() }
	}
	return ctx, cancel
}

// writeCompose writes the compose file for cfg atomically (mode 0600: the
// services' environment may hold secrets).
func (a *Agent) writeCompose(cfg decnet.Config) error {
	data, err := a.engine.Render(cfg)
	if err != nil {
		return fmt.Errorf("render compose file: %w", err)
	}
	return atomicfile.WriteFile(filepath.Dir(a.composePath), filepath.Base(a.composePath), data, 0o600)
}

func (a *Agent) removeCompose() error {
	if err := os.Remove(a.composePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove compose file: %w", err)
	}
	return nil
}

// ensureBase makes sure the base image exists (once per process).
func (a *Agent) ensureBase(ctx context.Context) error {
	if a.baseImage == nil || a.baseReady.Load() {
		return nil
	}
	if err := a.baseImage.EnsureBaseImage(ctx); err != nil {
		return fmt.Errorf("base image: %w", err)
	}
	a.baseReady.Store(true)
	return nil
}
