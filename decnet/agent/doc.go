// Package agent is the worker agent: the HTTPS API through which the master
// drives one worker's deckies, built on an [Engine] (decnet/engine), a
// [Store] (decnet/state) and a [Reaper] (decnet/reaper).
//
// # Security
//
// The agent only speaks TLS 1.3 with a client certificate verified against
// the swarm CA (pki.ServerTLSConfig). Every request is then authorized: only
// a certificate of role master (OU=decnet-master) may call, and when the
// worker's bundle holds the master's pinned fingerprint (the file
// master.fingerprint in the bundle directory, or Config.MasterFingerprint)
// only that exact certificate. A CA-signed certificate of another role (a
// worker's) gets 403; a certificate of another CA fails the handshake. There
// are no documentation or listing routes.
//
// # Endpoints
//
//	GET  /health         {"status":"ok","version","protocol"}
//	GET  /status         {"deployed","deckies":[…]} (never service_config)
//	POST /deploy         {"config","dry_run"}: the worker's whole shard
//	POST /teardown       {"decky_id"} or {} for everything
//	POST /mutate         {"decky_id","services","dry_run"}
//	POST /self-destruct  202, then the reaper tears down and wipes the worker
//
// Request bodies are at most 1 MiB (413 above) and decoded strictly (400 on
// unknown fields or malformed JSON); every error is
// {"error":{"code","message"}}. A rejected request changes nothing.
//
// # Concurrency
//
// State-changing requests take the state lock, so they are serialised per
// worker; they run under their own deadline (Config.DeployTimeout), so a
// client that disconnects does not abort a half-done reconcile. /health and
// /status take no lock and answer while a deploy runs (/status shows the
// desired state that deploy saved).
//
// # Desired state
//
// /deploy and /mutate save the new desired state atomically, write the
// compose file (ComposeFileName in the state directory, so `docker compose
// -p decnet` can inspect the project), then reconcile through the engine. If
// the engine fails the answer is 500 apply_failed and the state keeps the new
// desired set: /status shows what is not running and repeating the request
// converges.
package agent
