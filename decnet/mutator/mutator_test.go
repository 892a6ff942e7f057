package mutator_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func chooser(t *testing.T, seed uint64) *mutator.DefaultChooser {
	t.Helper()
	c, err := mutator.NewChooser(mutator.ChooserConfig{Rand: seeded(seed)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewRejectsBadConfig(t *testing.T) {
	st := openStore(t)
	neg := -time.Second
	for name, cfg := range map[string]mutator.Config{
		"no store":         {Resolver: resolveTo(newRecorder("w"))},
		"no resolver":      {Store: st},
		"negative conc":    {Store: st, Resolver: resolveTo(newRecorder("w")), Concurrency: -1},
		"negative default": {Store: st, Resolver: resolveTo(newRecorder("w")), DefaultInterval: &neg},
		"backoff order":    {Store: st, Resolver: resolveTo(newRecorder("w")), BackoffInitial: time.Minute, BackoffMax: time.Second},
	} {
		if _, err := mutator.New(cfg); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := mutator.New(mutator.Config{Store: st, Resolver: resolveTo(newRecorder("w")), Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := mutator.New(mutator.Config{Store: st, Resolver: resolveTo(newRecorder("w")), Registry: reg}); !errors.Is(err, decnet.ErrConflict) {
		t.Errorf("second registration on one registry = %v, want ErrConflict", err)
	}
}

// Two deckies due in 10 and 25 minutes: the engine sleeps until 10 without
// querying the store in between, mutates only the first, and rotates each
// on its own interval afterwards.
func TestDueAndNextDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		cs := &countingStore{Repository: st}
		t0 := time.Now()
		createDecky(t, st, "alpha", []string{"ssh"}, withInterval(10*time.Minute))
		createDecky(t, st, "bravo", []string{"http"}, withInterval(25*time.Minute))
		rec := newRecorder("w1")
		e := mustEngine(t, mutator.Config{Store: cs, Resolver: resolveTo(rec), Chooser: chooser(t, 1)})
		runEngine(t, e)

		synctest.Wait()
		if n := len(rec.Calls("")); n != 0 {
			t.Fatalf("%d dispatches at start, want none (nothing is due)", n)
		}
		rounds := cs.listDue.Load()
		time.Sleep(10*time.Minute - time.Millisecond)
		synctest.Wait()
		if n := len(rec.Calls("")); n != 0 {
			t.Fatalf("%d dispatches before 10 minutes", n)
		}
		if got := cs.listDue.Load(); got != rounds {
			t.Fatalf("ListDue called %d times while sleeping: the engine polled", got-rounds)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := callTimes(rec.Calls("alpha"), t0); !slices.Equal(got, []time.Duration{10 * time.Minute}) {
			t.Fatalf("alpha dispatched at %v, want [10m]", got)
		}
		if n := len(rec.Calls("bravo")); n != 0 {
			t.Fatalf("bravo dispatched %d times at 10m, want 0", n)
		}
		a := getDecky(t, st, "alpha")
		if !a.LastMutated.Equal(t0.Add(10*time.Minute)) || sameSet(a.Services, []string{"ssh"}) || !sameSet(a.Services, rec.Calls("alpha")[0].Services) {
			t.Fatalf("alpha after mutation: services %v last_mutated %v", a.Services, a.LastMutated.Sub(t0))
		}

		time.Sleep(30 * time.Minute) // up to 40m
		synctest.Wait()
		if got := callTimes(rec.Calls("alpha"), t0); !slices.Equal(got, []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute, 40 * time.Minute}) {
			t.Errorf("alpha dispatched at %v, want every 10m", got)
		}
		if got := callTimes(rec.Calls("bravo"), t0); !slices.Equal(got, []time.Duration{25 * time.Minute}) {
			t.Errorf("bravo dispatched at %v, want [25m]", got)
		}
		evs := events(t, st, "alpha")
		if len(evs) != 4 {
			t.Fatalf("alpha has %d events, want 4", len(evs))
		}
		ev := evs[0]
		if ev.Trigger != mutator.TriggerScheduled || ev.Outcome != mutator.OutcomeOK || ev.Actor != mutator.DefaultActor ||
			ev.HostName != "w1" || !slices.Equal(ev.OldServices, []string{"ssh"}) || !sameSet(ev.NewServices, rec.Calls("alpha")[0].Services) {
			t.Errorf("first alpha event = %+v", ev)
		}
		for i := 1; i < len(evs); i++ {
			if !slices.Equal(evs[i].OldServices, evs[i-1].NewServices) {
				t.Errorf("event %d old services %v, previous new %v", i, evs[i].OldServices, evs[i-1].NewServices)
			}
		}
	})
}

// New deckies are not due at once: their last_mutated is their creation
// time, including deckies created while the engine runs.
func TestNewDeckiesNotDueAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		t0 := time.Now()
		createDecky(t, st, "old", []string{"ssh"}) // default interval, 30 min
		rec := newRecorder("w1")
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 2)})
		runEngine(t, e)

		time.Sleep(20 * time.Minute)
		createDecky(t, st, "late", []string{"ssh"})
		e.Wake()
		synctest.Wait()
		if n := len(rec.Calls("")); n != 0 {
			t.Fatalf("%d dispatches at 20m, want none", n)
		}
		time.Sleep(40 * time.Minute) // 60m
		synctest.Wait()
		if got := callTimes(rec.Calls("old"), t0); !slices.Equal(got, []time.Duration{30 * time.Minute, 60 * time.Minute}) {
			t.Errorf("old dispatched at %v", got)
		}
		if got := callTimes(rec.Calls("late"), t0); !slices.Equal(got, []time.Duration{50 * time.Minute}) {
			t.Errorf("late dispatched at %v, want [50m] (created at 20m)", got)
		}
	})
}

