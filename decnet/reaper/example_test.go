package reaper_test

import (
	"errors"
	"fmt"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/reaper"
)

// The validator refuses a plan that would delete a system directory or
// anything outside decnet's own paths, naming each problem's field.
func ExamplePlan_Validate() {
	p := reaper.DefaultPlan()
	fmt.Println(p.Validate())

	p.Delete = append(p.Delete, "/etc", "/home/decnet")
	err := p.Validate()
	var ve *decnet.ValidationError
	if errors.As(err, &ve) {
		for _, pr := range ve.Problems {
			fmt.Println(pr.Field, "-", pr.Message)
		}
	}
	// Output:
	// <nil>
	// delete[6] - path "/etc" is a protected directory
	// delete[7] - path "/home/decnet" is outside decnet's paths (an entry named decnet* in /opt, /etc, /var/lib, /usr/local/bin, /etc/systemd/system)
}
