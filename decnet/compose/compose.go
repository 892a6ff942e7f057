package compose

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/decnet-swarm/sdk/decnet"
)

// DefaultProject is the compose project of a worker's fleet.
const DefaultProject = "decnet"

// DefaultBaseImage is the image base containers run when neither the options
// nor the decky name one: the pause image the agent builds from its own binary.
const DefaultBaseImage = "decnet/pause:" + decnet.Version

// Labels decnet puts on every container and network it manages.
const (
	LabelManaged    = "decnet.managed"        // "true"
	LabelDecky      = "decnet.decky"          // decky name
	LabelService    = "decnet.service"        // service name, or BaseService
	LabelConfigHash = "decnet.config-hash"    // sha256 of the container's spec
	LabelNetwork    = "decnet.network"        // on networks: "true"
	BaseService     = decnet.BaseContainerKey // LabelService value of base containers
)

// Labels Docker Compose uses to recognise the containers and networks of a
// project. The engine sets them so `docker compose -p <project> ps/logs/down`
// work on what it made.
const (
	ComposeProject     = "com.docker.compose.project"
	ComposeService     = "com.docker.compose.service"
	ComposeOneoff      = "com.docker.compose.oneoff"
	ComposeWorkingDir  = "com.docker.compose.project.working_dir"
	ComposeConfigFiles = "com.docker.compose.project.config_files"
	ComposeNumber      = "com.docker.compose.container-number"
	ComposeNetwork     = "com.docker.compose.network"
)

// Logging caps of every container: json-file, 10 MB × 5 files.
const (
	LogDriver  = "json-file"
	LogMaxSize = "10m"
	LogMaxFile = "5"
)

// RestartPolicy of every container.
const RestartPolicy = types.RestartPolicyUnlessStopped

// CapNetAdmin is the capability base containers get to apply their network
// settings.
const CapNetAdmin = "NET_ADMIN"

// ContainerName returns the Docker container name (and compose service key)
// of a decky's container: the decky name for its base (service "" or
// BaseService), "<decky>-<service>" for a service. Service names are used as
// they are (underscores kept). This is the one naming function: compose,
// engine and status all call it.
func ContainerName(decky, service string) string {
	if service == "" || service == BaseService {
		return decky
	}
	return decky + "-" + service
}

// Options control rendering. Zero fields mean the documented defaults.
type Options struct {
	Project     string          // compose project; "" = DefaultProject
	Catalog     *decnet.Catalog // nil = decnet.DefaultCatalog()
	BaseImage   string          // base image when a decky names none; "" = DefaultBaseImage
	WorkDir     string          // recorded in com.docker.compose.project.working_dir
	ComposeFile string          // recorded in com.docker.compose.project.config_files
}

func (o Options) project() string {
	if o.Project == "" {
		return DefaultProject
	}
	return o.Project
}

func (o Options) catalog() *decnet.Catalog {
	if o.Catalog == nil {
		return decnet.DefaultCatalog()
	}
	return o.Catalog
}

func (o Options) baseImage(d decnet.Decky) string {
	switch {
	case d.BaseImage != "":
		return d.BaseImage
	case o.BaseImage != "":
		return o.BaseImage
	}
	return DefaultBaseImage
}