// Interval zero, on the decky or as the default, never rotates on schedule;
// MutateNow still does.
func TestIntervalZeroNeverUnlessForced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		never := time.Duration(0)
		createDecky(t, st, "frozen", []string{"ssh"}, withInterval(0))
		createDecky(t, st, "inherits", []string{"ssh"}) // inherits the default, zero here
		rec := newRecorder("w1")
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 3), DefaultInterval: &never})
		runEngine(t, e)

		time.Sleep(1000 * time.Hour)
		synctest.Wait()
		if n := len(rec.Calls("")); n != 0 {
			t.Fatalf("%d dispatches over 1000h with interval 0", n)
		}
		res, err := e.MutateNow(t.Context(), "frozen")
		if err != nil {
			t.Fatalf("MutateNow: %v", err)
		}
		if len(res) != 1 || res[0].Err != nil || sameSet(res[0].New, []string{"ssh"}) {
			t.Fatalf("MutateNow result %+v", res)
		}
		if n := len(rec.Calls("frozen")); n != 1 {
			t.Fatalf("frozen dispatched %d times, want 1", n)
		}
		time.Sleep(1000 * time.Hour)
		synctest.Wait()
		if n := len(rec.Calls("")); n != 1 {
			t.Fatalf("%d dispatches after the forced one, want 1", n)
		}
	})
}

// MutateNow mutates a decky that is not due, records trigger operator and
// the actor, and moves the decky's next due time.
func TestMutateNowNotDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		t0 := time.Now()
		createDecky(t, st, "alpha", []string{"ssh", "http"}, withInterval(10*time.Minute))
		createDecky(t, st, "bravo", []string{"smb"}, withInterval(10*time.Minute))
		rec := newRecorder("w1")
		reg := prometheus.NewRegistry()
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 4), Registry: reg})
		runEngine(t, e)

		time.Sleep(4 * time.Minute)
		res, err := e.MutateNow(mutator.WithActor(t.Context(), "operator:alice"), "alpha")
		if err != nil || len(res) != 1 || res[0].Err != nil {
			t.Fatalf("MutateNow = %+v, %v", res, err)
		}
		evs := events(t, st, "alpha")
		if len(evs) != 1 || evs[0].Trigger != mutator.TriggerOperator || evs[0].Actor != "operator:alice" || evs[0].Outcome != mutator.OutcomeOK {
			t.Fatalf("events %+v", evs)
		}
		time.Sleep(20 * time.Minute) // 24m
		synctest.Wait()
		if got := callTimes(rec.Calls("alpha"), t0); !slices.Equal(got, []time.Duration{4 * time.Minute, 14 * time.Minute, 24 * time.Minute}) {
			t.Errorf("alpha dispatched at %v, want [4m 14m 24m]", got)
		}
		if got := callTimes(rec.Calls("bravo"), t0); !slices.Equal(got, []time.Duration{10 * time.Minute, 20 * time.Minute}) {
			t.Errorf("bravo dispatched at %v, want [10m 20m]", got)
		}
		if got := counter(t, reg, mutator.MetricMutations, map[string]string{"outcome": "ok", "trigger": "operator"}); got != 1 {
			t.Errorf("operator mutations metric = %v, want 1", got)
		}
		if got := counter(t, reg, mutator.MetricMutations, map[string]string{"outcome": "ok", "trigger": "scheduled"}); got != 4 {
			t.Errorf("scheduled mutations metric = %v, want 4", got)
		}
		if got := gauge(t, reg, mutator.MetricOverdue); got != 0 {
			t.Errorf("overdue gauge = %v after every due decky was rotated, want 0", got)
		}
	})
}

