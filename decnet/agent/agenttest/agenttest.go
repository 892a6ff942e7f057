// Package agenttest runs a real worker agent over real mutual TLS on
// loopback for tests and benchmarks: a throwaway CA, a master and a worker
// identity minted per call, a real state directory, and either a real engine
// or the in-memory [FakeEngine] (for tests of the API itself and for error
// paths Docker cannot produce on demand).
package agenttest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/compose"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/state"
)

// PKI is a throwaway CA with a master and a worker identity.
type PKI struct {
	CA     *pki.CA
	Master *pki.Bundle
	Worker *pki.Bundle
	// WorkerDir holds the worker bundle (ca.crt, tls.crt, tls.key and, when
	// pinned, master.fingerprint).
	WorkerDir string
}

// NewPKI mints a CA, a master identity and a worker identity for 127.0.0.1,
// and writes the worker bundle to a temporary directory. With pinMaster the
// worker bundle records the master's fingerprint.
func NewPKI(tb testing.TB, pinMaster bool) *PKI {
	tb.Helper()
	ca, err := pki.NewCA(nil)
	if err != nil {
		tb.Fatalf("new CA: %v", err)
	}
	master, err := ca.NewBundle(pki.IssueRequest{Name: pki.MasterName, Role: pki.RoleMaster, SANs: []string{"127.0.0.1"}})
	if err != nil {
		tb.Fatalf("issue master: %v", err)
	}
	worker, err := ca.NewBundle(pki.IssueRequest{Name: "worker-1", Role: pki.RoleWorker, SANs: []string{"127.0.0.1"}})
	if err != nil {
		tb.Fatalf("issue worker: %v", err)
	}
	if pinMaster {
		worker.MasterFingerprint = master.Fingerprint()
	}
	dir := filepath.Join(tb.TempDir(), "agent")
	if err := pki.WriteBundle(dir, worker); err != nil {
		tb.Fatalf("write worker bundle: %v", err)
	}
	return &PKI{CA: ca, Master: master, Worker: worker, WorkerDir: dir}
}

// Issue mints another identity of the CA (say, a second worker).
func (p *PKI) Issue(tb testing.TB, name string, role pki.Role) *pki.Bundle {
	tb.Helper()
	b, err := p.CA.NewBundle(pki.IssueRequest{Name: name, Role: role, SANs: []string{"127.0.0.1"}})
	if err != nil {
		tb.Fatalf("issue %s: %v", name, err)
	}
	return b
}

// DefaultNetwork is the LAN test agents get: a bridge on 172.30.254.0/24.
func DefaultNetwork() decnet.Network {
	return decnet.Network{
		Driver:  decnet.DriverBridge,
		Subnet:  netip.MustParsePrefix("172.30.254.0/24"),
		Gateway: netip.MustParseAddr("172.30.254.1"),
	}
}

// Options configure Start. Zero fields mean: a FakeEngine, no reaper, the
// DefaultNetwork, no master pin, no logs, no metrics.
type Options struct {
	Engine        agent.Engine
	Reaper        agent.Reaper
	BaseImage     agent.BaseImager
	Network       decnet.Network
	Catalog       *decnet.Catalog
	PinMaster     bool
	Logger        *slog.Logger
	Metrics       prometheus.Registerer
	DeployTimeout time.Duration
	// StateDir, when set, is used instead of a fresh temporary directory.
	StateDir string
}

// Server is a running agent.
type Server struct {
	Agent *agent.Agent
	Addr  string // host:port on 127.0.0.1
	PKI   *PKI
	Store *state.Store
	// Engine is the engine the agent uses; the *FakeEngine when Options.Engine was nil.
	Engine agent.Engine
	conns  atomic.Int64
}

// Conns returns how many TCP connections the agent has accepted.
func (s *Server) Conns() int64 { return s.conns.Load() }

// StatePath is the state file's path.
func (s *Server) StatePath() string { return s.Store.Path() }

// Start runs an agent on 127.0.0.1 until the test ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	p := NewPKI(tb, opts.PinMaster)
	return StartWith(tb, p, opts)
}