// Render turns a validated fleet into a compose project: per decky a base
// service (key and container name ContainerName(decky, "")) that owns the
// decky's address, hostname and sysctls, plus one service per decoy service
// (key and container name ContainerName(decky, svc)) joined to the base's
// network namespace with network_mode "service:<base>", and the network with
// its explicit Docker name. Every service carries LabelConfigHash.
//
// network_mode is "service:<base>" rather than "container:<base>" because the
// base is itself a service of the file: the compose CLI then creates the base
// first and recreates its dependants when it is recreated, whereas
// "container:" would point compose at a container it may not have created
// yet. The engine translates it to "container:<base container name>".
// Both compose v1 and v2 treat "service:" as a dependency, so no depends_on
// is written (docker-compose v1 rejects depends_on's "required" key).
//
// cfg is validated against the catalog first; invalid input returns a
// *decnet.ValidationError and no project.
func Render(cfg decnet.Config, opts Options) (*types.Project, error) {
	cat := opts.catalog()
	if err := cfg.Validate(cat); err != nil {
		return nil, err
	}
	if err := checkNames(cfg); err != nil {
		return nil, err
	}
	netKey := cfg.Network.DockerName()
	p := &types.Project{
		Name:       opts.project(),
		WorkingDir: opts.WorkDir,
		Services:   types.Services{},
		Networks:   types.Networks{netKey: NetworkConfig(cfg.Network)},
	}
	if opts.ComposeFile != "" {
		p.ComposeFiles = []string{opts.ComposeFile}
	}
	for _, d := range cfg.Deckies {
		base := baseService(d, netKey, opts)
		p.Services[base.Name] = base
		for _, name := range d.Services {
			svc, _ := cat.Lookup(name) // Validate checked existence
			s := serviceService(d, svc, base)
			p.Services[s.Name] = s
		}
	}
	return p, nil
}

// checkNames rejects fleets whose container names collide, e.g. decky "web"
// with service "ssh" and a decky called "web-ssh".
func checkNames(cfg decnet.Config) error {
	v := &decnet.ValidationError{}
	seen := map[string]string{}
	add := func(name, field string) {
		if other, dup := seen[name]; dup {
			v.Add(field, "container name %q is also used by %s", name, other)
			return
		}
		seen[name] = field
	}
	for i, d := range cfg.Deckies {
		add(ContainerName(d.Name, ""), fmt.Sprintf("deckies[%d].name", i))
		for j, s := range d.Services {
			add(ContainerName(d.Name, s), fmt.Sprintf("deckies[%d].services[%d]", i, j))
		}
	}
	return v.Err()
}

// NetworkConfig returns the compose network of n, with its explicit Docker
// name (no project prefix), driver, parent and IPAM pool.
func NetworkConfig(n decnet.Network) types.NetworkConfig {
	nc := types.NetworkConfig{
		Name:   n.DockerName(),
		Driver: string(n.Driver),
		Labels: types.Labels{LabelManaged: "true", LabelNetwork: "true"},
	}
	if n.Parent != "" && n.Driver != decnet.DriverBridge {
		nc.DriverOpts = types.Options{"parent": n.Parent}
	}
	pool := &types.IPAMPool{Subnet: n.Subnet.String()}
	if n.Gateway.IsValid() {
		pool.Gateway = n.Gateway.String()
	}
	if n.IPRange.IsValid() {
		pool.IPRange = n.IPRange.String()
	}
	nc.Ipam = types.IPAMConfig{Config: []*types.IPAMPool{pool}}
	return nc
}

func logging() *types.LoggingConfig {
	return &types.LoggingConfig{Driver: LogDriver, Options: types.Options{"max-size": LogMaxSize, "max-file": LogMaxFile}}
}

func baseService(d decnet.Decky, netKey string, opts Options) types.ServiceConfig {
	sysctls, _ := decnet.SysctlProfile(d.EffectiveOS())
	name := ContainerName(d.Name, "")
	nw := &types.ServiceNetworkConfig{}
	if d.IP.IsValid() {
		nw.Ipv4Address = d.IP.String()
	}
	s := types.ServiceConfig{
		Name:          name,
		ContainerName: name,
		Restart:       RestartPolicy,
	}
	s.Image = opts.baseImage(d)
	s.Hostname = d.EffectiveHostname()
	s.Sysctls = types.Mapping(sysctls)
	s.CapAdd = []string{CapNetAdmin}
	s.Networks = map[string]*types.ServiceNetworkConfig{netKey: nw}
	s.Logging = logging()
	s.Labels = types.Labels{LabelManaged: "true", LabelDecky: d.Name, LabelService: BaseService}
	s.Labels[LabelConfigHash] = hashOf(s, "")
	return s
}

