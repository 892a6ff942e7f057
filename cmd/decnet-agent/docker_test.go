package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// TestServeBuildsBaseImageFromItself runs the real static binary against the
// real Docker Engine: the first deploy builds the base image from the
// agent's own executable, and the base container runs "decnet-agent pause".
func TestServeBuildsBaseImageFromItself(t *testing.T) {
	adm := dockertest.Require(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	tag := "dnt-agentpause:" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() { // registered first: runs after the project's cleanup
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = adm.RemoveImage(ctx, tag)
	})
	project := dockertest.Project(t, "agentbin")
	network := dockertest.Network(t)
	s := startServe(t, "--project", project, "--base-image", tag, "--network-name", network.Name,
		"--subnet", network.Subnet.String(), "--gateway", network.Gateway.String())
	c := s.client(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if ok, err := adm.ImageExists(ctx, tag); err != nil || ok {
		t.Fatalf("base image exists before the first deploy (%v, %v)", ok, err)
	}
	name := dockertest.Name(t, "pz")
	// The default catalog's decoy image is not on this daemon, so the service
	// may fail to start (apply_failed); the base must run regardless.
	_, err := c.Deploy(ctx, decnet.Config{Mode: decnet.ModeSwarm, Deckies: []decnet.Decky{{Name: name, Services: []string{"ssh"}}}}, agentclient.DeployOptions{})
	if err != nil && !errors.Is(err, decnet.ErrApplyFailed) {
		t.Fatalf("deploy: %v", err)
	}
	if ok, err := adm.ImageExists(ctx, tag); err != nil || !ok {
		t.Fatalf("base image %s not built on first deploy (%v, %v)", tag, ok, err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Deckies) != 1 || st.Deckies[0].Containers[decnet.BaseContainerKey] != decnet.ContainerRunning {
		t.Fatalf("base container not running the agent's pause: %+v", st)
	}
	if err := c.Teardown(ctx, ""); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if st, err := c.Status(ctx); err != nil || st.Deployed {
		t.Fatalf("status after teardown: %+v %v", st, err)
	}
	s.term(t)
}