// StartWith runs an agent with the identities of p until the test ends.
func StartWith(tb testing.TB, p *PKI, opts Options) *Server {
	tb.Helper()
	dir := opts.StateDir
	if dir == "" {
		dir = filepath.Join(tb.TempDir(), "state")
	}
	st, err := state.Open(dir)
	if err != nil {
		tb.Fatalf("open state: %v", err)
	}
	eng := opts.Engine
	if eng == nil {
		eng = NewFakeEngine()
	}
	network := opts.Network
	if network.Driver == "" {
		network = DefaultNetwork()
	}
	a, err := agent.New(agent.Config{
		BundleDir:     p.WorkerDir,
		Engine:        eng,
		State:         st,
		Network:       network,
		Catalog:       opts.Catalog,
		Reaper:        opts.Reaper,
		BaseImage:     opts.BaseImage,
		Logger:        opts.Logger,
		Metrics:       opts.Metrics,
		DeployTimeout: opts.DeployTimeout,
	})
	if err != nil {
		tb.Fatalf("new agent: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	s := &Server{Agent: a, Addr: ln.Addr().String(), PKI: p, Store: st, Engine: eng}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, &countingListener{Listener: ln, n: &s.conns}) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("agent serve: %v", err)
		}
	})
	return s
}

// Client returns a client presenting the master identity and pinning the
// worker's fingerprint. Extra options come after (and so override) those.
func (s *Server) Client(tb testing.TB, opts ...agentclient.Option) *agentclient.Client {
	tb.Helper()
	return s.ClientAs(tb, s.PKI.Master, append([]agentclient.Option{agentclient.WithFingerprint(s.PKI.Worker.Fingerprint())}, opts...)...)
}

// ClientAs returns a client presenting identity b.
func (s *Server) ClientAs(tb testing.TB, b *pki.Bundle, opts ...agentclient.Option) *agentclient.Client {
	tb.Helper()
	c, err := agentclient.New(s.Addr, agentclient.Credentials{Bundle: b}, opts...)
	if err != nil {
		tb.Fatalf("new client: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// FakeEngine is an in-memory agent.Engine: containers are entries in a map,
// created "running". Hook, when set, runs at the start of every
// state-changing call (Apply, ApplyDecky, Teardown) with the operation name
// and decky ("" for all) and may block or fail it.
type FakeEngine struct {
	Hook func(ctx context.Context, op, decky string) error

	mu         sync.Mutex
	statusErr  error
	containers map[string]map[string]string // decky → base/service → state
	ids        map[string]int               // container name → id (changes when recreated)
	nextID     int
	calls      []string
}

// NewFakeEngine returns an empty FakeEngine.
func NewFakeEngine() *FakeEngine {
	return &FakeEngine{containers: map[string]map[string]string{}, ids: map[string]int{}}
}

var _ agent.Engine = (*FakeEngine)(nil)

// Calls returns the state-changing calls made so far, as "op:decky".
func (f *FakeEngine) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// ContainerIDs returns a copy of the container ids by container name.
func (f *FakeEngine) ContainerIDs() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.ids))
	for k, v := range f.ids {
		out[k] = v
	}
	return out
}

func (f *FakeEngine) hook(ctx context.Context, op, decky string) error {
	f.mu.Lock()
	f.calls = append(f.calls, op+":"+decky)
	h := f.Hook
	f.mu.Unlock()
	if h != nil {
		return h(ctx, op, decky)
	}
	return nil
}

// Render returns a stand-in compose file.
func (f *FakeEngine) Render(cfg decnet.Config) ([]byte, error) {
	if err := cfg.Validate(nil); err != nil {
		return nil, err
	}
	out := []byte("# fake compose file\nservices:\n")
	for _, d := range cfg.Deckies {
		out = append(out, "  "+d.Name+": {}\n"...)
		for _, s := range d.Services {
			out = append(out, "  "+compose.ContainerName(d.Name, s)+": {}\n"...)
		}
	}
	return out, nil
}

