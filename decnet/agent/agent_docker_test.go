package agent_test

import (
	"bytes"
	"context"
	"maps"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// containerIDs returns container name → (id, state) of the engine's project.
func containerIDs(t *testing.T, eng *engine.Engine) map[string][2]string {
	t.Helper()
	cs, err := eng.Containers(t.Context())
	if err != nil {
		t.Fatalf("containers: %v", err)
	}
	out := map[string][2]string{}
	for _, c := range cs {
		out[c.Name] = [2]string{c.ID, c.State}
	}
	return out
}

// TestMutateThroughDocker drives a real mutate from the client through the
// agent and the engine to Docker: {ssh,http,ftp} → {ssh,smtp} keeps the
// base and the ssh container, removes http and ftp, and starts smtp; a dry
// run before it changes neither the state file nor any container.
func TestMutateThroughDocker(t *testing.T) {
	dockertest.Require(t)
	img := dockertest.Images(t)
	project := dockertest.Project(t, "agent")
	network := dockertest.Network(t)
	cat := dockertest.Catalog(t, img, "ssh", "http", "ftp", "smtp")
	stateDir := filepath.Join(t.TempDir(), "state")
	eng := dockertest.NewEngine(t, engine.Config{
		Project:     project,
		Catalog:     cat,
		BaseImage:   img.Pause,
		WorkDir:     stateDir,
		ComposeFile: filepath.Join(stateDir, agent.ComposeFileName),
	})
	srv := agenttest.Start(t, agenttest.Options{Engine: eng, Network: network, Catalog: cat, StateDir: stateDir})
	c := srv.Client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	name := dockertest.Name(t, "web")
	if _, err := c.Deploy(ctx, shard(decnet.Decky{Name: name, Services: []string{"ssh", "http", "ftp"}}), agentclient.DeployOptions{}); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	before := containerIDs(t, eng)
	if len(before) != 4 {
		t.Fatalf("after deploy: %d containers, want 4: %v", len(before), before)
	}
	stateBefore := readState(t, srv)

	res, err := c.Mutate(ctx, name, []string{"ssh", "smtp"}, agentclient.MutateOptions{DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if res.Plan == nil || len(res.Plan.Add) != 1 || res.Plan.Add[0] != "smtp" {
		t.Fatalf("dry run plan = %+v", res.Plan)
	}
	if !bytes.Equal(stateBefore, readState(t, srv)) {
		t.Fatal("dry run changed the state file")
	}
	if got := containerIDs(t, eng); !maps.Equal(got, before) {
		t.Fatalf("dry run changed containers:\nbefore %v\nafter  %v", before, got)
	}

	if _, err := c.Mutate(ctx, name, []string{"ssh", "smtp"}, agentclient.MutateOptions{}); err != nil {
		t.Fatalf("mutate: %v", err)
	}
	after := containerIDs(t, eng)
	if after[name][0] == "" || after[name][0] != before[name][0] {
		t.Errorf("base container changed: %v → %v", before[name], after[name])
	}
	if after[name+"-ssh"][0] == "" || after[name+"-ssh"][0] != before[name+"-ssh"][0] {
		t.Errorf("ssh container changed: %v → %v", before[name+"-ssh"], after[name+"-ssh"])
	}
	for _, gone := range []string{name + "-http", name + "-ftp"} {
		if _, ok := after[gone]; ok {
			t.Errorf("%s still exists", gone)
		}
	}
	if s := after[name+"-smtp"]; s[1] != decnet.ContainerRunning {
		t.Errorf("smtp container = %v, want running", s)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if len(st.Deckies) != 1 || !st.Deckies[0].Running {
		t.Fatalf("status = %+v", st)
	}
	ip, err := netip.ParseAddr(st.Deckies[0].IP)
	if err != nil || !network.Subnet.Contains(ip) {
		t.Fatalf("decky ip %q not in %s", st.Deckies[0].IP, network.Subnet)
	}
	banner, err := dockertest.Banner(ctx, netip.AddrPortFrom(ip, 25).String())
	if err != nil || banner != "smtp "+name+" "+name {
		t.Fatalf("smtp banner = %q, %v", banner, err)
	}
	// The compose file the agent wrote names the new service, not the old.
	compose, err := readFile(filepath.Join(stateDir, agent.ComposeFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(compose, []byte(name+"-smtp")) || bytes.Contains(compose, []byte(name+"-http")) {
		t.Fatalf("compose file does not reflect the mutation:\n%s", compose)
	}
}
