// Package engine applies decnet fleets to a Docker Engine through the Engine
// API (github.com/moby/moby/client). It is the only package of the SDK that
// talks to Docker; it needs no compose CLI.
//
// Every operation starts from the compose project that package compose
// renders for the fleet: container specs, names and the decnet.config-hash
// labels come from that one model, so the compose file written for operators
// and what the engine runs cannot drift. Containers also carry the compose
// labels (project, service, oneoff, working dir, config files, container
// number), so `docker compose -p <project> -f <file> ps/logs/down` (or
// Debian's docker-compose v1) work on what the engine made.
//
// [Engine.Apply] reconciles the whole project: it ensures the network
// (bridge, macvlan or ipvlan, with parent, subnet, gateway and IP range;
// a network whose settings drifted is replaced when only this project uses
// it), then, for at most Config.Concurrency deckies at a time:
//   - the base container is kept unless its own spec changed or it is not
//     running; then it is recreated, and its services with it, since they
//     live in its network namespace;
//   - service containers that are missing or whose config hash changed are
//     (re)created, stopped ones are started, ones the decky no longer has are
//     removed (removals first, so a port or name is free for the new ones);
//   - containers of deckies no longer in the fleet are removed.
//
// [Engine.ApplyDecky] does the same for one decky and touches nothing else:
// a mutation keeps the base (its ID, IP and MAC) and the kept services, and
// only removes and creates the changed service containers.
//
// Images are never pulled: a missing image is decnet.ErrNotFound naming the
// image. Errors are classified into the decnet classes: an unreachable daemon
// is decnet.ErrUnavailable, a name taken by a foreign container
// decnet.ErrConflict, bad input decnet.ErrInvalid (and changes nothing).
// Transient Engine API errors (connection failures, 5xx) are retried with
// capped exponential backoff (Config.Retry); permanent ones (4xx) are not.
// A partial failure is an *ApplyError listing each failed decky's error; it
// unwraps to decnet.ErrApplyFailed and repeating the call converges.
//
// [Engine.BuildImage] builds a FROM scratch image from one static binary
// through the build endpoint (the agent's pause image, test images).
//
// The engine does not serialise calls: the caller (the agent, through its
// state lock) must not run two state-changing calls on one project at once.
package engine
