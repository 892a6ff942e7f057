package decnet_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/decnet-swarm/sdk/decnet"
)

// Validation reports every problem with its field path, and the error is
// classified as ErrInvalid.
func ExampleConfig_Validate() {
	cfg := decnet.Config{
		Mode: decnet.ModeSwarm,
		Network: decnet.Network{
			Driver: decnet.DriverBridge,
			Subnet: netip.MustParsePrefix("10.50.0.0/24"),
		},
		Deckies: []decnet.Decky{
			{Name: "../x", Services: []string{"ssh", "ssh"}},
			{Name: "db-01", IP: netip.MustParseAddr("10.9.9.9"), Services: []string{"mysql", "gopher"}},
		},
	}
	err := cfg.Validate(decnet.DefaultCatalog())
	fmt.Println(errors.Is(err, decnet.ErrInvalid))
	var ve *decnet.ValidationError
	errors.As(err, &ve)
	for _, p := range ve.Problems {
		fmt.Printf("%s: %s\n", p.Field, p.Message)
	}
	// Output:
	// true
	// deckies[0].name: "../x" must match [a-z0-9][a-z0-9-]{0,62}
	// deckies[0].services[1]: duplicate service "ssh"
	// deckies[1].services[1]: unknown service "gopher"
	// deckies[1].ip: 10.9.9.9 is outside the subnet 10.50.0.0/24
}
