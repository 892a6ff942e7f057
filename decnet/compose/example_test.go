package compose_test

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
)

func ExampleRender() {
	cfg := decnet.Config{
		Mode:    decnet.ModeUnihost,
		Network: decnet.Network{Driver: decnet.DriverBridge, Subnet: netip.MustParsePrefix("10.240.1.0/24")},
		Deckies: []decnet.Decky{{Name: "web", IP: netip.MustParseAddr("10.240.1.10"), Services: []string{"ssh", "http"}}},
	}
	p, err := compose.Render(cfg, compose.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, key := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[key]
		mode := s.NetworkMode
		if mode == "" {
			mode = "ip " + s.Networks["decnet_lan"].Ipv4Address
		}
		fmt.Printf("%s: image %s, %s, service %s\n", s.ContainerName, s.Image, mode, s.Labels[compose.LabelService])
	}
	// Output:
	// web: image decnet/pause:0.1.0, ip 10.240.1.10, service base
	// web-http: image decnet/decoy:0.1.0, service:web, service http
	// web-ssh: image decnet/decoy:0.1.0, service:web, service ssh
}