// Bad MutateNow input is rejected before anything is dispatched.
func TestMutateNowRejects(t *testing.T) {
	st := openStore(t)
	createDecky(t, st, "alpha", []string{"ssh"})
	createDecky(t, st, "fresh", []string{"ssh"}, inState(repository.DeckyPending))
	rec := newRecorder("w1")
	e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 5)})
	if _, err := e.MutateNow(t.Context(), "alpha", "ghost"); !errors.Is(err, decnet.ErrNotFound) {
		t.Errorf("unknown name: %v, want ErrNotFound", err)
	}
	if _, err := e.MutateNow(t.Context(), "fresh"); !errors.Is(err, decnet.ErrConflict) {
		t.Errorf("pending decky: %v, want ErrConflict", err)
	}
	if n := len(rec.Calls("")); n != 0 {
		t.Fatalf("%d dispatches after rejected calls", n)
	}
	if d := getDecky(t, st, "alpha"); d.Version != 1 || len(events(t, st, "")) != 0 {
		t.Fatalf("store changed by rejected calls: version %d", d.Version)
	}
	// No names: every rotatable decky (not the pending one).
	res, err := e.MutateNow(t.Context())
	if err != nil || len(res) != 1 || res[0].Decky != "alpha" {
		t.Fatalf("MutateNow() = %+v, %v", res, err)
	}
}

// A failing target backs off exponentially (capped) and records each
// failure, while a decky elsewhere keeps rotating on time; the failing decky
// recovers once its target does.
func TestFailingTargetBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		t0 := time.Now()
		createDecky(t, st, "sick", []string{"ssh"}, withInterval(10*time.Minute))
		createDecky(t, st, "well", []string{"http"}, withInterval(10*time.Minute))
		bad, good := newRecorder("dead-worker"), newRecorder("good-worker")
		bad.setFail(func(string) error { return errWorkerDown })
		res := mutator.ResolverFunc(func(_ context.Context, d repository.Decky) (mutator.Target, error) {
			if d.Name == "sick" {
				return bad, nil
			}
			return good, nil
		})
		reg := prometheus.NewRegistry()
		e := mustEngine(t, mutator.Config{Store: st, Resolver: res, Chooser: chooser(t, 6), Registry: reg,
			BackoffInitial: 30 * time.Second, BackoffMax: 8 * time.Minute})
		runEngine(t, e)

		time.Sleep(42 * time.Minute)
		synctest.Wait()
		m := func(s string) time.Duration { d, _ := time.ParseDuration(s); return d }
		want := []time.Duration{m("10m"), m("10m30s"), m("11m30s"), m("13m30s"), m("17m30s"), m("25m30s"), m("33m30s"), m("41m30s")}
		if got := callTimes(bad.Calls("sick"), t0); !slices.Equal(got, want) {
			t.Errorf("sick attempts at %v, want %v", got, want)
		}
		if got := callTimes(good.Calls("well"), t0); !slices.Equal(got, []time.Duration{m("10m"), m("20m"), m("30m"), m("40m")}) {
			t.Errorf("well dispatched at %v, want every 10m", got)
		}
		sick := getDecky(t, st, "sick")
		if sick.State != repository.DeckyDegraded || sick.LastError == "" || !slices.Equal(sick.Services, []string{"ssh"}) || !sick.LastMutated.Equal(t0) {
			t.Errorf("sick = state %s error %q services %v last_mutated %v", sick.State, sick.LastError, sick.Services, sick.LastMutated.Sub(t0))
		}
		evs := events(t, st, "sick")
		if len(evs) != len(want) {
			t.Fatalf("sick has %d events, want %d", len(evs), len(want))
		}
		for _, ev := range evs {
			if ev.Outcome != mutator.OutcomeFailed || ev.Error == "" || !slices.Equal(ev.OldServices, []string{"ssh"}) || len(ev.NewServices) == 0 || ev.HostName != "dead-worker" {
				t.Errorf("failure event %+v", ev)
			}
		}
		if got := counter(t, reg, mutator.MetricMutations, map[string]string{"outcome": "failed", "trigger": "scheduled"}); got != float64(len(want)) {
			t.Errorf("failed mutations metric = %v", got)
		}
		if got := gauge(t, reg, mutator.MetricOverdue); got < 1 {
			t.Errorf("overdue gauge = %v, want the sick decky counted", got)
		}

		bad.setFail(nil)
		time.Sleep(8 * time.Minute) // 50m: the retry at 49m30s succeeds
		synctest.Wait()
		sick = getDecky(t, st, "sick")
		if sick.State != repository.DeckyRunning || sick.LastError != "" || slices.Equal(sick.Services, []string{"ssh"}) ||
			!sick.LastMutated.Equal(t0.Add(m("49m30s"))) {
			t.Errorf("after recovery sick = state %s error %q services %v last_mutated %v", sick.State, sick.LastError, sick.Services, sick.LastMutated.Sub(t0))
		}
		time.Sleep(10 * time.Minute) // 60m: back on its interval (59m30s), no backoff left
		synctest.Wait()
		if got := callTimes(bad.Calls("sick"), t0); got[len(got)-1] != m("59m30s") {
			t.Errorf("sick after recovery dispatched at %v", got)
		}
	})
}

