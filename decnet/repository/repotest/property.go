package repotest

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// The model the property test checks the repository against.
type (
	modelHost struct {
		UUID, Name, Address string
		Status              repository.HostStatus
		Version             int64
	}
	modelDecky struct {
		Name, Host string
		Services   []string
		State      repository.DeckyState
		Version    int64
	}
	model struct {
		hosts   map[string]modelHost  // by uuid
		deckies map[string]modelDecky // by name
		after   int64                 // the last event id before this case
		events  int                   // events appended since
	}
)

var (
	hostPool    = []string{"h0", "h1", "h2", "h3"}
	deckyPool   = []string{"d0", "d1", "d2", "d3", "d4", "d5"}
	servicePool = []string{"ssh", "http", "smb", "rdp", "ftp"}
	addrPool    = []string{"10.0.0.1", "10.0.0.2", "worker.example"}
	statePool   = []repository.DeckyState{repository.DeckyPending, repository.DeckyRunning, repository.DeckyDegraded, repository.DeckyFailed, repository.DeckyTearingDown, "bogus"}
	hostStates  = []repository.HostStatus{repository.HostEnrolled, repository.HostActive, repository.HostOffline, "bogus"}
)

const ghostHost = "00000000-0000-4000-8000-000000000000"

func (m *model) hostNamed(name string) bool {
	for _, h := range m.hosts {
		if h.Name == name {
			return true
		}
	}
	return false
}

func (m *model) uuids() []string { return slices.Sorted(maps.Keys(m.hosts)) }

func (m *model) deckyNames() []string { return slices.Sorted(maps.Keys(m.deckies)) }

// expect fails rt unless err is nil (class nil) or belongs to class.
func expect(rt *rapid.T, what string, err, class error) {
	rt.Helper()
	if class == nil && err != nil {
		rt.Fatalf("%s: unexpected error %v", what, err)
	}
	if class != nil && !errors.Is(err, class) {
		rt.Fatalf("%s: error %v, want class %v", what, err, class)
	}
}

