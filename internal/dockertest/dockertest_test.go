package dockertest_test

import (
	"testing"

	"github.com/decnet-swarm/sdk/internal/dockertest"
)

func TestSubnetsAreFreeAndDistinct(t *testing.T) {
	e := dockertest.Require(t)
	seen := map[string]bool{}
	for range 3 {
		p := dockertest.Subnet(t)
		if !dockertest.Range.Contains(p.Addr()) || p.Bits() != 24 {
			t.Fatalf("Subnet = %s, want a /24 inside %s", p, dockertest.Range)
		}
		if seen[p.String()] {
			t.Fatalf("Subnet returned %s twice", p)
		}
		seen[p.String()] = true
	}
	used, err := e.Subnets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range used {
		if seen[u.String()] {
			t.Fatalf("Subnet returned %s, which a Docker network uses", u)
		}
	}
}

func TestCatalog(t *testing.T) {
	img := dockertest.ImageSet{Pause: "p:1", Decoy: "d:1"}
	c := dockertest.Catalog(t, img, "ssh", "custom")
	ssh, ok := c.Lookup("ssh")
	if !ok || ssh.Image != "d:1" || ssh.Env["DECOY_PORTS"] != "22" || len(ssh.Command) != 1 || ssh.Command[0] != "ssh" {
		t.Fatalf("ssh = %+v", ssh)
	}
	custom, ok := c.Lookup("custom")
	if !ok || custom.Env["DECOY_PORTS"] != "10001" {
		t.Fatalf("custom = %+v", custom)
	}
	if c.Has("http") {
		t.Fatal("catalog has a service it was not asked for")
	}
}
