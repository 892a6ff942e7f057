package repotest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// The outcome records: UpdateDeckyWithEvent and SetDeckyStateWithEvent
// write a decky and its audit event in one transaction.

func deckyEvents(t *testing.T, r repository.Repository, decky string) []repository.Event {
	t.Helper()
	evs, _, err := r.ListEvents(ctxOf(t), repository.EventFilter{Decky: decky, Limit: repository.MaxEventLimit})
	noErr(t, "ListEvents", err)
	return evs
}

func mutatedEvent(old, new []string) repository.Event {
	return repository.Event{Kind: "decky_mutated", Actor: "mutator", Trigger: "scheduled",
		OldServices: old, NewServices: new, Outcome: "ok", Detail: map[string]string{"took": "1s"}}
}

func testUpdateDeckyWithEvent(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	d := mustCreateDecky(t, r, deckyOn("d1", h.UUID, "ssh"))
	d.Services = []string{"smb", "rdp"}
	d.State = repository.DeckyRunning
	row, ev, err := r.UpdateDeckyWithEvent(ctx, d, mutatedEvent([]string{"ssh"}, []string{"smb", "rdp"}))
	noErr(t, "UpdateDeckyWithEvent", err)
	if row.Version != 2 || ev.ID == 0 || ev.Decky != "d1" || ev.HostUUID != h.UUID || ev.Time.IsZero() {
		t.Fatalf("UpdateDeckyWithEvent: row v%d, event %+v (want v2, an id, decky and host filled in)", row.Version, ev)
	}
	got, _ := r.GetDecky(ctx, "d1")
	diff(t, "row as returned", row, got)
	diff(t, "services written", []string{"smb", "rdp"}, got.Services)
	diff(t, "events as returned", []repository.Event{ev}, deckyEvents(t, r, "d1"))

	// Everything refused writes neither the row nor an event.
	refused := map[string]struct {
		d     func(*repository.Decky)
		ev    func(*repository.Event)
		class error
	}{
		"stale version":     {func(x *repository.Decky) { x.Version = d.Version }, nil, decnet.ErrConflict},
		"future version":    {func(x *repository.Decky) { x.Version += 5 }, nil, decnet.ErrConflict},
		"move":              {func(x *repository.Decky) { x.HostUUID, x.Spec.HostUUID = "", "" }, nil, decnet.ErrConflict},
		"unknown decky":     {func(x *repository.Decky) { x.Name, x.Spec.Name = "ghost", "ghost" }, nil, decnet.ErrNotFound},
		"bad services":      {func(x *repository.Decky) { x.Services = []string{"SSH!"} }, nil, decnet.ErrInvalid},
		"event kind":        {nil, func(e *repository.Event) { e.Kind = "" }, decnet.ErrInvalid},
		"event id":          {nil, func(e *repository.Event) { e.ID = 7 }, decnet.ErrInvalid},
		"event decky other": {nil, func(e *repository.Event) { e.Decky = "d2" }, decnet.ErrInvalid},
	}
	for what, c := range refused {
		x := row
		x.Spec = row.Spec.Clone()
		x.Services = []string{"ftp"}
		if c.d != nil {
			c.d(&x)
		}
		e := mutatedEvent(row.Services, x.Services)
		if c.ev != nil {
			c.ev(&e)
		}
		_, _, err := r.UpdateDeckyWithEvent(ctx, x, e)
		wantErr(t, "UpdateDeckyWithEvent "+what, err, c.class)
		got, _ := r.GetDecky(ctx, "d1")
		diff(t, "row after refused "+what, row, got)
		diff(t, "events after refused "+what, []repository.Event{ev}, deckyEvents(t, r, "d1"))
		if all, _, _ := r.ListEvents(ctx, repository.EventFilter{}); len(all) != 1 {
			t.Fatalf("refused %s appended an event: %+v", what, all)
		}
	}

	// An event's own HostUUID and Decky (equal to the row's) are kept.
	row.Services = []string{"http"}
	e := mutatedEvent([]string{"smb", "rdp"}, []string{"http"})
	e.Decky, e.HostUUID = "d1", "recorded-elsewhere"
	row2, ev2, err := r.UpdateDeckyWithEvent(ctx, row, e)
	noErr(t, "UpdateDeckyWithEvent with host", err)
	if ev2.HostUUID != "recorded-elsewhere" || ev2.ID <= ev.ID || row2.Version != 3 {
		t.Fatalf("second record: row v%d event %+v", row2.Version, ev2)
	}
}