// testModelProperty applies random sequences of host and decky operations
// to a fresh repository and to a map-based model, and checks after every
// step that both agree on every host and decky (versions and runtime state
// included) and on the number of events appended. Updates carry arbitrary
// runtime fields, sometimes from a read older than a runtime write: the
// model says they are never written back.
func testModelProperty(t *testing.T, open Open) {
	r := open(t)
	ctx := t.Context()
	rapid.Check(t, func(rt *rapid.T) {
		// Every case starts from an empty repository (emptied through the
		// interface: cheaper than opening one per case).
		m := &model{hosts: map[string]modelHost{}, deckies: map[string]modelDecky{}, after: reset(rt, r)}
		rt.Repeat(map[string]func(*rapid.T){
			"AddHost": func(rt *rapid.T) {
				name := rapid.SampledFrom(hostPool).Draw(rt, "name")
				addr := rapid.SampledFrom(addrPool).Draw(rt, "address")
				h, err := r.AddHost(ctx, repository.Host{Name: name, Address: addr})
				if m.hostNamed(name) {
					expect(rt, "AddHost duplicate", err, decnet.ErrConflict)
					return
				}
				expect(rt, "AddHost", err, nil)
				m.hosts[h.UUID] = modelHost{UUID: h.UUID, Name: name, Address: addr, Status: repository.HostEnrolled, Version: 1}
			},
			"UpdateHost": func(rt *rapid.T) {
				if len(m.hosts) == 0 {
					rt.Skip("no host")
				}
				uuid := rapid.SampledFrom(m.uuids()).Draw(rt, "host")
				stale := rapid.Bool().Draw(rt, "stale")
				addr := rapid.SampledFrom(addrPool).Draw(rt, "address")
				h, err := r.GetHost(ctx, uuid)
				expect(rt, "GetHost", err, nil)
				if rapid.Bool().Draw(rt, "heartbeat after the read") {
					expect(rt, "RecordHeartbeat", r.RecordHeartbeat(ctx, repository.Heartbeat{HostUUID: uuid, At: time.Now()}), nil)
					mh := m.hosts[uuid]
					mh.Status = repository.HostActive
					m.hosts[uuid] = mh
				}
				h.Address = addr
				h.Status = rapid.SampledFrom(hostStates).Draw(rt, "status (ignored)")
				if stale {
					h.Version += int64(rapid.SampledFrom([]int{-1, 1}).Draw(rt, "skew"))
				}
				_, err = r.UpdateHost(ctx, h)
				if stale {
					expect(rt, "UpdateHost stale", err, decnet.ErrConflict)
					return
				}
				expect(rt, "UpdateHost", err, nil)
				mh := m.hosts[uuid]
				mh.Address, mh.Version = addr, mh.Version+1
				m.hosts[uuid] = mh
			},
			"SetHostStatus": func(rt *rapid.T) {
				uuid := rapid.SampledFrom(append(m.uuids(), ghostHost)).Draw(rt, "host")
				status := rapid.SampledFrom(hostStates).Draw(rt, "status")
				err := r.SetHostStatus(ctx, uuid, status)
				mh, exists := m.hosts[uuid]
				switch {
				case !status.Valid():
					expect(rt, "SetHostStatus invalid", err, decnet.ErrInvalid)
				case !exists:
					expect(rt, "SetHostStatus unknown", err, decnet.ErrNotFound)
				default:
					expect(rt, "SetHostStatus", err, nil)
					mh.Status = status
					m.hosts[uuid] = mh
				}
			},
			"RecordHeartbeat": func(rt *rapid.T) {
				uuid := rapid.SampledFrom(append(m.uuids(), ghostHost)).Draw(rt, "host")
				names := rapid.SliceOfNDistinct(rapid.SampledFrom(deckyPool), 0, 3, rapid.ID[string]).Draw(rt, "deckies")
				hb := repository.Heartbeat{HostUUID: uuid, At: time.Now()}
				valid := true
				for _, n := range names {
					st := rapid.SampledFrom(statePool).Draw(rt, "state")
					valid = valid && st.Valid()
					hb.Deckies = append(hb.Deckies, repository.DeckyRuntime{Name: n, State: st})
				}
				err := r.RecordHeartbeat(ctx, hb)
				mh, exists := m.hosts[uuid]
				switch {
				case !valid:
					expect(rt, "RecordHeartbeat invalid", err, decnet.ErrInvalid)
				case !exists:
					expect(rt, "RecordHeartbeat unknown", err, decnet.ErrNotFound)
				default:
					expect(rt, "RecordHeartbeat", err, nil)
					mh.Status = repository.HostActive
					m.hosts[uuid] = mh
					for _, d := range hb.Deckies {
						if md, ok := m.deckies[d.Name]; ok && md.Host == uuid {
							md.State = d.State
							m.deckies[d.Name] = md
						}
					}
				}
			},
			"DeleteHost": func(rt *rapid.T) {
				uuid := rapid.SampledFrom(append(m.uuids(), ghostHost)).Draw(rt, "host")
				err := r.DeleteHost(ctx, uuid)
				if _, ok := m.hosts[uuid]; !ok {
					expect(rt, "DeleteHost unknown", err, decnet.ErrNotFound)
					return
				}
				expect(rt, "DeleteHost", err, nil)
				delete(m.hosts, uuid)
				for n, d := range m.deckies {
					if d.Host == uuid {
						delete(m.deckies, n)
					}
				}
			},
			"CreateDecky": func(rt *rapid.T) {
				name := rapid.SampledFrom(deckyPool).Draw(rt, "name")
				host := rapid.SampledFrom(append(m.uuids(), "", ghostHost)).Draw(rt, "host")
				svcs := rapid.SliceOfNDistinct(rapid.SampledFrom(servicePool), 1, 3, rapid.ID[string]).Draw(rt, "services")
				_, err := r.CreateDecky(ctx, repository.Decky{Name: name, HostUUID: host, Services: svcs})
				_, dup := m.deckies[name]
				_, known := m.hosts[host]
				switch {
				case dup && host == ghostHost:
					if !errors.Is(err, decnet.ErrConflict) && !errors.Is(err, decnet.ErrNotFound) {
						rt.Fatalf("CreateDecky duplicate on unknown host: %v", err)
					}
				case dup:
					expect(rt, "CreateDecky duplicate", err, decnet.ErrConflict)
				case host != "" && !known:
					expect(rt, "CreateDecky unknown host", err, decnet.ErrNotFound)
				default:
					expect(rt, "CreateDecky", err, nil)
					m.deckies[name] = modelDecky{Name: name, Host: host, Services: svcs, State: repository.DeckyPending, Version: 1}
				}
			},
			"UpdateDecky":          func(rt *rapid.T) { updateDeckyOp(rt, r, m, false) },
			"UpdateDeckyWithEvent": func(rt *rapid.T) { updateDeckyOp(rt, r, m, true) },
			"AssignDecky": func(rt *rapid.T) {
				name := rapid.SampledFrom(deckyPool).Draw(rt, "decky")
				host := rapid.SampledFrom(append(m.uuids(), "", ghostHost)).Draw(rt, "host")
				stale := rapid.Bool().Draw(rt, "stale")
				md, exists := m.deckies[name]
				version := md.Version
				if stale {
					version += 5
				}
				_, err := r.AssignDecky(ctx, name, host, version)
				_, known := m.hosts[host]
				switch {
				case !exists:
					expect(rt, "AssignDecky unknown decky", err, decnet.ErrNotFound)
				case stale:
					expect(rt, "AssignDecky stale", err, decnet.ErrConflict)
				case host != "" && !known:
					expect(rt, "AssignDecky unknown host", err, decnet.ErrNotFound)
				default:
					expect(rt, "AssignDecky", err, nil)
					md.Host, md.Version = host, md.Version+1
					m.deckies[name] = md
				}
			},
			"SetDeckyState": func(rt *rapid.T) {
				name := rapid.SampledFrom(deckyPool).Draw(rt, "decky")
				state := rapid.SampledFrom(statePool).Draw(rt, "state")
				err := r.SetDeckyState(ctx, name, state, "")
				md, exists := m.deckies[name]
				switch {
				case !state.Valid():
					expect(rt, "SetDeckyState invalid", err, decnet.ErrInvalid)
				case !exists:
					expect(rt, "SetDeckyState unknown", err, decnet.ErrNotFound)
				default:
					expect(rt, "SetDeckyState", err, nil)
					md.State = state
					m.deckies[name] = md
				}
			},
			"SetDeckyStateWithEvent": func(rt *rapid.T) {
				name := rapid.SampledFrom(deckyPool).Draw(rt, "decky")
				state := rapid.SampledFrom(statePool).Draw(rt, "state")
				ev, err := r.SetDeckyStateWithEvent(ctx, name, state, "", repository.Event{Kind: "decky_mutated", Outcome: "failed"})
				md, exists := m.deckies[name]
				switch {
				case !state.Valid():
					expect(rt, "SetDeckyStateWithEvent invalid", err, decnet.ErrInvalid)
				case !exists:
					expect(rt, "SetDeckyStateWithEvent unknown", err, decnet.ErrNotFound)
				default:
					expect(rt, "SetDeckyStateWithEvent", err, nil)
					if ev.Decky != name || ev.HostUUID != md.Host {
						rt.Fatalf("event %+v: want decky %q host %q filled in", ev, name, md.Host)
					}
					md.State = state
					m.deckies[name] = md
					m.events++
				}
			},
			"DeleteDecky": func(rt *rapid.T) {
				name := rapid.SampledFrom(deckyPool).Draw(rt, "decky")
				err := r.DeleteDecky(ctx, name)
				if _, ok := m.deckies[name]; !ok {
					expect(rt, "DeleteDecky unknown", err, decnet.ErrNotFound)
					return
				}
				expect(rt, "DeleteDecky", err, nil)
				delete(m.deckies, name)
			},
			"ListDeckiesByHost": func(rt *rapid.T) { checkFiltered(rt, r, m) },
			"":                  func(rt *rapid.T) { checkModel(rt, r, m) },
		})
	})
}