// A worker that hangs holds only its own host's slots: deckies on other
// hosts keep rotating on time.
func TestSlowWorkerDoesNotStallOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		t0 := time.Now()
		slowHost, fastHost := addHost(t, st, "slow"), addHost(t, st, "fast")
		for _, n := range []string{"s1", "s2", "s3", "s4"} {
			createDecky(t, st, n, []string{"ssh"}, onHost(slowHost.UUID), withInterval(10*time.Minute))
		}
		createDecky(t, st, "f1", []string{"ssh"}, onHost(fastHost.UUID), withInterval(10*time.Minute))
		slow, fast := newRecorder("slow"), newRecorder("fast")
		slow.block = make(chan struct{}) // never closed: the worker hangs
		res := mutator.ResolverFunc(func(_ context.Context, d repository.Decky) (mutator.Target, error) {
			if d.HostUUID == slowHost.UUID {
				return slow, nil
			}
			return fast, nil
		})
		e := mustEngine(t, mutator.Config{Store: st, Resolver: res, Chooser: chooser(t, 7),
			Concurrency: 3, HostConcurrency: 2, DispatchTimeout: time.Hour})
		runEngine(t, e)

		time.Sleep(35 * time.Minute)
		synctest.Wait()
		if got := callTimes(fast.Calls("f1"), t0); !slices.Equal(got, []time.Duration{10 * time.Minute, 20 * time.Minute, 30 * time.Minute}) {
			t.Errorf("f1 dispatched at %v, want every 10m despite the hung worker", got)
		}
		if n, m := len(slow.Calls("")), slow.maxInflight.Load(); n != 2 || m != 2 {
			t.Errorf("hung worker got %d calls, %d at once; want 2 (its host limit)", n, m)
		}
	})
}

// Dispatches never exceed the concurrency bound.
func TestConcurrencyBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		var hosts []repository.Host
		for i := range 4 {
			hosts = append(hosts, addHost(t, st, "h"+string(rune('a'+i))))
		}
		for i := range 20 {
			createDecky(t, st, "d"+string(rune('a'+i)), []string{"ssh"}, onHost(hosts[i%4].UUID), withInterval(time.Minute))
		}
		rec := newRecorder("w")
		rec.block = make(chan struct{})
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 8), Concurrency: 5, HostConcurrency: 4})
		runEngine(t, e)
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := rec.inflight.Load(); got != 5 {
			t.Errorf("%d dispatches in flight, want the bound 5", got)
		}
		close(rec.block)
		synctest.Wait()
		if got, m := len(rec.Calls("")), rec.maxInflight.Load(); got != 20 || m != 5 {
			t.Errorf("%d dispatches, at most %d at once; want 20 and 5", got, m)
		}
	})
}