func testSetDeckyStateWithEvent(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	d := mustCreateDecky(t, r, deckyOn("d1", h.UUID))
	m := mustCreateDecky(t, r, deckyOn("m1", ""))
	failed := repository.Event{Kind: "decky_mutated", Actor: "mutator", Outcome: "failed", Error: "worker unreachable"}
	ev, err := r.SetDeckyStateWithEvent(ctx, "d1", repository.DeckyDegraded, "worker unreachable", failed)
	noErr(t, "SetDeckyStateWithEvent", err)
	if ev.ID == 0 || ev.Decky != "d1" || ev.HostUUID != h.UUID || ev.Outcome != "failed" {
		t.Fatalf("event %+v: want an id, decky and host filled in", ev)
	}
	got, _ := r.GetDecky(ctx, "d1")
	if got.State != repository.DeckyDegraded || got.LastError != "worker unreachable" || got.Version != d.Version {
		t.Fatalf("row after SetDeckyStateWithEvent: %q %q v%d (want degraded, the error, version unchanged)",
			got.State, got.LastError, got.Version)
	}
	diff(t, "events", []repository.Event{ev}, deckyEvents(t, r, "d1"))
	// A master-resident decky's event has no host.
	mev, err := r.SetDeckyStateWithEvent(ctx, "m1", repository.DeckyFailed, "x", failed)
	noErr(t, "SetDeckyStateWithEvent master-resident", err)
	if mev.HostUUID != "" || mev.Decky != m.Name {
		t.Fatalf("master-resident event %+v", mev)
	}

	before := got
	for what, c := range map[string]struct {
		name  string
		state repository.DeckyState
		ev    func(*repository.Event)
		class error
	}{
		"unknown decky":     {"ghost", repository.DeckyFailed, nil, decnet.ErrNotFound},
		"empty name":        {"", repository.DeckyFailed, nil, decnet.ErrInvalid},
		"bad state":         {"d1", "asleep", nil, decnet.ErrInvalid},
		"event kind":        {"d1", repository.DeckyFailed, func(e *repository.Event) { e.Kind = "" }, decnet.ErrInvalid},
		"event id":          {"d1", repository.DeckyFailed, func(e *repository.Event) { e.ID = 1 }, decnet.ErrInvalid},
		"event decky other": {"d1", repository.DeckyFailed, func(e *repository.Event) { e.Decky = "m1" }, decnet.ErrInvalid},
	} {
		e := failed
		if c.ev != nil {
			c.ev(&e)
		}
		_, err := r.SetDeckyStateWithEvent(ctx, c.name, c.state, "refused", e)
		wantErr(t, "SetDeckyStateWithEvent "+what, err, c.class)
		got, _ := r.GetDecky(ctx, "d1")
		diff(t, "row after refused "+what, before, got)
		if all, _, _ := r.ListEvents(ctx, repository.EventFilter{}); len(all) != 2 {
			t.Fatalf("refused %s appended an event: %d events", what, len(all))
		}
	}
}

// testConcurrentOutcomesVisibleTogether: one writer records 40 mutations
// with UpdateDeckyWithEvent while readers look at the row and the log in
// both orders. Each record bumps the version by one and appends one event,
// so a reader must always find events = version - 1: more events than that
// (read after the row) would be an event without its change, fewer (read
// before the row) a change without its event.
func testConcurrentOutcomesVisibleTogether(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	const records, readers = 40, 3
	mustCreateDecky(t, r, deckyOn("hot", "", "ssh"))
	count := func() (int, error) {
		evs, _, err := r.ListEvents(ctx, repository.EventFilter{Decky: "hot", Limit: repository.MaxEventLimit})
		return len(evs), err
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, readers)
	reads := make([]int, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				d, err := r.GetDecky(ctx, "hot")
				if err != nil {
					errs[i] = err
					return
				}
				n, err := count()
				if err != nil {
					errs[i] = err
					return
				}
				if int64(n) < d.Version-1 {
					errs[i] = fmt.Errorf("row at version %d but only %d events: a change without its event", d.Version, n)
					return
				}
				n, err = count()
				if err != nil {
					errs[i] = err
					return
				}
				d, err = r.GetDecky(ctx, "hot")
				if err != nil {
					errs[i] = err
					return
				}
				if int64(n) > d.Version-1 {
					errs[i] = fmt.Errorf("%d events but the row at version %d: an event without its change", n, d.Version)
					return
				}
				reads[i]++
			}
		}()
	}
	var werr error
	for i := range records {
		d, err := r.GetDecky(ctx, "hot")
		if err != nil {
			werr = err
			break
		}
		svc := fmt.Sprintf("svc%02d", i)
		old := d.Services
		d.Services = []string{svc}
		if _, _, err := r.UpdateDeckyWithEvent(ctx, d, mutatedEvent(old, d.Services)); err != nil {
			werr = fmt.Errorf("record %d: %w", i, err)
			break
		}
	}
	close(done)
	wg.Wait()
	noErr(t, "writer", werr)
	for i, err := range errs {
		noErr(t, fmt.Sprintf("reader %d", i), err)
	}
	final, _ := r.GetDecky(ctx, "hot")
	n, err := count()
	noErr(t, "count events", err)
	if final.Version != records+1 || n != records {
		t.Fatalf("after %d records: version %d, %d events", records, final.Version, n)
	}
}

// testConcurrentStaleOutcomesOneEvent: 20 writers holding the same version
// record a mutation each: exactly one succeeds and exactly one event is
// appended, the winner's.
func testConcurrentStaleOutcomesOneEvent(t *testing.T, open Open) {
	r := open(t)
	base := mustCreateDecky(t, r, deckyOn("hot", "", "ssh"))
	var (
		mu  sync.Mutex
		won []repository.Event
	)
	staleRace(t, r, base, func(d repository.Decky) error {
		_, ev, err := r.UpdateDeckyWithEvent(ctxOf(t), d, mutatedEvent(base.Services, d.Services))
		if err == nil {
			mu.Lock()
			won = append(won, ev)
			mu.Unlock()
		}
		return err
	})
	diff(t, "the one event is the winner's", won, deckyEvents(t, r, "hot"))
}
