package repotest

import (
	"strings"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

func testHostCRUD(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	in := repository.Host{
		Name: "worker-b", Address: "192.0.2.10", AgentPort: 9000, Fingerprint: fp("b"),
		Notes: "rack 4", Labels: map[string]string{"site": "paris"},
	}
	b, err := r.AddHost(ctx, in)
	noErr(t, "AddHost", err)
	if b.UUID == "" || b.Version != 1 || b.Status != repository.HostEnrolled || b.EnrolledAt.IsZero() {
		t.Fatalf("AddHost defaults: got uuid=%q version=%d status=%q enrolled=%v", b.UUID, b.Version, b.Status, b.EnrolledAt)
	}
	if !b.LastHeartbeat.IsZero() {
		t.Fatalf("new host has a heartbeat: %v", b.LastHeartbeat)
	}
	a, err := r.AddHost(ctx, repository.Host{UUID: "host-a-uuid", Name: "worker-a", Address: "192.0.2.11"})
	noErr(t, "AddHost a", err)
	if a.UUID != "host-a-uuid" || a.AgentPort != repository.DefaultAgentPort {
		t.Fatalf("AddHost kept uuid %q port %d", a.UUID, a.AgentPort)
	}
	for what, get := range map[string]func() (repository.Host, error){
		"GetHost":              func() (repository.Host, error) { return r.GetHost(ctx, b.UUID) },
		"GetHostByName":        func() (repository.Host, error) { return r.GetHostByName(ctx, "worker-b") },
		"GetHostByFingerprint": func() (repository.Host, error) { return r.GetHostByFingerprint(ctx, fp("b")) },
	} {
		got, err := get()
		noErr(t, what, err)
		diff(t, what, b, got)
	}
	_, err = r.GetHost(ctx, "no-such-uuid")
	wantErr(t, "GetHost unknown", err, decnet.ErrNotFound)
	_, err = r.GetHostByName(ctx, "nobody")
	wantErr(t, "GetHostByName unknown", err, decnet.ErrNotFound)
	_, err = r.GetHostByFingerprint(ctx, fp("nobody"))
	wantErr(t, "GetHostByFingerprint unknown", err, decnet.ErrNotFound)

	all, err := r.ListHosts(ctx, repository.HostFilter{})
	noErr(t, "ListHosts", err)
	diff(t, "ListHosts", []repository.Host{a, b}, all)

	noErr(t, "RecordHeartbeat", r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: a.UUID, At: time.Now()}))
	active, err := r.ListHosts(ctx, repository.HostFilter{Status: repository.HostActive})
	noErr(t, "ListHosts active", err)
	diff(t, "active hosts", []string{"worker-a"}, hostNames(active))
	enrolled, err := r.ListHosts(ctx, repository.HostFilter{Status: repository.HostEnrolled})
	noErr(t, "ListHosts enrolled", err)
	diff(t, "enrolled hosts", []string{"worker-b"}, hostNames(enrolled))

	noErr(t, "DeleteHost", r.DeleteHost(ctx, b.UUID))
	_, err = r.GetHost(ctx, b.UUID)
	wantErr(t, "GetHost after delete", err, decnet.ErrNotFound)
	wantErr(t, "DeleteHost again", r.DeleteHost(ctx, b.UUID), decnet.ErrNotFound)
}

func testHostUpdateVersions(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	h.Address, h.Notes, h.Labels = "198.51.100.7", "moved", map[string]string{"a": "b"}
	h2, err := r.UpdateHost(ctx, h)
	noErr(t, "UpdateHost", err)
	if h2.Version != 2 || h2.Address != "198.51.100.7" || h2.Status != repository.HostEnrolled {
		t.Fatalf("after update: version %d address %q status %q, want 2, the new address, enrolled", h2.Version, h2.Address, h2.Status)
	}
	got, err := r.GetHost(ctx, h.UUID)
	noErr(t, "GetHost", err)
	diff(t, "updated host", h2, got)

	stale := h // version 1
	stale.Notes = "lost update"
	_, err = r.UpdateHost(ctx, stale)
	wantErr(t, "UpdateHost stale", err, decnet.ErrConflict)
	got, _ = r.GetHost(ctx, h.UUID)
	diff(t, "host after stale update", h2, got)

	ghost := h2
	ghost.UUID = "no-such-host"
	_, err = r.UpdateHost(ctx, ghost)
	wantErr(t, "UpdateHost unknown", err, decnet.ErrNotFound)

	// A heartbeat is a runtime write: it neither checks nor bumps the version.
	noErr(t, "RecordHeartbeat", r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: h.UUID, At: time.Now()}))
	got, _ = r.GetHost(ctx, h.UUID)
	if got.Version != 2 || got.Status != repository.HostActive {
		t.Fatalf("after heartbeat: version %d status %q, want 2 active", got.Version, got.Status)
	}
}

