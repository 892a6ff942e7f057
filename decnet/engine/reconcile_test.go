package engine_test

import (
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

func planActions(t *testing.T, f *fixture, cfg decnet.Config) (map[string]string, []string) {
	t.Helper()
	p, err := f.eng.Plan(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, d := range p.Deckies {
		m[d.Name] = d.Action
	}
	return m, p.Remove
}

func TestReconcile(t *testing.T) {
	f := newFixture(t, "reconcile")
	ctx := testCtx(t)
	a, b := dockertest.Name(t, "a"), dockertest.Name(t, "b")
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{
		{Name: a, IP: dockertest.Addr(f.net.Subnet, 20), Services: []string{"ssh", "http"}},
		{Name: b, IP: dockertest.Addr(f.net.Subnet, 21), Services: []string{"ftp"}, OS: decnet.OSWindows},
	}}
	if acts, _ := planActions(t, f, cfg); acts[a] != "create" || acts[b] != "create" {
		t.Fatalf("plan before deploy = %v", acts)
	}
	if cs, _ := f.eng.Containers(ctx); len(cs) != 0 {
		t.Fatalf("Plan created containers: %v", cs)
	}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	first := idsByName(t, f)
	if len(first) != 5 {
		t.Fatalf("containers after deploy: %v", first)
	}
	if acts, rm := planActions(t, f, cfg); acts[a] != "keep" || acts[b] != "keep" || len(rm) != 0 {
		t.Fatalf("plan after deploy = %v %v", acts, rm)
	}
	// Applying the same config again touches nothing.
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if again := idsByName(t, f); !maps.Equal(first, again) {
		t.Fatalf("idempotent Apply recreated containers: %v -> %v", first, again)
	}

	// A base change (hostname) recreates that base and its services, nothing else.
	cfg.Deckies[0].Hostname = "renamed"
	if acts, _ := planActions(t, f, cfg); acts[a] != "update" || acts[b] != "keep" {
		t.Fatalf("plan after hostname change = %v", acts)
	}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	second := idsByName(t, f)
	for _, n := range []string{a, a + "-ssh", a + "-http"} {
		if second[n] == "" || second[n] == first[n] {
			t.Errorf("%s not recreated after its base changed", n)
		}
	}
	for _, n := range []string{b, b + "-ftp"} {
		if second[n] != first[n] {
			t.Errorf("%s recreated although decky %s did not change", n, b)
		}
	}
	if banner, err := dockertest.Banner(ctx, dockertest.Addr(f.net.Subnet, 20).String()+":22"); err != nil || banner != "ssh "+a+" renamed" {
		t.Errorf("banner after base change = %q, %v", banner, err)
	}

	// A crashed service is started again; a stopped base is recreated with its services.
	if err := f.eng.StopContainer(ctx, compose.ContainerName(a, "http")); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.StopContainer(ctx, compose.ContainerName(b, "")); err != nil {
		t.Fatal(err)
	}
	st, err := f.eng.Status(ctx, cfg)
	if err != nil || st[0].Running || st[0].Containers["http"] != "exited" || st[1].Containers["base"] != "exited" {
		t.Fatalf("status with stopped containers = %+v, %v", st, err)
	}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	third := idsByName(t, f)
	if third[a+"-http"] != second[a+"-http"] || third[a+"-ssh"] != second[a+"-ssh"] {
		t.Errorf("restarting a stopped service recreated containers")
	}
	if third[b] == second[b] || third[b+"-ftp"] == second[b+"-ftp"] {
		t.Errorf("stopped base %s was not recreated with its service", b)
	}
	st, err = f.eng.Status(ctx, cfg)
	if err != nil || !st[0].Running || !st[1].Running {
		t.Fatalf("status after repair = %+v, %v", st, err)
	}

	// Dropping a decky removes its containers.
	dropped := cfg
	dropped.Deckies = cfg.Deckies[:1]
	if _, rm := planActions(t, f, dropped); !slices.Equal(rm, []string{b}) {
		t.Fatalf("plan remove = %v, want [%s]", rm, b)
	}
	if err := f.eng.Apply(ctx, dropped); err != nil {
		t.Fatal(err)
	}
	for n := range idsByName(t, f) {
		if strings.HasPrefix(n, b) {
			t.Errorf("container %s of the dropped decky remains", n)
		}
	}

	// Teardown of one decky leaves the others.
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Teardown(ctx, a); err != nil {
		t.Fatal(err)
	}
	left := idsByName(t, f)
	if len(left) != 2 || left[b] == "" || left[b+"-ftp"] == "" {
		t.Fatalf("after Teardown(%s): %v", a, left)
	}
}

func TestInvalidConfigChangesNothing(t *testing.T) {
	f := newFixture(t, "invalid")
	ctx := testCtx(t)
	name := dockertest.Name(t, "bad")
	for label, cfg := range map[string]decnet.Config{
		"unknown service": {Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name, Services: []string{"gopher"}}}},
		"ip outside":      {Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name, IP: mustAddr("192.0.2.7"), Services: []string{"ssh"}}}},
		"duplicate":       {Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name, Services: []string{"ssh", "ssh"}}}},
		"traversal":       {Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: "../x", Services: []string{"ssh"}}}},
		"empty services":  {Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name}}},
	} {
		err := f.eng.Apply(ctx, cfg)
		var ve *decnet.ValidationError
		if !errors.Is(err, decnet.ErrInvalid) || !errors.As(err, &ve) {
			t.Errorf("%s: Apply = %v, want a validation error", label, err)
		}
		if err := f.eng.ApplyDecky(ctx, cfg, name); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("%s: ApplyDecky = %v, want ErrInvalid", label, err)
		}
	}
	if cs, err := f.eng.Containers(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("containers after rejected input: %v, %v", cs, err)
	}
	subnets, err := f.admin.Subnets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(subnets, f.net.Subnet) {
		t.Fatalf("network %s was created for rejected input", f.net.Subnet)
	}
	// Status only reads, even for a fleet the catalog no longer covers.
	st, err := f.eng.Status(ctx, decnet.Config{Mode: decnet.ModeUnihost, Network: f.net,
		Deckies: []decnet.Decky{{Name: name, Services: []string{"gopher"}}}})
	if err != nil || len(st) != 1 || st[0].Running || st[0].Containers["gopher"] != decnet.ContainerAbsent {
		t.Fatalf("Status of an undeployable fleet = %+v, %v", st, err)
	}
	ok := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name, Services: []string{"ssh"}}}}
	if err := f.eng.ApplyDecky(ctx, ok, "not-in-config"); !errors.Is(err, decnet.ErrNotFound) {
		t.Fatalf("ApplyDecky of an unknown decky = %v, want ErrNotFound", err)
	}
}