// A chooser that cannot produce a different set is recorded as a failure,
// nothing is dispatched, and the decky backs off.
func TestChooserErrorRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		createDecky(t, st, "mono", []string{"ssh"}, withArchetype("ssh-only"), withInterval(10*time.Minute))
		c, err := mutator.NewChooser(mutator.ChooserConfig{Rand: seeded(9), Archetypes: mutator.Archetypes{"ssh-only": {Services: []string{"ssh"}, OS: decnet.OSLinux}}})
		if err != nil {
			t.Fatal(err)
		}
		rec := newRecorder("w")
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: c})
		runEngine(t, e)
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		if n := len(rec.Calls("")); n != 0 {
			t.Fatalf("%d dispatches for an unrotatable decky", n)
		}
		evs := events(t, st, "mono")
		if len(evs) != 2 || evs[0].Outcome != mutator.OutcomeFailed || evs[0].Error == "" || len(evs[0].NewServices) != 0 {
			t.Fatalf("events %+v, want 2 failures (at 10m and the 10m30s retry)", evs)
		}
		d := getDecky(t, st, "mono")
		if d.State != repository.DeckyRunning || d.LastError == "" {
			t.Errorf("decky state %s last_error %q: want its state kept and the error recorded", d.State, d.LastError)
		}
		_, err = e.MutateNow(t.Context(), "mono")
		if !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("MutateNow = %v, want ErrInvalid", err)
		}
	})
}

// A concurrent writer bumps the decky's version during the dispatch: the
// engine re-reads and records the mutation anyway.
func TestUpdateConflictRetried(t *testing.T) {
	st := openStore(t)
	createDecky(t, st, "alpha", []string{"ssh"})
	target := mutator.TargetFunc(func(ctx context.Context, name string, _ []string, _ bool) error {
		d, err := st.GetDecky(ctx, name)
		if err != nil {
			return err
		}
		d.Spec.Hostname = "renamed"
		_, err = st.UpdateDecky(ctx, d)
		return err
	})
	e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(target), Chooser: chooser(t, 10)})
	res, err := e.MutateNow(t.Context(), "alpha")
	if err != nil {
		t.Fatalf("MutateNow: %v", err)
	}
	d := getDecky(t, st, "alpha")
	if !slices.Equal(d.Services, res[0].New) || d.Spec.Hostname != "renamed" || d.Version != 3 {
		t.Errorf("decky %+v: want the new services over the concurrent write (version 3)", d)
	}
}

// Plan says what would happen and changes nothing; the target is asked
// for a dry run only.
func TestPlanHasNoSideEffect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		t0 := time.Now()
		createDecky(t, st, "alpha", []string{"ssh", "http"}, withInterval(10*time.Minute), withArchetype("linux-server"))
		rec := newRecorder("w1")
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 11)})
		time.Sleep(11 * time.Minute)
		p, err := e.Plan(t.Context(), "alpha")
		if err != nil {
			t.Fatalf("Plan: %v", err)
		}
		if p.Target != "w1" || !slices.Equal(p.Old, []string{"ssh", "http"}) || len(p.New) == 0 || sameSet(p.New, p.Old) ||
			!p.Due || !p.NextDue.Equal(t0.Add(10*time.Minute)) || p.Interval != 10*time.Minute {
			t.Errorf("plan %+v", p)
		}
		if diff := cmp.Diff(decnet.PlanMutation(p.Old, p.New), p.MutatePlan); diff != "" {
			t.Errorf("plan add/remove/keep (-want +got):\n%s", diff)
		}
		calls := rec.Calls("")
		if len(calls) != 1 || !calls[0].DryRun {
			t.Errorf("target calls %+v, want one dry run", calls)
		}
		if d := getDecky(t, st, "alpha"); d.Version != 1 || len(events(t, st, "")) != 0 {
			t.Errorf("Plan changed the store: version %d", d.Version)
		}
		if _, err := e.Plan(t.Context(), "ghost"); !errors.Is(err, decnet.ErrNotFound) {
			t.Errorf("Plan(ghost) = %v, want ErrNotFound", err)
		}
	})
}

func TestRunOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(newRecorder("w"))})
		stop := runEngine(t, e)
		synctest.Wait()
		if err := e.Run(t.Context()); !errors.Is(err, decnet.ErrConflict) {
			t.Errorf("second Run = %v, want ErrConflict", err)
		}
		if err := stop(); err != nil {
			t.Errorf("Run returned %v after cancel, want nil", err)
		}
	})
}

// The default resolver sends a decky with a host to that host's agent
// (one cached client per host) and a master-resident decky to the local
// target.
func TestResolverRoutes(t *testing.T) {
	st := openStore(t)
	h1, h2 := addHost(t, st, "worker-1"), addHost(t, st, "worker-2")
	swarm1 := createDecky(t, st, "swarm1", []string{"ssh"}, onHost(h1.UUID))
	swarm1b := createDecky(t, st, "swarm1b", []string{"ssh"}, onHost(h1.UUID))
	swarm2 := createDecky(t, st, "swarm2", []string{"ssh"}, onHost(h2.UUID))
	resident := createDecky(t, st, "resident", []string{"ssh"})
	local := newRecorder("local")
	made := map[string]int{}
	r, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: st, Local: local,
		NewClient: func(h repository.Host) (mutator.AgentClient, error) {
			made[h.Name]++
			return newAgentRecorder(), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	resolve := func(d repository.Decky) mutator.Target {
		t.Helper()
		tg, err := r.Resolve(t.Context(), d)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", d.Name, err)
		}
		return tg
	}
	t1, t1b, t2 := resolve(swarm1), resolve(swarm1b), resolve(swarm2)
	if _, ok := t1.(*mutator.AgentTarget); !ok || mutator.TargetName(t1) != "worker-1" || mutator.TargetName(t2) != "worker-2" {
		t.Errorf("swarm targets %T %q / %q", t1, mutator.TargetName(t1), mutator.TargetName(t2))
	}
	if t1 != t1b || made["worker-1"] != 1 || made["worker-2"] != 1 {
		t.Errorf("clients made %v; same host must share one", made)
	}
	if tl := resolve(resident); tl != mutator.Target(local) {
		t.Errorf("master-resident decky resolved to %T, want the local target", tl)
	}

	// A changed fingerprint (re-enrolled worker) gets a new client.
	h1.Fingerprint = fakeFingerprint("worker-1-new")
	if _, err := st.UpdateHost(t.Context(), h1); err != nil {
		t.Fatal(err)
	}
	if resolve(swarm1) == t1 || made["worker-1"] != 2 {
		t.Errorf("client not replaced after the host's fingerprint changed: %v", made)
	}
	// An unknown host is ErrNotFound; a resolver without a local target
	// refuses master-resident deckies.
	ghost := swarm1
	ghost.HostUUID = "00000000-0000-4000-8000-000000000000"
	if _, err := r.Resolve(t.Context(), ghost); !errors.Is(err, decnet.ErrNotFound) {
		t.Errorf("unknown host: %v, want ErrNotFound", err)
	}
	r2, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: st, NewClient: func(repository.Host) (mutator.AgentClient, error) { return newAgentRecorder(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Resolve(t.Context(), resident); !errors.Is(err, decnet.ErrNotFound) {
		t.Errorf("no local target: %v, want ErrNotFound", err)
	}
	if _, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: st}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("resolver without credentials: %v, want ErrInvalid", err)
	}
}

