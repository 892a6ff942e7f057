package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/decnet/state"
)

// Messages of the two /mutate 404s (DESIGN.md).
const (
	msgNoDeployment = "no active deployment on this worker"
	msgDeckyMissing = "decky %q not found in worker state"
)

// Status values of the success bodies.
const (
	statusOK                    = "ok"
	statusDeployed              = "deployed"
	statusDryRun                = "dry_run"
	statusTornDown              = "torn_down"
	statusMutated               = "mutated"
	statusSelfDestructScheduled = "self_destruct_scheduled"
)

// containerUnknown is reported for every container when Docker cannot be
// asked: unknown, never "everything is gone".
const containerUnknown = "unknown"

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, decnet.HealthResponse{Status: statusOK, Version: decnet.Version, Protocol: decnet.ProtocolVersion})
}

// handleStatus serves the last saved desired state merged with the runtime
// state from the engine. It takes no lock, so it answers while a long deploy
// holds it (showing the state that deploy saved).
func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.store.Load(r.Context())
	if errors.Is(err, decnet.ErrNotFound) {
		writeJSON(w, http.StatusOK, decnet.StatusResponse{Deployed: false, Deckies: []decnet.DeckyStatus{}})
		return
	}
	if err != nil {
		writeError(w, fmt.Errorf("%w: %w", errInternal, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.statusTimeout)
	defer cancel()
	runtime, err := a.engine.Status(ctx, st.Config)
	if err != nil {
		a.log.WarnContext(r.Context(), "agent_status_runtime_unavailable", "error", err.Error())
		runtime = nil
	}
	writeJSON(w, http.StatusOK, decnet.StatusResponse{Deployed: true, Deckies: mergeStatus(st.Config, runtime, err != nil)})
}

// mergeStatus builds the /status entries from the desired state (identity,
// address, services: never service_config) and the runtime containers.
func mergeStatus(cfg decnet.Config, runtime []decnet.DeckyStatus, unknown bool) []decnet.DeckyStatus {
	byName := make(map[string]decnet.DeckyStatus, len(runtime))
	for _, s := range runtime {
		byName[s.Name] = s
	}
	out := make([]decnet.DeckyStatus, 0, len(cfg.Deckies))
	for _, d := range cfg.Deckies {
		s := decnet.DeckyStatus{
			Name:        d.Name,
			Hostname:    d.EffectiveHostname(),
			Services:    slices.Clone(d.Services),
			OS:          d.EffectiveOS(),
			LastMutated: d.LastMutated,
			Containers:  map[string]string{},
		}
		if d.IP.IsValid() {
			s.IP = d.IP.String()
		}
		rt, ok := byName[d.Name]
		running := true
		for _, key := range append([]string{decnet.BaseContainerKey}, d.Services...) {
			state := decnet.ContainerAbsent
			switch {
			case unknown:
				state = containerUnknown
			case ok && rt.Containers[key] != "":
				state = rt.Containers[key]
			}
			s.Containers[key] = state
			running = running && state == decnet.ContainerRunning
		}
		s.Running = running
		out = append(out, s)
	}
	return out
}

func (a *Agent) handleDeploy(w http.ResponseWriter, r *http.Request) {
	var req decnet.DeployRequest
	decode := func(body []byte) (err error) {
		req, err = decodeDeploy(body, a.network, a.catalog)
		return err
	}
	a.stateOp(w, r, decode, func(ctx context.Context, prev *state.State) error {
		var prevCfg *decnet.Config
		if prev != nil {
			prevCfg = &prev.Config
		}
		cfg, err := allocateIPs(req.Config, prevCfg)
		if err != nil {
			return err
		}
		if req.DryRun {
			plan, err := a.engine.Plan(ctx, cfg)
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, decnet.DeployResponse{Status: statusDryRun, Plan: &plan})
			return nil
		}
		if err := a.save(ctx, cfg); err != nil {
			return err
		}
		if err := a.apply(ctx, cfg, func(ctx context.Context) error { return a.engine.Apply(ctx, cfg) }); err != nil {
			return err
		}
		names := make([]string, len(cfg.Deckies))
		for i, d := range cfg.Deckies {
			names[i] = d.Name
		}
		writeJSON(w, http.StatusOK, decnet.DeployResponse{Status: statusDeployed, Deckies: names})
		return nil
	})
}