// TestComposeCLI: docker-compose, given the file the engine renders, sees the
// containers the engine made.
func TestComposeCLI(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose not installed")
	}
	f := newFixture(t, "cli")
	ctx := testCtx(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "decnet-compose.yml")
	eng := dockertest.NewEngine(t, engine.Config{Project: f.project, Catalog: dockertest.Catalog(t, f.img), BaseImage: f.img.Pause,
		WorkDir: dir, ComposeFile: file})
	name := dockertest.Name(t, "cli")
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net,
		Deckies: []decnet.Decky{{Name: name, IP: dockertest.Addr(f.net.Subnet, 30), Services: []string{"ssh", "http"}}}}
	y, err := eng.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, y, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "-p", f.project, "-f", file, "ps").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose ps: %v\n%s", err, out)
	}
	for _, svc := range []string{"", "ssh", "http"} {
		n := compose.ContainerName(name, svc)
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) > 0 && fields[0] == n && strings.Contains(line, "Up") {
				found = true
			}
		}
		if !found {
			t.Errorf("docker-compose ps does not list %s as Up:\n%s", n, out)
		}
	}
}

// TestForeignNameConflict: a decky whose container name is taken by another
// project's container fails with ErrConflict and leaves that container alone;
// RemoveProject removes one project only.
func TestForeignNameConflict(t *testing.T) {
	f := newFixture(t, "owner")
	ctx := testCtx(t)
	name := dockertest.Name(t, "dup")
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name, Services: []string{"ssh"}}}}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	owned := idsByName(t, f)

	other := dockertest.Project(t, "intruder")
	eng := dockertest.NewEngine(t, engine.Config{Project: other, Catalog: dockertest.Catalog(t, f.img), BaseImage: f.img.Pause})
	err := eng.Apply(ctx, cfg)
	var ae *engine.ApplyError
	if !errors.As(err, &ae) || !errors.Is(ae.Deckies[name], decnet.ErrConflict) {
		t.Fatalf("Apply in another project = %v, want ErrConflict for %s", err, name)
	}
	if after := idsByName(t, f); !maps.Equal(owned, after) {
		t.Fatalf("the owner's containers changed: %v -> %v", owned, after)
	}
	if err := f.admin.RemoveProject(ctx, other); err != nil {
		t.Fatal(err)
	}
	if after := idsByName(t, f); !maps.Equal(owned, after) {
		t.Fatalf("RemoveProject(%s) touched project %s: %v -> %v", other, f.project, owned, after)
	}
	projects, err := f.admin.Projects(ctx)
	if err != nil || !slices.Contains(projects, f.project) || slices.Contains(projects, other) {
		t.Fatalf("Projects = %v, %v", projects, err)
	}
}