func serviceService(d decnet.Decky, svc decnet.Service, base types.ServiceConfig) types.ServiceConfig {
	name := ContainerName(d.Name, svc.Name)
	env := types.MappingWithEquals{}
	set := func(k, v string) { v2 := v; env[k] = &v2 }
	for k, v := range svc.Env {
		set(k, v)
	}
	for k, v := range d.ServiceConfig[svc.Name] {
		set(k, v)
	}
	set("NODE_NAME", d.Name)
	set("HOSTNAME", d.EffectiveHostname())
	s := types.ServiceConfig{
		Name:          name,
		ContainerName: name,
		Restart:       RestartPolicy,
	}
	s.Image = svc.Image
	if len(svc.Command) > 0 {
		s.Command = types.ShellCommand(slices.Clone(svc.Command))
	}
	s.Environment = env
	if len(svc.CapAdd) > 0 {
		s.CapAdd = slices.Clone(svc.CapAdd)
	}
	s.NetworkMode = types.NetworkModeServicePrefix + base.Name
	s.Logging = logging()
	s.Labels = types.Labels{LabelManaged: "true", LabelDecky: d.Name, LabelService: svc.Name}
	// A service holds its base's network namespace: when the base changes,
	// the service must be recreated too, so its hash covers the base's.
	s.Labels[LabelConfigHash] = hashOf(s, base.Labels[LabelConfigHash])
	return s
}

// hashOf returns the hex sha256 of the service's spec (without its own hash
// label) and of extra.
func hashOf(s types.ServiceConfig, extra string) string {
	s.Labels = maps.Clone(s.Labels)
	delete(s.Labels, LabelConfigHash)
	b, err := json.Marshal(struct {
		Spec  types.ServiceConfig `json:"spec"`
		Name  string              `json:"name"`
		Extra string              `json:"extra,omitempty"`
	}{s, s.Name, extra})
	if err != nil {
		// ServiceConfig holds only strings, maps and slices of them.
		panic(fmt.Sprintf("compose: hashing service %s: %v", s.Name, err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ContainerLabels returns the compose labels of a container of service key
// in project p (project, service, oneoff, working dir, config files,
// container number), to be merged with the service's own labels.
func ContainerLabels(p *types.Project, service string) map[string]string {
	return map[string]string{
		ComposeProject:     p.Name,
		ComposeService:     service,
		ComposeOneoff:      "False",
		ComposeWorkingDir:  p.WorkingDir,
		ComposeConfigFiles: strings.Join(p.ComposeFiles, ","),
		ComposeNumber:      "1",
	}
}

// NetworkLabels returns the labels of the Docker network of key in project p:
// its own labels plus the compose project and network labels.
func NetworkLabels(p *types.Project, key string) map[string]string {
	out := maps.Clone(map[string]string(p.Networks[key].Labels))
	if out == nil {
		out = map[string]string{}
	}
	out[ComposeProject] = p.Name
	out[ComposeNetwork] = key
	return out
}

// Decky is the part of a rendered project that belongs to one decky.
type Decky struct {
	Name     string
	Base     types.ServiceConfig
	Services map[string]types.ServiceConfig // by decnet service name
}

// Deckies splits a rendered project by decky (by LabelDecky), in name order.
func Deckies(p *types.Project) []Decky {
	by := map[string]*Decky{}
	for _, s := range p.Services {
		name := s.Labels[LabelDecky]
		d := by[name]
		if d == nil {
			d = &Decky{Name: name, Services: map[string]types.ServiceConfig{}}
			by[name] = d
		}
		if svc := s.Labels[LabelService]; svc == BaseService {
			d.Base = s
		} else {
			d.Services[svc] = s
		}
	}
	out := make([]Decky, 0, len(by))
	for _, k := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[k])
	}
	return out
}

// BaseOf returns the service key a service's network_mode points at, or ""
// when it has none.
func BaseOf(s types.ServiceConfig) string {
	if after, ok := strings.CutPrefix(s.NetworkMode, types.NetworkModeServicePrefix); ok {
		return after
	}
	if after, ok := strings.CutPrefix(s.NetworkMode, types.NetworkModeContainerPrefix); ok {
		return after
	}
	return ""
}
