package reaper

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// The engine implements what the reaper needs.
var _ ContainerRemover = (*engine.Engine)(nil)

// TestExecuteRemovesProjectContainers runs a plan against the real engine:
// two projects matched by the plan's patterns and one that is not. (The
// plan uses test project names: the real decnet/decnet-* patterns would
// hit other tests' and real fleets' containers on this shared engine.)
func TestExecuteRemovesProjectContainers(t *testing.T) {
	admin := dockertest.Require(t)
	img := dockertest.Images(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	matched := dockertest.Project(t, "reap")    // dnt-reap-<rand>
	matchedX := matched + "-x"                  // matched by the second pattern
	other := dockertest.Project(t, "reapother") // dnt-reapother-<rand>: not matched
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_ = admin.RemoveProject(cctx, matchedX)
	})
	engines := map[string]*engine.Engine{}
	for _, p := range []string{matched, matchedX, other} {
		e := dockertest.NewEngine(t, engine.Config{
			Project:   p,
			Catalog:   dockertest.Catalog(t, img, "ssh", "http"),
			BaseImage: img.Pause,
		})
		cfg := decnet.Config{
			Mode:    decnet.ModeUnihost,
			Network: dockertest.Network(t),
			Deckies: []decnet.Decky{{Name: dockertest.Name(t, "reap"), Services: []string{"ssh", "http"}}},
		}
		if err := e.Apply(ctx, cfg); err != nil {
			t.Fatalf("apply %s: %v", p, err)
		}
		engines[p] = e
	}
	otherBefore, err := engines[other].Containers(ctx)
	if err != nil || len(otherBefore) != 3 {
		t.Fatalf("other project: %v containers (%v), want 3", len(otherBefore), err)
	}

	plan := Plan{Projects: []string{matched, matched + "-*"}}
	res := Execute(ctx, plan, Deps{Containers: admin})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"project:" + matched, "project:" + matchedX}
	got := slices.Clone(res.Removed)
	slices.Sort(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("removed (-want +got):\n%s", d)
	}
	for _, p := range []string{matched, matchedX} {
		cs, err := engines[p].Containers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 0 {
			t.Errorf("project %s still has containers %v", p, cs)
		}
	}
	projects, err := admin.Projects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(projects, matched) || slices.Contains(projects, matchedX) || !slices.Contains(projects, other) {
		t.Errorf("projects after Execute: %v", projects)
	}
	otherAfter, err := engines[other].Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(otherBefore, otherAfter); d != "" {
		t.Errorf("the unmatched project changed (-before +after):\n%s", d)
	}
	for _, c := range otherAfter {
		if c.State != "running" {
			t.Errorf("unmatched container %s is %s", c.Name, c.State)
		}
	}
}
