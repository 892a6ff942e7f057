package repotest

import (
	"fmt"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

func testTokens(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	now := time.Now().UTC()
	tok := repository.JoinToken{Hash: fp("secret-1"), Name: "worker-1", ExpiresAt: now.Add(15 * time.Minute)}
	noErr(t, "CreateToken", r.CreateToken(ctx, tok))
	wantErr(t, "duplicate token", r.CreateToken(ctx, tok), decnet.ErrConflict)

	got, err := r.ConsumeToken(ctx, tok.Hash, now)
	noErr(t, "ConsumeToken", err)
	if got.Name != "worker-1" || !got.UsedAt.Equal(micro(now)) || !got.ExpiresAt.Equal(micro(tok.ExpiresAt)) || got.CreatedAt.IsZero() {
		t.Fatalf("consumed token: %+v", got)
	}
	_, err = r.ConsumeToken(ctx, tok.Hash, now.Add(time.Second))
	wantErr(t, "second consume", err, decnet.ErrConflict)
	_, err = r.ConsumeToken(ctx, fp("unknown"), now)
	wantErr(t, "unknown token", err, decnet.ErrNotFound)

	exp := repository.JoinToken{Hash: fp("secret-2"), Name: "worker-2", ExpiresAt: now.Add(time.Minute)}
	noErr(t, "CreateToken", r.CreateToken(ctx, exp))
	_, err = r.ConsumeToken(ctx, exp.Hash, now.Add(time.Minute)) // expiry is exclusive
	wantErr(t, "expired token", err, decnet.ErrUnauthorized)
	// An expired token is not marked used: consuming it earlier still works.
	_, err = r.ConsumeToken(ctx, exp.Hash, now)
	noErr(t, "consume before expiry", err)
}

func testTokenRejectsBadInput(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	now := time.Now()
	good := repository.JoinToken{Hash: fp("s"), Name: "worker-1", ExpiresAt: now.Add(time.Hour)}
	for what, mutate := range map[string]func(*repository.JoinToken){
		"empty hash":   func(j *repository.JoinToken) { j.Hash = "" },
		"plain secret": func(j *repository.JoinToken) { j.Hash = "not-a-hash" },
		"empty name":   func(j *repository.JoinToken) { j.Name = "" },
		"bad name":     func(j *repository.JoinToken) { j.Name = "a b" },
		"no expiry":    func(j *repository.JoinToken) { j.ExpiresAt = time.Time{} },
		"already used": func(j *repository.JoinToken) { j.UsedAt = now },
	} {
		j := good
		mutate(&j)
		wantErr(t, "CreateToken "+what, r.CreateToken(ctx, j), decnet.ErrInvalid)
	}
	_, err := r.ConsumeToken(ctx, good.Hash, now)
	wantErr(t, "consume a rejected token", err, decnet.ErrNotFound)
	_, err = r.ConsumeToken(ctx, "", now)
	wantErr(t, "consume empty hash", err, decnet.ErrInvalid)
	noErr(t, "CreateToken", r.CreateToken(ctx, good))
	_, err = r.ConsumeToken(ctx, good.Hash, time.Time{})
	wantErr(t, "consume without a time", err, decnet.ErrInvalid)
	_, err = r.ConsumeToken(ctx, good.Hash, now)
	noErr(t, "token still unused after rejected consume", err)
}

func testDenied(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	f := fp("cert")
	if d, err := r.IsDenied(ctx, f); err != nil || d {
		t.Fatalf("IsDenied before = %v, %v", d, err)
	}
	noErr(t, "DenyFingerprint", r.DenyFingerprint(ctx, repository.DeniedFingerprint{Fingerprint: f, HostName: "w", Reason: "stolen"}))
	noErr(t, "DenyFingerprint again", r.DenyFingerprint(ctx, repository.DeniedFingerprint{Fingerprint: f}))
	if d, err := r.IsDenied(ctx, f); err != nil || !d {
		t.Fatalf("IsDenied after = %v, %v", d, err)
	}
	wantErr(t, "DenyFingerprint bad", r.DenyFingerprint(ctx, repository.DeniedFingerprint{Fingerprint: "xyz"}), decnet.ErrInvalid)
	wantErr(t, "DenyFingerprint empty", r.DenyFingerprint(ctx, repository.DeniedFingerprint{}), decnet.ErrInvalid)
	_, err := r.IsDenied(ctx, "")
	wantErr(t, "IsDenied empty", err, decnet.ErrInvalid)
}

func testEvents(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	t0 := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	in := []repository.Event{
		{Time: t0, Kind: "host_enrolled", HostUUID: "h1", HostName: "worker-1", Actor: "operator:alice", Outcome: "ok"},
		{Time: t0.Add(time.Minute), Kind: "decky_mutated", HostUUID: "h1", Decky: "d1", Actor: "mutator", Trigger: "scheduled",
			OldServices: []string{"ssh"}, NewServices: []string{"http", "smb"}, Outcome: "ok", Detail: map[string]string{"took": "2s"}},
		{Time: t0.Add(2 * time.Minute), Kind: "decky_mutated", HostUUID: "h2", Decky: "d2", Actor: "operator:bob", Trigger: "operator",
			Outcome: "failed", Error: "worker unreachable"},
		{Kind: "heartbeat_lost", HostUUID: "h2"},
	}
	var out []repository.Event
	for _, e := range in {
		got, err := r.AppendEvent(ctx, e)
		noErr(t, "AppendEvent", err)
		if len(out) > 0 && got.ID <= out[len(out)-1].ID {
			t.Fatalf("event ids not increasing: %d after %d", got.ID, out[len(out)-1].ID)
		}
		out = append(out, got)
	}
	if out[3].Time.IsZero() {
		t.Fatal("AppendEvent did not default the time")
	}
	all, next, err := r.ListEvents(ctx, repository.EventFilter{})
	noErr(t, "ListEvents", err)
	diff(t, "all events", out, all)
	if next != 0 {
		t.Fatalf("next cursor %d for a complete page", next)
	}
	for what, c := range map[string]struct {
		f    repository.EventFilter
		want []repository.Event
	}{
		"kind":       {repository.EventFilter{Kind: "decky_mutated"}, out[1:3]},
		"host":       {repository.EventFilter{HostUUID: "h2"}, out[2:4]},
		"decky":      {repository.EventFilter{Decky: "d1"}, out[1:2]},
		"since":      {repository.EventFilter{Since: t0.Add(time.Minute), Kind: "decky_mutated"}, out[1:3]},
		"since late": {repository.EventFilter{Since: t0.Add(90 * time.Second), HostUUID: "h1"}, nil},
		"after":      {repository.EventFilter{After: out[1].ID}, out[2:]},
		"kind+host":  {repository.EventFilter{Kind: "decky_mutated", HostUUID: "h1"}, out[1:2]},
	} {
		got, _, err := r.ListEvents(ctx, c.f)
		noErr(t, "ListEvents "+what, err)
		diff(t, "ListEvents "+what, c.want, got)
	}
	_, _, err = r.ListEvents(ctx, repository.EventFilter{Limit: -1})
	wantErr(t, "negative limit", err, decnet.ErrInvalid)
	_, err = r.AppendEvent(ctx, repository.Event{})
	wantErr(t, "event without kind", err, decnet.ErrInvalid)
	_, err = r.AppendEvent(ctx, repository.Event{ID: 99, Kind: "x"})
	wantErr(t, "event with an id", err, decnet.ErrInvalid)
	after, _, _ := r.ListEvents(ctx, repository.EventFilter{})
	if len(after) != len(out) {
		t.Fatalf("rejected events were appended: %d events", len(after))
	}
}

func testEventPaging(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	const n = repository.MaxEventLimit + 25
	for i := 0; i < n; i++ {
		_, err := r.AppendEvent(ctx, repository.Event{Kind: "tick", Decky: fmt.Sprintf("d%d", i%3)})
		noErr(t, "AppendEvent", err)
	}
	page, next, err := r.ListEvents(ctx, repository.EventFilter{})
	noErr(t, "ListEvents", err)
	if len(page) != repository.DefaultEventLimit || next != page[len(page)-1].ID {
		t.Fatalf("default page: %d events, next %d", len(page), next)
	}
	big, next, err := r.ListEvents(ctx, repository.EventFilter{Limit: 10 * n})
	noErr(t, "ListEvents big", err)
	if len(big) != repository.MaxEventLimit || next == 0 {
		t.Fatalf("capped page: %d events, next %d", len(big), next)
	}
	// Walking the cursor visits every event once, in order.
	var seen []int64
	cursor := int64(0)
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("cursor does not terminate")
		}
		p, nx, err := r.ListEvents(ctx, repository.EventFilter{After: cursor, Limit: 7, Decky: "d1"})
		noErr(t, "ListEvents page", err)
		for _, e := range p {
			if e.Decky != "d1" {
				t.Fatalf("filter broken on page: %+v", e)
			}
			seen = append(seen, e.ID)
		}
		if nx == 0 {
			break
		}
		cursor = nx
	}
	want := 0
	for i := 0; i < n; i++ {
		if i%3 == 1 {
			want++
		}
	}
	if len(seen) != want {
		t.Fatalf("cursor walk saw %d events, want %d", len(seen), want)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("cursor walk out of order at %d", i)
		}
	}
}

func testTimes(t *testing.T, open Open) {
	r := open(t)
	ctx := ctxOf(t)
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	at := time.Date(2026, 6, 1, 17, 30, 0, 987654321, zone)
	h, err := r.AddHost(ctx, repository.Host{Name: "w", EnrolledAt: at, LastHeartbeat: at.Add(time.Second)})
	noErr(t, "AddHost", err)
	got, _ := r.GetHost(ctx, h.UUID)
	if got.EnrolledAt.Location() != time.UTC || !got.EnrolledAt.Equal(micro(at)) || !got.LastHeartbeat.Equal(micro(at.Add(time.Second))) {
		t.Fatalf("host times: %v %v", got.EnrolledAt, got.LastHeartbeat)
	}
	diff(t, "AddHost result equals stored row", got, h)
	d := deckyOn("d1", "")
	d.LastMutated = at
	dd, err := r.CreateDecky(ctx, d)
	noErr(t, "CreateDecky", err)
	gd, _ := r.GetDecky(ctx, "d1")
	if gd.LastMutated.Location() != time.UTC || !gd.LastMutated.Equal(micro(at)) {
		t.Fatalf("decky time: %v", gd.LastMutated)
	}
	diff(t, "CreateDecky result equals stored row", gd, dd)
}