func testHostConflicts(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	_, err := r.AddHost(ctx, repository.Host{Name: "worker-1"})
	wantErr(t, "duplicate name", err, decnet.ErrConflict)
	_, err = r.AddHost(ctx, repository.Host{Name: "worker-2", Fingerprint: h.Fingerprint})
	wantErr(t, "duplicate fingerprint", err, decnet.ErrConflict)
	_, err = r.AddHost(ctx, repository.Host{UUID: h.UUID, Name: "worker-3"})
	wantErr(t, "duplicate uuid", err, decnet.ErrConflict)
	// Hosts without a fingerprint do not collide with each other.
	_, err = r.AddHost(ctx, repository.Host{Name: "worker-4"})
	noErr(t, "no fingerprint 1", err)
	w5, err := r.AddHost(ctx, repository.Host{Name: "worker-5"})
	noErr(t, "no fingerprint 2", err)
	// Renaming onto a taken name, or taking another host's fingerprint, conflicts.
	w5.Name = "worker-1"
	_, err = r.UpdateHost(ctx, w5)
	wantErr(t, "update to duplicate name", err, decnet.ErrConflict)
	w5.Name, w5.Fingerprint = "worker-5", h.Fingerprint
	_, err = r.UpdateHost(ctx, w5)
	wantErr(t, "update to duplicate fingerprint", err, decnet.ErrConflict)
	hs, err := r.ListHosts(ctx, repository.HostFilter{})
	noErr(t, "ListHosts", err)
	diff(t, "hosts", []string{"worker-1", "worker-4", "worker-5"}, hostNames(hs))
	for _, x := range hs {
		if x.Version != 1 {
			t.Fatalf("host %s version %d after failed writes, want 1", x.Name, x.Version)
		}
	}
}

func testHostRejectsBadInput(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	bad := map[string]repository.Host{
		"empty name":      {},
		"bad name":        {Name: "-worker"},
		"long name":       {Name: strings.Repeat("a", 65)},
		"space in name":   {Name: "my worker"},
		"bad status":      {Name: "w", Status: "decommissioned"},
		"negative port":   {Name: "w", AgentPort: -1},
		"port too large":  {Name: "w", AgentPort: 70000},
		"bad fingerprint": {Name: "w", Fingerprint: "ABCDEF"},
		"bad uuid":        {Name: "w", UUID: "has space"},
		"empty label key": {Name: "w", Labels: map[string]string{"": "x"}},
	}
	for what, h := range bad {
		_, err := r.AddHost(ctx, h)
		wantErr(t, "AddHost "+what, err, decnet.ErrInvalid)
	}
	hs, err := r.ListHosts(ctx, repository.HostFilter{})
	noErr(t, "ListHosts", err)
	if len(hs) != 0 {
		t.Fatalf("rejected hosts were written: %v", hostNames(hs))
	}

	good := mustAddHost(t, r, "worker-1")
	for what, mutate := range map[string]func(*repository.Host){
		"empty name":  func(h *repository.Host) { h.Name = "" },
		"zero port":   func(h *repository.Host) { h.AgentPort = 0 },
		"empty uuid":  func(h *repository.Host) { h.UUID = "" },
		"zero enroll": func(h *repository.Host) { h.EnrolledAt = time.Time{} },
	} {
		h := good
		mutate(&h)
		_, err := r.UpdateHost(ctx, h)
		wantErr(t, "UpdateHost "+what, err, decnet.ErrInvalid)
	}
	got, err := r.GetHost(ctx, good.UUID)
	noErr(t, "GetHost", err)
	diff(t, "host after rejected updates", good, got)

	_, err = r.ListHosts(ctx, repository.HostFilter{Status: "bogus"})
	wantErr(t, "ListHosts bad status", err, decnet.ErrInvalid)
	_, err = r.GetHost(ctx, "")
	wantErr(t, "GetHost empty", err, decnet.ErrInvalid)
	_, err = r.GetHostByName(ctx, "")
	wantErr(t, "GetHostByName empty", err, decnet.ErrInvalid)
	_, err = r.GetHostByFingerprint(ctx, "")
	wantErr(t, "GetHostByFingerprint empty", err, decnet.ErrInvalid)
	wantErr(t, "DeleteHost empty", r.DeleteHost(ctx, ""), decnet.ErrInvalid)
}

func testDeleteHostDeletesDeckies(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h1 := mustAddHost(t, r, "worker-1")
	h2 := mustAddHost(t, r, "worker-2")
	mustCreateDecky(t, r, deckyOn("d1", h1.UUID))
	mustCreateDecky(t, r, deckyOn("d2", h1.UUID))
	mustCreateDecky(t, r, deckyOn("d3", h2.UUID))
	mustCreateDecky(t, r, deckyOn("d4", ""))
	noErr(t, "DeleteHost", r.DeleteHost(ctx, h1.UUID))
	ds, err := r.ListDeckies(ctx, repository.DeckyFilter{})
	noErr(t, "ListDeckies", err)
	diff(t, "deckies left", []string{"d3", "d4"}, deckyNames(ds))
	_, err = r.GetDecky(ctx, "d1")
	wantErr(t, "GetDecky of deleted host", err, decnet.ErrNotFound)
}

