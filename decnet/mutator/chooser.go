package mutator

import (
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Chooser picks a decky's next service set. Implementations must be safe for
// concurrent use, must never return an empty set or the decky's current set,
// and return an error wrapping decnet.ErrInvalid when no such set exists.
type Chooser interface {
	Choose(d repository.Decky) ([]string, error)
}

// ChooserFunc adapts a function to a [Chooser].
type ChooserFunc func(d repository.Decky) ([]string, error)

// Choose calls f.
func (f ChooserFunc) Choose(d repository.Decky) ([]string, error) { return f(d) }

// Archetype is a kind of machine a decky impersonates: the services it may
// run and the OS family it presents.
type Archetype struct {
	Services []string
	OS       decnet.OSFamily
}

// Archetypes maps an archetype name (decnet.Decky.Archetype) to its archetype.
type Archetypes map[string]Archetype

// DefaultArchetypes returns a fresh copy of the built-in archetypes, built
// from services of decnet.DefaultCatalog.
func DefaultArchetypes() Archetypes {
	return Archetypes{
		"linux-server":        {Services: []string{"ftp", "http", "https", "ssh", "telnet"}, OS: decnet.OSLinux},
		"windows-workstation": {Services: []string{"http", "rdp", "smb"}, OS: decnet.OSWindows},
		"database-server":     {Services: []string{"mysql", "redis", "ssh"}, OS: decnet.OSLinux},
		"iot-device":          {Services: []string{"ftp", "http", "telnet"}, OS: decnet.OSEmbedded},
		"mail-server":         {Services: []string{"http", "https", "smtp", "ssh"}, OS: decnet.OSLinux},
	}
}

// MaxServices is the largest set the default chooser picks.
const MaxServices = 3

// ChooserConfig configures [NewChooser]. Zero fields mean the documented defaults.
type ChooserConfig struct {
	// Catalog is the pool of a decky without an archetype; nil means
	// decnet.DefaultCatalog().
	Catalog *decnet.Catalog
	// Archetypes are the named pools; nil means DefaultArchetypes(). Every
	// archetype's services must be in Catalog.
	Archetypes Archetypes
	// Rand is the random source; nil means one seeded from the time. The
	// chooser serialises its use, so it may be shared with no one else.
	Rand *rand.Rand
}

// DefaultChooser draws 1 to MaxServices services from the decky's archetype
// pool (or the whole catalog when the decky has no archetype), never the
// decky's current set. It is safe for concurrent use.
type DefaultChooser struct {
	catalog    []string
	archetypes map[string][]string

	mu  sync.Mutex
	rnd *rand.Rand
}

// NewChooser returns the default chooser. An archetype with no services, or
// naming a service missing from the catalog, is an error wrapping
// decnet.ErrInvalid.
func NewChooser(cfg ChooserConfig) (*DefaultChooser, error) {
	cat := cfg.Catalog
	if cat == nil {
		cat = decnet.DefaultCatalog()
	}
	arch := cfg.Archetypes
	if arch == nil {
		arch = DefaultArchetypes()
	}
	c := &DefaultChooser{catalog: cat.Names(), archetypes: make(map[string][]string, len(arch)), rnd: cfg.Rand}
	v := &decnet.ValidationError{}
	for _, name := range slices.Sorted(maps.Keys(arch)) {
		a := arch[name]
		if err := decnet.ValidateServices("archetypes."+name+".services", a.Services, cat); err != nil {
			var ve *decnet.ValidationError
			if errors.As(err, &ve) {
				v.Merge("", ve)
			}
			continue
		}
		if a.OS != "" {
			if _, ok := decnet.SysctlProfile(a.OS); !ok {
				v.Add("archetypes."+name+".os", "unknown OS family %q", a.OS)
			}
		}
		pool := slices.Clone(a.Services)
		slices.Sort(pool)
		c.archetypes[name] = pool
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if c.rnd == nil {
		now := uint64(time.Now().UnixNano())
		c.rnd = rand.New(rand.NewPCG(now, now>>17|1))
	}
	return c, nil
}

// Pool returns the services a decky with archetype name draws from: the
// archetype's, or the catalog's for "". ok is false for an unknown archetype.
func (c *DefaultChooser) Pool(archetype string) (pool []string, ok bool) {
	if archetype == "" {
		return slices.Clone(c.catalog), true
	}
	p, ok := c.archetypes[archetype]
	return slices.Clone(p), ok
}

// Choose returns the decky's next services, sorted. It fails with an error
// wrapping decnet.ErrInvalid when the decky's archetype is unknown, its pool
// is empty, or the pool cannot produce a set different from the current one
// (a pool of one service the decky already runs alone).
func (c *DefaultChooser) Choose(d repository.Decky) ([]string, error) {
	arch := d.Spec.Archetype
	pool, ok := c.Pool(arch)
	if !ok {
		return nil, decnet.Errorf(decnet.ErrInvalid, "decky", d.Name, "decky %q: unknown archetype %q", d.Name, arch)
	}
	if len(pool) == 0 {
		return nil, decnet.Errorf(decnet.ErrInvalid, "decky", d.Name, "decky %q: the service pool is empty", d.Name)
	}
	current := slices.Clone(d.Services)
	slices.Sort(current)
	current = slices.Compact(current)
	if len(pool) == 1 {
		if slices.Equal(pool, current) {
			return nil, decnet.Errorf(decnet.ErrInvalid, "decky", d.Name,
				"decky %q: its pool holds only %q, which it already runs: no different set exists", d.Name, pool[0])
		}
		return pool, nil
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	k := 1 + c.rnd.IntN(min(MaxServices, len(pool)))
	c.rnd.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	chosen, rest := pool[:k], pool[k:]
	if equalSet(chosen, current) {
		// Change the draw by one service instead of drawing again, so the
		// result is different after one draw whatever the pool.
		if len(rest) > 0 {
			chosen[c.rnd.IntN(len(chosen))] = rest[c.rnd.IntN(len(rest))]
		} else {
			i := c.rnd.IntN(len(chosen))
			chosen = append(chosen[:i], chosen[i+1:]...)
		}
	}
	out := slices.Clone(chosen)
	slices.Sort(out)
	return out, nil
}

// equalSet reports whether a (any order, no duplicates) holds exactly the
// services of sorted, de-duplicated b.
func equalSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, s := range a {
		if _, found := slices.BinarySearch(b, s); !found {
			return false
		}
	}
	return true
}