// Through the engine: the swarm decky goes to its agent, the master-resident
// one to the local engine, each with the services the engine chose.
func TestEngineDispatchesByPlacement(t *testing.T) {
	st := openStore(t)
	h := addHost(t, st, "worker-1")
	createDecky(t, st, "swarm1", []string{"ssh"}, onHost(h.UUID))
	createDecky(t, st, "resident", []string{"ssh"})
	agents := map[string]*agentRecorder{}
	eng := &engineRecorder{}
	local, err := mutator.NewLocalTarget(mutator.LocalConfig{Engine: eng, Deckies: st, Network: testNetwork()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: st, Local: local,
		NewClient: func(h repository.Host) (mutator.AgentClient, error) {
			a := newAgentRecorder()
			agents[h.Name] = a
			return a, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	e := mustEngine(t, mutator.Config{Store: st, Resolver: r, Chooser: chooser(t, 12)})
	res, err := e.MutateNow(t.Context())
	if err != nil {
		t.Fatalf("MutateNow: %v", err)
	}
	byName := map[string]mutator.Result{}
	for _, x := range res {
		byName[x.Decky] = x
	}
	a := agents["worker-1"]
	if a == nil || len(a.calls) != 1 || a.calls[0].Decky != "swarm1" || !slices.Equal(a.calls[0].Services, byName["swarm1"].New) || byName["swarm1"].Target != "worker-1" {
		t.Errorf("agent calls %+v, result %+v", a, byName["swarm1"])
	}
	if len(eng.calls) != 1 || eng.calls[0].name != "resident" || byName["resident"].Target != "local" {
		t.Fatalf("local engine calls %+v, result %+v", eng.calls, byName["resident"])
	}
	cfg := eng.calls[0].cfg
	if d, ok := cfg.Decky("resident"); !ok || !slices.Equal(d.Services, byName["resident"].New) || cfg.Network != testNetwork() {
		t.Errorf("local engine got config %+v", cfg)
	}
	for _, name := range []string{"swarm1", "resident"} {
		if evs := events(t, st, name); len(evs) != 1 || evs[0].HostName != byName[name].Target {
			t.Errorf("%s events %+v", name, evs)
		}
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// When Run's context ends, a dispatch in flight may finish within the grace
// period and its outcome is recorded; one that does not is cancelled and
// recorded as failed.
func TestShutdownGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		createDecky(t, st, "finishes", []string{"ssh"}, withInterval(time.Minute))
		createDecky(t, st, "hangs", []string{"ssh"}, withInterval(time.Minute))
		release := make(chan struct{})
		target := mutator.TargetFunc(func(ctx context.Context, name string, _ []string, _ bool) error {
			if name == "finishes" {
				<-release // ignores ctx: finishes after Run's context ended
				return nil
			}
			<-ctx.Done()
			return ctx.Err()
		})
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(target), Chooser: chooser(t, 13), ShutdownGrace: 10 * time.Second})
		stop := runEngine(t, e)
		time.Sleep(time.Minute)
		synctest.Wait() // both dispatches in flight
		stopped := make(chan error, 1)
		start := time.Now()
		go func() { stopped <- stop() }()
		synctest.Wait()
		close(release)
		if err := <-stopped; err != nil {
			t.Fatalf("Run: %v", err)
		}
		if waited := time.Since(start); waited != 10*time.Second {
			t.Errorf("Run returned after %v, want the 10s grace", waited)
		}
		if evs := events(t, st, "finishes"); len(evs) != 1 || evs[0].Outcome != mutator.OutcomeOK {
			t.Errorf("finishes events %+v, want one ok", evs)
		}
		if d := getDecky(t, st, "finishes"); slices.Equal(d.Services, []string{"ssh"}) {
			t.Errorf("finishes kept its old services after a completed dispatch")
		}
		evs := events(t, st, "hangs")
		if len(evs) != 1 || evs[0].Outcome != mutator.OutcomeFailed {
			t.Errorf("hangs events %+v, want one failure", evs)
		}
		if d := getDecky(t, st, "hangs"); d.State != repository.DeckyDegraded || !slices.Equal(d.Services, []string{"ssh"}) {
			t.Errorf("hangs = %s %v, want degraded with its old services", d.State, d.Services)
		}
	})
}