func testDecommission(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	other := mustAddHost(t, r, "worker-2")
	mustCreateDecky(t, r, deckyOn("d1", h.UUID))
	mustCreateDecky(t, r, deckyOn("d2", other.UUID))
	ev := repository.Event{Kind: "host_decommissioned", Actor: "operator:alice", Outcome: "ok"}
	got, err := r.Decommission(ctx, h.UUID, "retired", ev)
	noErr(t, "Decommission", err)
	diff(t, "decommissioned host", h, got)
	_, err = r.GetHost(ctx, h.UUID)
	wantErr(t, "host after decommission", err, decnet.ErrNotFound)
	ds, _ := r.ListDeckies(ctx, repository.DeckyFilter{})
	diff(t, "deckies after decommission", []string{"d2"}, deckyNames(ds))
	denied, err := r.IsDenied(ctx, h.Fingerprint)
	noErr(t, "IsDenied", err)
	if !denied {
		t.Fatal("decommissioned host's fingerprint is not denied")
	}
	if d, _ := r.IsDenied(ctx, other.Fingerprint); d {
		t.Fatal("another host's fingerprint is denied")
	}
	evs, _, err := r.ListEvents(ctx, repository.EventFilter{})
	noErr(t, "ListEvents", err)
	if len(evs) != 1 || evs[0].Kind != ev.Kind || evs[0].HostUUID != h.UUID || evs[0].HostName != h.Name || evs[0].Actor != ev.Actor {
		t.Fatalf("decommission event: %+v", evs)
	}

	_, err = r.Decommission(ctx, h.UUID, "again", ev)
	wantErr(t, "Decommission unknown", err, decnet.ErrNotFound)
	_, err = r.Decommission(ctx, other.UUID, "no kind", repository.Event{})
	wantErr(t, "Decommission without event kind", err, decnet.ErrInvalid)
	evs, _, _ = r.ListEvents(ctx, repository.EventFilter{})
	if len(evs) != 1 {
		t.Fatalf("failed decommissions appended events: %d events", len(evs))
	}
	if _, err := r.GetHost(ctx, other.UUID); err != nil {
		t.Fatalf("rejected decommission deleted the host: %v", err)
	}
}

func testRecordHeartbeat(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	other := mustAddHost(t, r, "worker-2")
	d1 := mustCreateDecky(t, r, deckyOn("d1", h.UUID))
	mustCreateDecky(t, r, deckyOn("d2", h.UUID))
	d3 := mustCreateDecky(t, r, deckyOn("d3", other.UUID))
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	noErr(t, "RecordHeartbeat", r.RecordHeartbeat(ctx, repository.Heartbeat{
		HostUUID: h.UUID, At: at,
		Deckies: []repository.DeckyRuntime{
			{Name: "d1", State: repository.DeckyRunning},
			{Name: "d2", State: repository.DeckyDegraded, LastError: "smb exited"},
			{Name: "d3", State: repository.DeckyFailed, LastError: "not mine"},
			{Name: "ghost", State: repository.DeckyRunning},
		},
	}))
	got, _ := r.GetHost(ctx, h.UUID)
	if got.Status != repository.HostActive || !got.LastHeartbeat.Equal(micro(at)) || got.Version != h.Version {
		t.Fatalf("host after heartbeat: status %q heartbeat %v version %d", got.Status, got.LastHeartbeat, got.Version)
	}
	g1, _ := r.GetDecky(ctx, "d1")
	g2, _ := r.GetDecky(ctx, "d2")
	g3, _ := r.GetDecky(ctx, "d3")
	if g1.State != repository.DeckyRunning || g1.Version != d1.Version {
		t.Fatalf("d1 after heartbeat: %q v%d", g1.State, g1.Version)
	}
	if g2.State != repository.DeckyDegraded || g2.LastError != "smb exited" {
		t.Fatalf("d2 after heartbeat: %q %q", g2.State, g2.LastError)
	}
	diff(t, "decky on another host", d3.State, g3.State)
	if g3.LastError != "" {
		t.Fatalf("heartbeat wrote a decky of another host: %q", g3.LastError)
	}

	err := r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: "nobody", At: at})
	wantErr(t, "heartbeat unknown host", err, decnet.ErrNotFound)
	err = r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: other.UUID, At: at,
		Deckies: []repository.DeckyRuntime{{Name: "d3", State: "exploded"}}})
	wantErr(t, "heartbeat bad state", err, decnet.ErrInvalid)
	err = r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: other.UUID})
	wantErr(t, "heartbeat without time", err, decnet.ErrInvalid)
	g, _ := r.GetHost(ctx, other.UUID)
	if g.Status != repository.HostEnrolled || !g.LastHeartbeat.IsZero() {
		t.Fatalf("rejected heartbeat changed the host: %q %v", g.Status, g.LastHeartbeat)
	}
}
