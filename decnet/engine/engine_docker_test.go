package engine_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

type fixture struct {
	eng     *engine.Engine
	admin   *engine.Engine
	img     dockertest.ImageSet
	project string
	net     decnet.Network
}

func newFixture(t *testing.T, prefix string) *fixture {
	t.Helper()
	admin := dockertest.Require(t)
	img := dockertest.Images(t)
	project := dockertest.Project(t, prefix)
	eng := dockertest.NewEngine(t, engine.Config{
		Project:   project,
		Catalog:   dockertest.Catalog(t, img),
		BaseImage: img.Pause,
		WorkDir:   t.TempDir(),
	})
	return &fixture{eng: eng, admin: admin, img: img, project: project, net: dockertest.Network(t)}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func statusOf(t *testing.T, ctx context.Context, eng *engine.Engine, cfg decnet.Config, name string) decnet.DeckyStatus {
	t.Helper()
	st, err := eng.Status(ctx, cfg)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, s := range st {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("Status has no decky %q", name)
	return decnet.DeckyStatus{}
}

func TestApplyMutateTeardown(t *testing.T) {
	f := newFixture(t, "engine")
	ctx := testCtx(t)
	name := dockertest.Name(t, "web")
	ip := dockertest.Addr(f.net.Subnet, 10)
	cfg := decnet.Config{
		Mode:    decnet.ModeUnihost,
		Network: f.net,
		Deckies: []decnet.Decky{{Name: name, Hostname: "files01", IP: ip, Services: []string{"ssh", "http", "ftp"}}},
	}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	st := statusOf(t, ctx, f.eng, cfg, name)
	if !st.Running {
		t.Fatalf("after Apply not running: %+v", st)
	}
	ids := idsByName(t, f)
	for _, svc := range []string{"", "ssh", "http", "ftp"} {
		if _, ok := ids[compose.ContainerName(name, svc)]; !ok {
			t.Fatalf("no container for %q: %v", svc, ids)
		}
	}
	b, err := dockertest.Banner(ctx, ip.String()+":22")
	if err != nil || b != "ssh "+name+" files01" {
		t.Fatalf("ssh banner = %q, %v", b, err)
	}

	cfg.Deckies[0].Services = []string{"ssh", "smtp"}
	if err := f.eng.ApplyDecky(ctx, cfg, name); err != nil {
		t.Fatalf("ApplyDecky: %v", err)
	}
	after := idsByName(t, f)
	for _, kept := range []string{"", "ssh"} {
		if n := compose.ContainerName(name, kept); after[n] != ids[n] {
			t.Errorf("%s recreated: %s -> %s", n, ids[n], after[n])
		}
	}
	for _, gone := range []string{"http", "ftp"} {
		if _, ok := after[compose.ContainerName(name, gone)]; ok {
			t.Errorf("%s container still exists", gone)
		}
	}
	if _, ok := after[compose.ContainerName(name, "smtp")]; !ok {
		t.Fatalf("no smtp container")
	}
	b, err = dockertest.Banner(ctx, ip.String()+":25")
	if err != nil || b != "smtp "+name+" files01" {
		t.Fatalf("smtp banner on the base's IP = %q, %v", b, err)
	}
	st = statusOf(t, ctx, f.eng, cfg, name)
	want := map[string]string{"base": "running", "ssh": "running", "smtp": "running"}
	if !st.Running || !maps.Equal(st.Containers, want) || st.IP != ip.String() {
		t.Fatalf("status after mutate = %+v", st)
	}

	if err := f.eng.Teardown(ctx, ""); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	projects, err := f.admin.Projects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(projects, f.project) {
		t.Fatalf("project %s still has decnet.managed containers", f.project)
	}
	st = statusOf(t, ctx, f.eng, cfg, name)
	if st.Running || st.Containers["base"] != decnet.ContainerAbsent {
		t.Fatalf("status after teardown = %+v", st)
	}
}

func TestMissingImageIsNotFound(t *testing.T) {
	f := newFixture(t, "noimg")
	ctx := testCtx(t)
	cat := dockertest.Catalog(t, f.img, "ssh")
	if err := cat.Set(decnet.Service{Name: "ghost", Image: "dnt-no-such-image:" + dockertest.Name(t, "x")}); err != nil {
		t.Fatal(err)
	}
	eng := dockertest.NewEngine(t, engine.Config{Project: f.project, Catalog: cat, BaseImage: f.img.Pause})
	name := dockertest.Name(t, "ghost")
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net,
		Deckies: []decnet.Decky{{Name: name, Services: []string{"ssh", "ghost"}}}}
	err := eng.Apply(ctx, cfg)
	var ae *engine.ApplyError
	if !errors.As(err, &ae) || !errors.Is(err, decnet.ErrApplyFailed) {
		t.Fatalf("Apply = %v, want *ApplyError", err)
	}
	var de *decnet.Error
	if !errors.Is(ae.Deckies[name], decnet.ErrNotFound) || !errors.As(ae.Deckies[name], &de) || de.Kind != "image" {
		t.Fatalf("decky error = %v, want ErrNotFound for the image", ae.Deckies[name])
	}
	st := statusOf(t, ctx, eng, cfg, name)
	if st.Containers["ssh"] != "running" || st.Containers["ghost"] != decnet.ContainerAbsent || st.Running {
		t.Fatalf("status = %+v", st)
	}
}

// TestProjectsListsLeftNetworks: a project whose containers are gone but
// whose network is left (a teardown that stopped half-way) is still listed by
// Projects, so RemoveProject (the reaper) finishes it.
func TestProjectsListsLeftNetworks(t *testing.T) {
	f := newFixture(t, "netonly")
	ctx := testCtx(t)
	name := dockertest.Name(t, "n")
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net, Deckies: []decnet.Decky{{Name: name, Services: []string{"ssh"}}}}
	if err := f.eng.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Teardown(ctx, name); err != nil { // containers only; the network stays
		t.Fatal(err)
	}
	if cs, err := f.eng.Containers(ctx); err != nil || len(cs) != 0 {
		t.Fatalf("containers after Teardown(%s) = %v, %v", name, cs, err)
	}
	projects, err := f.admin.Projects(ctx)
	if err != nil || !slices.Contains(projects, f.project) {
		t.Fatalf("Projects = %v, %v; want %s (its network is left)", projects, err, f.project)
	}
	if err := f.admin.RemoveProject(ctx, f.project); err != nil {
		t.Fatal(err)
	}
	subnets, err := f.admin.Subnets(ctx)
	if err != nil || slices.Contains(subnets, f.net.Subnet) {
		t.Fatalf("network on %s not removed by RemoveProject (%v)", f.net.Subnet, err)
	}
	if projects, err = f.admin.Projects(ctx); err != nil || slices.Contains(projects, f.project) {
		t.Fatalf("Projects after RemoveProject = %v, %v", projects, err)
	}
}