// Plan compares cfg with the containers.
func (f *FakeEngine) Plan(ctx context.Context, cfg decnet.Config) (decnet.DeployPlan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	plan := decnet.DeployPlan{Deckies: []decnet.DeckyPlan{}}
	want := map[string]bool{}
	for _, d := range cfg.Deckies {
		want[d.Name] = true
		action := "create"
		if cur, ok := f.containers[d.Name]; ok {
			action = "keep"
			if len(cur) != len(d.Services)+1 {
				action = "update"
			}
			for _, s := range d.Services {
				if _, ok := cur[s]; !ok {
					action = "update"
				}
			}
		}
		plan.Deckies = append(plan.Deckies, decnet.DeckyPlan{Name: d.Name, IP: d.IP.String(), Action: action, Services: d.Services})
	}
	for name := range f.containers {
		if !want[name] {
			plan.Remove = append(plan.Remove, name)
		}
	}
	return plan, nil
}

func (f *FakeEngine) setDecky(d decnet.Decky) {
	cur := f.containers[d.Name]
	next := map[string]string{decnet.BaseContainerKey: decnet.ContainerRunning}
	if _, ok := cur[decnet.BaseContainerKey]; !ok {
		f.nextID++
		f.ids[d.Name] = f.nextID
	}
	for _, s := range d.Services {
		next[s] = decnet.ContainerRunning
		if _, ok := cur[s]; !ok {
			f.nextID++
			f.ids[compose.ContainerName(d.Name, s)] = f.nextID
		}
	}
	for s := range cur {
		if _, keep := next[s]; !keep {
			delete(f.ids, compose.ContainerName(d.Name, s))
		}
	}
	f.containers[d.Name] = next
}

func (f *FakeEngine) dropDecky(name string) {
	for s := range f.containers[name] {
		if s == decnet.BaseContainerKey {
			delete(f.ids, name)
		} else {
			delete(f.ids, compose.ContainerName(name, s))
		}
	}
	delete(f.containers, name)
}

// Apply makes the containers match cfg.
func (f *FakeEngine) Apply(ctx context.Context, cfg decnet.Config) error {
	if err := f.hook(ctx, "apply", ""); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[string]bool{}
	for _, d := range cfg.Deckies {
		want[d.Name] = true
		f.setDecky(d)
	}
	for name := range f.containers {
		if !want[name] {
			f.dropDecky(name)
		}
	}
	return nil
}

// ApplyDecky makes one decky's containers match cfg.
func (f *FakeEngine) ApplyDecky(ctx context.Context, cfg decnet.Config, name string) error {
	if err := f.hook(ctx, "apply_decky", name); err != nil {
		return err
	}
	d, ok := cfg.Decky(name)
	if !ok {
		return decnet.Errorf(decnet.ErrNotFound, "decky", name, "decky %q not in config", name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setDecky(d)
	return nil
}

// Teardown removes a decky, or everything.
func (f *FakeEngine) Teardown(ctx context.Context, name string) error {
	if err := f.hook(ctx, "teardown", name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if name == "" {
		for n := range f.containers {
			f.dropDecky(n)
		}
		return nil
	}
	f.dropDecky(name)
	return nil
}

// SetStatusError makes Status fail with err (nil restores it), as when the
// Docker daemon is unreachable.
func (f *FakeEngine) SetStatusError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statusErr = err
}

// Status reports the containers of cfg's deckies.
func (f *FakeEngine) Status(ctx context.Context, cfg decnet.Config) ([]decnet.DeckyStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	out := make([]decnet.DeckyStatus, 0, len(cfg.Deckies))
	for _, d := range cfg.Deckies {
		s := decnet.DeckyStatus{Name: d.Name, Containers: map[string]string{}}
		running := true
		for _, key := range append([]string{decnet.BaseContainerKey}, d.Services...) {
			st, ok := f.containers[d.Name][key]
			if !ok {
				st = decnet.ContainerAbsent
			}
			s.Containers[key] = st
			running = running && st == decnet.ContainerRunning
		}
		s.Running = running
		out = append(out, s)
	}
	return out, nil
}

// ErrInjected is what tests make a FakeEngine hook return.
var ErrInjected = errors.New("injected engine failure")
