package decnet

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Mode says where deckies run.
type Mode string

const (
	// ModeUnihost: every decky runs on the master's own Docker Engine.
	ModeUnihost Mode = "unihost"
	// ModeSwarm: deckies are sharded over enrolled workers.
	ModeSwarm Mode = "swarm"
)

// Driver is a Docker network driver decnet can put deckies on.
type Driver string

const (
	// DriverMacvlan gives every decky its own MAC on the parent interface's LAN.
	DriverMacvlan Driver = "macvlan"
	// DriverIPvlan shares the parent's MAC (for switches that limit MACs per port).
	DriverIPvlan Driver = "ipvlan"
	// DriverBridge is a private Docker bridge: for development and tests, it
	// exposes nothing on the LAN.
	DriverBridge Driver = "bridge"
)

// DefaultNetworkName is the Docker network deckies join when Network.Name is empty.
const DefaultNetworkName = "decnet_lan"

// DefaultMutateInterval applies when neither the decky nor the config sets one.
const DefaultMutateInterval = 30 * time.Minute

// Duration is a time.Duration that encodes in JSON as a Go duration string
// ("30m0s") and decodes from one ("30m", "1h30m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, ErrInvalid)
	}
	*d = Duration(v)
	return nil
}

// Interval returns a pointer to d as a Duration, for the MutateInterval fields.
func Interval(d time.Duration) *Duration { v := Duration(d); return &v }

// Network is the LAN deckies are placed on.
type Network struct {
	Driver  Driver       `json:"driver"`
	Parent  string       `json:"parent,omitempty"` // host interface, macvlan/ipvlan only
	Subnet  netip.Prefix `json:"subnet,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	IPRange netip.Prefix `json:"ip_range,omitzero"` // addresses deckies may take; default the subnet
	Name    string       `json:"name,omitempty"`    // Docker network name; default DefaultNetworkName
}

// DockerName returns the Docker network name.
func (n Network) DockerName() string {
	if n.Name == "" {
		return DefaultNetworkName
	}
	return n.Name
}

// Pool returns the prefix deckies take their addresses from.
func (n Network) Pool() netip.Prefix {
	if n.IPRange.IsValid() {
		return n.IPRange
	}
	return n.Subnet
}

// Config is a fleet: the network and the deckies on it.
type Config struct {
	Mode    Mode    `json:"mode"`
	Network Network `json:"network"`
	Deckies []Decky `json:"deckies"`
	// MutateInterval is the default rotation interval; nil means
	// DefaultMutateInterval, zero means never (unless forced).
	MutateInterval *Duration `json:"mutate_interval,omitempty"`
}

// Decky is one decoy machine.
type Decky struct {
	Name     string     `json:"name"`
	Hostname string     `json:"hostname,omitempty"` // default Name
	IP       netip.Addr `json:"ip,omitzero"`        // empty: the worker allocates one
	Services []string   `json:"services"`
	// Archetype names the service pool the mutator draws from (empty: the catalog).
	Archetype string   `json:"archetype,omitempty"`
	OS        OSFamily `json:"os,omitempty"`         // default OSLinux
	BaseImage string   `json:"base_image,omitempty"` // default: the worker's pause image
	// ServiceConfig holds per-service settings passed to the service container
	// as environment. May hold secrets: never echoed by status endpoints.
	ServiceConfig map[string]map[string]string `json:"service_config,omitempty"`
	// MutateInterval overrides Config.MutateInterval; zero means never.
	MutateInterval *Duration `json:"mutate_interval,omitempty"`
	LastMutated    time.Time `json:"last_mutated,omitzero"`
	HostUUID       string    `json:"host_uuid,omitempty"` // empty: master-resident
}

// EffectiveHostname returns the hostname, defaulting to the decky name.
func (d Decky) EffectiveHostname() string {
	if d.Hostname == "" {
		return d.Name
	}
	return d.Hostname
}

// EffectiveOS returns the OS family, defaulting to OSLinux.
func (d Decky) EffectiveOS() OSFamily {
	if d.OS == "" {
		return OSLinux
	}
	return d.OS
}

// Clone returns a deep copy of d.
func (d Decky) Clone() Decky {
	d.Services = slices.Clone(d.Services)
	if d.ServiceConfig != nil {
		sc := make(map[string]map[string]string, len(d.ServiceConfig))
		for k, v := range d.ServiceConfig {
			m := make(map[string]string, len(v))
			for kk, vv := range v {
				m[kk] = vv
			}
			sc[k] = m
		}
		d.ServiceConfig = sc
	}
	if d.MutateInterval != nil {
		v := *d.MutateInterval
		d.MutateInterval = &v
	}
	return d
}

// Clone returns a deep copy of c.
func (c Config) Clone() Config {
	if c.Deckies != nil {
		ds := make([]Decky, len(c.Deckies))
		for i, d := range c.Deckies {
			ds[i] = d.Clone()
		}
		c.Deckies = ds
	}
	if c.MutateInterval != nil {
		v := *c.MutateInterval
		c.MutateInterval = &v
	}
	return c
}

// EffectiveMutateInterval returns the rotation interval for d under c: the
// decky's own, else the config's, else DefaultMutateInterval. Zero means never.
func (c Config) EffectiveMutateInterval(d Decky) time.Duration {
	return EffectiveInterval(d.MutateInterval, c.MutateInterval)
}

// EffectiveInterval resolves an interval override chain: the first non-nil
// value wins, DefaultMutateInterval when all are nil.
func EffectiveInterval(chain ...*Duration) time.Duration {
	for _, p := range chain {
		if p != nil {
			return p.D()
		}
	}
	return DefaultMutateInterval
}

// Decky returns the decky called name.
func (c Config) Decky(name string) (Decky, bool) {
	for _, d := range c.Deckies {
		if d.Name == name {
			return d, true
		}
	}
	return Decky{}, false
}

var (
	deckyNameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	serviceNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	hostLabelRE   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	netNameRE     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	ifaceNameRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:@-]{0,14}$`)
	envKeyRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	// imageRefRE follows the Docker reference grammar: an optional registry
	// (localhost, a dotted host name, or host:port), lowercase path
	// components, an optional tag and an optional digest.
	imageRefRE = regexp.MustCompile(`^(?:(?:localhost(?::[0-9]+)?|` + dc + `(?:\.` + dc + `)+(?::[0-9]+)?|` + dc + `:[0-9]+)/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`)
)

