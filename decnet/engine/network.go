package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
)

// ensureNetwork makes the project's network exist with the rendered
// settings. An existing network with other settings is replaced when only
// this project's containers use it (they are removed: their bases must be
// recreated on the new network anyway), unless strict, when it is
// decnet.ErrConflict.
func (e *Engine) ensureNetwork(ctx context.Context, p *types.Project, strict bool) error {
	for key, nc := range p.Networks {
		if err := e.ensureOne(ctx, p, key, nc, strict); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) ensureOne(ctx context.Context, p *types.Project, key string, nc types.NetworkConfig, strict bool) error {
	want, err := networkCreate(p, key, nc)
	if err != nil {
		return err
	}
	cur, exists, err := e.inspectNetwork(ctx, nc.Name)
	switch {
	case err != nil:
		return err
	case !exists:
		return e.createNetwork(ctx, nc.Name, want)
	case sameNetwork(cur, want):
		return nil
	}
	if strict {
		return decnet.Errorf(decnet.ErrConflict, "network", nc.Name,
			"network %q exists with other settings (driver %s); apply the whole fleet to replace it", nc.Name, cur.Driver)
	}
	ours, err := e.list(ctx, projectLabel(p.Name))
	if err != nil {
		return err
	}
	mine := map[string]bool{}
	for _, c := range ours {
		mine[c.ID] = true
	}
	for id := range cur.Containers {
		if !mine[id] {
			return decnet.Errorf(decnet.ErrConflict, "network", nc.Name,
				"network %q exists with other settings and is used by containers outside project %q", nc.Name, p.Name)
		}
	}
	// Every container of the project sits on this network (bases) or in a
	// base's namespace (services): remove them all, services first.
	if err := e.removeDecky(ctx, ours); err != nil {
		return err
	}
	e.log.InfoContext(ctx, "network_replaced", "network", nc.Name)
	if err := e.removeNetwork(ctx, cur.ID); err != nil {
		return err
	}
	return e.createNetwork(ctx, nc.Name, want)
}

// inspectNetwork returns the Docker network called name, and whether it
// exists.
func (e *Engine) inspectNetwork(ctx context.Context, name string) (network.Inspect, bool, error) {
	var cur network.Inspect
	err := e.do(ctx, "inspect", "network", name, func(ctx context.Context) error {
		res, err := e.api.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
		cur = res.Network
		return err
	})
	if errors.Is(err, decnet.ErrNotFound) {
		return cur, false, nil
	}
	return cur, err == nil, err
}

// networkDrifted reports whether a network of p exists with other settings
// than p's (Apply would then replace it and recreate every container).
func (e *Engine) networkDrifted(ctx context.Context, p *types.Project) (bool, error) {
	for key, nc := range p.Networks {
		want, err := networkCreate(p, key, nc)
		if err != nil {
			return false, err
		}
		cur, exists, err := e.inspectNetwork(ctx, nc.Name)
		if err != nil {
			return false, err
		}
		if exists && !sameNetwork(cur, want) {
			return true, nil
		}
	}
	return false, nil
}

func networkCreate(p *types.Project, key string, nc types.NetworkConfig) (client.NetworkCreateOptions, error) {
	opts := client.NetworkCreateOptions{
		Driver:  nc.Driver,
		Labels:  compose.NetworkLabels(p, key),
		Options: map[string]string(nc.DriverOpts),
	}
	ipam := &network.IPAM{Driver: "default"}
	for _, pool := range nc.Ipam.Config {
		var c network.IPAMConfig
		var err error
		if c.Subnet, err = netip.ParsePrefix(pool.Subnet); err != nil {
			return opts, decnet.Errorf(decnet.ErrInvalid, "network", nc.Name, "subnet %q: %v", pool.Subnet, err)
		}
		if pool.Gateway != "" {
			if c.Gateway, err = netip.ParseAddr(pool.Gateway); err != nil {
				return opts, decnet.Errorf(decnet.ErrInvalid, "network", nc.Name, "gateway %q: %v", pool.Gateway, err)
			}
		}
		if pool.IPRange != "" {
			if c.IPRange, err = netip.ParsePrefix(pool.IPRange); err != nil {
				return opts, decnet.Errorf(decnet.ErrInvalid, "network", nc.Name, "ip range %q: %v", pool.IPRange, err)
			}
		}
		ipam.Config = append(ipam.Config, c)
	}
	opts.IPAM = ipam
	return opts, nil
}

// sameNetwork reports whether the existing network has the settings we
// would create it with (a gateway we leave to Docker is not compared).
func sameNetwork(cur network.Inspect, want client.NetworkCreateOptions) bool {
	if cur.Driver != want.Driver || cur.Options["parent"] != want.Options["parent"] {
		return false
	}
	if len(cur.IPAM.Config) != len(want.IPAM.Config) {
		return false
	}
	for i, w := range want.IPAM.Config {
		c := cur.IPAM.Config[i]
		if c.Subnet != w.Subnet || c.IPRange != w.IPRange {
			return false
		}
		if w.Gateway.IsValid() && c.Gateway != w.Gateway {
			return false
		}
	}
	return true
}

func (e *Engine) createNetwork(ctx context.Context, name string, opts client.NetworkCreateOptions) error {
	err := e.do(ctx, "create", "network", name, func(ctx context.Context) error {
		_, err := e.api.NetworkCreate(ctx, name, opts)
		return err
	})
	if err != nil {
		return fmt.Errorf("create network %q (%s): %w", name, opts.Driver, err)
	}
	e.log.InfoContext(ctx, "network_created", "network", name, "driver", opts.Driver)
	return nil
}

// errInUse marks a network that still has endpoints after networkSettle.
var errInUse = errors.New("network in use")

// networkSettle bounds how long removeNetwork waits for the daemon to
// release the endpoints of containers that were just removed.
const networkSettle = 10 * time.Second

// removeNetwork removes a network; one already gone is fine. The daemon
// releases a removed container's endpoint asynchronously, so a network
// refused for "active endpoints" while no container is attached any more is
// retried for up to networkSettle. It is errInUse when containers are still
// attached (other projects share it) or the endpoints are not released in
// time.
func (e *Engine) removeNetwork(ctx context.Context, id string) error {
	deadline := time.Now().Add(networkSettle)
	delay := 50 * time.Millisecond
	for {
		err := e.do(ctx, "remove", "network", id, func(ctx context.Context) error {
			_, err := e.api.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
			return err
		})
		switch {
		case err == nil, errors.Is(err, decnet.ErrNotFound):
			return nil
		case !errors.Is(err, decnet.ErrUnauthorized) && !errors.Is(err, decnet.ErrConflict):
			return err
		}
		// "has active endpoints" (403 on API 1.41, 409 later).
		res, ierr := e.api.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
		if ierr == nil && len(res.Network.Containers) > 0 || time.Now().After(deadline) {
			return fmt.Errorf("%w: %w", errInUse, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return classify("remove", "network", id, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

// listNetworks returns the networks carrying the label ("key=value").
func (e *Engine) listNetworks(ctx context.Context, label string) ([]network.Summary, error) {
	f := client.Filters{}
	f.Add("label", label)
	var nets []network.Summary
	err := e.do(ctx, "list", "networks", label, func(ctx context.Context) error {
		res, err := e.api.NetworkList(ctx, client.NetworkListOptions{Filters: f})
		nets = res.Items
		return err
	})
	return nets, err
}

// removeNetworks removes every network carrying the label ("key=value").
func (e *Engine) removeNetworks(ctx context.Context, label string) error {
	nets, err := e.listNetworks(ctx, label)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range nets {
		err := e.removeNetwork(ctx, n.ID)
		switch {
		case errors.Is(err, errInUse):
			// Containers of another project share it.
			e.log.WarnContext(ctx, "network_in_use", "network", n.Name, "error", err.Error())
		case err != nil:
			errs = append(errs, err)
		default:
			e.log.InfoContext(ctx, "network_removed", "network", n.Name)
		}
	}
	return errors.Join(errs...)
}

// Subnets returns the IPv4 subnets of every Docker network on the daemon
// (tests use it to pick free ones).
func (e *Engine) Subnets(ctx context.Context) ([]netip.Prefix, error) {
	var nets []network.Summary
	err := e.do(ctx, "list", "networks", "", func(ctx context.Context) error {
		res, err := e.api.NetworkList(ctx, client.NetworkListOptions{})
		nets = res.Items
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, n := range nets {
		for _, c := range n.IPAM.Config {
			if c.Subnet.IsValid() {
				out = append(out, c.Subnet)
			}
		}
	}
	return out, nil
}
