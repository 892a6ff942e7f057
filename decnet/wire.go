package decnet

import "time"

// Wire types of the worker agent API (protocol 1). Requests are decoded
// strictly (DecodeStrict); responses leniently (DecodeLenient).

// HealthResponse is the body of GET /health.
type HealthResponse struct {
	Status   string `json:"status"`
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
}

// StatusResponse is the body of GET /status.
type StatusResponse struct {
	Deployed bool          `json:"deployed"`
	Deckies  []DeckyStatus `json:"deckies"`
}

// DeckyStatus is one decky in /status: its desired identity and services
// plus the runtime state of each container. It never carries service_config.
type DeckyStatus struct {
	Name        string    `json:"name"`
	Hostname    string    `json:"hostname"`
	IP          string    `json:"ip"`
	Services    []string  `json:"services"`
	OS          OSFamily  `json:"os"`
	LastMutated time.Time `json:"last_mutated,omitzero"`
	// Running is true when every desired container (base and services) runs.
	Running bool `json:"running"`
	// Containers maps "base" and each service name to its container state:
	// "running", "exited", "created", "restarting", "absent", …
	Containers map[string]string `json:"containers"`
}

// Container states reported in DeckyStatus.Containers beside Docker's own.
const (
	ContainerRunning = "running"
	ContainerAbsent  = "absent"
	BaseContainerKey = "base"
)

// DeployRequest is the body of POST /deploy: the worker's whole shard.
type DeployRequest struct {
	Config Config `json:"config"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// DeployResponse is the body of a successful POST /deploy.
type DeployResponse struct {
	Status  string      `json:"status"` // "deployed" or "dry_run"
	Deckies []string    `json:"deckies,omitempty"`
	Plan    *DeployPlan `json:"plan,omitempty"`
}

// DeployPlan says what a deploy would do.
type DeployPlan struct {
	Deckies []DeckyPlan `json:"deckies"`
	Remove  []string    `json:"remove,omitempty"` // deckies on the worker that the shard drops
}

// DeckyPlan is the plan for one decky of a deploy.
type DeckyPlan struct {
	Name     string   `json:"name"`
	IP       string   `json:"ip,omitempty"`
	Action   string   `json:"action"` // "create", "update", "keep"
	Services []string `json:"services"`
}

// TeardownRequest is the body of POST /teardown; an empty DeckyID tears down everything.
type TeardownRequest struct {
	DeckyID string `json:"decky_id,omitempty"`
}

// TeardownResponse is the body of a successful POST /teardown.
type TeardownResponse struct {
	Status  string `json:"status"` // "torn_down"
	DeckyID string `json:"decky_id,omitempty"`
}

// MutateRequest is the body of POST /mutate.
type MutateRequest struct {
	DeckyID  string   `json:"decky_id"`
	Services []string `json:"services"`
	DryRun   bool     `json:"dry_run,omitempty"`
}

// MutateResponse is the body of a successful POST /mutate.
type MutateResponse struct {
	Status   string      `json:"status"` // "mutated" or "dry_run"
	DeckyID  string      `json:"decky_id"`
	Services []string    `json:"services"`
	Plan     *MutatePlan `json:"plan,omitempty"`
}

// MutatePlan lists the services a mutation adds, removes and keeps.
type MutatePlan struct {
	Add    []string `json:"add"`
	Remove []string `json:"remove"`
	Keep   []string `json:"keep"`
}

// SelfDestructResponse is the body of POST /self-destruct (202).
type SelfDestructResponse struct {
	Status string `json:"status"` // "self_destruct_scheduled"
}

// PlanMutation computes the add/remove/keep plan from old to new services,
// each list in the order of the set it comes from.
func PlanMutation(old, new []string) MutatePlan {
	in := func(s string, set []string) bool {
		for _, x := range set {
			if x == s {
				return true
			}
		}
		return false
	}
	p := MutatePlan{Add: []string{}, Remove: []string{}, Keep: []string{}}
	for _, s := range new {
		if in(s, old) {
			p.Keep = append(p.Keep, s)
		} else {
			p.Add = append(p.Add, s)
		}
	}
	for _, s := range old {
		if !in(s, new) {
			p.Remove = append(p.Remove, s)
		}
	}
	return p
}