// dc is one DNS label of a registry host.
const dc = `[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?`

// ValidImageRef reports whether s is a Docker image reference such as
// "decnet/decoy:0.1.0", "registry.corp:5000/team/ssh:2" or "x@sha256:…".
func ValidImageRef(s string) bool { return len(s) <= 255 && imageRefRE.MatchString(s) }

// ValidDeckyName reports whether s is a valid decky name: [a-z0-9][a-z0-9-]{0,62}.
func ValidDeckyName(s string) bool { return deckyNameRE.MatchString(s) }

// ValidServiceName reports whether s is a valid service name: [a-z0-9][a-z0-9_-]{0,31}.
func ValidServiceName(s string) bool { return serviceNameRE.MatchString(s) }

// ValidHostname reports whether s is an RFC 1123 host name.
func ValidHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !hostLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// ValidEnvKey reports whether s can be used as an environment variable name.
func ValidEnvKey(s string) bool { return envKeyRE.MatchString(s) }

// Validate checks the network settings.
func (n Network) Validate() error {
	v := &ValidationError{}
	n.validate(v)
	return v.Err()
}

func (n Network) validate(v *ValidationError) {
	switch n.Driver {
	case DriverMacvlan, DriverIPvlan:
		if n.Parent == "" {
			v.Add("parent", "required for the %s driver", n.Driver)
		} else if !ifaceNameRE.MatchString(n.Parent) {
			v.Add("parent", "%q is not a valid interface name", n.Parent)
		}
	case DriverBridge:
		if n.Parent != "" {
			v.Add("parent", "not used by the bridge driver")
		}
	case "":
		v.Add("driver", "required (macvlan, ipvlan or bridge)")
	default:
		v.Add("driver", "unknown driver %q (macvlan, ipvlan or bridge)", n.Driver)
	}
	if n.Name != "" && !netNameRE.MatchString(n.Name) {
		v.Add("name", "%q is not a valid Docker network name", n.Name)
	}
	if !n.Subnet.IsValid() {
		v.Add("subnet", "required")
		return
	}
	if n.Subnet != n.Subnet.Masked() {
		v.Add("subnet", "%s has host bits set (use %s)", n.Subnet, n.Subnet.Masked())
	}
	if !n.Subnet.Addr().Is4() {
		v.Add("subnet", "only IPv4 subnets are supported")
	}
	if n.Subnet.Bits() > 30 {
		v.Add("subnet", "%s is too small for deckies", n.Subnet)
	}
	if n.Gateway.IsValid() && !n.Subnet.Contains(n.Gateway) {
		v.Add("gateway", "%s is outside the subnet %s", n.Gateway, n.Subnet)
	}
	if n.IPRange.IsValid() {
		if n.IPRange != n.IPRange.Masked() {
			v.Add("ip_range", "%s has host bits set (use %s)", n.IPRange, n.IPRange.Masked())
		}
		if !n.Subnet.Contains(n.IPRange.Addr()) || n.IPRange.Bits() < n.Subnet.Bits() {
			v.Add("ip_range", "%s is not inside the subnet %s", n.IPRange, n.Subnet)
		}
	}
}

// Validate checks d against the catalog (nil: service existence is not checked).
func (d Decky) Validate(cat *Catalog) error {
	v := &ValidationError{}
	d.validate(v, cat)
	return v.Err()
}