// A dispatch that waited for its host's slot reads the decky again, so a
// decky reassigned meanwhile goes to its new host.
func TestWaitingDispatchSeesReassignment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		h1, h2 := addHost(t, st, "one"), addHost(t, st, "two")
		createDecky(t, st, "a1", []string{"ssh"}, onHost(h1.UUID), withInterval(time.Minute))
		createDecky(t, st, "a2", []string{"ssh"}, onHost(h1.UUID), withInterval(time.Minute))
		one, two := newRecorder("one"), newRecorder("two")
		one.block = make(chan struct{})
		res := mutator.ResolverFunc(func(_ context.Context, d repository.Decky) (mutator.Target, error) {
			if d.HostUUID == h1.UUID {
				return one, nil
			}
			return two, nil
		})
		e := mustEngine(t, mutator.Config{Store: st, Resolver: res, Chooser: chooser(t, 14), HostConcurrency: 1})
		runEngine(t, e)
		time.Sleep(time.Minute)
		synctest.Wait() // a1 holds host one's only slot; a2 waits for it
		if n := len(one.Calls("")); n != 1 {
			t.Fatalf("host one got %d calls, want 1", n)
		}
		waiting := one.Calls("")[0].Decky
		moved := map[string]string{"a1": "a2", "a2": "a1"}[waiting]
		d := getDecky(t, st, moved)
		if _, err := st.AssignDecky(t.Context(), moved, h2.UUID, d.Version); err != nil {
			t.Fatal(err)
		}
		close(one.block)
		synctest.Wait()
		if n := len(two.Calls(moved)); n != 1 {
			t.Errorf("moved decky %s dispatched %d times to its new host, want 1", moved, n)
		}
		if n := len(one.Calls(moved)); n != 0 {
			t.Errorf("moved decky %s dispatched %d times to its old host", moved, n)
		}
		if evs := events(t, st, moved); len(evs) != 1 || evs[0].HostUUID != h2.UUID || evs[0].Outcome != mutator.OutcomeOK {
			t.Errorf("moved decky events %+v", evs)
		}
	})
}

// A decky moved while its dispatch runs is not recorded as mutated on its
// new host.
func TestMovedDuringDispatch(t *testing.T) {
	st := openStore(t)
	h1, h2 := addHost(t, st, "one"), addHost(t, st, "two")
	createDecky(t, st, "a1", []string{"ssh"}, onHost(h1.UUID))
	target := mutator.TargetFunc(func(ctx context.Context, name string, _ []string, _ bool) error {
		d, err := st.GetDecky(ctx, name)
		if err != nil {
			return err
		}
		_, err = st.AssignDecky(ctx, name, h2.UUID, d.Version)
		return err
	})
	e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(target), Chooser: chooser(t, 15)})
	if _, err := e.MutateNow(t.Context(), "a1"); !errors.Is(err, decnet.ErrConflict) {
		t.Fatalf("MutateNow = %v, want ErrConflict", err)
	}
	d := getDecky(t, st, "a1")
	if !slices.Equal(d.Services, []string{"ssh"}) || d.HostUUID != h2.UUID || d.State != repository.DeckyRunning {
		t.Errorf("decky after a move during dispatch: %v on %s, %s", d.Services, d.HostUUID, d.State)
	}
	if evs := events(t, st, "a1"); len(evs) != 1 || evs[0].Outcome != mutator.OutcomeFailed || evs[0].HostUUID != h1.UUID {
		t.Errorf("events %+v", evs)
	}
}

// With Resync, a decky written to the store without a Wake (by another
// process) is picked up at the next resync, not only at the next known due
// time.
func TestResyncPicksUpOutsideWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := openStore(t)
		t0 := time.Now()
		createDecky(t, st, "slow", []string{"ssh"}, withInterval(time.Hour))
		rec := newRecorder("w")
		e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 17), Resync: time.Minute})
		runEngine(t, e)
		time.Sleep(5*time.Minute + 10*time.Second)                                 // between two resyncs
		createDecky(t, st, "quick", []string{"ssh"}, withInterval(20*time.Second)) // no Wake
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		got := callTimes(rec.Calls("quick"), t0)
		if len(got) == 0 || got[0] != 6*time.Minute {
			t.Errorf("quick dispatched at %v, want first at 6m (the resync after it became due at 5m30s)", got)
		}
	})
}

// A failing dry run fails Plan, with the plan filled as far as it got.
func TestPlanDryRunFails(t *testing.T) {
	st := openStore(t)
	createDecky(t, st, "alpha", []string{"ssh"})
	rec := newRecorder("down")
	rec.setFail(func(string) error { return errWorkerDown })
	e := mustEngine(t, mutator.Config{Store: st, Resolver: resolveTo(rec), Chooser: chooser(t, 18)})
	p, err := e.Plan(t.Context(), "alpha")
	if !errors.Is(err, decnet.ErrUnavailable) {
		t.Fatalf("Plan = %v, want ErrUnavailable", err)
	}
	if p.Target != "down" || len(p.New) == 0 || !slices.Equal(p.Old, []string{"ssh"}) {
		t.Errorf("plan %+v", p)
	}
	if len(events(t, st, "")) != 0 || getDecky(t, st, "alpha").State != repository.DeckyRunning {
		t.Error("a failed Plan recorded something")
	}
}
