package decnet

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Port is a port a service listens on inside its decky.
type Port struct {
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol,omitempty"` // "tcp" (default) or "udp"
}

// Service is a decoy service a decky can run.
type Service struct {
	Name    string            `json:"name"`
	Image   string            `json:"image"`
	Command []string          `json:"command,omitempty"`
	Ports   []Port            `json:"ports,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	CapAdd  []string          `json:"cap_add,omitempty"`
}

func (s Service) clone() Service {
	s.Command = slices.Clone(s.Command)
	s.Ports = slices.Clone(s.Ports)
	s.Env = maps.Clone(s.Env)
	s.CapAdd = slices.Clone(s.CapAdd)
	return s
}

// Validate checks a catalog entry.
func (s Service) Validate() error {
	v := &ValidationError{}
	if !ValidServiceName(s.Name) {
		v.Add("name", "%q must match [a-z0-9][a-z0-9_-]{0,31}", s.Name)
	}
	if s.Image == "" {
		v.Add("image", "required")
	} else if !ValidImageRef(s.Image) {
		v.Add("image", "%q is not a valid image reference", s.Image)
	}
	for i, p := range s.Ports {
		if p.Port == 0 {
			v.Add(fmt.Sprintf("ports[%d].port", i), "must be 1-65535")
		}
		if p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp" {
			v.Add(fmt.Sprintf("ports[%d].protocol", i), "must be tcp or udp")
		}
	}
	for k := range s.Env {
		if !ValidEnvKey(k) {
			v.Add("env."+k, "not a valid environment variable name")
		}
	}
	return v.Err()
}

// Catalog is the set of services deckies may run. It is a value the caller
// builds and passes around; there is no global registry. The zero Catalog is
// empty and usable. A Catalog is not safe for concurrent mutation; build it,
// then share it read-only.
type Catalog struct {
	services map[string]Service
}

// NewCatalog builds a catalog from services, rejecting invalid or duplicate entries.
func NewCatalog(services ...Service) (*Catalog, error) {
	c := &Catalog{services: make(map[string]Service, len(services))}
	for _, s := range services {
		if _, dup := c.services[s.Name]; dup {
			return nil, Errorf(ErrConflict, "service", s.Name, "duplicate catalog service %q", s.Name)
		}
		if err := c.Set(s); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// DefaultCatalog returns the built-in services, each running the built-in
// decoy image with the service name as its command.
func DefaultCatalog() *Catalog {
	tcp := func(ports ...uint16) []Port {
		out := make([]Port, len(ports))
		for i, p := range ports {
			out[i] = Port{Port: p, Protocol: "tcp"}
		}
		return out
	}
	entries := []struct {
		name  string
		ports []Port
	}{
		{"ftp", tcp(21)},
		{"http", tcp(80)},
		{"https", tcp(443)},
		{"mysql", tcp(3306)},
		{"rdp", tcp(3389)},
		{"redis", tcp(6379)},
		{"smb", tcp(445, 139)},
		{"smtp", tcp(25)},
		{"ssh", tcp(22)},
		{"telnet", tcp(23)},
	}
	c := &Catalog{services: make(map[string]Service, len(entries))}
	for _, e := range entries {
		c.services[e.name] = Service{Name: e.name, Image: DecoyImage, Command: []string{e.name}, Ports: e.ports}
	}
	return c
}

// Set adds or replaces a service (an operator override of an entry's image,
// command, ports or environment).
func (c *Catalog) Set(s Service) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if c.services == nil {
		c.services = map[string]Service{}
	}
	c.services[s.Name] = s.clone()
	return nil
}

// Lookup returns the service called name.
func (c *Catalog) Lookup(name string) (Service, bool) {
	if c == nil {
		return Service{}, false
	}
	s, ok := c.services[name]
	if !ok {
		return Service{}, false
	}
	return s.clone(), true
}

// Has reports whether the catalog has a service called name.
func (c *Catalog) Has(name string) bool {
	if c == nil {
		return false
	}
	_, ok := c.services[name]
	return ok
}

// Names returns the service names, sorted.
func (c *Catalog) Names() []string {
	if c == nil {
		return nil
	}
	names := make([]string, 0, len(c.services))
	for n := range c.services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Clone returns an independent copy of c.
func (c *Catalog) Clone() *Catalog {
	out := &Catalog{services: make(map[string]Service)}
	if c == nil {
		return out
	}
	for k, s := range c.services {
		out.services[k] = s.clone()
	}
	return out
}