func (d Decky) validate(v *ValidationError, cat *Catalog) {
	if d.Name == "" {
		v.Add("name", "required")
	} else if !ValidDeckyName(d.Name) {
		v.Add("name", "%q must match [a-z0-9][a-z0-9-]{0,62}", d.Name)
	}
	if d.Hostname != "" && !ValidHostname(d.Hostname) {
		v.Add("hostname", "%q is not a valid host name", d.Hostname)
	}
	if d.IP.IsValid() && !d.IP.Is4() {
		v.Add("ip", "%s is not an IPv4 address", d.IP)
	}
	validateServices(v, "services", d.Services, cat)
	if d.OS != "" {
		if _, ok := sysctlProfiles[d.OS]; !ok {
			v.Add("os", "unknown OS family %q (linux, windows, bsd or embedded)", d.OS)
		}
	}
	if d.BaseImage != "" && !ValidImageRef(d.BaseImage) {
		v.Add("base_image", "%q is not a valid image reference", d.BaseImage)
	}
	// Settings may be kept for services the decky is not running now (the
	// mutator rotates services in and out), so a key only has to name a
	// service that can exist.
	for svc, kv := range d.ServiceConfig {
		switch {
		case !ValidServiceName(svc):
			v.Add("service_config."+svc, "%q is not a valid service name", svc)
		case cat != nil && !cat.Has(svc) && !slices.Contains(d.Services, svc):
			v.Add("service_config."+svc, "not a service of the catalog")
		}
		for k := range kv {
			if !ValidEnvKey(k) {
				v.Add("service_config."+svc+"."+k, "not a valid environment variable name")
			}
		}
	}
	if d.MutateInterval != nil && *d.MutateInterval < 0 {
		v.Add("mutate_interval", "must not be negative")
	}
}

// ValidateServices checks a service list: non-empty, valid names, no
// duplicates, each in cat (when cat is not nil). field names the list in the
// returned problems.
func ValidateServices(field string, services []string, cat *Catalog) error {
	v := &ValidationError{}
	validateServices(v, field, services, cat)
	return v.Err()
}

func validateServices(v *ValidationError, field string, services []string, cat *Catalog) {
	if len(services) == 0 {
		v.Add(field, "at least one service is required")
		return
	}
	seen := make(map[string]bool, len(services))
	for i, s := range services {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !ValidServiceName(s):
			v.Add(f, "%q must match [a-z0-9][a-z0-9_-]{0,31}", s)
		case seen[s]:
			v.Add(f, "duplicate service %q", s)
		case cat != nil && !cat.Has(s):
			v.Add(f, "unknown service %q", s)
		}
		seen[s] = true
	}
}

// Validate checks the whole config: mode, network, every decky, unique names
// and addresses, and that every fixed IP is a usable address of the subnet.
// cat may be nil to skip service existence checks.
func (c Config) Validate(cat *Catalog) error {
	v := &ValidationError{}
	switch c.Mode {
	case ModeUnihost, ModeSwarm:
	case "":
		v.Add("mode", "required (unihost or swarm)")
	default:
		v.Add("mode", "unknown mode %q (unihost or swarm)", c.Mode)
	}
	nv := &ValidationError{}
	c.Network.validate(nv)
	v.Merge("network", nv)
	if c.MutateInterval != nil && *c.MutateInterval < 0 {
		v.Add("mutate_interval", "must not be negative")
	}
	names := map[string]int{}
	ips := map[netip.Addr]int{}
	for i, d := range c.Deckies {
		p := fmt.Sprintf("deckies[%d]", i)
		dv := &ValidationError{}
		d.validate(dv, cat)
		v.Merge(p, dv)
		if j, dup := names[d.Name]; dup && d.Name != "" {
			v.Add(p+".name", "duplicate decky name %q (also deckies[%d])", d.Name, j)
		} else {
			names[d.Name] = i
		}
		if !d.IP.IsValid() {
			continue
		}
		if j, dup := ips[d.IP]; dup {
			v.Add(p+".ip", "%s is also used by deckies[%d]", d.IP, j)
		} else {
			ips[d.IP] = i
		}
		if c.Network.Subnet.IsValid() {
			if err := c.Network.CheckAddr(d.IP); err != nil {
				v.Add(p+".ip", "%v", err)
			}
		}
	}
	return v.Err()
}

// CheckAddr reports whether ip may be given to a decky on n: inside the
// subnet, not its network or broadcast address, not the gateway.
func (n Network) CheckAddr(ip netip.Addr) error {
	if !n.Subnet.Contains(ip) {
		return fmt.Errorf("%s is outside the subnet %s", ip, n.Subnet)
	}
	if ip == n.Subnet.Masked().Addr() {
		return fmt.Errorf("%s is the network address of %s", ip, n.Subnet)
	}
	if ip == LastAddr(n.Subnet) {
		return fmt.Errorf("%s is the broadcast address of %s", ip, n.Subnet)
	}
	if ip == n.Gateway {
		return fmt.Errorf("%s is the gateway", ip)
	}
	return nil
}

// LastAddr returns the highest address of an IPv4 prefix.
func LastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := 0; i < 4; i++ {
		hostBits := 32 - bits - 8*(3-i)
		switch {
		case hostBits >= 8:
			a[i] = 0xff
		case hostBits > 0:
			a[i] |= byte(1<<hostBits - 1)
		}
	}
	return netip.AddrFrom4(a)
}
