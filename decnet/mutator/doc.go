// Package mutator keeps the deception surface moving: on each decky's
// interval it replaces the decky's services with a different set, on
// whichever machine the decky lives.
//
// An [Engine] reads due deckies from a [Store] (a small slice of
// repository.Repository), asks a [Chooser] for a new service set, finds the
// machine to mutate through with a [HostResolver] and dispatches to the
// returned [Target]. Only after the target confirms does the engine record
// the new services and last_mutated, so the store never believes a mutation
// that did not happen. Every attempt, successful or not, is appended to the
// store's event log as a "decky_mutated" event carrying the old and new
// services, the trigger, the actor, the target and the outcome. The event is
// written in the same store transaction as the decky's new services (or, for
// a failure, its new state), so the log and the rows never disagree.
//
// # Scheduling
//
// A decky is due when now - LastMutated >= its interval (its own
// MutateInterval, else [Config.DefaultInterval], else
// decnet.DefaultMutateInterval); an interval of zero means never, unless an
// operator forces it with [Engine.MutateNow]. The repository sets a new
// decky's LastMutated to its creation time, so new deckies are not due at
// once. [Engine.Run] sleeps on the injected [Clock] until the next due time,
// a retry after a failure, or a wake-up; it never polls on a fixed tick.
//
// Only deployed deckies are rotated: deckies in state pending (never
// deployed) or tearing_down are skipped until they leave that state. A
// program that changes deckies in the same process (a deploy, a new
// interval) calls [Engine.Wake] so Run re-reads the store at once; set
// [Config.Resync] when another process writes to the store.
//
// [Engine.MutateNow] rotates named deckies (or all) at once, whether due or
// not, with trigger "operator" and the actor of [WithActor];
// [Engine.Plan] says what a mutation would do without doing it.
//
// # Failures
//
// A failed dispatch records an event with the error, sets the decky's state
// to degraded with last_error, keeps the old desired services, and retries
// that decky with capped exponential backoff. Dispatches run concurrently
// under a global bound and a per-host bound, so one slow or dead worker holds
// at most its own slots and never stalls the other deckies. When Run's
// context ends, dispatches in flight get a grace period to finish, because
// the worker completes a mutation it has started whether or not the master
// waits for the answer; their outcome is recorded.
//
// # Metrics
//
// With [Config.Registry] set, the engine registers
// decnet_mutator_mutations_total{outcome,trigger},
// decnet_mutator_dispatch_duration_seconds{outcome} and
// decnet_mutator_deckies_overdue.
//
// # Targets
//
// [NewAgentTarget] mutates through a worker agent (an agentclient.Client);
// [NewLocalTarget] reconciles master-resident deckies on the master's own
// engine; [NewResolver] maps a decky's HostUUID to a cached agent client per
// host (one connection reused across rounds) and "" to the local target.
// An embedding program can supply its own resolver, target and chooser: see
// examples/custom-resolver.
package mutator
