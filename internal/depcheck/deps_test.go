package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/decnet-swarm/sdk"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages runs `go list -json` over the whole module (non-test packages).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"/...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Skipf("go command not available: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	if len(pkgs) == 0 {
		t.Fatal("go list returned no packages")
	}
	return pkgs
}

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

func under(p string, dirs ...string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func hasPrefix(imp string, prefixes ...string) bool {
	for _, pre := range prefixes {
		if imp == pre || strings.HasPrefix(imp, pre+"/") {
			return true
		}
	}
	return false
}

var (
	drivers = []string{"modernc.org/sqlite", "github.com/jackc/pgx", "github.com/lib/pq", "github.com/mattn/go-sqlite3"}
	moby    = []string{"github.com/moby/moby", "github.com/docker/docker"}
	dbus    = []string{"github.com/coreos/go-systemd/v22/dbus", "github.com/godbus/dbus"}
)

// TestDependencyRules checks DESIGN.md's rules on direct imports.
func TestDependencyRules(t *testing.T) {
	for _, p := range listPackages(t) {
		r := rel(p.ImportPath)
		for _, imp := range p.Imports {
			switch {
			case r == "decnet" && strings.HasPrefix(imp, module+"/"):
				t.Errorf("%s imports project package %s; the core package must import none", r, imp)
			case hasPrefix(imp, drivers...) && !under(r, "decnet/repository/sqlite", "decnet/repository/postgres"):
				t.Errorf("%s imports database driver %s; drivers belong only in repository/sqlite and repository/postgres", r, imp)
			case hasPrefix(imp, "github.com/docker/docker"):
				t.Errorf("%s imports %s; use github.com/moby/moby/client", r, imp)
			case hasPrefix(imp, moby...) && !under(r, "decnet/engine"):
				t.Errorf("%s imports Docker client %s; only decnet/engine may", r, imp)
			case hasPrefix(imp, dbus...) && !under(r, "decnet/reaper"):
				t.Errorf("%s imports D-Bus %s; only decnet/reaper may", r, imp)
			case hasPrefix(imp, "github.com/coreos/go-systemd") && !under(r, "decnet/reaper", "decnet/agent", "cmd"):
				t.Errorf("%s imports systemd %s; only reaper, agent and binaries may", r, imp)
			}
		}
	}
}

// TestTransitiveRules checks what must not be reachable at all.
func TestTransitiveRules(t *testing.T) {
	forbidden := map[string][]string{
		module + "/decnet":             append(append([]string{module + "/"}, drivers...), moby...),
		module + "/decnet/agentclient": append(append([]string{module + "/decnet/engine", module + "/decnet/repository"}, drivers...), moby...),
		module + "/decnet/compose":     append(append([]string{module + "/decnet/engine"}, drivers...), moby...),
		module + "/decnet/mutator":     drivers,
		module + "/decnet/swarm":       append([]string{module + "/decnet/engine"}, moby...),
	}
	for root, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", root).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", root, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == root {
				continue
			}
			for _, b := range bad {
				if dep == b || strings.HasPrefix(dep, strings.TrimSuffix(b, "/")+"/") || (strings.HasSuffix(b, "/") && strings.HasPrefix(dep, b)) {
					t.Errorf("%s depends on %s (forbidden: %s)", rel(root), dep, b)
				}
			}
		}
	}
}
