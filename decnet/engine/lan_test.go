package engine_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// parentInterface creates a throwaway parent link for macvlan/ipvlan: a
// dummy interface, or a veth pair where the dummy driver is missing. It is
// deleted at cleanup. The test is skipped when neither can be made.
func parentInterface(t *testing.T) string {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("iproute2 (ip) not installed")
	}
	name := "dnt-" + strings.TrimPrefix(dockertest.Name(t, "d"), "d-") // dnt-xxxxxx: 10 chars
	attempts := [][]string{
		{"link", "add", name, "type", "dummy"},
		{"link", "add", name, "type", "veth", "peer", "name", name + "p"},
	}
	var why []string
	for _, args := range attempts {
		out, err := exec.Command(ip, args...).CombinedOutput()
		if err != nil {
			why = append(why, strings.Join(args[3:5], " ")+": "+strings.TrimSpace(string(out)))
			continue
		}
		t.Cleanup(func() { _ = exec.Command(ip, "link", "del", name).Run() })
		if out, err := exec.Command(ip, "link", "set", name, "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set %s up: %v: %s", name, err, out)
		}
		t.Logf("parent interface %s (%s)", name, args[4])
		return name
	}
	t.Skipf("cannot create a parent interface (needs CAP_NET_ADMIN and the dummy or veth driver): %s", strings.Join(why, "; "))
	return ""
}

// requireLinkType skips unless the kernel can make a link of kind (macvlan,
// ipvlan) on parent, which is what Docker's driver does for each container.
func requireLinkType(t *testing.T, parent, kind string) {
	t.Helper()
	probe := parent + "k"
	args := []string{"link", "add", probe, "link", parent, "type", kind}
	if kind == "ipvlan" {
		args = append(args, "mode", "l2")
	} else {
		args = append(args, "mode", "bridge")
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Skipf("kernel cannot create %s links here (%s): %s", kind, err, strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "link", "del", probe).Run()
}

func TestLANDrivers(t *testing.T) {
	for _, driver := range []decnet.Driver{decnet.DriverMacvlan, decnet.DriverIPvlan} {
		t.Run(string(driver), func(t *testing.T) {
			f := newFixture(t, string(driver))
			ctx := testCtx(t)
			parent := parentInterface(t)
			requireLinkType(t, parent, string(driver))
			subnet := f.net.Subnet
			f.net = decnet.Network{
				Driver:  driver,
				Parent:  parent,
				Subnet:  subnet,
				Gateway: dockertest.Addr(subnet, 1),
				IPRange: mustPrefix(dockertest.Addr(subnet, 128).String() + "/25"),
				Name:    f.net.Name,
			}
			name := dockertest.Name(t, "lan")
			ip := dockertest.Addr(subnet, 140)
			cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: f.net,
				Deckies: []decnet.Decky{
					{Name: name, IP: ip, Services: []string{"ssh", "http"}},
					{Name: name + "-auto", Services: []string{"ftp"}}, // the daemon allocates from the IP range
				}}
			if err := f.eng.Apply(ctx, cfg); err != nil {
				t.Fatalf("Apply on %s: %v", driver, err)
			}
			st, err := f.eng.Status(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !st[0].Running || st[0].IP != ip.String() {
				t.Fatalf("status = %+v", st[0])
			}
			auto := mustAddr(st[1].IP)
			if !st[1].Running || !f.net.IPRange.Contains(auto) {
				t.Fatalf("auto-addressed decky = %+v, want an address in %s", st[1], f.net.IPRange)
			}
			before := idsByName(t, f)
			cfg.Deckies[0].Services = []string{"ssh", "smtp"}
			if err := f.eng.ApplyDecky(ctx, cfg, name); err != nil {
				t.Fatalf("ApplyDecky: %v", err)
			}
			after := idsByName(t, f)
			if after[name] != before[name] || after[name+"-ssh"] != before[name+"-ssh"] || after[name+"-http"] != "" || after[name+"-smtp"] == "" {
				t.Fatalf("mutate on %s: before %v after %v", driver, before, after)
			}
			if st, err = f.eng.Status(ctx, cfg); err != nil || !st[0].Running || st[0].IP != ip.String() {
				t.Fatalf("status after mutate = %+v, %v", st, err)
			}
			if err := f.eng.Teardown(ctx, ""); err != nil {
				t.Fatal(err)
			}
			subnets, err := f.admin.Subnets(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range subnets {
				if s == subnet {
					t.Fatalf("network on %s not removed by Teardown", subnet)
				}
			}
		})
	}
}
