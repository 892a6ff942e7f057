package decnet_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/google/go-cmp/cmp"
)

func validConfig() decnet.Config {
	return decnet.Config{
		Mode: decnet.ModeSwarm,
		Network: decnet.Network{
			Driver:  decnet.DriverMacvlan,
			Parent:  "eth0",
			Subnet:  netip.MustParsePrefix("192.168.1.0/24"),
			Gateway: netip.MustParseAddr("192.168.1.1"),
			IPRange: netip.MustParsePrefix("192.168.1.64/26"),
		},
		Deckies: []decnet.Decky{
			{Name: "web-01", Hostname: "web01.corp", IP: netip.MustParseAddr("192.168.1.70"), Services: []string{"ssh", "http"}, OS: decnet.OSLinux},
			{Name: "files", Services: []string{"smb"}, OS: decnet.OSWindows},
		},
	}
}

// fields returns the field paths of a validation error, sorted.
func fields(t *testing.T, err error) []string {
	t.Helper()
	if !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("error %v is not ErrInvalid", err)
	}
	var ve *decnet.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError", err)
	}
	var out []string
	for _, p := range ve.Problems {
		out = append(out, p.Field)
	}
	slices.Sort(out)
	return out
}

func TestValidConfigPasses(t *testing.T) {
	if err := validConfig().Validate(decnet.DefaultCatalog()); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
}

