// Package compose renders a decnet fleet as a Docker Compose project.
//
// [Render] turns a [decnet.Config] into a compose-go types.Project: for each
// decky a base service (container name = the decky name) that owns the
// decky's IP address, hostname and OS sysctl profile and holds NET_ADMIN, and
// one service per decoy service (container name "<decky>-<service>", see
// [ContainerName]) that joins the base's network namespace through
// network_mode "service:<base>". Every container restarts unless-stopped,
// logs to json-file capped at 10 MB × 5, and carries the decnet labels
// (decnet.managed, decnet.decky, decnet.service, decnet.config-hash). Service
// containers get NODE_NAME and HOSTNAME plus the catalog environment and the
// decky's service_config for that service. The network has an explicit
// Docker name, so no project prefix is added.
//
// [MarshalYAML] writes the project as a compose file that the compose CLI and
// compose-go's loader accept; values are escaped so reloading yields the same
// model. The engine (package decnet/engine) creates containers from the same
// project, so the file operators read and what runs cannot drift. The config
// hash of a service covers its base's hash: recreating a base recreates its
// services.
//
// The package does no I/O. Note that service_config values may be secrets;
// they appear in the rendered environment, so the file must be written with
// restrictive permissions.
package compose