// TestNetworkDrift: a network whose settings changed is replaced by Apply
// (its deckies move to the new subnet) and refused by ApplyDecky.
func TestNetworkDrift(t *testing.T) {
	f := newFixture(t, "drift")
	ctx := testCtx(t)
	name := dockertest.Name(t, "mv")
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net,
		Deckies: []decnet.Decky{{Name: name, IP: dockertest.Addr(f.net.Subnet, 40), Services: []string{"ssh"}}}}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// Only the network differs (its gateway): no container spec changes,
	// but Apply would replace the network and recreate the decky.
	regw := cfg
	regw.Network.Gateway = dockertest.Addr(cfg.Network.Subnet, 254)
	if acts, _ := planActions(t, f, regw); acts[name] != "update" {
		t.Fatalf("plan on a drifted network = %v, want update", acts)
	}
	if acts, _ := planActions(t, f, cfg); acts[name] != "keep" {
		t.Fatalf("plan on the deployed network = %v, want keep", acts)
	}
	moved := cfg
	moved.Network.Subnet = dockertest.Subnet(t)
	moved.Network.Gateway = dockertest.Addr(moved.Network.Subnet, 1)
	moved.Deckies = []decnet.Decky{cfg.Deckies[0].Clone()}
	moved.Deckies[0].IP = dockertest.Addr(moved.Network.Subnet, 40)
	if err := f.eng.ApplyDecky(ctx, moved, name); !errors.Is(err, decnet.ErrConflict) {
		t.Fatalf("ApplyDecky on a drifted network = %v, want ErrConflict", err)
	}
	if err := f.eng.Apply(ctx, moved); err != nil {
		t.Fatalf("Apply on a drifted network: %v", err)
	}
	st, err := f.eng.Status(ctx, moved)
	if err != nil || !st[0].Running || st[0].IP != moved.Deckies[0].IP.String() {
		t.Fatalf("status after the move = %+v, %v", st, err)
	}
	if b, err := dockertest.Banner(ctx, moved.Deckies[0].IP.String()+":22"); err != nil || !strings.HasPrefix(b, "ssh "+name) {
		t.Fatalf("banner on the new address = %q, %v", b, err)
	}
}
