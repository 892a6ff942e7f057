package mutator_test

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// TestRotateThroughAgentOnDocker runs the whole path: the mutator, on a
// SQLite repository, rotates three deckies every 2 seconds through the
// default resolver and a real agent over mTLS, whose engine changes real
// containers. After three rounds the containers, the agent's /status, the
// repository and the event log all agree.
func TestRotateThroughAgentOnDocker(t *testing.T) {
	dockertest.Require(t)
	img := dockertest.Images(t)
	project := dockertest.Project(t, "mutator")
	network := dockertest.Network(t)
	cat := dockertest.Catalog(t, img, "ssh", "http", "ftp", "smtp", "telnet")
	stateDir := filepath.Join(t.TempDir(), "state")
	eng := dockertest.NewEngine(t, engine.Config{
		Project:     project,
		Catalog:     cat,
		BaseImage:   img.Pause,
		WorkDir:     stateDir,
		ComposeFile: filepath.Join(stateDir, agent.ComposeFileName),
	})
	srv := agenttest.Start(t, agenttest.Options{Engine: eng, Network: network, Catalog: cat, StateDir: stateDir, PinMaster: true})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// The worker as the master knows it, and its shard.
	st := openStore(t)
	_, port, _ := net.SplitHostPort(srv.Addr)
	portN, _ := strconv.Atoi(port)
	host, err := st.AddHost(ctx, repository.Host{Name: "worker-1", Address: "127.0.0.1", AgentPort: portN,
		Status: repository.HostActive, Fingerprint: srv.PKI.Worker.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := decnet.Config{Mode: decnet.ModeSwarm, Network: network}
	var names []string
	for i, svcs := range [][]string{{"ssh"}, {"http", "ftp"}, {"smtp"}} {
		name := dockertest.Name(t, "rot"+strconv.Itoa(i))
		names = append(names, name)
		cfg.Deckies = append(cfg.Deckies, decnet.Decky{Name: name, Services: svcs, HostUUID: host.UUID})
	}
	deployer := srv.Client(t)
	if _, err := deployer.Deploy(ctx, cfg, agentclient.DeployOptions{}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	initial := containers(t, eng)
	for _, d := range cfg.Deckies {
		createDecky(t, st, d.Name, d.Services, onHost(host.UUID), withInterval(2*time.Second))
	}

	ch, err := mutator.NewChooser(mutator.ChooserConfig{Catalog: cat, Archetypes: mutator.Archetypes{}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: st, Credentials: agentclient.Credentials{Bundle: srv.PKI.Master}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	e := mustEngine(t, mutator.Config{Store: st, Resolver: res, Chooser: ch})
	handshakes := srv.Agent.Handshakes()
	stop := runEngine(t, e)

	// Three rounds: poll the event log (with the test's deadline).
	const rounds = 3
	for {
		done := true
		for _, n := range names {
			if ok := okEvents(events(t, st, n)); len(ok) < rounds {
				done = false
			}
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			for _, n := range names {
				t.Logf("%s events: %+v", n, events(t, st, n))
			}
			t.Fatalf("fewer than %d rotations per decky before the deadline", rounds)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	status, err := deployer.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	byName := map[string]decnet.DeckyStatus{}
	for _, d := range status.Deckies {
		byName[d.Name] = d
	}
	final := containers(t, eng)
	for _, n := range names {
		d := getDecky(t, st, n)
		evs := events(t, st, n)
		for i, ev := range evs {
			if ev.Outcome != mutator.OutcomeOK {
				t.Errorf("%s event %d failed: %s", n, i, ev.Error)
			}
			if ev.HostUUID != host.UUID || ev.HostName != "worker-1" || ev.Trigger != mutator.TriggerScheduled {
				t.Errorf("%s event %d = %+v", n, i, ev)
			}
			if i > 0 && !slices.Equal(ev.OldServices, evs[i-1].NewServices) {
				t.Errorf("%s event %d old %v, previous new %v", n, i, ev.OldServices, evs[i-1].NewServices)
			}
		}
		if len(evs) < rounds || len(evs) > rounds+1 {
			t.Errorf("%s has %d events, want %d (or one more in flight at stop)", n, len(evs), rounds)
		}
		last := evs[len(evs)-1]
		if !sameSet(d.Services, last.NewServices) || d.State != repository.DeckyRunning || d.LastError != "" {
			t.Errorf("%s in the repository: %v %s %q; last event new %v", n, d.Services, d.State, d.LastError, last.NewServices)
		}
		// The agent agrees with the repository.
		s, ok := byName[n]
		if !ok || !sameSet(s.Services, d.Services) || !s.Running {
			t.Errorf("%s in /status = %+v, repository services %v", n, s, d.Services)
		}
		// Docker runs exactly the base and the repository's services.
		var want []string
		want = append(want, n)
		for _, svc := range d.Services {
			want = append(want, n+"-"+svc)
		}
		var got []string
		for name, c := range final {
			if c.Decky == n {
				got = append(got, name)
				if c.State != decnet.ContainerRunning {
					t.Errorf("%s is %s", name, c.State)
				}
			}
		}
		if !sameSet(got, want) {
			t.Errorf("%s containers %v, want %v", n, got, want)
		}
		// The base kept its identity; the services really changed.
		if final[n].ID != initial[n].ID {
			t.Errorf("%s base container was recreated", n)
		}
		if sameServiceContainers(initial, final, n) {
			t.Errorf("%s service containers are the deployed ones: nothing changed", n)
		}
	}
	// The decky answers on its new services' ports.
	d0 := getDecky(t, st, names[0])
	ip, err := netip.ParseAddr(byName[names[0]].IP)
	if err != nil {
		t.Fatalf("decky ip %q", byName[names[0]].IP)
	}
	svc := d0.Services[0]
	port0, _ := cat.Lookup(svc)
	banner, err := dockertest.Banner(ctx, netip.AddrPortFrom(ip, port0.Ports[0].Port).String())
	if err != nil || banner != svc+" "+names[0]+" "+names[0] {
		t.Errorf("%s:%d banner = %q, %v", ip, port0.Ports[0].Port, banner, err)
	}
	// The resolver kept one client whose connection every round reused:
	// one handshake in all.
	if n := srv.Agent.Handshakes() - handshakes; n != 1 {
		t.Errorf("agent completed %d handshakes over %d rounds, want 1 (connection reused)", n, rounds)
	}
}

func okEvents(evs []repository.Event) []repository.Event {
	var out []repository.Event
	for _, e := range evs {
		if e.Outcome == mutator.OutcomeOK {
			out = append(out, e)
		}
	}
	return out
}

func containers(t *testing.T, eng *engine.Engine) map[string]engine.Container {
	t.Helper()
	cs, err := eng.Containers(t.Context())
	if err != nil {
		t.Fatalf("containers: %v", err)
	}
	out := map[string]engine.Container{}
	for _, c := range cs {
		out[c.Name] = c
	}
	return out
}

// sameServiceContainers reports whether decky's service containers (names
// and ids) are identical in a and b.
func sameServiceContainers(a, b map[string]engine.Container, decky string) bool {
	pick := func(m map[string]engine.Container) map[string]string {
		out := map[string]string{}
		for name, c := range m {
			if c.Decky == decky && c.Service != decnet.BaseContainerKey {
				out[name] = c.ID
			}
		}
		return out
	}
	pa, pb := pick(a), pick(b)
	if len(pa) != len(pb) {
		return false
	}
	for k, v := range pa {
		if pb[k] != v {
			return false
		}
	}
	return true
}

var _ mutator.LocalEngine = (*engine.Engine)(nil)

// A master-resident decky is mutated through the local target on the
// master's own engine: its base keeps running, its services change.
func TestLocalTargetOnDocker(t *testing.T) {
	dockertest.Require(t)
	img := dockertest.Images(t)
	project := dockertest.Project(t, "mutlocal")
	network := dockertest.Network(t)
	cat := dockertest.Catalog(t, img, "ssh", "http", "smtp")
	eng := dockertest.NewEngine(t, engine.Config{Project: project, Catalog: cat, BaseImage: img.Pause})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	name := dockertest.Name(t, "home")
	spec := decnet.Decky{Name: name, IP: dockertest.Addr(network.Subnet, 10), Services: []string{"ssh"}}
	if err := eng.Apply(ctx, decnet.Config{Mode: decnet.ModeUnihost, Network: network, Deckies: []decnet.Decky{spec}}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	before := containers(t, eng)
	st := openStore(t)
	if _, err := st.CreateDecky(ctx, repository.Decky{Name: name, Spec: spec, Services: spec.Services, State: repository.DeckyRunning}); err != nil {
		t.Fatal(err)
	}
	local, err := mutator.NewLocalTarget(mutator.LocalConfig{Engine: eng, Deckies: st, Network: network, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mutator.NewResolver(mutator.ResolverConfig{Hosts: st, Local: local,
		NewClient: func(repository.Host) (mutator.AgentClient, error) { t.Fatal("no decky has a host"); return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := mutator.NewChooser(mutator.ChooserConfig{Catalog: cat, Archetypes: mutator.Archetypes{}, Rand: seeded(16)})
	if err != nil {
		t.Fatal(err)
	}
	e := mustEngine(t, mutator.Config{Store: st, Resolver: res, Chooser: ch})
	out, err := e.MutateNow(ctx, name)
	if err != nil {
		t.Fatalf("MutateNow: %v", err)
	}
	after := containers(t, eng)
	if after[name].ID != before[name].ID {
		t.Errorf("base container recreated")
	}
	var got []string
	for n, c := range after {
		if c.Decky == name && c.Service != decnet.BaseContainerKey {
			got = append(got, c.Service)
			if c.State != decnet.ContainerRunning {
				t.Errorf("%s is %s", n, c.State)
			}
		}
	}
	if !sameSet(got, out[0].New) || !sameSet(getDecky(t, st, name).Services, out[0].New) {
		t.Errorf("containers run %v, the mutation chose %v", got, out[0].New)
	}
	svc, _ := cat.Lookup(out[0].New[0])
	banner, err := dockertest.Banner(ctx, netip.AddrPortFrom(spec.IP, svc.Ports[0].Port).String())
	if err != nil || banner != svc.Name+" "+name+" "+name {
		t.Errorf("banner %q, %v", banner, err)
	}
}
