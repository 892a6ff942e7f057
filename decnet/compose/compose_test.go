package compose_test

import (
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func fleet() decnet.Config {
	return decnet.Config{
		Mode: decnet.ModeUnihost,
		Network: decnet.Network{
			Driver:  decnet.DriverMacvlan,
			Parent:  "eth0",
			Subnet:  netip.MustParsePrefix("192.168.1.0/24"),
			Gateway: netip.MustParseAddr("192.168.1.1"),
			IPRange: netip.MustParsePrefix("192.168.1.128/25"),
		},
		Deckies: []decnet.Decky{
			{Name: "files01", Hostname: "files01.corp", IP: netip.MustParseAddr("192.168.1.130"),
				Services: []string{"ssh", "smb"}, OS: decnet.OSWindows,
				ServiceConfig: map[string]map[string]string{"ssh": {"SSH_PASSWORD": "pa$$w0rd ${HOME}"}}},
			{Name: "cam-7", IP: netip.MustParseAddr("192.168.1.131"), Services: []string{"http", "telnet"}, OS: decnet.OSEmbedded},
		},
	}
}

func opts() compose.Options {
	return compose.Options{Project: "decnet", WorkDir: "/var/lib/decnet", ComposeFile: "/var/lib/decnet/decnet-compose.yml"}
}

func TestGolden(t *testing.T) {
	cases := map[string]decnet.Config{"macvlan": fleet()}
	br := fleet()
	br.Network = decnet.Network{Driver: decnet.DriverBridge, Subnet: netip.MustParsePrefix("10.240.7.0/24"), Name: "lab_net"}
	br.Deckies[0].IP = netip.MustParseAddr("10.240.7.20")
	br.Deckies[1].IP = netip.Addr{}
	br.Deckies[1].BaseImage = "example/base:1"
	cases["bridge"] = br
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := compose.Render(cfg, opts())
			if err != nil {
				t.Fatal(err)
			}
			got, err := compose.MarshalYAML(p)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden.yml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("rendered YAML differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestReload checks that the YAML loads through compose-go's loader and
// yields the model the engine creates containers from.
func TestReload(t *testing.T) {
	cfg := fleet()
	// "$" in free-form values (service settings, a catalog service's
	// environment and capabilities) must survive compose's interpolation.
	// Image references with "$" are rejected by validation before this.
	cfg.Deckies[1].BaseImage = "registry.local:5000/base:v1"
	cat := decnet.DefaultCatalog()
	ssh, _ := cat.Lookup("ssh")
	ssh.Image = "registry.local/ssh:v2"
	ssh.CapAdd = []string{"NET_$RAW"}
	ssh.Env = map[string]string{"BANNER": "SSH-2.0 ${TAG} $HOME $$"}
	if err := cat.Set(ssh); err != nil {
		t.Fatal(err)
	}
	o := opts()
	o.Catalog = cat
	p, err := compose.Render(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	y, err := compose.MarshalYAML(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "decnet-compose.yml")
	back, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: y}},
		Environment: types.Mapping{"HOME": "/root"},
	}, func(o *loader.Options) { o.SetProjectName("decnet", true) })
	if err != nil {
		t.Fatalf("LoadWithContext: %v\n%s", err, y)
	}
	if len(back.Services) != len(p.Services) {
		t.Fatalf("reloaded %d services, rendered %d", len(back.Services), len(p.Services))
	}
	for name, want := range p.Services {
		got, ok := back.Services[name]
		if !ok {
			t.Fatalf("service %s lost on reload", name)
		}
		type view struct {
			Image, Hostname, NetworkMode, Restart, ContainerName string
			Command                                              []string
			Env                                                  types.MappingWithEquals
			Labels                                               types.Labels
			Sysctls                                              types.Mapping
			CapAdd                                               []string
			Logging                                              *types.LoggingConfig
			IP                                                   string
		}
		v := func(s types.ServiceConfig) view {
			out := view{Image: s.Image, Hostname: s.Hostname, NetworkMode: s.NetworkMode, Restart: s.Restart,
				ContainerName: s.ContainerName, Command: s.Command, Env: s.Environment, Labels: s.Labels,
				Sysctls: s.Sysctls, CapAdd: s.CapAdd, Logging: s.Logging}
			for _, n := range s.Networks {
				if n != nil {
					out.IP = n.Ipv4Address
				}
			}
			return out
		}
		if diff := cmp.Diff(v(want), v(got), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("service %s changed on reload (-rendered +reloaded):\n%s", name, diff)
		}
	}
	n := back.Networks["decnet_lan"]
	if n.Name != "decnet_lan" || n.Driver != "macvlan" || n.DriverOpts["parent"] != "eth0" ||
		len(n.Ipam.Config) != 1 || n.Ipam.Config[0].IPRange != "192.168.1.128/25" {
		t.Errorf("network reloaded as %+v", n)
	}
}

