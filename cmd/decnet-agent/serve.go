package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent"
	"github.com/decnet-swarm/sdk/decnet/compose"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/pki"
	"github.com/decnet-swarm/sdk/decnet/reaper"
	"github.com/decnet-swarm/sdk/decnet/state"
	"github.com/decnet-swarm/sdk/internal/cli"
)

// Defaults of serve.
const (
	defaultBundleDir = "/etc/decnet/agent"
	defaultListen    = ":8765"
	defaultSubnet    = "172.30.254.0/24" // the development bridge LAN
)

// serveOptions are serve's settings: flags, or the same keys in --config.
type serveOptions struct {
	Dir           string `json:"dir,omitempty"`
	Listen        string `json:"listen,omitempty"`
	StateDir      string `json:"state_dir,omitempty"`
	NetworkDriver string `json:"network_driver,omitempty"`
	Parent        string `json:"parent,omitempty"`
	Subnet        string `json:"subnet,omitempty"`
	Gateway       string `json:"gateway,omitempty"`
	IPRange       string `json:"ip_range,omitempty"`
	NetworkName   string `json:"network_name,omitempty"`
	DockerHost    string `json:"docker_host,omitempty"`
	Project       string `json:"project,omitempty"`
	BaseImage     string `json:"base_image,omitempty"`
	LogLevel      string `json:"log_level,omitempty"`
}

