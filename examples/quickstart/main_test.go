package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// TestQuickstartEndToEnd runs what README's quick start runs: the static
// decnet-agent and quickstart binaries against the real Docker Engine.
func TestQuickstartEndToEnd(t *testing.T) {
	adm := dockertest.Require(t)
	subnet := dockertest.Subnet(t)
	bin := t.TempDir()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	build := exec.Command(gobin, "build", "-trimpath", "-o", bin+"/",
		"github.com/decnet-swarm/sdk/cmd/decnet-agent", "github.com/decnet-swarm/sdk/examples/quickstart")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "quickstart"), "-agent", filepath.Join(bin, "decnet-agent"), "-subnet", subnet.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart: %v\n%s", err, out)
	}
	for _, want := range []string{
		"says: ssh decoy on web01.corp.example (web-01)",
		"add [smtp], remove [http ftp], keep [ssh]",
		"says: smtp decoy on web01.corp.example (web-01)",
		"tearing everything down",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out)
		}
	}
	if projects, err := adm.Projects(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range projects {
			if p == project {
				t.Errorf("project %s still has containers after the quickstart", project)
			}
		}
	}
}