func TestModel(t *testing.T) {
	p, err := compose.Render(fleet(), opts())
	if err != nil {
		t.Fatal(err)
	}
	base := p.Services["files01"]
	if base.ContainerName != compose.ContainerName("files01", "") || base.Hostname != "files01.corp" ||
		base.Sysctls["net.ipv4.ip_default_ttl"] != "128" || base.Restart != "unless-stopped" ||
		!equal(base.CapAdd, []string{"NET_ADMIN"}) || base.Image != compose.DefaultBaseImage {
		t.Errorf("base = %+v", base)
	}
	ssh := p.Services["files01-ssh"]
	if ssh.NetworkMode != "service:files01" || ssh.Hostname != "" || len(ssh.Networks) != 0 {
		t.Errorf("ssh networking = %q %q %v", ssh.NetworkMode, ssh.Hostname, ssh.Networks)
	}
	env := func(k string) string {
		if v := ssh.Environment[k]; v != nil {
			return *v
		}
		return "<unset>"
	}
	if env("NODE_NAME") != "files01" || env("HOSTNAME") != "files01.corp" || env("SSH_PASSWORD") != "pa$$w0rd ${HOME}" {
		t.Errorf("ssh env = NODE_NAME %s HOSTNAME %s SSH_PASSWORD %s", env("NODE_NAME"), env("HOSTNAME"), env("SSH_PASSWORD"))
	}
	if ssh.Logging == nil || ssh.Logging.Driver != "json-file" || ssh.Logging.Options["max-size"] != "10m" || ssh.Logging.Options["max-file"] != "5" {
		t.Errorf("logging = %+v", ssh.Logging)
	}
	for k, want := range map[string]string{"decnet.managed": "true", "decnet.decky": "files01", "decnet.service": "ssh"} {
		if ssh.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, ssh.Labels[k], want)
		}
	}
	if len(ssh.Labels[compose.LabelConfigHash]) != 64 {
		t.Errorf("config hash = %q", ssh.Labels[compose.LabelConfigHash])
	}
	if p.Networks["decnet_lan"].Name != "decnet_lan" {
		t.Errorf("network name = %q", p.Networks["decnet_lan"].Name)
	}
}

// TestHashes: a service's hash changes with its own spec and with its base,
// and not with the decky's other services.
func TestHashes(t *testing.T) {
	hash := func(cfg decnet.Config, key string) string {
		p, err := compose.Render(cfg, opts())
		if err != nil {
			t.Fatal(err)
		}
		return p.Services[key].Labels[compose.LabelConfigHash]
	}
	a := fleet()
	b := fleet()
	b.Deckies[0].Services = []string{"ssh", "http"}
	if hash(a, "files01-ssh") != hash(b, "files01-ssh") || hash(a, "files01") != hash(b, "files01") {
		t.Error("changing the service set changed the hash of a kept service or of the base")
	}
	c := fleet()
	c.Deckies[0].Hostname = "files02"
	if hash(a, "files01") == hash(c, "files01") || hash(a, "files01-ssh") == hash(c, "files01-ssh") {
		t.Error("a base change did not change the base's and its services' hashes")
	}
	d := fleet()
	d.Deckies[0].ServiceConfig["ssh"]["SSH_PASSWORD"] = "other"
	if hash(a, "files01-ssh") == hash(d, "files01-ssh") || hash(a, "files01") != hash(d, "files01") {
		t.Error("a service config change must change only that service's hash")
	}
	if hash(a, "cam-7-http") != hash(d, "cam-7-http") {
		t.Error("another decky's hash changed")
	}
}

func TestRejects(t *testing.T) {
	collide := fleet()
	collide.Deckies = append(collide.Deckies, decnet.Decky{Name: "files01-ssh", Services: []string{"ftp"}})
	bad := fleet()
	bad.Deckies[0].Name = "../x"
	unknown := fleet()
	unknown.Deckies[1].Services = []string{"gopher"}
	for name, cfg := range map[string]decnet.Config{"collision": collide, "traversal": bad, "unknown service": unknown} {
		t.Run(name, func(t *testing.T) {
			p, err := compose.Render(cfg, opts())
			var ve *decnet.ValidationError
			if p != nil || !errors.Is(err, decnet.ErrInvalid) || !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Render = %v, %v; want a validation error", p, err)
			}
		})
	}
}

func TestContainerName(t *testing.T) {
	for _, c := range []struct{ decky, svc, want string }{
		{"web", "", "web"}, {"web", "base", "web"}, {"web", "ssh", "web-ssh"}, {"web", "docker_api", "web-docker_api"},
	} {
		if got := compose.ContainerName(c.decky, c.svc); got != c.want {
			t.Errorf("ContainerName(%q, %q) = %q, want %q", c.decky, c.svc, got, c.want)
		}
	}
}

func equal(a, b []string) bool { return cmp.Equal(a, b) }
