// Package reaper wipes a worker's decnet install when the master
// decommissions it (self-destruct).
//
// A [Plan] is data: the compose projects whose containers go, the systemd
// units to stop and disable, the paths to delete, the paths always kept
// (logs, for forensics), a Root prefix (empty in production; tests run whole
// plans inside a temporary directory) and a start delay. [DefaultPlan] is the
// production plan; [Plan.Validate] refuses a plan that would delete a system
// directory, a kept path, or anything outside decnet's own paths.
//
// [Execute] carries a plan out, step by step: wait the delay (so the agent's
// HTTP reply drains), remove the projects' containers through the engine,
// stop then disable the units, delete the paths (globs expanded under Root;
// a symlink is unlinked, never followed, and no directory is traversed
// through a symlink, even one pointing inside Root), reload systemd and
// delete the reaper's own copy. The units never include the reaper's own
// decnet-reaper-* unit; a reaper that runs inside a unit it stops (a
// detached reaper in decnet-agent.service) stops that unit last of all. A
// failing step is logged and the next one still runs; the [Result] lists
// what was done and what failed.
//
// [Spawn] starts a reaper that outlives the agent: it copies the running
// executable and the plan to a fresh temporary directory outside every
// deleted path and starts "<copy> reap --plan <file>" as a transient systemd
// service unit decnet-reaper-<pid>.service, outside the agent's cgroup, so
// stopping decnet-agent.service cannot kill it mid-wipe. Where there is no
// systemd the copy runs as a detached process in a new session.
// [SelfDestructer] is what the agent's POST /self-destruct calls;
// [RunPlanFile] is what "decnet-agent reap --plan FILE" calls.
package reaper
