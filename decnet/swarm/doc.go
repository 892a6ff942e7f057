// Package swarm is the master's controller of a decnet swarm.
//
// This first part covers a worker's end of life and its identity on the
// worker-facing API:
//
//   - [Decommission] forgets a worker: a best-effort self-destruct request to
//     its agent (bounded by a short timeout, so a dead or unreachable worker
//     never blocks), then, in one repository transaction, its deckies and its
//     row are deleted, its certificate fingerprint is denied from then on and
//     an event records whether the worker acknowledged the self-destruct.
//   - [AuthorizeWorker] maps a worker's verified client certificate to its
//     host row (refusing denied and unknown certificates), and
//     [HeartbeatHandler] is the worker heartbeat endpoint built on it.
package swarm
