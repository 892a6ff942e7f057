// Package agentclient is the master's client for the worker agent API
// (package agent, binary decnet-agent).
//
// A [Client] talks to one agent over mutual TLS: it presents the master's
// identity from [Credentials] and verifies the worker's certificate against
// the swarm CA and, when [WithFingerprint] is given, against the worker's
// pinned SHA-256 fingerprint inside every TLS handshake. A pin mismatch is
// [decnet.ErrFingerprintMismatch] and is never retried.
//
// Every method takes a context and returns a typed result. Errors the agent
// sends as {"error":{"code",…}} come back as *decnet.WireError, which unwraps
// to the decnet error class of its code, so callers use errors.Is:
//
//	_, err := c.Mutate(ctx, "ghost", []string{"ssh"}, agentclient.MutateOptions{})
//	if errors.Is(err, decnet.ErrNotFound) { … }
//
// # Retries
//
// Requests go through hashicorp/go-retryablehttp with the client's own mTLS
// *http.Client (one transport per Client, keep-alive, HTTP/2 allowed). TLS
// and certificate failures, 4xx responses and 500 responses are never
// retried. Transient failures (connection refused or reset, 502, 503, 504,
// 429) are retried for the calls that are idempotent by design: Health,
// Status, Deploy (the whole shard replaces the worker's desired state),
// Teardown and Mutate (the same body converges to the same state).
// SelfDestruct is retried only when the connection could not be opened, never
// after the agent may have received it.
//
// # Timeouts
//
// Control calls (Health, Status, SelfDestruct) use [DefaultControlTimeout];
// Deploy, Mutate and Teardown use [DefaultDeployTimeout] because starting or
// removing containers can take long (a teardown timed out by the client
// while the worker completes it would leave the master's view wrong). A
// deadline on the caller's context shortens either.
package agentclient
