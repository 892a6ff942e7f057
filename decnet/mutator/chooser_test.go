package mutator_test

import (
	"errors"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

func deckyWith(services []string, archetype string) repository.Decky {
	return repository.Decky{Name: "d", Services: services, Spec: decnet.Decky{Name: "d", Services: services, Archetype: archetype}}
}

// The chosen set is never empty, never the current set, has at most three
// services, all from the pool; the only exception is a pool of one service
// the decky already runs alone, which is ErrInvalid. Equal seeds choose
// equally.
func TestChooserProperties(t *testing.T) {
	catalog := decnet.DefaultCatalog().Names()
	rapid.Check(t, func(rt *rapid.T) {
		pool := rapid.SliceOfNDistinct(rapid.SampledFrom(catalog), 1, len(catalog), rapid.ID[string]).Draw(rt, "pool")
		current := rapid.SliceOfNDistinct(rapid.SampledFrom(catalog), 1, 5, rapid.ID[string]).Draw(rt, "current")
		useArchetype := rapid.Bool().Draw(rt, "archetype")
		seed := rapid.Uint64().Draw(rt, "seed")

		cfg := mutator.ChooserConfig{Rand: seeded(seed)}
		arch := ""
		if useArchetype {
			arch = "custom"
			cfg.Archetypes = mutator.Archetypes{"custom": {Services: pool, OS: decnet.OSLinux}}
		} else {
			pool = catalog
		}
		c, err := mutator.NewChooser(cfg)
		if err != nil {
			rt.Fatalf("NewChooser: %v", err)
		}
		got, err := c.Choose(deckyWith(current, arch))
		if len(pool) == 1 && sameSet(pool, current) {
			if !errors.Is(err, decnet.ErrInvalid) {
				rt.Fatalf("pool %v equal to current: got %v, %v; want ErrInvalid", pool, got, err)
			}
			return
		}
		if err != nil {
			rt.Fatalf("Choose: %v", err)
		}
		if len(got) == 0 || len(got) > mutator.MaxServices {
			rt.Fatalf("chose %d services: %v", len(got), got)
		}
		if sameSet(got, current) {
			rt.Fatalf("chose the current set %v", got)
		}
		if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			rt.Fatalf("result %v not sorted and distinct", got)
		}
		for _, s := range got {
			if !slices.Contains(pool, s) {
				rt.Fatalf("%q not in the pool %v", s, pool)
			}
		}
		c2, _ := mutator.NewChooser(mutator.ChooserConfig{Rand: seeded(seed), Archetypes: cfg.Archetypes})
		again, _ := c2.Choose(deckyWith(current, arch))
		if !slices.Equal(got, again) {
			rt.Fatalf("same seed chose %v then %v", got, again)
		}
	})
}

func TestChooserRejects(t *testing.T) {
	if _, err := mutator.NewChooser(mutator.ChooserConfig{Archetypes: mutator.Archetypes{"bad": {Services: []string{"gopher"}}}}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("archetype with an unknown service: %v, want ErrInvalid", err)
	}
	if _, err := mutator.NewChooser(mutator.ChooserConfig{Archetypes: mutator.Archetypes{"empty": {}}}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("empty archetype: %v, want ErrInvalid", err)
	}
	if _, err := mutator.NewChooser(mutator.ChooserConfig{Archetypes: mutator.Archetypes{"os": {Services: []string{"ssh"}, OS: "plan9"}}}); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("archetype with an unknown OS: %v, want ErrInvalid", err)
	}
	c, err := mutator.NewChooser(mutator.ChooserConfig{Rand: seeded(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Choose(deckyWith([]string{"ssh"}, "mainframe")); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("unknown archetype: %v, want ErrInvalid", err)
	}
	empty, err := decnet.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	ce, err := mutator.NewChooser(mutator.ChooserConfig{Catalog: empty, Archetypes: mutator.Archetypes{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ce.Choose(deckyWith([]string{"ssh"}, "")); !errors.Is(err, decnet.ErrInvalid) {
		t.Errorf("empty catalog: %v, want ErrInvalid", err)
	}
}

// The default archetypes use only default-catalog services and known OS
// families, and each draws from its own pool.
func TestDefaultArchetypes(t *testing.T) {
	c, err := mutator.NewChooser(mutator.ChooserConfig{Rand: seeded(2)})
	if err != nil {
		t.Fatalf("default archetypes do not validate against the default catalog: %v", err)
	}
	want := []string{"database-server", "iot-device", "linux-server", "mail-server", "windows-workstation"}
	arch := mutator.DefaultArchetypes()
	for _, name := range want {
		a, ok := arch[name]
		if !ok {
			t.Fatalf("no default archetype %q", name)
		}
		if _, ok := decnet.SysctlProfile(a.OS); !ok || a.OS == "" {
			t.Errorf("%s: OS %q", name, a.OS)
		}
		for range 50 {
			got, err := c.Choose(deckyWith(a.Services[:1], name))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range got {
				if !slices.Contains(a.Services, s) {
					t.Errorf("%s chose %q outside its pool %v", name, s, a.Services)
				}
			}
		}
	}
	// The returned map is a copy.
	arch["linux-server"] = mutator.Archetype{}
	if len(mutator.DefaultArchetypes()["linux-server"].Services) == 0 {
		t.Error("DefaultArchetypes shares its map")
	}
}
