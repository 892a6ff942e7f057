package mutator

import (
	"context"
	"fmt"
	"slices"

	"github.com/decnet-swarm/sdk/decnet"
)

// LocalEngine is the part of the master's engine (engine.Engine) a
// [LocalTarget] uses: reconcile one decky of a config, touching no other.
type LocalEngine interface {
	ApplyDecky(ctx context.Context, cfg decnet.Config, name string) error
}

// LocalConfig configures [NewLocalTarget].
type LocalConfig struct {
	// Engine applies deckies on the master's own Docker Engine. Required.
	Engine LocalEngine
	// Deckies is where the decky's full specification is read. Required.
	Deckies DeckyStore
	// Network is the LAN master-resident deckies are on. Required.
	Network decnet.Network
	// Catalog checks the new services; nil means decnet.DefaultCatalog(). It
	// must be the catalog the engine renders with.
	Catalog *decnet.Catalog
	// Name labels the target in events and plans; "" means "local".
	Name string
}

// LocalTarget mutates master-resident deckies (unihost mode, or swarm
// deckies with no host) on the master's own engine. Its calls are
// serialised, as the engine requires for changes to one project.
type LocalTarget struct {
	engine  LocalEngine
	deckies DeckyStore
	network decnet.Network
	catalog *decnet.Catalog
	name    string
	serial  chan struct{} // one apply at a time
}

// NewLocalTarget checks cfg and returns the local target. A missing engine
// or store, or an invalid network, is an error wrapping decnet.ErrInvalid.
func NewLocalTarget(cfg LocalConfig) (*LocalTarget, error) {
	v := &decnet.ValidationError{}
	if cfg.Engine == nil {
		v.Add("engine", "required")
	}
	if cfg.Deckies == nil {
		v.Add("deckies", "required")
	}
	if err := cfg.Network.Validate(); err != nil {
		v.Add("network", "%v", err)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	t := &LocalTarget{engine: cfg.Engine, deckies: cfg.Deckies, network: cfg.Network, catalog: cfg.Catalog, name: cfg.Name,
		serial: make(chan struct{}, 1)}
	if t.catalog == nil {
		t.catalog = decnet.DefaultCatalog()
	}
	if t.name == "" {
		t.name = "local"
	}
	return t, nil
}

// TargetName returns the target's label.
func (t *LocalTarget) TargetName() string { return t.name }

// Mutate reconciles decky deckyID with services on the local engine. The
// decky must exist and be master-resident (decnet.ErrNotFound,
// decnet.ErrConflict); the services must be valid for the catalog
// (decnet.ErrInvalid). With dryRun it stops after these checks.
func (t *LocalTarget) Mutate(ctx context.Context, deckyID string, services []string, dryRun bool) error {
	d, err := t.deckies.GetDecky(ctx, deckyID)
	if err != nil {
		return fmt.Errorf("local target: %w", err)
	}
	if d.HostUUID != "" {
		return decnet.Errorf(decnet.ErrConflict, "decky", deckyID, "decky %q is assigned to host %s, not master-resident", deckyID, d.HostUUID)
	}
	spec := d.Spec.Clone()
	spec.Name = d.Name
	spec.Services = slices.Clone(services)
	spec.HostUUID = ""
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: t.network, Deckies: []decnet.Decky{spec}}
	if err := cfg.Validate(t.catalog); err != nil {
		return err
	}
	if dryRun {
		return nil
	}
	select {
	case t.serial <- struct{}{}:
		defer func() { <-t.serial }()
	case <-ctx.Done():
		return fmt.Errorf("local target: wait for the engine: %w: %w", decnet.ErrUnavailable, ctx.Err())
	}
	return t.engine.ApplyDecky(ctx, cfg, deckyID)
}
