package mutator_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// agentRecorder stands in for a worker's agent client.
type agentRecorder struct {
	mu    sync.Mutex
	calls []call
	reply func(services []string) []string // the services the agent reports
}

func newAgentRecorder() *agentRecorder { return &agentRecorder{} }

func (a *agentRecorder) Mutate(_ context.Context, decky string, services []string, opts agentclient.MutateOptions) (agentclient.MutateResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, call{Decky: decky, Services: slices.Clone(services), DryRun: opts.DryRun})
	out := slices.Clone(services)
	if a.reply != nil {
		out = a.reply(services)
	}
	return agentclient.MutateResult{DeckyID: decky, Services: out, DryRun: opts.DryRun}, nil
}

// engineRecorder stands in for the master's local engine.
type engineRecorder struct {
	mu    sync.Mutex
	calls []engineCall
}

type engineCall struct {
	cfg  decnet.Config
	name string
}

func (e *engineRecorder) ApplyDecky(_ context.Context, cfg decnet.Config, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, engineCall{cfg: cfg.Clone(), name: name})
	return nil
}

func testNetwork() decnet.Network {
	return decnet.Network{Driver: decnet.DriverBridge, Subnet: netip.MustParsePrefix("10.213.0.0/24"), Name: "dnt-mutator-unit"}
}

func TestAgentTarget(t *testing.T) {
	a := newAgentRecorder()
	tg := mutator.NewAgentTarget("worker-1", a)
	if err := tg.Mutate(t.Context(), "alpha", []string{"ssh", "http"}, true); err != nil {
		t.Fatal(err)
	}
	if err := tg.Mutate(t.Context(), "alpha", []string{"ssh", "http"}, false); err != nil {
		t.Fatal(err)
	}
	if len(a.calls) != 2 || !a.calls[0].DryRun || a.calls[1].DryRun {
		t.Errorf("calls %+v", a.calls)
	}
	// An agent that reports other services than the ones sent is a conflict.
	a.reply = func([]string) []string { return []string{"telnet"} }
	if err := tg.Mutate(t.Context(), "alpha", []string{"ssh"}, false); !errors.Is(err, decnet.ErrConflict) {
		t.Errorf("mismatched reply: %v, want ErrConflict", err)
	}
}

func TestLocalTarget(t *testing.T) {
	st := openStore(t)
	h := addHost(t, st, "worker-1")
	createDecky(t, st, "resident", []string{"ssh"})
	createDecky(t, st, "remote", []string{"ssh"}, onHost(h.UUID))
	eng := &engineRecorder{}
	lt, err := mutator.NewLocalTarget(mutator.LocalConfig{Engine: eng, Deckies: st, Network: testNetwork()})
	if err != nil {
		t.Fatal(err)
	}
	if err := lt.Mutate(t.Context(), "resident", []string{"http"}, true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if len(eng.calls) != 0 {
		t.Fatalf("dry run reached the engine")
	}
	for name, tc := range map[string]struct {
		decky    string
		services []string
		want     error
	}{
		"unknown service": {"resident", []string{"gopher"}, decnet.ErrInvalid},
		"empty":           {"resident", nil, decnet.ErrInvalid},
		"unknown decky":   {"ghost", []string{"http"}, decnet.ErrNotFound},
		"on a worker":     {"remote", []string{"http"}, decnet.ErrConflict},
	} {
		if err := lt.Mutate(t.Context(), tc.decky, tc.services, false); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if len(eng.calls) != 0 {
		t.Fatalf("rejected calls reached the engine: %+v", eng.calls)
	}
	if err := lt.Mutate(t.Context(), "resident", []string{"http", "smb"}, false); err != nil {
		t.Fatal(err)
	}
	if len(eng.calls) != 1 || eng.calls[0].name != "resident" || eng.calls[0].cfg.Mode != decnet.ModeUnihost {
		t.Fatalf("engine calls %+v", eng.calls)
	}
	if d, _ := eng.calls[0].cfg.Decky("resident"); !slices.Equal(d.Services, []string{"http", "smb"}) {
		t.Errorf("engine got services %v", d.Services)
	}
	if _, err := mutator.NewLocalTarget(mutator.LocalConfig{Deckies: st, Network: testNetwork()}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("no engine: %v, want ErrInvalid", err)
	}
}

var _ mutator.HostResolver = (*mutator.Resolver)(nil)
var _ mutator.NamedTarget = (*mutator.AgentTarget)(nil)
var _ mutator.NamedTarget = (*mutator.LocalTarget)(nil)
var _ mutator.AgentClient = (*agentclient.Client)(nil)
var _ mutator.Store = repository.Repository(nil)

// blockingAgent is an agent client whose calls wait for release.
type blockingAgent struct {
	release  chan struct{}
	fail     atomic.Bool
	inflight atomic.Int32
	max      atomic.Int32
	calls    atomic.Int32
}

func (b *blockingAgent) Mutate(ctx context.Context, decky string, services []string, _ agentclient.MutateOptions) (agentclient.MutateResult, error) {
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	b.calls.Add(1)
	if n > b.max.Load() {
		b.max.Store(n)
	}
	<-b.release
	if b.fail.Load() {
		return agentclient.MutateResult{}, errWorkerDown
	}
	return agentclient.MutateResult{DeckyID: decky, Services: services}, nil
}

// Until a first call succeeds, an agent target sends one call at a time
// (so they share the first connection); afterwards calls run concurrently.
func TestAgentTargetWarmsUpAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &blockingAgent{release: make(chan struct{})}
		b.fail.Store(true)
		tg := mutator.NewAgentTarget("w", b)
		var wg sync.WaitGroup
		call := func() {
			wg.Add(1)
			go func() { defer wg.Done(); _ = tg.Mutate(t.Context(), "d", []string{"ssh"}, false) }()
		}
		call()
		call()
		synctest.Wait()
		if got := b.inflight.Load(); got != 1 {
			t.Fatalf("%d cold calls in flight at once, want 1", got)
		}
		b.release <- struct{}{} // the first fails: still cold
		synctest.Wait()
		if got := b.inflight.Load(); got != 1 {
			t.Fatalf("after a failed first call %d in flight, want 1", got)
		}
		b.fail.Store(false)
		b.release <- struct{}{} // succeeds: warm
		wg.Wait()
		call()
		call()
		synctest.Wait()
		if got := b.inflight.Load(); got != 2 {
			t.Errorf("%d warm calls in flight at once, want 2", got)
		}
		close(b.release)
		wg.Wait()
	})
}
