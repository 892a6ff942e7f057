package mutator_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

func TestMain(m *testing.M) { dockertest.Main(m) }

// The engine needs only a slice of the repository contract.
var (
	_ mutator.Store      = repository.Repository(nil)
	_ mutator.HostStore  = repository.Repository(nil)
	_ mutator.DeckyStore = repository.Repository(nil)
)

// openStore opens a real SQLite repository in a temporary directory. Inside
// a synctest bubble its times come from the bubble's clock; it is closed
// when the test (or bubble) ends.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "decnet.db"))
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// deckyOpt adjusts a decky before it is created.
type deckyOpt func(*repository.Decky)

func withInterval(d time.Duration) deckyOpt {
	return func(x *repository.Decky) { x.MutateInterval = &d }
}

func withArchetype(a string) deckyOpt { return func(x *repository.Decky) { x.Spec.Archetype = a } }

func onHost(uuid string) deckyOpt { return func(x *repository.Decky) { x.HostUUID = uuid } }

func inState(s repository.DeckyState) deckyOpt { return func(x *repository.Decky) { x.State = s } }

// createDecky stores a deployed (running) decky running services.
func createDecky(t *testing.T, st repository.Repository, name string, services []string, opts ...deckyOpt) repository.Decky {
	t.Helper()
	d := repository.Decky{
		Name:     name,
		Spec:     decnet.Decky{Name: name, Services: services},
		Services: services,
		State:    repository.DeckyRunning,
	}
	for _, o := range opts {
		o(&d)
	}
	out, err := st.CreateDecky(t.Context(), d)
	if err != nil {
		t.Fatalf("create decky %s: %v", name, err)
	}
	return out
}

func addHost(t *testing.T, st repository.Repository, name string) repository.Host {
	t.Helper()
	h, err := st.AddHost(t.Context(), repository.Host{Name: name, Address: "127.0.0.1", AgentPort: 8765,
		Status: repository.HostActive, Fingerprint: fakeFingerprint(name)})
	if err != nil {
		t.Fatalf("add host %s: %v", name, err)
	}
	return h
}

func fakeFingerprint(name string) string {
	const hex = "0123456789abcdef"
	b := make([]byte, 64)
	for i := range b {
		b[i] = hex[(int(name[i%len(name)])+i)%16]
	}
	return string(b)
}

// call is one dispatch a recording target saw.
type call struct {
	At       time.Time
	Decky    string
	Services []string
	DryRun   bool
}

// recorder is a target standing in for a remote worker: it records every
// call and answers with the error its fail function returns.
type recorder struct {
	name string

	mu    sync.Mutex
	calls []call
	fail  func(decky string) error
	block chan struct{} // when non-nil, Mutate waits for it (or ctx)

	inflight, maxInflight atomic.Int32
}

func newRecorder(name string) *recorder { return &recorder{name: name} }

func (r *recorder) TargetName() string { return r.name }

func (r *recorder) Mutate(ctx context.Context, decky string, services []string, dryRun bool) error {
	n := r.inflight.Add(1)
	defer r.inflight.Add(-1)
	for {
		m := r.maxInflight.Load()
		if n <= m || r.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, call{At: time.Now(), Decky: decky, Services: slices.Clone(services), DryRun: dryRun})
	fail, block := r.fail, r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail(decky)
	}
	return nil
}

func (r *recorder) setFail(f func(string) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

// Calls returns the calls for decky (all when decky is "").
func (r *recorder) Calls(decky string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if decky == "" || c.Decky == decky {
			out = append(out, c)
		}
	}
	return out
}

func callTimes(cs []call, t0 time.Time) []time.Duration {
	out := make([]time.Duration, len(cs))
	for i, c := range cs {
		out[i] = c.At.Sub(t0)
	}
	return out
}

// resolveTo sends every decky to one target.
func resolveTo(t mutator.Target) mutator.HostResolver {
	return mutator.ResolverFunc(func(context.Context, repository.Decky) (mutator.Target, error) { return t, nil })
}

// countingStore wraps the real store to count the scheduling queries, so a
// test can tell a sleep from a poll.
type countingStore struct {
	repository.Repository
	listDue, nextDue atomic.Int32
}

func (c *countingStore) ListDue(ctx context.Context, t time.Time, iv time.Duration) ([]repository.Decky, error) {
	c.listDue.Add(1)
	return c.Repository.ListDue(ctx, t, iv)
}

func (c *countingStore) NextDue(ctx context.Context, iv time.Duration) (time.Time, bool, error) {
	c.nextDue.Add(1)
	return c.Repository.NextDue(ctx, iv)
}

// runEngine starts e.Run and returns a function that stops it and returns
// Run's error.
func runEngine(t *testing.T, e *mutator.Engine) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func mustEngine(t *testing.T, cfg mutator.Config) *mutator.Engine {
	t.Helper()
	e, err := mutator.New(cfg)
	if err != nil {
		t.Fatalf("mutator.New: %v", err)
	}
	return e
}

func events(t *testing.T, st repository.Repository, decky string) []repository.Event {
	t.Helper()
	evs, _, err := st.ListEvents(context.Background(), repository.EventFilter{Kind: mutator.EventMutated, Decky: decky, Limit: repository.MaxEventLimit})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	return evs
}

func getDecky(t *testing.T, st repository.Repository, name string) repository.Decky {
	t.Helper()
	d, err := st.GetDecky(context.Background(), name)
	if err != nil {
		t.Fatalf("get decky %s: %v", name, err)
	}
	return d
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

var errWorkerDown = errors.Join(decnet.ErrUnavailable, errors.New("worker unreachable"))
