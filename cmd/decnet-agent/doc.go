// Command decnet-agent is the worker agent of a decnet swarm: it serves the
// agent API (package agent) over mutual TLS and drives the worker's Docker
// Engine when the master asks.
//
// Subcommands:
//
//	decnet-agent serve [--dir /etc/decnet/agent] [--listen :8765] [--state-dir /var/lib/decnet]
//	                   [--network-driver bridge|macvlan|ipvlan] [--parent IF]
//	                   [--subnet CIDR] [--gateway IP] [--ip-range CIDR] [--config FILE]
//	decnet-agent pause     the process of a decky's base container
//	decnet-agent version
//
// serve refuses to start (exit code 2, one line on stderr naming the missing
// file) without an enrolled bundle (ca.crt, tls.crt, tls.key) in --dir.
// When the bundle directory also holds master.fingerprint, only the master
// certificate with that SHA-256 fingerprint may call the agent.
//
// The worker's LAN is the agent's own configuration. Without flags it is a
// Docker bridge network on 172.30.254.0/24 (gateway 172.30.254.1), which
// exposes nothing on the LAN: for development. In production use macvlan or
// ipvlan on the worker's NIC (--parent) with the LAN's subnet and gateway,
// and --ip-range for the addresses deckies may take. A --gateway left out
// defaults to the subnet's first host address.
//
// --config FILE reads the same settings from a JSON object with the flag
// names in snake_case ("dir", "listen", "state_dir", "network_driver",
// "parent", "subnet", "gateway", "ip_range", "network_name", "docker_host",
// "project", "base_image", "log_level"); unknown keys are an error, and flags given on the command
// line override the file.
//
// Under systemd (Type=notify) the agent sends READY=1 once it listens and
// STOPPING=1 when SIGTERM arrives, then drains in-flight requests.
//
// On the first deploy the agent builds its base image (engine.PauseImage) as
// a FROM scratch image holding its own executable, which must therefore be
// static (CGO_ENABLED=0). It never touches Docker at start-up.
//
// enroll (joining a master with a one-time token) is not implemented yet:
// it needs the master's enrollment API.
package main
