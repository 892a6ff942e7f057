package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
)

// ApplyError reports the deckies an Apply or ApplyDecky could not (fully)
// reconcile. The others were applied. It unwraps to decnet.ErrApplyFailed;
// each entry of Deckies wraps its own class (decnet.ErrNotFound for a
// missing image, decnet.ErrUnavailable, …). Repeating the call converges.
type ApplyError struct {
	Deckies map[string]error
}

func (e *ApplyError) Error() string {
	names := slices.Sorted(maps.Keys(e.Deckies))
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("decky %q: %v", n, e.Deckies[n])
	}
	return "apply failed: " + strings.Join(parts, "; ")
}

// Unwrap returns decnet.ErrApplyFailed.
func (e *ApplyError) Unwrap() error { return decnet.ErrApplyFailed }

func applyErr(errs map[string]error) error {
	for k, v := range errs {
		if v == nil {
			delete(errs, k)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &ApplyError{Deckies: errs}
}

// Apply reconciles the whole project with cfg: it ensures the network,
// then for every decky (Concurrency at a time) ensures the base container
// (recreated, with its services, only when its own spec changed or it is not
// running), creates services that are missing or whose config hash changed,
// and removes service containers the decky no longer has; containers of
// deckies cfg no longer lists are removed. Images are never pulled.
//
// Invalid cfg returns a *decnet.ValidationError and changes nothing. A
// network or daemon failure returns its classified error. Per-decky failures
// return an *ApplyError.
func (e *Engine) Apply(ctx context.Context, cfg decnet.Config) error {
	p, err := compose.Render(cfg, e.opts)
	if err != nil {
		return err
	}
	if err := e.ensureNetwork(ctx, p, false); err != nil {
		return err
	}
	have, err := e.list(ctx, projectLabel(p.Name))
	if err != nil {
		return err
	}
	byDecky := groupByDecky(have)
	desired := compose.Deckies(p)
	errs := make(map[string]error)
	// Orphans first: they may hold addresses or names the fleet needs.
	want := map[string]bool{}
	for _, d := range desired {
		want[d.Name] = true
	}
	var orphans []string
	for name := range byDecky {
		if !want[name] {
			orphans = append(orphans, name)
		}
	}
	sort.Strings(orphans)
	for i, err := range parallel(e.conc, len(orphans), func(i int) error {
		return e.removeDecky(ctx, byDecky[orphans[i]])
	}) {
		errs[orphans[i]] = err
	}
	for i, err := range parallel(e.conc, len(desired), func(i int) error {
		return e.reconcile(ctx, p, desired[i], byDecky[desired[i].Name])
	}) {
		errs[desired[i].Name] = err
	}
	return applyErr(errs)
}

// ApplyDecky reconciles only the decky called name (as cfg describes it),
// leaving every other container alone: this is what a mutation uses. The
// base keeps running, with its ID and address, unless its own spec changed;
// only service containers that were added, removed or changed are touched.
// A decky that cfg does not list is decnet.ErrNotFound. The network must
// exist with cfg's settings or be absent (then it is created); a network
// whose settings drifted is decnet.ErrConflict (use Apply).
func (e *Engine) ApplyDecky(ctx context.Context, cfg decnet.Config, name string) error {
	p, err := compose.Render(cfg, e.opts)
	if err != nil {
		return err
	}
	var d *compose.Decky
	for _, x := range compose.Deckies(p) {
		if x.Name == name {
			d = &x
			break
		}
	}
	if d == nil {
		return decnet.Errorf(decnet.ErrNotFound, "decky", name, "decky %q is not in the config", name)
	}
	if err := e.ensureNetwork(ctx, p, true); err != nil {
		return err
	}
	have, err := e.list(ctx, projectLabel(p.Name), compose.LabelDecky+"="+name)
	if err != nil {
		return err
	}
	return applyErr(map[string]error{name: e.reconcile(ctx, p, *d, have)})
}

// diff is what reconciling one decky takes.
type diff struct {
	recreateBase bool                // base absent, changed or not running
	base         *container.Summary  // the current base, if any
	remove       []container.Summary // service (and stray) containers to remove first
	create       []string            // services to create and start
	start        []container.Summary // kept services that are not running
}

func (df diff) noop() bool {
	return !df.recreateBase && len(df.remove) == 0 && len(df.create) == 0 && len(df.start) == 0
}

func diffDecky(d compose.Decky, have []container.Summary) diff {
	var df diff
	kept := map[string]container.Summary{}
	for _, c := range have {
		svc := c.Labels[compose.LabelService]
		switch {
		case svc == compose.BaseService && df.base == nil:
			df.base = &c
		case svc != compose.BaseService && svc != "":
			if _, dup := kept[svc]; !dup {
				kept[svc] = c
				continue
			}
			df.remove = append(df.remove, c)
		default:
			df.remove = append(df.remove, c)
		}
	}
	df.recreateBase = df.base == nil ||
		df.base.Labels[compose.LabelConfigHash] != d.Base.Labels[compose.LabelConfigHash] ||
		df.base.State != container.StateRunning
	for svc, c := range kept {
		want, ok := d.Services[svc]
		if !ok || df.recreateBase || c.Labels[compose.LabelConfigHash] != want.Labels[compose.LabelConfigHash] {
			df.remove = append(df.remove, c)
			delete(kept, svc)
			continue
		}
		if c.State != container.StateRunning {
			df.start = append(df.start, c)
		}
	}
	for _, svc := range slices.Sorted(maps.Keys(d.Services)) {
		if _, ok := kept[svc]; !ok {
			df.create = append(df.create, svc)
		}
	}
	sort.Slice(df.remove, func(i, j int) bool { return df.remove[i].ID < df.remove[j].ID })
	return df
}

// reconcile brings one decky to its rendered spec.
func (e *Engine) reconcile(ctx context.Context, p *types.Project, d compose.Decky, have []container.Summary) error {
	df := diffDecky(d, have)
	if df.noop() {
		return nil
	}
	e.log.InfoContext(ctx, "decky_reconcile", "decky", d.Name, "base_recreated", df.recreateBase,
		"removed", len(df.remove), "created", len(df.create), "started", len(df.start))
	if err := e.removeAll(ctx, df.remove); err != nil {
		return err
	}
	if df.recreateBase {
		if df.base != nil {
			if err := e.remove(ctx, *df.base); err != nil {
				return err
			}
		}
		if err := e.run(ctx, p, d.Base); err != nil {
			return err
		}
	}
	n := len(df.create) + len(df.start)
	return errors.Join(parallel(n, n, func(i int) error {
		if i < len(df.create) {
			return e.run(ctx, p, d.Services[df.create[i]])
		}
		c := df.start[i-len(df.create)]
		err := e.start(ctx, containerName(c))
		if err != nil {
			// A container that will not start is recreated.
			if err = e.remove(ctx, c); err == nil {
				err = e.run(ctx, p, d.Services[c.Labels[compose.LabelService]])
			}
		}
		return err
	})...)
}

// run creates and starts the container of service s. A container that
// already holds the name and belongs to this project is removed first.
func (e *Engine) run(ctx context.Context, p *types.Project, s types.ServiceConfig) error {
	opts := createOptions(p, s)
	create := func() error {
		return e.do(ctx, "create", "container", opts.Name, func(ctx context.Context) error {
			_, err := e.api.ContainerCreate(ctx, opts)
			return err
		})
	}
	err := create()
	if errors.Is(err, decnet.ErrConflict) {
		// A leftover of ours (a retried create, a half-done reconcile).
		res, ierr := e.api.ContainerInspect(ctx, opts.Name, client.ContainerInspectOptions{})
		if ierr == nil && res.Container.Config != nil && res.Container.Config.Labels[compose.ComposeProject] == p.Name {
			if rerr := e.removeID(ctx, opts.Name); rerr != nil {
				return rerr
			}
			err = create()
		}
	}
	if errors.Is(err, decnet.ErrNotFound) {
		// Most often the image; it may also be the network or the base.
		if ok, ierr := e.ImageExists(ctx, s.Image); ierr == nil && !ok {
			return decnet.Errorf(decnet.ErrNotFound, "image", s.Image, "image %q not found (images are never pulled)", s.Image)
		}
	}
	if err != nil {
		return err
	}
	e.log.DebugContext(ctx, "container_created", "container", opts.Name)
	return e.start(ctx, opts.Name)
}

func (e *Engine) start(ctx context.Context, name string) error {
	return e.do(ctx, "start", "container", name, func(ctx context.Context) error {
		_, err := e.api.ContainerStart(ctx, name, client.ContainerStartOptions{})
		return err
	})
}

func (e *Engine) remove(ctx context.Context, c container.Summary) error {
	return e.removeID(ctx, c.ID)
}

// removeID force-removes a container; one that is already gone is fine.
func (e *Engine) removeID(ctx context.Context, id string) error {
	err := e.do(ctx, "remove", "container", id, func(ctx context.Context) error {
		_, err := e.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		return err
	})
	if errors.Is(err, decnet.ErrNotFound) {
		return nil
	}
	if err == nil {
		e.log.DebugContext(ctx, "container_removed", "container", id)
	}
	return err
}

// removeAll removes cs concurrently.
func (e *Engine) removeAll(ctx context.Context, cs []container.Summary) error {
	return errors.Join(parallel(len(cs), len(cs), func(i int) error {
		return e.remove(ctx, cs[i])
	})...)
}

// removeDecky removes a decky's services, then its base.
func (e *Engine) removeDecky(ctx context.Context, cs []container.Summary) error {
	var svcs, bases []container.Summary
	for _, c := range cs {
		if c.Labels[compose.LabelService] == compose.BaseService {
			bases = append(bases, c)
		} else {
			svcs = append(svcs, c)
		}
	}
	if err := e.removeAll(ctx, svcs); err != nil {
		return err
	}
	return e.removeAll(ctx, bases)
}

// list returns the containers (running or not) carrying every label
// ("key=value").
func (e *Engine) list(ctx context.Context, labels ...string) ([]container.Summary, error) {
	f := client.Filters{}
	f.Add("label", labels...)
	var out []container.Summary
	err := e.do(ctx, "list", "containers", strings.Join(labels, ","), func(ctx context.Context) error {
		res, err := e.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
		out = res.Items
		return err
	})
	return out, err
}

func groupByDecky(cs []container.Summary) map[string][]container.Summary {
	out := map[string][]container.Summary{}
	for _, c := range cs {
		out[c.Labels[compose.LabelDecky]] = append(out[c.Labels[compose.LabelDecky]], c)
	}
	return out
}

func containerName(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return c.ID
}

// parallel calls fn(0..n-1), at most limit at a time, waits for all and
// returns their errors by index (nil where fn succeeded).
func parallel(limit, n int, fn func(i int) error) []error {
	errs := make([]error, n)
	if n == 0 {
		return errs
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	return errs
}

// Teardown removes the decky called name (its services, then its base).
// A decky with no containers is not an error. name "" removes every
// container of the project and the project's networks.
func (e *Engine) Teardown(ctx context.Context, name string) error {
	if name == "" {
		return e.RemoveProject(ctx, e.opts.Project)
	}
	if !decnet.ValidDeckyName(name) {
		return decnet.Errorf(decnet.ErrInvalid, "decky", name, "%q is not a valid decky name", name)
	}
	have, err := e.list(ctx, projectLabel(e.opts.Project), compose.LabelDecky+"="+name)
	if err != nil {
		return err
	}
	return e.removeDecky(ctx, have)
}

// Status reports, for every decky of cfg, the state of each desired
// container ("base" and each service → Docker's state, or "absent") and
// whether all of them run. IP is the decky's fixed address or, when the
// daemon allocated one, the base container's address.
//
// Status only reads: it does not validate cfg against the catalog, so a
// fleet whose services left the catalog still reports (as absent).
func (e *Engine) Status(ctx context.Context, cfg decnet.Config) ([]decnet.DeckyStatus, error) {
	have, err := e.list(ctx, projectLabel(e.opts.Project))
	if err != nil {
		return nil, err
	}
	byName := map[string]container.Summary{}
	for _, c := range have {
		byName[containerName(c)] = c
	}
	netName := cfg.Network.DockerName()
	out := make([]decnet.DeckyStatus, 0, len(cfg.Deckies))
	for _, d := range cfg.Deckies {
		st := decnet.DeckyStatus{
			Name:        d.Name,
			Hostname:    d.EffectiveHostname(),
			Services:    slices.Clone(d.Services),
			OS:          d.EffectiveOS(),
			LastMutated: d.LastMutated,
			Running:     true,
			Containers:  map[string]string{},
		}
		if d.IP.IsValid() {
			st.IP = d.IP.String()
		}
		for _, svc := range append([]string{compose.BaseService}, d.Services...) {
			c, ok := byName[compose.ContainerName(d.Name, svc)]
			state := decnet.ContainerAbsent
			if ok && c.Labels[compose.LabelDecky] == d.Name {
				state = string(c.State)
				if svc == compose.BaseService && st.IP == "" && c.NetworkSettings != nil {
					if ep := c.NetworkSettings.Networks[netName]; ep != nil && ep.IPAddress.IsValid() {
						st.IP = ep.IPAddress.String()
					}
				}
			}
			st.Containers[svc] = state
			if state != decnet.ContainerRunning {
				st.Running = false
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// Plan reports what Apply(cfg) would do, without changing anything: per
// decky "create" (no base yet), "update" (some container to create, recreate,
// start or remove, or the network's settings drifted, so Apply replaces it
// and recreates the decky) or "keep", and the deckies of the project cfg
// drops.
func (e *Engine) Plan(ctx context.Context, cfg decnet.Config) (decnet.DeployPlan, error) {
	p, err := compose.Render(cfg, e.opts)
	if err != nil {
		return decnet.DeployPlan{}, err
	}
	drifted, err := e.networkDrifted(ctx, p)
	if err != nil {
		return decnet.DeployPlan{}, err
	}
	have, err := e.list(ctx, projectLabel(p.Name))
	if err != nil {
		return decnet.DeployPlan{}, err
	}
	byDecky := groupByDecky(have)
	plan := decnet.DeployPlan{Deckies: make([]decnet.DeckyPlan, 0, len(cfg.Deckies))}
	rendered := map[string]compose.Decky{}
	for _, d := range compose.Deckies(p) {
		rendered[d.Name] = d
	}
	for _, d := range cfg.Deckies {
		df := diffDecky(rendered[d.Name], byDecky[d.Name])
		dp := decnet.DeckyPlan{Name: d.Name, Services: slices.Clone(d.Services), Action: "keep"}
		if d.IP.IsValid() {
			dp.IP = d.IP.String()
		}
		switch {
		case df.base == nil:
			dp.Action = "create"
		case drifted || !df.noop():
			dp.Action = "update"
		}
		plan.Deckies = append(plan.Deckies, dp)
		delete(byDecky, d.Name)
	}
	plan.Remove = slices.Sorted(maps.Keys(byDecky))
	return plan, nil
}

// Projects returns the compose projects that have containers or networks
// labelled decnet.managed=true, sorted. A project whose containers are gone
// but whose network is left (a teardown that failed half-way) is listed, so
// RemoveProject can finish it.
func (e *Engine) Projects(ctx context.Context) ([]string, error) {
	managed := compose.LabelManaged + "=true"
	have, err := e.list(ctx, managed)
	if err != nil {
		return nil, err
	}
	nets, err := e.listNetworks(ctx, managed)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, c := range have {
		set[c.Labels[compose.ComposeProject]] = true
	}
	for _, n := range nets {
		set[n.Labels[compose.ComposeProject]] = true
	}
	delete(set, "")
	return slices.Sorted(maps.Keys(set)), nil
}

// RemoveProject removes every container and network of the compose project
// (whatever the engine's own Project is). Service containers go before base
// containers, and networks last.
func (e *Engine) RemoveProject(ctx context.Context, project string) error {
	if !validProject(project) {
		return decnet.Errorf(decnet.ErrInvalid, "project", project, "%q is not a valid project name", project)
	}
	have, err := e.list(ctx, projectLabel(project))
	if err != nil {
		return err
	}
	if err := e.removeDecky(ctx, have); err != nil {
		return err
	}
	return e.removeNetworks(ctx, projectLabel(project))
}

// Container is one container of the engine's project.
type Container struct {
	ID         string
	Name       string
	Decky      string // decnet.decky label
	Service    string // decnet.service label: a service name or "base"
	State      string // Docker's state: "running", "exited", …
	ConfigHash string // decnet.config-hash label
}

// Containers lists the containers of the engine's project, sorted by name.
func (e *Engine) Containers(ctx context.Context) ([]Container, error) {
	have, err := e.list(ctx, projectLabel(e.opts.Project))
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(have))
	for _, c := range have {
		out = append(out, Container{
			ID:         c.ID,
			Name:       containerName(c),
			Decky:      c.Labels[compose.LabelDecky],
			Service:    c.Labels[compose.LabelService],
			State:      string(c.State),
			ConfigHash: c.Labels[compose.LabelConfigHash],
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