// reset empties r of hosts and deckies and returns the last event id (the
// log is append-only: a case counts the events after it).
func reset(rt *rapid.T, r repository.Repository) int64 {
	ctx := rt.Context()
	hs, err := r.ListHosts(ctx, repository.HostFilter{})
	expect(rt, "ListHosts", err, nil)
	for _, h := range hs {
		expect(rt, "DeleteHost", r.DeleteHost(ctx, h.UUID), nil)
	}
	ds, err := r.ListDeckies(ctx, repository.DeckyFilter{})
	expect(rt, "ListDeckies", err, nil)
	for _, d := range ds {
		expect(rt, "DeleteDecky", r.DeleteDecky(ctx, d.Name), nil)
	}
	last := int64(0)
	for {
		evs, next, err := r.ListEvents(ctx, repository.EventFilter{After: last, Limit: repository.MaxEventLimit})
		expect(rt, "ListEvents", err, nil)
		if len(evs) > 0 {
			last = evs[len(evs)-1].ID
		}
		if next == 0 {
			return last
		}
	}
}

// updateDeckyOp updates a decky from a read, sometimes stale or moving it,
// sometimes after a runtime write that landed after the read, always with
// arbitrary runtime fields: UpdateDecky ignores them, UpdateDeckyWithEvent
// writes them (and requires a valid state) with one event.
func updateDeckyOp(rt *rapid.T, r repository.Repository, m *model, withEvent bool) {
	ctx := rt.Context()
	if len(m.deckies) == 0 {
		rt.Skip("no decky")
	}
	name := rapid.SampledFrom(m.deckyNames()).Draw(rt, "decky")
	stale := rapid.Bool().Draw(rt, "stale")
	move := rapid.Bool().Draw(rt, "move")
	svcs := rapid.SliceOfNDistinct(rapid.SampledFrom(servicePool), 1, 3, rapid.ID[string]).Draw(rt, "services")
	d, err := r.GetDecky(ctx, name)
	expect(rt, "GetDecky", err, nil)
	md := m.deckies[name]
	if rapid.Bool().Draw(rt, "state write after the read") {
		st := rapid.SampledFrom(statePool[:len(statePool)-1]).Draw(rt, "written state")
		expect(rt, "SetDeckyState", r.SetDeckyState(ctx, name, st, "after the read"), nil)
		md.State = st
		m.deckies[name] = md
	}
	d.Services = svcs
	d.State = rapid.SampledFrom(append(statePool, "")).Draw(rt, "state")
	if stale {
		d.Version++
	}
	if move {
		if d.HostUUID == "" {
			d.HostUUID = ghostHost
		} else {
			d.HostUUID = ""
		}
	}
	var events int
	if withEvent {
		_, _, err = r.UpdateDeckyWithEvent(ctx, d, repository.Event{Kind: "decky_mutated", Outcome: "ok"})
		after, _, lerr := r.ListEvents(ctx, repository.EventFilter{After: m.after, Limit: repository.MaxEventLimit})
		expect(rt, "ListEvents", lerr, nil)
		events = len(after) - m.events
		if err != nil && events != 0 {
			rt.Fatalf("refused UpdateDeckyWithEvent (%v) appended %d events", err, events)
		}
		if !d.State.Valid() {
			expect(rt, "UpdateDeckyWithEvent invalid state", err, decnet.ErrInvalid)
			return
		}
	} else {
		_, err = r.UpdateDecky(ctx, d)
	}
	if stale || move {
		expect(rt, "update stale or moving", err, decnet.ErrConflict)
		return
	}
	expect(rt, "update", err, nil)
	md.Services, md.Version = svcs, md.Version+1
	if withEvent {
		md.State = d.State
		m.events++
	}
	m.deckies[name] = md
}