func TestValidationReportsEveryProblemWithItsPath(t *testing.T) {
	cat := decnet.DefaultCatalog()
	tests := []struct {
		name   string
		mutate func(c *decnet.Config)
		want   []string
	}{
		{"path traversal name", func(c *decnet.Config) { c.Deckies[0].Name = "../x" }, []string{"deckies[0].name"}},
		{"upper-case name", func(c *decnet.Config) { c.Deckies[0].Name = "Web" }, []string{"deckies[0].name"}},
		{"empty name", func(c *decnet.Config) { c.Deckies[1].Name = "" }, []string{"deckies[1].name"}},
		{"name too long", func(c *decnet.Config) { c.Deckies[1].Name = strings.Repeat("a", 64) }, []string{"deckies[1].name"}},
		{"duplicate services", func(c *decnet.Config) { c.Deckies[0].Services = []string{"ssh", "ssh"} }, []string{"deckies[0].services[1]"}},
		{"unknown service", func(c *decnet.Config) { c.Deckies[1].Services = []string{"smb", "gopher"} }, []string{"deckies[1].services[1]"}},
		{"bad service name", func(c *decnet.Config) { c.Deckies[1].Services = []string{"../etc"} }, []string{"deckies[1].services[0]"}},
		{"empty services", func(c *decnet.Config) { c.Deckies[0].Services = nil }, []string{"deckies[0].services"}},
		{"ip outside subnet", func(c *decnet.Config) { c.Deckies[0].IP = netip.MustParseAddr("10.0.0.5") }, []string{"deckies[0].ip"}},
		{"ip is gateway", func(c *decnet.Config) { c.Deckies[0].IP = netip.MustParseAddr("192.168.1.1") }, []string{"deckies[0].ip"}},
		{"ip is broadcast", func(c *decnet.Config) { c.Deckies[0].IP = netip.MustParseAddr("192.168.1.255") }, []string{"deckies[0].ip"}},
		{"duplicate decky", func(c *decnet.Config) { c.Deckies[1].Name = "web-01" }, []string{"deckies[1].name"}},
		{"duplicate ip", func(c *decnet.Config) { c.Deckies[1].IP = c.Deckies[0].IP }, []string{"deckies[1].ip"}},
		{"bad hostname", func(c *decnet.Config) { c.Deckies[0].Hostname = "-bad-" }, []string{"deckies[0].hostname"}},
		{"bad base image", func(c *decnet.Config) { c.Deckies[0].BaseImage = "x:${TAG}" }, []string{"deckies[0].base_image"}},
		{"upper-case image", func(c *decnet.Config) { c.Deckies[0].BaseImage = "Corp/Base" }, []string{"deckies[0].base_image"}},
		{"unknown os", func(c *decnet.Config) { c.Deckies[0].OS = "plan9" }, []string{"deckies[0].os"}},
		{"bad env key", func(c *decnet.Config) {
			c.Deckies[0].ServiceConfig = map[string]map[string]string{"ssh": {"BAD KEY": "x"}}
		}, []string{"deckies[0].service_config.ssh.BAD KEY"}},
		{"service_config for unknown service", func(c *decnet.Config) {
			c.Deckies[0].ServiceConfig = map[string]map[string]string{"gopher": {"K": "x"}}
		}, []string{"deckies[0].service_config.gopher"}},
		{"negative interval", func(c *decnet.Config) { c.Deckies[0].MutateInterval = decnet.Interval(-time.Second) }, []string{"deckies[0].mutate_interval"}},
		{"mode", func(c *decnet.Config) { c.Mode = "cluster" }, []string{"mode"}},
		{"driver", func(c *decnet.Config) { c.Network.Driver = "overlay" }, []string{"network.driver"}},
		{"parent missing", func(c *decnet.Config) { c.Network.Parent = "" }, []string{"network.parent"}},
		{"gateway outside", func(c *decnet.Config) { c.Network.Gateway = netip.MustParseAddr("10.1.1.1") }, []string{"network.gateway"}},
		{"range outside", func(c *decnet.Config) { c.Network.IPRange = netip.MustParsePrefix("10.1.0.0/24") }, []string{"network.ip_range"}},
		{"subnet host bits", func(c *decnet.Config) { c.Network.Subnet = netip.MustParsePrefix("192.168.1.7/24") }, []string{"network.subnet"}},
		{"many at once", func(c *decnet.Config) {
			c.Deckies[0].Name = "../x"
			c.Deckies[0].Services = []string{"ssh", "ssh"}
			c.Deckies[1].Services = nil
		}, []string{"deckies[0].name", "deckies[0].services[1]", "deckies[1].services"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			got := fields(t, c.Validate(cat))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problem fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceConfigMayNameServicesNotRunningNow(t *testing.T) {
	d := decnet.Decky{Name: "a", Services: []string{"ssh"}, ServiceConfig: map[string]map[string]string{"mysql": {"MYSQL_ROOT_PASSWORD": "x"}}}
	if err := d.Validate(decnet.DefaultCatalog()); err != nil {
		t.Fatalf("settings for a catalog service the decky may rotate into: %v", err)
	}
	if err := d.Validate(nil); err != nil {
		t.Fatalf("without a catalog: %v", err)
	}
	d.ServiceConfig["../x"] = map[string]string{"K": "v"}
	if err := d.Validate(nil); !errors.Is(err, decnet.ErrInvalid) {
		t.Fatalf("invalid service name in service_config accepted: %v", err)
	}
}

func TestValidateDoesNotModifyConfig(t *testing.T) {
	c := validConfig()
	c.Deckies[0].Name = "../x"
	before, _ := json.Marshal(c)
	_ = c.Validate(decnet.DefaultCatalog())
	after, _ := json.Marshal(c)
	if string(before) != string(after) {
		t.Fatalf("Validate changed its input:\n%s\n%s", before, after)
	}
}

func TestJSONRoundTripIsSnakeCase(t *testing.T) {
	c := validConfig()
	c.MutateInterval = decnet.Interval(45 * time.Minute)
	c.Deckies[0].LastMutated = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	c.Deckies[0].ServiceConfig = map[string]map[string]string{"ssh": {"SSH_PASSWORD": "s3cret"}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"mutate_interval":"45m0s"`, `"last_mutated":"2026-12-01T10:00:00Z"`, `"ip_range":"192.168.1.64/26"`, `"service_config"`, `"base_image"`} {
		if key == `"base_image"` {
			if strings.Contains(string(b), key) {
				t.Errorf("empty base_image encoded: %s", b)
			}
			continue
		}
		if !strings.Contains(string(b), key) {
			t.Errorf("encoding lacks %s: %s", key, b)
		}
	}
	if strings.Contains(string(b), `"ip":""`) {
		t.Errorf("zero IP encoded: %s", b)
	}
	var back decnet.Config
	if err := decnet.DecodeStrict(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, back, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestDecodeStrictRejects(t *testing.T) {
	for name, body := range map[string]string{
		"unknown field":  `{"mode":"swarm","bogus":1}`,
		"malformed":      `{"mode":`,
		"trailing value": `{"mode":"swarm"} {"mode":"swarm"}`,
		"trailing junk":  `{"mode":"swarm"} x`,
		"empty":          ``,
		"bad ip":         `{"deckies":[{"name":"a","ip":"999.1.1.1","services":["ssh"]}]}`,
		"bad duration":   `{"mutate_interval":"soon"}`,
		"wrong type":     `{"deckies":"x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			var c decnet.Config
			if err := decnet.DecodeStrict([]byte(body), &c); !errors.Is(err, decnet.ErrInvalid) {
				t.Fatalf("DecodeStrict(%q) = %v, want ErrInvalid", body, err)
			}
		})
	}
	var c decnet.Config
	if err := decnet.DecodeStrict([]byte(" {\"mode\":\"swarm\"}\n "), &c); err != nil || c.Mode != decnet.ModeSwarm {
		t.Fatalf("whitespace around a value must decode: %v %v", err, c.Mode)
	}
}

func TestEffectiveInterval(t *testing.T) {
	c := decnet.Config{}
	d := decnet.Decky{}
	if got := c.EffectiveMutateInterval(d); got != decnet.DefaultMutateInterval {
		t.Errorf("default = %v", got)
	}
	c.MutateInterval = decnet.Interval(0)
	if got := c.EffectiveMutateInterval(d); got != 0 {
		t.Errorf("config zero (never) = %v", got)
	}
	d.MutateInterval = decnet.Interval(5 * time.Minute)
	if got := c.EffectiveMutateInterval(d); got != 5*time.Minute {
		t.Errorf("decky override = %v", got)
	}
}

func TestCheckAddrAndLastAddr(t *testing.T) {
	for p, want := range map[string]string{
		"10.0.0.0/8": "10.255.255.255", "192.168.1.0/24": "192.168.1.255",
		"172.16.0.0/12": "172.31.255.255", "10.1.2.128/25": "10.1.2.255", "10.1.2.0/30": "10.1.2.3",
	} {
		if got := decnet.LastAddr(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("LastAddr(%s) = %s, want %s", p, got, want)
		}
	}
	n := validConfig().Network
	if err := n.CheckAddr(netip.MustParseAddr("192.168.1.0")); err == nil {
		t.Error("network address accepted")
	}
	if err := n.CheckAddr(netip.MustParseAddr("192.168.1.2")); err != nil {
		t.Errorf("usable address rejected: %v", err)
	}
}

func TestCloneIsDeep(t *testing.T) {
	c := validConfig()
	c.Deckies[0].ServiceConfig = map[string]map[string]string{"ssh": {"K": "v"}}
	c.MutateInterval = decnet.Interval(time.Minute)
	cl := c.Clone()
	cl.Deckies[0].Services[0] = "ftp"
	cl.Deckies[0].ServiceConfig["ssh"]["K"] = "changed"
	*cl.MutateInterval = 0
	if c.Deckies[0].Services[0] != "ssh" || c.Deckies[0].ServiceConfig["ssh"]["K"] != "v" || *c.MutateInterval != decnet.Duration(time.Minute) {
		t.Fatal("Clone shares memory with the original")
	}
}

func TestValidImageRef(t *testing.T) {
	for _, ok := range []string{"decnet/decoy:0.1.0", "busybox", "registry.corp:5000/team/ssh:2", "localhost/a_b__c-d.e:v1.2-rc",
		"x@sha256:" + strings.Repeat("a", 64), "dnt-pause:1234-ab12cd"} {
		if !decnet.ValidImageRef(ok) {
			t.Errorf("%q rejected", ok)
		}
	}
	for _, bad := range []string{"", "x:${TAG}", "Upper/case", "a b", "a:", ":tag", "a//b", "a:-x", "a@sha256:1234", "$(id)"} {
		if decnet.ValidImageRef(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