// stateOp is the frame of every state-changing request: read and decode the
// body (a rejection changes nothing), take the state lock (waiting ends with
// the client), then run fn under the operation's own deadline with the
// current state (nil when there is none). fn writes the success response; an
// error it returns is written as the wire error.
func (a *Agent) stateOp(w http.ResponseWriter, r *http.Request, decode func([]byte) error, fn func(context.Context, *state.State) error) {
	body, err := readBody(w, r)
	if err == nil {
		err = decode(body)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	unlock, err := a.store.Lock(r.Context())
	if err != nil {
		writeError(w, fmt.Errorf("%w: %w", decnet.ErrUnavailable, err))
		return
	}
	defer unlock()
	ctx, cancel := a.opContext(r)
	defer cancel()
	st, err := a.loadOptional(ctx)
	if err == nil {
		err = fn(ctx, st)
	}
	if err != nil {
		writeError(w, err)
	}
}

// save records cfg as the worker's desired state.
func (a *Agent) save(ctx context.Context, cfg decnet.Config) error {
	if err := a.store.Save(ctx, &state.State{Config: cfg, ComposePath: a.composePath, UpdatedAt: a.now().UTC()}); err != nil {
		return fmt.Errorf("%w: save state: %w", errInternal, err)
	}
	return nil
}

// apply writes the compose file, ensures the base image and runs fn. Any
// failure is apply_failed: the desired state is already saved, so repeating
// the request converges.
func (a *Agent) apply(ctx context.Context, cfg decnet.Config, fn func(context.Context) error) error {
	if err := a.writeCompose(cfg); err != nil {
		return applyFailed(err)
	}
	if err := a.ensureBase(ctx); err != nil {
		return applyFailed(err)
	}
	if err := fn(ctx); err != nil {
		return applyFailed(err)
	}
	return nil
}

// applyFailed turns an apply error into the 500 apply_failed answer; an
// *engine.ApplyError's per-decky failures go to Details["deckies"].
func applyFailed(err error) error {
	msg := err.Error()
	if !errors.Is(err, decnet.ErrApplyFailed) {
		msg = "apply failed: " + msg
	}
	we := &decnet.WireError{Code: decnet.CodeApplyFailed, Message: msg}
	var ae *engine.ApplyError
	if errors.As(err, &ae) {
		per := make(map[string]string, len(ae.Deckies))
		for name, e := range ae.Deckies {
			per[name] = e.Error()
		}
		we.Details = map[string]any{"deckies": per}
	}
	return we
}

// loadOptional loads the state; nil when there is none.
func (a *Agent) loadOptional(ctx context.Context) (*state.State, error) {
	st, err := a.store.Load(ctx)
	switch {
	case errors.Is(err, decnet.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errInternal, err)
	}
	return st, nil
}

// findDecky returns the index of decky name in st, or the 404 of DESIGN.md.
func findDecky(st *state.State, name string) (int, error) {
	if st == nil {
		return -1, decnet.Errorf(decnet.ErrNotFound, "deployment", "", msgNoDeployment)
	}
	idx := slices.IndexFunc(st.Config.Deckies, func(d decnet.Decky) bool { return d.Name == name })
	if idx < 0 {
		return -1, decnet.Errorf(decnet.ErrNotFound, "decky", name, msgDeckyMissing, name)
	}
	return idx, nil
}

func (a *Agent) handleTeardown(w http.ResponseWriter, r *http.Request) {
	var req decnet.TeardownRequest
	decode := func(body []byte) (err error) {
		req, err = decodeTeardown(body)
		return err
	}
	a.stateOp(w, r, decode, func(ctx context.Context, st *state.State) error {
		if req.DeckyID == "" {
			// Everything: the engine removes every project container and the
			// network even when no state is left (idempotent).
			if err := a.engine.Teardown(ctx, ""); err != nil {
				return err
			}
			if err := a.store.Clear(ctx); err != nil {
				return fmt.Errorf("%w: clear state: %w", errInternal, err)
			}
			if err := a.removeCompose(); err != nil {
				return fmt.Errorf("%w: %w", errInternal, err)
			}
			writeJSON(w, http.StatusOK, decnet.TeardownResponse{Status: statusTornDown})
			return nil
		}
		idx, err := findDecky(st, req.DeckyID)
		if err != nil {
			return err
		}
		// Containers first: if the engine fails the decky stays in the state,
		// so repeating the call converges.
		if err := a.engine.Teardown(ctx, req.DeckyID); err != nil {
			return err
		}
		next := st.Config.Clone()
		next.Deckies = slices.Delete(next.Deckies, idx, idx+1)
		if err := a.save(ctx, next); err != nil {
			return err
		}
		if err := a.writeCompose(next); err != nil {
			return fmt.Errorf("%w: %w", errInternal, err)
		}
		writeJSON(w, http.StatusOK, decnet.TeardownResponse{Status: statusTornDown, DeckyID: req.DeckyID})
		return nil
	})
}

func (a *Agent) handleMutate(w http.ResponseWriter, r *http.Request) {
	var req decnet.MutateRequest
	decode := func(body []byte) (err error) {
		req, err = decodeMutate(body, a.catalog)
		return err
	}
	a.stateOp(w, r, decode, func(ctx context.Context, st *state.State) error {
		idx, err := findDecky(st, req.DeckyID)
		if err != nil {
			return err
		}
		if req.DryRun {
			plan := decnet.PlanMutation(st.Config.Deckies[idx].Services, req.Services)
			writeJSON(w, http.StatusOK, decnet.MutateResponse{Status: statusDryRun, DeckyID: req.DeckyID, Services: req.Services, Plan: &plan})
			return nil
		}
		next := st.Config.Clone()
		next.Deckies[idx].Services = slices.Clone(req.Services)
		next.Deckies[idx].LastMutated = a.now().UTC()
		if err := next.Validate(a.catalog); err != nil {
			return err // the saved state no longer validates (the catalog changed under it)
		}
		if err := a.save(ctx, next); err != nil {
			return err
		}
		if err := a.apply(ctx, next, func(ctx context.Context) error { return a.engine.ApplyDecky(ctx, next, req.DeckyID) }); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, decnet.MutateResponse{Status: statusMutated, DeckyID: req.DeckyID, Services: req.Services})
		return nil
	})
}

func (a *Agent) handleSelfDestruct(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := decodeEmpty(body); err != nil {
		writeError(w, err)
		return
	}
	if a.reaper == nil {
		writeError(w, decnet.Errorf(errInternal, "reaper", "", "self-destruct is not configured on this worker"))
		return
	}
	ctx, cancel := a.opContext(r)
	defer cancel()
	if err := a.reaper.SelfDestruct(ctx); err != nil {
		a.log.ErrorContext(r.Context(), "agent_self_destruct_failed", "error", err.Error())
		writeError(w, fmt.Errorf("%w: schedule self-destruct: %w", errInternal, err))
		return
	}
	a.log.WarnContext(r.Context(), "agent_self_destruct_scheduled")
	writeJSON(w, http.StatusAccepted, decnet.SelfDestructResponse{Status: statusSelfDestructScheduled})
}
