package decnet

// Version is the SDK's release version. Binaries report it in their version
// subcommand and the agent reports it in /health.
const Version = "0.1.0"

// ProtocolVersion is the version of the master↔agent wire protocol. A master
// at protocol N talks to agents at N and N-1; a new request field comes with a
// protocol bump.
const ProtocolVersion = 1

// DecoyImage is the built-in decoy image every default catalog entry runs.
const DecoyImage = "decnet/decoy:" + Version
