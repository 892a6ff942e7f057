package agent

import (
	"net/netip"

	"github.com/decnet-swarm/sdk/decnet"
)

// allocateIPs returns a copy of cfg in which every decky without an IP has
// one from cfg.Network.Pool(). A decky that already ran on this worker (in
// prev) keeps its address when it is still free and usable, so redeploying
// the same shard does not renumber it. The network and broadcast addresses,
// the gateway (or, when none is configured, the subnet's first host address,
// which Docker takes as gateway) and every address fixed in cfg are skipped.
// An exhausted pool is an error wrapping decnet.ErrInvalid; cfg is not
// modified.
func allocateIPs(cfg decnet.Config, prev *decnet.Config) (decnet.Config, error) {
	out := cfg.Clone()
	n := out.Network
	used := map[netip.Addr]bool{}
	for _, d := range out.Deckies {
		if d.IP.IsValid() {
			used[d.IP] = true
		}
	}
	reserved := func(ip netip.Addr) bool {
		if used[ip] || n.CheckAddr(ip) != nil {
			return true
		}
		return !n.Gateway.IsValid() && ip == n.Subnet.Masked().Addr().Next()
	}
	// First pass: keep previous addresses.
	if prev != nil {
		for i, d := range out.Deckies {
			if d.IP.IsValid() {
				continue
			}
			old, ok := prev.Decky(d.Name)
			if !ok || !old.IP.IsValid() || reserved(old.IP) || !n.Pool().Contains(old.IP) {
				continue
			}
			out.Deckies[i].IP = old.IP
			used[old.IP] = true
		}
	}
	pool := n.Pool().Masked()
	next := pool.Addr()
	for i, d := range out.Deckies {
		if d.IP.IsValid() {
			continue
		}
		for next.IsValid() && pool.Contains(next) && reserved(next) {
			next = next.Next()
		}
		if !next.IsValid() || !pool.Contains(next) {
			return decnet.Config{}, decnet.Errorf(decnet.ErrInvalid, "decky", d.Name,
				"no free address left in %s for decky %q", pool, d.Name)
		}
		out.Deckies[i].IP = next
		used[next] = true
	}
	return out, nil
}