func newServeCmd(a *app) *cobra.Command {
	var flags serveOptions
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the agent API over mutual TLS",
		Args:  cli.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := resolveServeOptions(configFile, flags, cmd.Flags())
			if err != nil {
				return err
			}
			return serve(cmd.Context(), a, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "read the settings from this JSON file (flags override it)")
	f.StringVar(&flags.Dir, "dir", defaultBundleDir, "bundle directory (ca.crt, tls.crt, tls.key, optional master.fingerprint)")
	f.StringVar(&flags.Listen, "listen", defaultListen, "address to serve the agent API on")
	f.StringVar(&flags.StateDir, "state-dir", state.DefaultDir, "state directory (state file and compose file)")
	f.StringVar(&flags.NetworkDriver, "network-driver", string(decnet.DriverBridge), "decky LAN driver: bridge, macvlan or ipvlan")
	f.StringVar(&flags.Parent, "parent", "", "host interface of a macvlan/ipvlan LAN")
	f.StringVar(&flags.Subnet, "subnet", "", "decky LAN subnet (default "+defaultSubnet+" for bridge)")
	f.StringVar(&flags.Gateway, "gateway", "", "decky LAN gateway (default: the subnet's first host address)")
	f.StringVar(&flags.IPRange, "ip-range", "", "addresses deckies may take (default: the subnet)")
	f.StringVar(&flags.NetworkName, "network-name", decnet.DefaultNetworkName, "Docker network name of the decky LAN")
	f.StringVar(&flags.DockerHost, "docker-host", engine.DefaultHost, "Docker Engine endpoint")
	f.StringVar(&flags.Project, "project", compose.DefaultProject, "compose project of the fleet")
	f.StringVar(&flags.BaseImage, "base-image", engine.PauseImage, "tag of the base image built from this executable")
	f.StringVar(&flags.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// resolveServeOptions merges the config file (strictly decoded) with the
// flags given on the command line, which win; unset values keep the flag
// defaults.
func resolveServeOptions(configFile string, flags serveOptions, fs *pflag.FlagSet) (serveOptions, error) {
	if configFile == "" {
		return flags, nil
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return serveOptions{}, cli.Usagef("config file: %v", err)
	}
	var file serveOptions
	if err := decnet.DecodeStrict(data, &file); err != nil {
		return serveOptions{}, cli.Usagef("config file %s: %v", configFile, err)
	}
	out := flags
	pick := func(name string, dst *string, fromFile string) {
		if fromFile != "" && !fs.Changed(name) {
			*dst = fromFile
		}
	}
	pick("dir", &out.Dir, file.Dir)
	pick("listen", &out.Listen, file.Listen)
	pick("state-dir", &out.StateDir, file.StateDir)
	pick("network-driver", &out.NetworkDriver, file.NetworkDriver)
	pick("parent", &out.Parent, file.Parent)
	pick("subnet", &out.Subnet, file.Subnet)
	pick("gateway", &out.Gateway, file.Gateway)
	pick("ip-range", &out.IPRange, file.IPRange)
	pick("network-name", &out.NetworkName, file.NetworkName)
	pick("docker-host", &out.DockerHost, file.DockerHost)
	pick("project", &out.Project, file.Project)
	pick("base-image", &out.BaseImage, file.BaseImage)
	pick("log-level", &out.LogLevel, file.LogLevel)
	return out, nil
}

// lanNetwork builds the worker's decky LAN from the options.
func lanNetwork(o serveOptions) (decnet.Network, error) {
	n := decnet.Network{Driver: decnet.Driver(o.NetworkDriver), Parent: o.Parent, Name: o.NetworkName}
	subnet := o.Subnet
	if subnet == "" && n.Driver == decnet.DriverBridge {
		subnet = defaultSubnet
	}
	var err error
	if subnet != "" {
		if n.Subnet, err = netip.ParsePrefix(subnet); err != nil {
			return decnet.Network{}, cli.Usagef("--subnet %q: %v", subnet, err)
		}
	}
	if o.Gateway != "" {
		if n.Gateway, err = netip.ParseAddr(o.Gateway); err != nil {
			return decnet.Network{}, cli.Usagef("--gateway %q: %v", o.Gateway, err)
		}
	} else if n.Subnet.IsValid() {
		n.Gateway = n.Subnet.Masked().Addr().Next()
	}
	if o.IPRange != "" {
		if n.IPRange, err = netip.ParsePrefix(o.IPRange); err != nil {
			return decnet.Network{}, cli.Usagef("--ip-range %q: %v", o.IPRange, err)
		}
	}
	if err := n.Validate(); err != nil {
		return decnet.Network{}, cli.Usagef("decky LAN: %v", err)
	}
	return n, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, cli.Usagef("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// serve runs the agent until ctx ends (SIGTERM/SIGINT in main).
func serve(ctx context.Context, a *app, o serveOptions) error {
	// The bundle first: without an identity there is nothing to serve, and
	// the error is the one line an operator sees.
	if _, err := pki.LoadBundle(o.Dir); err != nil {
		if errors.Is(err, decnet.ErrNotFound) {
			return cli.UsageError{Err: fmt.Errorf("no enrolled bundle: %w (enroll this worker first)", err)}
		}
		return cli.UsageError{Err: fmt.Errorf("bundle: %w", err)}
	}
	level, err := parseLevel(o.LogLevel)
	if err != nil {
		return err
	}
	network, err := lanNetwork(o)
	if err != nil {
		return err
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return cli.Usagef("--state-dir: %v", err)
	}
	log := slog.New(slog.NewJSONHandler(a.stderr, &slog.HandlerOptions{Level: level}))

	st, err := state.Open(stateDir)
	if err != nil {
		return err
	}
	composeFile := filepath.Join(stateDir, agent.ComposeFileName)
	eng, err := engine.New(engine.Config{
		Host:        o.DockerHost,
		Project:     o.Project,
		BaseImage:   o.BaseImage,
		WorkDir:     stateDir,
		ComposeFile: composeFile,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	defer eng.Close()
	ag, err := agent.New(agent.Config{
		BundleDir:   o.Dir,
		Engine:      eng,
		State:       st,
		Network:     network,
		Reaper:      &reaper.SelfDestructer{Options: reaper.SpawnOptions{Logger: log}},
		BaseImage:   &selfImage{eng: eng, tag: o.BaseImage},
		ComposeFile: composeFile,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", o.Listen, err)
	}
	log.InfoContext(ctx, "agent_starting",
		"version", decnet.Version, "listen", ln.Addr().String(), "state_dir", stateDir,
		"network_driver", string(network.Driver), "subnet", network.Subnet.String(), "pool", network.Pool().String())
	notify(log, "READY=1")
	stopNotify := context.AfterFunc(ctx, func() { notify(log, "STOPPING=1") })
	defer stopNotify()
	return ag.Serve(ctx, ln)
}

// notify sends an sd_notify state; without NOTIFY_SOCKET it does nothing.
func notify(log *slog.Logger, st string) {
	if _, err := daemon.SdNotify(false, st); err != nil {
		log.Warn("sd_notify_failed", "state", st, "error", err.Error())
	}
}

// selfImage builds the base (pause) image from the running executable: a
// FROM scratch image whose entrypoint is "<binary> pause".
type selfImage struct {
	eng *engine.Engine
	tag string
}

func (s *selfImage) EnsureBaseImage(ctx context.Context) error {
	ok, err := s.eng.ImageExists(ctx, s.tag)
	if err != nil || ok {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("own executable: %w", err)
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	base := filepath.Base(exe) // BuildImage copies the binary to /<base>
	return s.eng.BuildImage(ctx, engine.ImageSpec{
		Tag:        s.tag,
		Binary:     exe,
		Entrypoint: []string{"/" + base, "pause"},
		Labels:     map[string]string{compose.LabelManaged: "true", "decnet.component": "pause", "decnet.version": decnet.Version},
	})
}
