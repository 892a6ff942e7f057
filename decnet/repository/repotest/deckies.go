package repotest

import (
	"slices"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

func dur(d time.Duration) *time.Duration { return &d }

func testDeckyCRUD(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	in := deckyOn("web-01", h.UUID, "http", "ssh")
	in.MutateInterval = dur(90 * time.Minute)
	d, err := r.CreateDecky(ctx, in)
	noErr(t, "CreateDecky", err)
	if d.Version != 1 || d.State != repository.DeckyPending || d.CreatedAt.IsZero() ||
		!d.LastMutated.Equal(d.CreatedAt) || !d.UpdatedAt.Equal(d.CreatedAt) {
		t.Fatalf("CreateDecky defaults: %+v", d)
	}
	diff(t, "spec services", d.Services, d.Spec.Services)
	if !d.Spec.LastMutated.Equal(d.LastMutated) || d.Spec.Name != d.Name {
		t.Fatalf("spec not kept in step: last mutated %v vs %v, name %q", d.Spec.LastMutated, d.LastMutated, d.Spec.Name)
	}
	if d.Spec.HostUUID != h.UUID || d.Spec.MutateInterval == nil || d.Spec.MutateInterval.D() != 90*time.Minute {
		t.Fatalf("spec not kept in step: host %q interval %v", d.Spec.HostUUID, d.Spec.MutateInterval)
	}
	got, err := r.GetDecky(ctx, "web-01")
	noErr(t, "GetDecky", err)
	diff(t, "GetDecky", d, got)
	if got.Spec.ServiceConfig["ssh"]["SSH_PASSWORD"] != "hunter2" || got.Spec.Hostname != "web-01.corp" {
		t.Fatalf("spec not stored: %+v", got.Spec)
	}

	// A spec-only create takes its name, services and host from the spec.
	spec := decnet.Decky{Name: "db-01", Services: []string{"mysql"}, HostUUID: h.UUID, MutateInterval: decnet.Interval(0)}
	d2, err := r.CreateDecky(ctx, repository.Decky{Spec: spec})
	noErr(t, "CreateDecky from spec", err)
	if d2.Name != "db-01" || d2.HostUUID != h.UUID || !slices.Equal(d2.Services, []string{"mysql"}) ||
		d2.MutateInterval == nil || *d2.MutateInterval != 0 {
		t.Fatalf("spec-only create: %+v", d2)
	}

	_, err = r.CreateDecky(ctx, deckyOn("web-01", ""))
	wantErr(t, "duplicate decky", err, decnet.ErrConflict)
	_, err = r.CreateDecky(ctx, deckyOn("web-02", "no-such-host"))
	wantErr(t, "decky on unknown host", err, decnet.ErrNotFound)
	_, err = r.GetDecky(ctx, "web-02")
	wantErr(t, "decky rejected for unknown host", err, decnet.ErrNotFound)
	_, err = r.GetDecky(ctx, "nobody")
	wantErr(t, "GetDecky unknown", err, decnet.ErrNotFound)

	noErr(t, "DeleteDecky", r.DeleteDecky(ctx, "web-01"))
	_, err = r.GetDecky(ctx, "web-01")
	wantErr(t, "GetDecky deleted", err, decnet.ErrNotFound)
	wantErr(t, "DeleteDecky again", r.DeleteDecky(ctx, "web-01"), decnet.ErrNotFound)
	wantErr(t, "DeleteDecky empty", r.DeleteDecky(ctx, ""), decnet.ErrInvalid)
	// The name is free again.
	mustCreateDecky(t, r, deckyOn("web-01", ""))
}

func testDeckyListFilters(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h1 := mustAddHost(t, r, "worker-1")
	h2 := mustAddHost(t, r, "worker-2")
	for _, c := range []struct{ name, host string }{
		{"m", h1.UUID}, {"b", h2.UUID}, {"z", ""}, {"a", h1.UUID}, {"k", ""}, {"c", h1.UUID},
	} {
		mustCreateDecky(t, r, deckyOn(c.name, c.host))
	}
	noErr(t, "SetDeckyState", r.SetDeckyState(ctx, "c", repository.DeckyFailed, "boom"))
	noErr(t, "SetDeckyState", r.SetDeckyState(ctx, "k", repository.DeckyFailed, "boom"))
	for what, c := range map[string]struct {
		f    repository.DeckyFilter
		want []string
	}{
		"all":              {repository.DeckyFilter{}, []string{"a", "b", "c", "k", "m", "z"}},
		"host 1":           {repository.DeckyFilter{HostUUID: h1.UUID}, []string{"a", "c", "m"}},
		"host 2":           {repository.DeckyFilter{HostUUID: h2.UUID}, []string{"b"}},
		"unknown host":     {repository.DeckyFilter{HostUUID: "nobody"}, nil},
		"unassigned":       {repository.DeckyFilter{Unassigned: true}, []string{"k", "z"}},
		"failed":           {repository.DeckyFilter{State: repository.DeckyFailed}, []string{"c", "k"}},
		"failed on host 1": {repository.DeckyFilter{HostUUID: h1.UUID, State: repository.DeckyFailed}, []string{"c"}},
		"pending":          {repository.DeckyFilter{State: repository.DeckyPending}, []string{"a", "b", "m", "z"}},
	} {
		ds, err := r.ListDeckies(ctx, c.f)
		noErr(t, "ListDeckies "+what, err)
		diff(t, "ListDeckies "+what, c.want, deckyNames(ds))
	}
	_, err := r.ListDeckies(ctx, repository.DeckyFilter{State: "asleep"})
	wantErr(t, "ListDeckies bad state", err, decnet.ErrInvalid)
	_, err = r.ListDeckies(ctx, repository.DeckyFilter{HostUUID: h1.UUID, Unassigned: true})
	wantErr(t, "ListDeckies host and unassigned", err, decnet.ErrInvalid)
}

func testDeckyUpdateVersions(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	d := mustCreateDecky(t, r, deckyOn("d1", ""))
	mutated := time.Now().Add(time.Minute)
	d.Services = []string{"smb", "rdp"}
	d.LastMutated = mutated
	d.MutateInterval = dur(time.Hour)
	d.Spec.Hostname = "fileserver"
	d2, err := r.UpdateDecky(ctx, d)
	noErr(t, "UpdateDecky", err)
	if d2.Version != 2 || !d2.LastMutated.Equal(micro(mutated)) || d2.UpdatedAt.Before(d2.CreatedAt) ||
		d2.State != repository.DeckyPending {
		t.Fatalf("UpdateDecky result: %+v", d2)
	}
	diff(t, "spec services follow services", []string{"smb", "rdp"}, d2.Spec.Services)
	got, _ := r.GetDecky(ctx, "d1")
	diff(t, "updated decky", d2, got)

	_, err = r.UpdateDecky(ctx, d) // still version 1
	wantErr(t, "stale UpdateDecky", err, decnet.ErrConflict)
	got, _ = r.GetDecky(ctx, "d1")
	diff(t, "decky after stale update", d2, got)

	ghost := d2
	ghost.Name, ghost.Spec.Name = "ghost", "ghost"
	_, err = r.UpdateDecky(ctx, ghost)
	wantErr(t, "UpdateDecky unknown", err, decnet.ErrNotFound)

	// Runtime-only writes do not bump the version.
	noErr(t, "SetDeckyState", r.SetDeckyState(ctx, "d1", repository.DeckyDegraded, "x"))
	got, _ = r.GetDecky(ctx, "d1")
	if got.Version != 2 {
		t.Fatalf("SetDeckyState bumped the version to %d", got.Version)
	}
	// Clearing the interval makes the decky inherit the default again.
	got.MutateInterval, got.Spec.MutateInterval = nil, nil
	d3, err := r.UpdateDecky(ctx, got)
	noErr(t, "UpdateDecky clear interval", err)
	got, _ = r.GetDecky(ctx, "d1")
	if got.MutateInterval != nil || got.Version != 3 {
		t.Fatalf("cleared interval: %v v%d", got.MutateInterval, got.Version)
	}
	diff(t, "decky after clearing interval", d3, got)
}

func testDeckyUpdateNeverMoves(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h1 := mustAddHost(t, r, "worker-1")
	h2 := mustAddHost(t, r, "worker-2")
	d := mustCreateDecky(t, r, deckyOn("d1", h1.UUID))
	for what, host := range map[string]string{"other host": h2.UUID, "no host": "", "unknown host": "nobody"} {
		m := d
		m.HostUUID, m.Spec.HostUUID = host, host
		_, err := r.UpdateDecky(ctx, m)
		wantErr(t, "UpdateDecky to "+what, err, decnet.ErrConflict)
	}
	got, _ := r.GetDecky(ctx, "d1")
	diff(t, "decky after refused moves", d, got)
}

func testDeckyRejectsBadInput(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	bad := map[string]func(*repository.Decky){
		"empty name":        func(d *repository.Decky) { d.Name, d.Spec.Name = "", "" },
		"bad name":          func(d *repository.Decky) { d.Name, d.Spec.Name = "Web_01", "Web_01" },
		"spec name differs": func(d *repository.Decky) { d.Spec.Name = "other" },
		"no services":       func(d *repository.Decky) { d.Services, d.Spec.Services = nil, nil },
		"dup services":      func(d *repository.Decky) { d.Services = []string{"ssh", "ssh"} },
		"bad service":       func(d *repository.Decky) { d.Services = []string{"SSH!"} },
		"bad state":         func(d *repository.Decky) { d.State = "sleeping" },
		"negative interval": func(d *repository.Decky) { d.MutateInterval = dur(-time.Second) },
		"bad os":            func(d *repository.Decky) { d.Spec.OS = "plan9" },
		"bad hostname":      func(d *repository.Decky) { d.Spec.Hostname = "-x-" },
		"bad host uuid":     func(d *repository.Decky) { d.HostUUID = "a b" },
	}
	for what, mutate := range bad {
		d := deckyOn("d1", "")
		mutate(&d)
		_, err := r.CreateDecky(ctx, d)
		wantErr(t, "CreateDecky "+what, err, decnet.ErrInvalid)
	}
	ds, err := r.ListDeckies(ctx, repository.DeckyFilter{})
	noErr(t, "ListDeckies", err)
	if len(ds) != 0 {
		t.Fatalf("rejected deckies were written: %v", deckyNames(ds))
	}
	good := mustCreateDecky(t, r, deckyOn("d1", ""))
	for what, mutate := range bad {
		switch what {
		case "bad host uuid", "empty name":
			continue // those fail as a move or a lookup, tested elsewhere
		case "bad state":
			continue // UpdateDecky ignores the runtime fields (testRuntimeFieldsSurviveUpdates)
		}
		d := good
		d.Spec = good.Spec.Clone()
		mutate(&d)
		_, err := r.UpdateDecky(ctx, d)
		wantErr(t, "UpdateDecky "+what, err, decnet.ErrInvalid)
	}
	got, _ := r.GetDecky(ctx, "d1")
	diff(t, "decky after rejected updates", good, got)
	_, err = r.GetDecky(ctx, "")
	wantErr(t, "GetDecky empty", err, decnet.ErrInvalid)
}

func testAssignDecky(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h1 := mustAddHost(t, r, "worker-1")
	h2 := mustAddHost(t, r, "worker-2")
	d := mustCreateDecky(t, r, deckyOn("d1", ""))
	a, err := r.AssignDecky(ctx, "d1", h1.UUID, d.Version)
	noErr(t, "AssignDecky", err)
	if a.HostUUID != h1.UUID || a.Spec.HostUUID != h1.UUID || a.Version != 2 {
		t.Fatalf("assigned: host %q spec host %q v%d", a.HostUUID, a.Spec.HostUUID, a.Version)
	}
	got, _ := r.GetDecky(ctx, "d1")
	diff(t, "assigned decky", a, got)

	_, err = r.AssignDecky(ctx, "d1", h2.UUID, d.Version)
	wantErr(t, "stale AssignDecky", err, decnet.ErrConflict)
	_, err = r.AssignDecky(ctx, "d1", "no-such-host", a.Version)
	wantErr(t, "AssignDecky to unknown host", err, decnet.ErrNotFound)
	_, err = r.AssignDecky(ctx, "ghost", h2.UUID, 1)
	wantErr(t, "AssignDecky unknown decky", err, decnet.ErrNotFound)
	_, err = r.AssignDecky(ctx, "", h2.UUID, 1)
	wantErr(t, "AssignDecky empty name", err, decnet.ErrInvalid)
	got, _ = r.GetDecky(ctx, "d1")
	diff(t, "decky after refused assignments", a, got)

	b, err := r.AssignDecky(ctx, "d1", h2.UUID, a.Version)
	noErr(t, "AssignDecky to h2", err)
	on2, _ := r.ListDeckies(ctx, repository.DeckyFilter{HostUUID: h2.UUID})
	diff(t, "deckies on h2", []string{"d1"}, deckyNames(on2))
	c, err := r.AssignDecky(ctx, "d1", "", b.Version)
	noErr(t, "AssignDecky to master", err)
	if c.HostUUID != "" || c.Version != 4 {
		t.Fatalf("unassigned: %q v%d", c.HostUUID, c.Version)
	}
	un, _ := r.ListDeckies(ctx, repository.DeckyFilter{Unassigned: true})
	diff(t, "unassigned deckies", []string{"d1"}, deckyNames(un))
}

func testSetDeckyState(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	mustCreateDecky(t, r, deckyOn("d1", ""))
	noErr(t, "SetDeckyState", r.SetDeckyState(ctx, "d1", repository.DeckyTearingDown, "stopping"))
	got, _ := r.GetDecky(ctx, "d1")
	if got.State != repository.DeckyTearingDown || got.LastError != "stopping" {
		t.Fatalf("state %q error %q", got.State, got.LastError)
	}
	wantErr(t, "SetDeckyState unknown", r.SetDeckyState(ctx, "ghost", repository.DeckyRunning, ""), decnet.ErrNotFound)
	wantErr(t, "SetDeckyState bad", r.SetDeckyState(ctx, "d1", "zombie", ""), decnet.ErrInvalid)
	wantErr(t, "SetDeckyState empty state", r.SetDeckyState(ctx, "d1", "", ""), decnet.ErrInvalid)
	after, _ := r.GetDecky(ctx, "d1")
	diff(t, "decky after rejected state", got, after)
}

func testListDue(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(name string, last time.Time, iv *time.Duration) {
		d := deckyOn(name, "")
		d.LastMutated, d.MutateInterval = last, iv
		mustCreateDecky(t, r, d)
	}
	mk("own-10m", base, dur(10*time.Minute))                 // due at base+10m
	mk("own-2h", base, dur(2*time.Hour))                     // due at base+2h
	mk("never", base.Add(-24*time.Hour), dur(0))             // never
	mk("default-a", base.Add(-5*time.Minute), nil)           // due at base+25m with a 30m default
	mk("default-b", base.Add(5*time.Minute), nil)            // due at base+35m
	mk("own-1m-late", base.Add(time.Hour), dur(time.Minute)) // due at base+61m

	due := func(at time.Time, def time.Duration) []string {
		t.Helper()
		ds, err := r.ListDue(ctx, at, def)
		noErr(t, "ListDue", err)
		return deckyNames(ds)
	}
	def := 30 * time.Minute
	diff(t, "due at base", []string(nil), due(base, def))
	diff(t, "due exactly at base+10m", []string{"own-10m"}, due(base.Add(10*time.Minute), def))
	diff(t, "due just before base+10m", []string(nil), due(base.Add(10*time.Minute-time.Microsecond), def))
	diff(t, "due at base+25m", []string{"default-a", "own-10m"}, due(base.Add(25*time.Minute), def))
	diff(t, "due at base+3h", []string{"default-a", "default-b", "own-10m", "own-1m-late", "own-2h"}, due(base.Add(3*time.Hour), def))
	diff(t, "due with no default", []string{"own-10m", "own-1m-late", "own-2h"}, due(base.Add(3*time.Hour), 0))
	diff(t, "due in a non-UTC zone", []string{"own-10m"}, due(base.Add(10*time.Minute).In(time.FixedZone("X", 3600)), def))

	next := func(def time.Duration) (time.Time, bool) {
		t.Helper()
		at, ok, err := r.NextDue(ctx, def)
		noErr(t, "NextDue", err)
		return at, ok
	}
	if at, ok := next(def); !ok || !at.Equal(base.Add(10*time.Minute)) {
		t.Fatalf("NextDue = %v %v, want base+10m", at, ok)
	}
	// With a short default the default-interval deckies come first.
	if at, ok := next(time.Minute); !ok || !at.Equal(base.Add(-4*time.Minute)) {
		t.Fatalf("NextDue(1m) = %v %v, want base-4m", at, ok)
	}
	_, err := r.ListDue(ctx, base, -time.Second)
	wantErr(t, "ListDue negative default", err, decnet.ErrInvalid)
	_, _, err = r.NextDue(ctx, -time.Second)
	wantErr(t, "NextDue negative default", err, decnet.ErrInvalid)

	for _, n := range []string{"own-10m", "own-2h", "own-1m-late"} {
		noErr(t, "DeleteDecky", r.DeleteDecky(ctx, n))
	}
	if _, ok := next(0); ok {
		t.Fatal("NextDue(0) with only default-interval and never deckies reported a due time")
	}
	if at, ok := next(def); !ok || !at.Equal(base.Add(25*time.Minute)) {
		t.Fatalf("NextDue = %v %v, want base+25m", at, ok)
	}
}