func checkModel(rt *rapid.T, r repository.Repository, m *model) {
	ctx := rt.Context()
	hs, err := r.ListHosts(ctx, repository.HostFilter{})
	expect(rt, "ListHosts", err, nil)
	var gotHosts, wantHosts []modelHost
	for _, h := range hs {
		gotHosts = append(gotHosts, modelHost{UUID: h.UUID, Name: h.Name, Address: h.Address, Status: h.Status, Version: h.Version})
	}
	for _, h := range m.hosts {
		wantHosts = append(wantHosts, h)
	}
	slices.SortFunc(wantHosts, func(a, b modelHost) int { return cmpString(a.Name, b.Name) })
	if !slices.Equal(gotHosts, wantHosts) {
		rt.Fatalf("hosts:\n got  %+v\n want %+v", gotHosts, wantHosts)
	}
	check := func(f repository.DeckyFilter, keep func(modelDecky) bool) {
		ds, err := r.ListDeckies(ctx, f)
		expect(rt, "ListDeckies", err, nil)
		var got, want []modelDecky
		for _, d := range ds {
			if !slices.Equal(d.Services, d.Spec.Services) {
				rt.Fatalf("decky %s: services %v but spec services %v", d.Name, d.Services, d.Spec.Services)
			}
			got = append(got, modelDecky{Name: d.Name, Host: d.HostUUID, Services: d.Services, State: d.State, Version: d.Version})
		}
		for _, n := range m.deckyNames() {
			if keep(m.deckies[n]) {
				want = append(want, m.deckies[n])
			}
		}
		if !slices.EqualFunc(got, want, func(a, b modelDecky) bool {
			return a.Name == b.Name && a.Host == b.Host && slices.Equal(a.Services, b.Services) && a.State == b.State && a.Version == b.Version
		}) {
			rt.Fatalf("deckies (filter %+v):\n got  %+v\n want %+v", f, got, want)
		}
	}
	check(repository.DeckyFilter{}, func(modelDecky) bool { return true })
	evs, _, err := r.ListEvents(ctx, repository.EventFilter{After: m.after, Limit: repository.MaxEventLimit})
	expect(rt, "ListEvents", err, nil)
	if len(evs) != m.events {
		rt.Fatalf("%d events appended, want %d", len(evs), m.events)
	}
}

// checkFiltered compares one filtered decky list with the model.
func checkFiltered(rt *rapid.T, r repository.Repository, m *model) {
	host := rapid.SampledFrom(append(m.uuids(), "", ghostHost)).Draw(rt, "filter host")
	f := repository.DeckyFilter{HostUUID: host, Unassigned: host == ""}
	ds, err := r.ListDeckies(rt.Context(), f)
	expect(rt, "ListDeckies filtered", err, nil)
	var want []string
	for _, n := range m.deckyNames() {
		if m.deckies[n].Host == host {
			want = append(want, n)
		}
	}
	if got := deckyNames(ds); !slices.Equal(got, want) {
		rt.Fatalf("deckies on host %q: got %v, want %v", host, got, want)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
