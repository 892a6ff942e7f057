package repotest

import (
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// The runtime fields (host status and last heartbeat, decky state and last
// error) bump no version, so an update built from a read older than a
// heartbeat still carries the current version: UpdateHost and UpdateDecky
// must not write them back.

func testRuntimeFieldsSurviveUpdates(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	d := mustCreateDecky(t, r, deckyOn("d1", h.UUID, "ssh"))
	hostRead, _ := r.GetHost(ctx, h.UUID)
	deckyRead, _ := r.GetDecky(ctx, "d1")

	// A heartbeat lands between the reads and the updates.
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	noErr(t, "RecordHeartbeat", r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: h.UUID, At: at,
		Deckies: []repository.DeckyRuntime{{Name: "d1", State: repository.DeckyDegraded, LastError: "smb exited"}}}))

	hostRead.Address = "198.51.100.9"
	hu, err := r.UpdateHost(ctx, hostRead) // version still current
	noErr(t, "UpdateHost from the older read", err)
	got, _ := r.GetHost(ctx, h.UUID)
	if got.Status != repository.HostActive || !got.LastHeartbeat.Equal(at) || got.Address != "198.51.100.9" || got.Version != 2 {
		t.Fatalf("host after update: status %q heartbeat %v address %q v%d; want the heartbeat kept, the address written, v2",
			got.Status, got.LastHeartbeat, got.Address, got.Version)
	}
	diff(t, "UpdateHost result is the stored row", got, hu)

	deckyRead.Services = []string{"http"}
	du, err := r.UpdateDecky(ctx, deckyRead)
	noErr(t, "UpdateDecky from the older read", err)
	gd, _ := r.GetDecky(ctx, "d1")
	if gd.State != repository.DeckyDegraded || gd.LastError != "smb exited" || gd.Version != d.Version+1 {
		t.Fatalf("decky after update: %q %q v%d; want the heartbeat's state and error kept, v%d",
			gd.State, gd.LastError, gd.Version, d.Version+1)
	}
	diff(t, "services written", []string{"http"}, gd.Services)
	diff(t, "UpdateDecky result is the stored row", gd, du)

	// The same holds for the explicit runtime writes, and for runtime
	// values set by hand on the update: they are ignored, even invalid ones.
	noErr(t, "SetHostStatus", r.SetHostStatus(ctx, h.UUID, repository.HostOffline))
	noErr(t, "SetDeckyState", r.SetDeckyState(ctx, "d1", repository.DeckyFailed, "oom"))
	hu.Status, hu.LastHeartbeat, hu.Notes = "bogus", time.Time{}, "noted"
	_, err = r.UpdateHost(ctx, hu)
	noErr(t, "UpdateHost with stale runtime fields", err)
	got, _ = r.GetHost(ctx, h.UUID)
	if got.Status != repository.HostOffline || !got.LastHeartbeat.Equal(at) || got.Notes != "noted" {
		t.Fatalf("host: status %q heartbeat %v notes %q; want offline, the heartbeat, the note", got.Status, got.LastHeartbeat, got.Notes)
	}
	du.State, du.LastError, du.Spec.Hostname = "", "", "renamed"
	_, err = r.UpdateDecky(ctx, du)
	noErr(t, "UpdateDecky with stale runtime fields", err)
	gd, _ = r.GetDecky(ctx, "d1")
	if gd.State != repository.DeckyFailed || gd.LastError != "oom" || gd.Spec.Hostname != "renamed" {
		t.Fatalf("decky: %q %q hostname %q; want failed, oom, renamed", gd.State, gd.LastError, gd.Spec.Hostname)
	}

	// The outcome record does write the state the change leaves the decky
	// in; it requires one.
	row, _, err := r.UpdateDeckyWithEvent(ctx, withState(gd, repository.DeckyRunning, ""), mutatedEvent(gd.Services, []string{"smb"}))
	noErr(t, "UpdateDeckyWithEvent", err)
	gd, _ = r.GetDecky(ctx, "d1")
	if gd.State != repository.DeckyRunning || gd.LastError != "" {
		t.Fatalf("decky after outcome record: %q %q; want running, no error", gd.State, gd.LastError)
	}
	diff(t, "UpdateDeckyWithEvent result is the stored row", gd, row)
	_, _, err = r.UpdateDeckyWithEvent(ctx, withState(gd, "", ""), mutatedEvent(nil, nil))
	wantErr(t, "UpdateDeckyWithEvent without a state", err, decnet.ErrInvalid)
	_, _, err = r.UpdateDeckyWithEvent(ctx, withState(gd, "asleep", ""), mutatedEvent(nil, nil))
	wantErr(t, "UpdateDeckyWithEvent bad state", err, decnet.ErrInvalid)
	after, _ := r.GetDecky(ctx, "d1")
	diff(t, "decky after refused outcome records", gd, after)
}

func withState(d repository.Decky, s repository.DeckyState, lastError string) repository.Decky {
	d.Spec = d.Spec.Clone()
	d.Services = []string{"smb"}
	d.State, d.LastError = s, lastError
	return d
}

func testSetHostStatus(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	h := mustAddHost(t, r, "worker-1")
	noErr(t, "SetHostStatus", r.SetHostStatus(ctx, h.UUID, repository.HostOffline))
	got, _ := r.GetHost(ctx, h.UUID)
	if got.Status != repository.HostOffline || got.Version != h.Version {
		t.Fatalf("after SetHostStatus: %q v%d; want offline, version unchanged", got.Status, got.Version)
	}
	offline, err := r.ListHosts(ctx, repository.HostFilter{Status: repository.HostOffline})
	noErr(t, "ListHosts offline", err)
	diff(t, "offline hosts", []string{"worker-1"}, hostNames(offline))
	// A heartbeat brings it back.
	noErr(t, "RecordHeartbeat", r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: h.UUID, At: time.Now()}))
	if got, _ := r.GetHost(ctx, h.UUID); got.Status != repository.HostActive {
		t.Fatalf("after heartbeat: %q, want active", got.Status)
	}

	wantErr(t, "SetHostStatus unknown", r.SetHostStatus(ctx, ghostHost, repository.HostOffline), decnet.ErrNotFound)
	wantErr(t, "SetHostStatus empty uuid", r.SetHostStatus(ctx, "", repository.HostOffline), decnet.ErrInvalid)
	wantErr(t, "SetHostStatus bad uuid", r.SetHostStatus(ctx, "a b", repository.HostOffline), decnet.ErrInvalid)
	wantErr(t, "SetHostStatus bad status", r.SetHostStatus(ctx, h.UUID, "gone"), decnet.ErrInvalid)
	wantErr(t, "SetHostStatus empty status", r.SetHostStatus(ctx, h.UUID, ""), decnet.ErrInvalid)
	if got, _ := r.GetHost(ctx, h.UUID); got.Status != repository.HostActive {
		t.Fatalf("refused SetHostStatus changed the host: %q", got.Status)
	}
}
