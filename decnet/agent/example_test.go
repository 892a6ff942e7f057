package agent_test

import (
	"context"
	"log"
	"net"
	"net/netip"
	"os/signal"
	"syscall"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/state"
)

// Embedding the worker agent: an engine on the local Docker Engine, the
// state directory, the worker's LAN, and the enrolled bundle.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	st, err := state.Open("/var/lib/decnet")
	if err != nil {
		log.Fatal(err)
	}
	eng, err := engine.New(engine.Config{WorkDir: st.Dir(), ComposeFile: st.Dir() + "/" + agent.ComposeFileName})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	a, err := agent.New(agent.Config{
		BundleDir: "/etc/decnet/agent",
		Engine:    eng,
		State:     st,
		Network: decnet.Network{
			Driver:  decnet.DriverMacvlan,
			Parent:  "eth0",
			Subnet:  netip.MustParsePrefix("192.168.1.0/24"),
			Gateway: netip.MustParseAddr("192.168.1.1"),
			IPRange: netip.MustParsePrefix("192.168.1.192/26"),
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":8765")
	if err != nil {
		log.Fatal(err)
	}
	if err := a.Serve(ctx, ln); err != nil { // returns after SIGTERM and the drain
		log.Fatal(err)
	}
}
