package engine

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/decnet-swarm/sdk/decnet/compose"
)

// createOptions translates one service of the rendered compose project into
// the Engine API create call. The engine never builds a container spec any
// other way, so the compose file and what runs cannot drift.
func createOptions(p *types.Project, s types.ServiceConfig) client.ContainerCreateOptions {
	labels := maps.Clone(map[string]string(s.Labels))
	maps.Copy(labels, compose.ContainerLabels(p, s.Name))

	env := make([]string, 0, len(s.Environment))
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		if v := s.Environment[k]; v != nil {
			env = append(env, k+"="+*v)
		}
	}
	cfg := &container.Config{
		Image:      s.Image,
		Hostname:   s.Hostname,
		Env:        env,
		Cmd:        slices.Clone([]string(s.Command)),
		Entrypoint: slices.Clone([]string(s.Entrypoint)),
		Labels:     labels,
	}
	hc := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyMode(s.Restart)},
		CapAdd:        slices.Clone(s.CapAdd),
		Sysctls:       maps.Clone(map[string]string(s.Sysctls)),
	}
	if s.Logging != nil {
		hc.LogConfig = container.LogConfig{Type: s.Logging.Driver, Config: maps.Clone(map[string]string(s.Logging.Options))}
	}
	var nc *network.NetworkingConfig
	if base := compose.BaseOf(s); base != "" {
		name := base
		if b, ok := p.Services[base]; ok && b.ContainerName != "" {
			name = b.ContainerName
		}
		hc.NetworkMode = container.NetworkMode("container:" + name)
	} else {
		nc = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
		for key, sn := range s.Networks {
			netName := key
			if n, ok := p.Networks[key]; ok && n.Name != "" {
				netName = n.Name
			}
			es := &network.EndpointSettings{}
			if sn != nil && sn.Ipv4Address != "" {
				if ip, err := netip.ParseAddr(sn.Ipv4Address); err == nil {
					es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ip}
				}
			}
			nc.EndpointsConfig[netName] = es
			if hc.NetworkMode == "" {
				hc.NetworkMode = container.NetworkMode(netName)
			}
		}
	}
	return client.ContainerCreateOptions{
		Name:             s.ContainerName,
		Config:           cfg,
		HostConfig:       hc,
		NetworkingConfig: nc,
	}
}
