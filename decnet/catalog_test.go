package decnet_test

import (
	"errors"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
)

func TestDefaultCatalog(t *testing.T) {
	cat := decnet.DefaultCatalog()
	want := map[string]uint16{"ssh": 22, "http": 80, "https": 443, "ftp": 21, "telnet": 23, "smtp": 25, "smb": 445, "rdp": 3389, "mysql": 3306, "redis": 6379}
	for name, port := range want {
		s, ok := cat.Lookup(name)
		if !ok {
			t.Errorf("default catalog lacks %s", name)
			continue
		}
		if s.Image != decnet.DecoyImage || len(s.Command) != 1 || s.Command[0] != name {
			t.Errorf("%s: image %q command %v", name, s.Image, s.Command)
		}
		if len(s.Ports) == 0 || s.Ports[0].Port != port {
			t.Errorf("%s: ports %v, want %d first", name, s.Ports, port)
		}
	}
	if len(cat.Names()) != len(want) {
		t.Errorf("names = %v", cat.Names())
	}
}

func TestCatalogOverrideAndIsolation(t *testing.T) {
	cat := decnet.DefaultCatalog()
	s, _ := cat.Lookup("ssh")
	s.Image = "corp/ssh:1"
	s.Env = map[string]string{"BANNER": "OpenSSH_8.9"}
	if err := cat.Set(s); err != nil {
		t.Fatal(err)
	}
	got, _ := cat.Lookup("ssh")
	if got.Image != "corp/ssh:1" || got.Env["BANNER"] != "OpenSSH_8.9" {
		t.Fatalf("override not applied: %+v", got)
	}
	got.Env["BANNER"] = "mutated"
	again, _ := cat.Lookup("ssh")
	if again.Env["BANNER"] != "OpenSSH_8.9" {
		t.Fatal("Lookup returned shared memory")
	}
	if other, _ := decnet.DefaultCatalog().Lookup("ssh"); other.Image != decnet.DecoyImage {
		t.Fatal("override leaked into another catalog: there must be no global registry")
	}
}

func TestCatalogRejects(t *testing.T) {
	if _, err := decnet.NewCatalog(decnet.Service{Name: "a", Image: "x"}, decnet.Service{Name: "a", Image: "y"}); !errors.Is(err, decnet.ErrConflict) {
		t.Errorf("duplicate: %v", err)
	}
	for _, s := range []decnet.Service{
		{Name: "Bad", Image: "x"},
		{Name: "ok"},
		{Name: "ok", Image: "x", Ports: []decnet.Port{{Port: 0}}},
		{Name: "ok", Image: "x", Ports: []decnet.Port{{Port: 1, Protocol: "sctp"}}},
		{Name: "ok", Image: "x", Env: map[string]string{"1X": "y"}},
	} {
		var cat decnet.Catalog
		if err := cat.Set(s); !errors.Is(err, decnet.ErrInvalid) {
			t.Errorf("Set(%+v) = %v, want ErrInvalid", s, err)
		}
		if cat.Has(s.Name) {
			t.Errorf("rejected service %q was stored", s.Name)
		}
	}
}

func TestSysctlProfiles(t *testing.T) {
	keys := []string{"net.ipv4.ip_default_ttl", "net.ipv4.tcp_timestamps", "net.ipv4.tcp_window_scaling", "net.ipv4.tcp_sack", "net.ipv4.tcp_ecn", "net.ipv4.tcp_fin_timeout", "net.ipv4.icmp_ratelimit"}
	ttl := map[decnet.OSFamily]string{decnet.OSLinux: "64", decnet.OSWindows: "128", decnet.OSBSD: "64", decnet.OSEmbedded: "255"}
	for _, f := range decnet.OSFamilies {
		p, ok := decnet.SysctlProfile(f)
		if !ok {
			t.Fatalf("no profile for %s", f)
		}
		for _, k := range keys {
			if p[k] == "" {
				t.Errorf("%s lacks %s", f, k)
			}
		}
		if p["net.ipv4.ip_default_ttl"] != ttl[f] {
			t.Errorf("%s TTL = %s", f, p["net.ipv4.ip_default_ttl"])
		}
		p["net.ipv4.ip_default_ttl"] = "1"
		if again, _ := decnet.SysctlProfile(f); again["net.ipv4.ip_default_ttl"] == "1" {
			t.Errorf("%s profile is shared memory", f)
		}
	}
	if _, ok := decnet.SysctlProfile("plan9"); ok {
		t.Error("unknown family accepted")
	}
}
