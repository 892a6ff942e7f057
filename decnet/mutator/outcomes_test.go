package mutator_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// failingRecords is the real store whose outcome records fail as a database
// error would (a real SQLite cannot be made to fail one write on demand).
type failingRecords struct {
	repository.Repository
}

var errStoreDown = errors.Join(decnet.ErrUnavailable, errors.New("database went away"))

func (failingRecords) UpdateDeckyWithEvent(context.Context, repository.Decky, repository.Event) (repository.Decky, repository.Event, error) {
	return repository.Decky{}, repository.Event{}, errStoreDown
}

// A mutation the store cannot record leaves no trace of success: the row
// keeps its services and version, no "ok" event exists, and the failure is
// recorded (state degraded with its event) so the decky is retried.
func TestUnrecordedMutationIsAFailure(t *testing.T) {
	st := openStore(t)
	createDecky(t, st, "alpha", []string{"ssh"})
	rec := newRecorder("w1")
	e := mustEngine(t, mutator.Config{Store: failingRecords{st}, Resolver: resolveTo(rec), Chooser: chooser(t, 21)})
	res, err := e.MutateNow(t.Context(), "alpha")
	if !errors.Is(err, decnet.ErrUnavailable) || len(res) != 1 {
		t.Fatalf("MutateNow = %+v, %v; want the record error", res, err)
	}
	d := getDecky(t, st, "alpha")
	if !slices.Equal(d.Services, []string{"ssh"}) || d.Version != 1 || d.State != repository.DeckyDegraded || d.LastError == "" {
		t.Errorf("decky %+v: want old services, version 1, degraded with the error", d)
	}
	evs := events(t, st, "alpha")
	if len(evs) != 1 || evs[0].Outcome != mutator.OutcomeFailed || !slices.Equal(evs[0].NewServices, res[0].New) {
		t.Fatalf("events %+v: want exactly one failed event naming the attempted services", evs)
	}
}

// A decky deleted while its dispatch runs has no row to record on; the
// attempt is still logged, exactly once, as a failure.
func TestDeletedDuringDispatchIsLogged(t *testing.T) {
	for what, dispatchErr := range map[string]error{"dispatch ok": nil, "dispatch failed": errWorkerDown} {
		t.Run(what, func(t *testing.T) {
			st := openStore(t)
			createDecky(t, st, "alpha", []string{"ssh"})
			target := mutator.TargetFunc(func(ctx context.Context, name string, _ []string, _ bool) error {
				if err := st.DeleteDecky(ctx, name); err != nil {
					return err
				}
				return dispatchErr
			})
			e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(target), Chooser: chooser(t, 22)})
			if _, err := e.MutateNow(t.Context(), "alpha"); err == nil {
				t.Fatal("MutateNow succeeded for a decky deleted during its dispatch")
			}
			evs := events(t, st, "alpha")
			if len(evs) != 1 || evs[0].Outcome != mutator.OutcomeFailed || evs[0].Error == "" {
				t.Fatalf("events %+v: want exactly one failed event", evs)
			}
		})
	}
}

// Each successful mutation writes its row and its event together: after N
// rotations the decky is at version N+1 with N ok events, the last one
// naming the services the row holds.
func TestMutationsRecordRowAndEventTogether(t *testing.T) {
	st := openStore(t)
	h := addHost(t, st, "worker-1")
	createDecky(t, st, "alpha", []string{"ssh"}, onHost(h.UUID))
	rec := newRecorder("w1")
	e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 23)})
	const n = 5
	for range n {
		if _, err := e.MutateNow(t.Context(), "alpha"); err != nil {
			t.Fatalf("MutateNow: %v", err)
		}
	}
	d := getDecky(t, st, "alpha")
	evs := events(t, st, "alpha")
	if d.Version != n+1 || len(evs) != n {
		t.Fatalf("version %d, %d events; want %d and %d", d.Version, len(evs), n+1, n)
	}
	last := evs[n-1]
	if last.Outcome != mutator.OutcomeOK || last.HostUUID != h.UUID || !sameSet(last.NewServices, d.Services) {
		t.Errorf("last event %+v vs row services %v", last, d.Services)
	}
}

// gatedDue is the real store whose ListDue, once armed, holds its (real)
// answer until released: the read predates whatever happens meanwhile.
type gatedDue struct {
	repository.Repository
	armed            atomic.Bool
	reached, release chan struct{}
}

func (g *gatedDue) ListDue(ctx context.Context, t time.Time, iv time.Duration) ([]repository.Decky, error) {
	due, err := g.Repository.ListDue(ctx, t, iv)
	if len(due) > 0 && g.armed.CompareAndSwap(true, false) {
		close(g.reached)
		<-g.release
	}
	return due, err
}

// A round that read a decky as due before another dispatch of it recorded
// its mutation must not dispatch it again from that stale row.
func TestStaleDueReadNotDispatched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		createDecky(t, st, "alpha", []string{"ssh"}, withInterval(10*time.Minute))
		g := &gatedDue{Repository: st, reached: make(chan struct{}), release: make(chan struct{})}
		g.armed.Store(true)
		rec := newRecorder("w1")
		e := mustEngine(t, mutator.Config{Store: g, Resolver: resolveTo(rec), Chooser: chooser(t, 24)})
		runEngine(t, e)

		time.Sleep(10 * time.Minute)
		<-g.reached // the round holds alpha's row as due
		if _, err := e.MutateNow(t.Context(), "alpha"); err != nil {
			t.Fatalf("MutateNow: %v", err)
		}
		close(g.release)
		synctest.Wait()
		if n := len(rec.Calls("alpha")); n != 1 {
			t.Errorf("%d dispatches, want 1 (the operator's): the round dispatched from its stale read", n)
		}
		evs := events(t, st, "alpha")
		if len(evs) != 1 || evs[0].Trigger != mutator.TriggerOperator {
			t.Fatalf("events %+v: want the operator's mutation only", evs)
		}
	})
}
