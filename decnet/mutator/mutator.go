package mutator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Triggers recorded on mutation events.
const (
	TriggerScheduled = "scheduled" // the decky's interval elapsed (or a retry after a failure)
	TriggerOperator  = "operator"  // MutateNow
)

// EventMutated is the kind of the event recorded for every mutation attempt;
// its Outcome is OutcomeOK or OutcomeFailed.
const EventMutated = "decky_mutated"

// Event outcomes.
const (
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
)

// DefaultActor is the actor recorded on scheduled mutations.
const DefaultActor = "mutator"

// Defaults of the Config fields.
const (
	DefaultConcurrency     = 8
	DefaultHostConcurrency = 2
	DefaultDispatchTimeout = 10 * time.Minute
	DefaultBackoffInitial  = 30 * time.Second
	DefaultBackoffMax      = 15 * time.Minute
	DefaultShutdownGrace   = 30 * time.Second
)

// storeTimeout bounds each store write made after a dispatch, which runs even
// when Run's context has ended, so the outcome of a dispatch is recorded.
const storeTimeout = 30 * time.Second

// maxUpdateAttempts bounds the re-read-and-retry loop on a version conflict.
const maxUpdateAttempts = 8

// Config configures an [Engine]. Zero fields mean the documented defaults.
type Config struct {
	// Store is where deckies are read and mutations recorded. Required.
	Store Store
	// Resolver finds the target of each decky. Required.
	Resolver HostResolver
	// Chooser picks new service sets; nil means NewChooser(ChooserConfig{}):
	// the default catalog and archetypes with a time-seeded source.
	Chooser Chooser
	// Clock is the source of time; nil means SystemClock().
	Clock Clock
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Concurrency bounds the dispatches in flight at once; 0 means
	// DefaultConcurrency (8).
	Concurrency int
	// HostConcurrency bounds the dispatches in flight to one host (deckies
	// with the same HostUUID; master-resident deckies count as one host), so a
	// slow or dead worker holds at most this many of the Concurrency slots;
	// 0 means DefaultHostConcurrency (2), capped at Concurrency.
	HostConcurrency int
	// DefaultInterval is the rotation interval of a decky without its own:
	// nil means decnet.DefaultMutateInterval (30 min); a pointer to zero means
	// never (only MutateNow rotates such deckies). It is truncated to
	// microseconds, the store's precision.
	DefaultInterval *time.Duration
	// DispatchTimeout bounds one dispatch; 0 means DefaultDispatchTimeout.
	DispatchTimeout time.Duration
	// ShutdownGrace is how long a dispatch in flight may still run once the
	// context of Run or MutateNow has ended, so that its outcome (which the
	// worker carries out anyway) is recorded; then it is cancelled. 0 means
	// DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// BackoffInitial is the wait before retrying a decky whose mutation
	// failed; it doubles with each consecutive failure up to BackoffMax.
	// 0 means DefaultBackoffInitial (30 s) and DefaultBackoffMax (15 min).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	// Registry receives the engine's metrics; nil means no registration.
	// Never the global registry unless the caller passes it.
	Registry prometheus.Registerer
	// Resync, when positive, bounds every sleep of Run, so deckies written to
	// the store by another process are picked up at most this late. 0 means
	// Run sleeps until the next due time it knows of (in-process writers call
	// Wake instead).
	Resync time.Duration
}

// Engine rotates decky services. Create it with [New]; it is safe for
// concurrent use.
type Engine struct {
	store     Store
	resolver  HostResolver
	chooser   Chooser
	clock     Clock
	log       *slog.Logger
	interval  time.Duration
	timeout   time.Duration
	grace     time.Duration
	backoff0  time.Duration
	backoffMx time.Duration
	resync    time.Duration
	hostLimit int
	slots     chan struct{}
	metrics   *metrics
	wake      chan struct{}
	running   atomic.Bool

	mu       sync.Mutex
	inflight map[string]bool
	hosts    map[string]chan struct{}
	failures map[string]failure
	overdue  map[string]bool // due at the last round and not mutated since
	// finished counts ended dispatches; finishedAt[name] is its value when
	// name's last dispatch ended. A row read before a mark (readMark) is
	// stale if its decky's dispatch ended after the mark.
	finished   uint64
	finishedAt map[string]uint64
	deadline   time.Time // the time Run sleeps until; zero: none
	hint       time.Time // earliest due time noted during a round; zero: none
}

type failure struct {
	count int
	until time.Time
}

// New checks cfg and returns an engine. A missing Store or Resolver, or a
// negative setting, is an error wrapping decnet.ErrInvalid.
func New(cfg Config) (*Engine, error) {
	v := &decnet.ValidationError{}
	if cfg.Store == nil {
		v.Add("store", "required")
	}
	if cfg.Resolver == nil {
		v.Add("resolver", "required")
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"dispatch_timeout", cfg.DispatchTimeout},
		{"backoff_initial", cfg.BackoffInitial},
		{"backoff_max", cfg.BackoffMax},
		{"resync", cfg.Resync},
		{"shutdown_grace", cfg.ShutdownGrace},
	} {
		if f.d < 0 {
			v.Add(f.name, "must not be negative")
		}
	}
	if cfg.DefaultInterval != nil && *cfg.DefaultInterval < 0 {
		v.Add("default_interval", "must not be negative")
	}
	if cfg.Concurrency < 0 {
		v.Add("concurrency", "must not be negative")
	}
	if cfg.HostConcurrency < 0 {
		v.Add("host_concurrency", "must not be negative")
	}
	if cfg.BackoffInitial > 0 && cfg.BackoffMax > 0 && cfg.BackoffMax < cfg.BackoffInitial {
		v.Add("backoff_max", "must not be below backoff_initial")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	e := &Engine{
		store:      cfg.Store,
		resolver:   cfg.Resolver,
		chooser:    cfg.Chooser,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		interval:   decnet.DefaultMutateInterval,
		timeout:    cmp0(cfg.DispatchTimeout, DefaultDispatchTimeout),
		grace:      cmp0(cfg.ShutdownGrace, DefaultShutdownGrace),
		backoff0:   cmp0(cfg.BackoffInitial, DefaultBackoffInitial),
		backoffMx:  cmp0(cfg.BackoffMax, DefaultBackoffMax),
		resync:     cfg.Resync,
		wake:       make(chan struct{}, 1),
		inflight:   map[string]bool{},
		hosts:      map[string]chan struct{}{},
		failures:   map[string]failure{},
		finishedAt: map[string]uint64{},
		overdue:    map[string]bool{},
	}
	if cfg.DefaultInterval != nil {
		// The store keeps microseconds: a finer interval would make the
		// engine's own due arithmetic disagree with ListDue.
		e.interval = cfg.DefaultInterval.Truncate(time.Microsecond)
	}
	if e.backoffMx < e.backoff0 {
		e.backoffMx = e.backoff0
	}
	if e.chooser == nil {
		c, err := NewChooser(ChooserConfig{})
		if err != nil {
			return nil, err
		}
		e.chooser = c
	}
	if e.clock == nil {
		e.clock = SystemClock()
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	n := cmp0(cfg.Concurrency, DefaultConcurrency)
	e.slots = make(chan struct{}, n)
	e.hostLimit = min(cmp0(cfg.HostConcurrency, DefaultHostConcurrency), n)
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	return e, nil
}

func cmp0[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Result is the outcome of one mutation attempt.
type Result struct {
	Decky    string
	HostUUID string
	Target   string // the target's name (see TargetName); empty when none was resolved
	Trigger  string
	Actor    string
	Old      []string
	New      []string // the services dispatched; empty when none were chosen
	Duration time.Duration
	Err      error // nil: the decky now runs New
}

// Plan is what a mutation of one decky would do.
type Plan struct {
	Decky    string
	HostUUID string
	Target   string
	Old      []string
	New      []string
	decnet.MutatePlan
	// Interval is the decky's effective interval (0: never rotated on schedule).
	Interval time.Duration
	// NextDue is when the decky is next due (zero: never); Due is true when
	// that is now or past.
	NextDue time.Time
	Due     bool
}

type actorKey struct{}

// WithActor returns a context that makes MutateNow record actor (for example
// "operator:alice") on its events instead of "operator".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorOf(ctx context.Context, def string) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return def
}

// Wake makes Run re-read the store now, for a program that changed deckies
// (deployed, reassigned, changed an interval) in the same process.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// rotatable reports whether a decky in state s is rotated: pending deckies
// were never deployed and tearing-down ones are going away.
func rotatable(s repository.DeckyState) bool {
	return s != repository.DeckyPending && s != repository.DeckyTearingDown
}

// effectiveInterval returns d's interval under the engine's default; 0: never.
func (e *Engine) effectiveInterval(d repository.Decky) time.Duration {
	if d.MutateInterval != nil {
		return *d.MutateInterval
	}
	return e.interval
}

// Run rotates due deckies until ctx ends. It returns nil once ctx has ended
// and every dispatch it started has finished: none starts after ctx ends,
// and those in flight get Config.ShutdownGrace to finish before they are
// cancelled; their outcome is recorded either way. Only one Run may be active per
// engine: a second concurrent call fails with decnet.ErrConflict.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return decnet.Errorf(decnet.ErrConflict, "mutator", "", "mutator engine is already running")
	}
	defer e.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	e.log.InfoContext(ctx, "mutator_started", "default_interval", e.interval.String(), "concurrency", cap(e.slots))
	defer e.log.InfoContext(ctx, "mutator_stopped")

	for ctx.Err() == nil {
		next := e.round(ctx, &wg)
		if ctx.Err() != nil {
			break
		}
		var (
			fire  <-chan time.Time
			timer Timer
		)
		if !next.IsZero() {
			timer = e.clock.NewTimer(max(next.Sub(e.clock.Now()), 0))
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
	return nil
}

// round starts a dispatch for every due decky that is neither in flight nor
// backing off, and returns when Run should look again (zero: only on a wake).
func (e *Engine) round(ctx context.Context, wg *sync.WaitGroup) time.Time {
	e.mu.Lock()
	e.hint = time.Time{}
	e.mu.Unlock()

	now := e.clock.Now()
	next, err := e.startDue(ctx, wg, now)
	if err != nil {
		if ctx.Err() != nil {
			return time.Time{}
		}
		e.log.ErrorContext(ctx, "mutator_store_failed", "error", err)
		next = now.Add(e.backoff0)
	}
	if e.resync > 0 && (next.IsZero() || next.After(now.Add(e.resync))) {
		next = now.Add(e.resync)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.hint.IsZero() && (next.IsZero() || e.hint.Before(next)) {
		next = e.hint
	}
	e.deadline = next
	return next
}

func (e *Engine) startDue(ctx context.Context, wg *sync.WaitGroup, now time.Time) (time.Time, error) {
	mark := e.readMark()
	due, err := e.store.ListDue(ctx, now, e.interval)
	if err != nil {
		return time.Time{}, fmt.Errorf("list due deckies: %w", err)
	}
	overdue := make(map[string]bool, len(due))
	for _, d := range due {
		if rotatable(d.State) {
			overdue[d.Name] = true
		}
	}
	e.mu.Lock()
	e.overdue = overdue
	e.metrics.overdue.Set(float64(len(overdue)))
	e.mu.Unlock()
	for _, d := range due {
		if !rotatable(d.State) {
			continue
		}
		if !e.claim(d.Name, now, false) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer e.unclaim(d.Name)
			e.mutate(ctx, d, mark, TriggerScheduled, DefaultActor)
		}()
	}

	at, ok, err := e.store.NextDue(ctx, e.interval)
	if err != nil {
		return time.Time{}, fmt.Errorf("next due decky: %w", err)
	}
	if !ok {
		return time.Time{}, nil
	}
	if at.After(now) {
		return at, nil
	}
	// Some decky is due but in flight, backing off or not rotatable: find the
	// earliest time among the others and the backoffs.
	return e.scanNext(ctx)
}

// scanNext computes the next time Run has work to do from every decky,
// skipping those in flight (their completion notes their next due time).
func (e *Engine) scanNext(ctx context.Context) (time.Time, error) {
	all, err := e.store.ListDeckies(ctx, repository.DeckyFilter{})
	if err != nil {
		return time.Time{}, fmt.Errorf("list deckies: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	known := make(map[string]bool, len(all))
	var next time.Time
	for _, d := range all {
		known[d.Name] = true
		iv := e.effectiveInterval(d)
		if iv <= 0 || !rotatable(d.State) || e.inflight[d.Name] {
			continue
		}
		at := d.LastMutated.Add(iv)
		if f, ok := e.failures[d.Name]; ok && f.until.After(at) {
			at = f.until
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	for name := range e.failures {
		if !known[name] {
			delete(e.failures, name) // deleted deckies keep no backoff
		}
	}
	for name := range e.finishedAt {
		if !known[name] {
			delete(e.finishedAt, name)
		}
	}
	return next, nil
}

// claim marks name in flight. Unless force, a decky backing off at now is
// not claimed. It reports whether the claim succeeded.
func (e *Engine) claim(name string, now time.Time, force bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inflight[name] {
		return false
	}
	if f, ok := e.failures[name]; ok && !force && f.until.After(now) {
		return false
	}
	e.inflight[name] = true
	return true
}

// unclaim ends name's dispatch and marks rows of name read before now stale.
// A failed dispatch notes its retry time while still in flight, so a round
// woken by that note skipped the decky: unclaim notes it again, now that a
// round will see it (a no-op unless Run sleeps past it).
func (e *Engine) unclaim(name string) {
	e.mu.Lock()
	delete(e.inflight, name)
	e.finished++
	e.finishedAt[name] = e.finished
	f, backingOff := e.failures[name]
	e.mu.Unlock()
	if backingOff {
		e.note(f.until)
	}
}

// readMark is taken before reading deckies to dispatch: see staleSince.
func (e *Engine) readMark() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finished
}

// staleSince reports whether a dispatch of name ended after mark, so a row
// of name read after mark was taken may predate that dispatch's record.
func (e *Engine) staleSince(name string, mark uint64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.finishedAt[name] > mark
}

// note tells Run that a decky has work at t; Run is woken if t is earlier
// than the time it sleeps until.
func (e *Engine) note(t time.Time) {
	if t.IsZero() {
		return
	}
	e.mu.Lock()
	if e.hint.IsZero() || t.Before(e.hint) {
		e.hint = t
	}
	wake := e.deadline.IsZero() || t.Before(e.deadline)
	if wake {
		e.deadline = t
	}
	e.mu.Unlock()
	if wake {
		e.Wake()
	}
}

// acquire takes a global slot and one of host's slots, host first so that a
// dispatch waiting for a busy host holds no global slot. waited reports
// whether either was not free at once.
func (e *Engine) acquire(ctx context.Context, host string) (release func(), waited bool, err error) {
	e.mu.Lock()
	hs, ok := e.hosts[host]
	if !ok {
		hs = make(chan struct{}, e.hostLimit)
		e.hosts[host] = hs
	}
	e.mu.Unlock()
	take := func(c chan struct{}) error {
		select {
		case c <- struct{}{}:
			return nil
		default:
		}
		waited = true
		select {
		case c <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := take(hs); err != nil {
		return nil, waited, err
	}
	if err := take(e.slots); err != nil {
		<-hs
		return nil, waited, err
	}
	return func() { <-e.slots; <-hs }, waited, nil
}

// MutateNow mutates the named deckies at once (all rotatable deckies when no
// name is given), whether due or not, including deckies whose interval is
// zero, and waits for the outcomes. It records trigger "operator" and the
// actor set with WithActor.
//
// An unknown name fails with decnet.ErrNotFound and a decky that is pending
// or tearing down with decnet.ErrConflict, before anything is dispatched.
// Otherwise it returns one Result per decky, in name order, and the failures
// joined (a decky already being mutated fails with decnet.ErrConflict).
func (e *Engine) MutateNow(ctx context.Context, names ...string) ([]Result, error) {
	mark := e.readMark()
	var targets []repository.Decky
	if len(names) == 0 {
		all, err := e.store.ListDeckies(ctx, repository.DeckyFilter{})
		if err != nil {
			return nil, fmt.Errorf("list deckies: %w", err)
		}
		for _, d := range all {
			if rotatable(d.State) {
				targets = append(targets, d)
			}
		}
	} else {
		names = slices.Clone(names)
		slices.Sort(names)
		names = slices.Compact(names)
		var errs []error
		for _, n := range names {
			d, err := e.store.GetDecky(ctx, n)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("decky %q: %w", n, err))
			case !rotatable(d.State):
				errs = append(errs, decnet.Errorf(decnet.ErrConflict, "decky", n, "decky %q is %s: it cannot be mutated", n, d.State))
			default:
				targets = append(targets, d)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	actor := actorOf(ctx, TriggerOperator)
	results := make([]Result, len(targets))
	var wg sync.WaitGroup
	now := e.clock.Now()
	for i, d := range targets {
		if !e.claim(d.Name, now, true) {
			results[i] = Result{Decky: d.Name, HostUUID: d.HostUUID, Trigger: TriggerOperator, Actor: actor, Old: slices.Clone(d.Services),
				Err: decnet.Errorf(decnet.ErrConflict, "decky", d.Name, "decky %q is being mutated already", d.Name)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer e.unclaim(d.Name)
			results[i] = e.mutate(ctx, d, mark, TriggerOperator, actor)
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("decky %q: %w", r.Decky, r.Err))
		}
	}
	return results, errors.Join(errs...)
}

// Plan says what mutating the decky would do: the services it would get
// (one draw of the chooser: a later mutation draws again), and the target it
// would go through, which is asked for a dry run (no side effect). The plan
// is filled as far as it got even when an error is returned.
func (e *Engine) Plan(ctx context.Context, name string) (Plan, error) {
	d, err := e.store.GetDecky(ctx, name)
	if err != nil {
		return Plan{Decky: name}, fmt.Errorf("decky %q: %w", name, err)
	}
	p := Plan{Decky: d.Name, HostUUID: d.HostUUID, Old: slices.Clone(d.Services), Interval: e.effectiveInterval(d)}
	if p.Interval > 0 {
		p.NextDue = d.LastMutated.Add(p.Interval)
		p.Due = !p.NextDue.After(e.clock.Now())
	}
	p.New, err = e.chooser.Choose(d)
	if err != nil {
		return p, fmt.Errorf("choose services: %w", err)
	}
	p.MutatePlan = decnet.PlanMutation(p.Old, p.New)
	t, err := e.resolver.Resolve(ctx, d)
	if err != nil {
		return p, fmt.Errorf("resolve target: %w", err)
	}
	p.Target = TargetName(t)
	dctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if err := t.Mutate(dctx, d.Name, slices.Clone(p.New), true); err != nil {
		return p, fmt.Errorf("dry run on %s: %w", p.Target, err)
	}
	return p, nil
}

// mutate performs one attempt on d (claimed by the caller, read after mark)
// and records it.
func (e *Engine) mutate(ctx context.Context, d repository.Decky, mark uint64, trigger, actor string) Result {
	res := Result{Decky: d.Name, HostUUID: d.HostUUID, Trigger: trigger, Actor: actor, Old: slices.Clone(d.Services)}
	release, waited, err := e.acquire(ctx, d.HostUUID)
	if err != nil {
		res.Err = err
		return res // nothing was attempted
	}
	defer release()

	// The row may have changed while this dispatch waited for a slot, or
	// an earlier dispatch of the decky may have recorded its mutation
	// between the caller's read and its claim. Then read it again: a decky
	// moved to another host, torn down or mutated meanwhile must not be
	// dispatched from the stale row. (Changes after this read are caught by
	// the version check when the outcome is recorded.)
	if waited || e.staleSince(d.Name, mark) {
		fresh, err := e.store.GetDecky(ctx, d.Name)
		if err != nil {
			if ctx.Err() != nil {
				res.Err = err
				return res
			}
			if errors.Is(err, decnet.ErrNotFound) {
				res.Err = fmt.Errorf("decky deleted before dispatch: %w", err)
				return res
			}
			return e.failed(ctx, res, d.State, fmt.Errorf("read decky: %w", err))
		}
		d = fresh
		res.HostUUID, res.Old = d.HostUUID, slices.Clone(d.Services)
		if trigger == TriggerScheduled {
			if iv := e.effectiveInterval(d); iv <= 0 || d.LastMutated.Add(iv).After(e.clock.Now()) || !rotatable(d.State) {
				res.Err = decnet.Errorf(decnet.ErrConflict, "decky", d.Name, "decky %q is no longer due", d.Name)
				return res
			}
		}
	}

	res.New, err = e.chooser.Choose(d)
	if err != nil {
		res.New = nil
		return e.failed(ctx, res, d.State, fmt.Errorf("choose services: %w", err))
	}
	if len(res.New) == 0 || equalSet(res.New, sortedSet(d.Services)) {
		res.New = nil
		return e.failed(ctx, res, d.State, decnet.Errorf(decnet.ErrInvalid, "decky", d.Name,
			"decky %q: the chooser returned an empty or unchanged service set", d.Name))
	}
	t, err := e.resolver.Resolve(ctx, d)
	if err != nil {
		return e.failed(ctx, res, repository.DeckyDegraded, fmt.Errorf("resolve target: %w", err))
	}
	res.Target = TargetName(t)

	start := e.clock.Now()
	dctx, cancel := e.dispatchContext(ctx)
	err = t.Mutate(dctx, d.Name, slices.Clone(res.New), false)
	cancel()
	res.Duration = e.clock.Now().Sub(start)
	if err != nil {
		e.metrics.duration.WithLabelValues(OutcomeFailed).Observe(res.Duration.Seconds())
		return e.failed(ctx, res, repository.DeckyDegraded, fmt.Errorf("dispatch to %s: %w", res.Target, err))
	}
	e.metrics.duration.WithLabelValues(OutcomeOK).Observe(res.Duration.Seconds())
	return e.succeeded(ctx, d, res)
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// dispatchContext returns the context of one dispatch: bounded by the
// dispatch timeout, and cancelled ShutdownGrace after ctx ends rather than
// at once, so a dispatch the worker completes anyway is recorded.
func (e *Engine) dispatchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
	var (
		mu    sync.Mutex
		grace *time.Timer
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		grace = time.AfterFunc(e.grace, cancel)
		mu.Unlock()
	})
	return dctx, func() {
		stop()
		mu.Lock()
		if grace != nil {
			grace.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// recordCtx is the context of store writes after a dispatch: they run even
// when ctx has ended, under their own deadline.
func recordCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
}

// succeeded records a dispatched mutation: the new services, last_mutated
// and state running together with its event, in one store transaction.
func (e *Engine) succeeded(ctx context.Context, d repository.Decky, res Result) Result {
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	now := e.clock.Now()
	ev := e.event(res, now)
	var err error
	for range maxUpdateAttempts {
		d.Services = slices.Clone(res.New)
		d.Spec.Services = slices.Clone(res.New)
		d.LastMutated = now
		d.State = repository.DeckyRunning
		d.LastError = ""
		_, _, err = e.store.UpdateDeckyWithEvent(rctx, d, ev)
		if !errors.Is(err, decnet.ErrConflict) {
			break
		}
		if d, err = e.store.GetDecky(rctx, d.Name); err != nil {
			break
		}
		if d.HostUUID != res.HostUUID {
			// Moved while the dispatch ran: the services went to the old
			// host; the decky's new host has not been mutated.
			return e.failed(ctx, res, d.State, decnet.Errorf(decnet.ErrConflict, "decky", d.Name,
				"decky %q moved to host %q during its mutation on %q", d.Name, d.HostUUID, res.HostUUID))
		}
	}
	if err != nil {
		// The target runs the new services but the store could not say so:
		// report a failure so the decky is retried and converges.
		e.log.ErrorContext(ctx, "mutator_record_failed", "decky", res.Decky, "error", err)
		return e.failed(ctx, res, repository.DeckyDegraded, fmt.Errorf("record mutation: %w", err))
	}
	e.mu.Lock()
	delete(e.failures, res.Decky)
	if e.overdue[res.Decky] {
		delete(e.overdue, res.Decky)
		e.metrics.overdue.Set(float64(len(e.overdue)))
	}
	e.mu.Unlock()
	e.metrics.mutations.WithLabelValues(OutcomeOK, res.Trigger).Inc()
	e.log.InfoContext(ctx, "decky_mutated", "decky", res.Decky, "target", res.Target, "trigger", res.Trigger,
		"old_services", res.Old, "new_services", res.New, "duration", res.Duration.String())
	if iv := e.effectiveInterval(d); iv > 0 {
		e.note(now.Add(iv))
	}
	return res
}

// failed records a failed attempt: state (degraded for a failed dispatch;
// unchanged, with last_error, when nothing was dispatched) together with its
// event in one store transaction, and the backoff before the next scheduled
// attempt. A decky deleted meanwhile gets the event alone.
func (e *Engine) failed(ctx context.Context, res Result, state repository.DeckyState, err error) Result {
	res.Err = err
	rctx, cancel := recordCtx(ctx)
	defer cancel()
	now := e.clock.Now()
	e.mu.Lock()
	f := e.failures[res.Decky]
	f.count++
	wait := e.backoff0
	for i := 1; i < f.count && wait < e.backoffMx; i++ {
		wait *= 2
	}
	wait = min(wait, e.backoffMx)
	f.until = now.Add(wait)
	e.failures[res.Decky] = f
	e.mu.Unlock()

	e.metrics.mutations.WithLabelValues(OutcomeFailed, res.Trigger).Inc()
	ev := e.event(res, now, "attempt", strconv.Itoa(f.count), "retry_at", f.until.UTC().Format(time.RFC3339Nano))
	_, serr := e.store.SetDeckyStateWithEvent(rctx, res.Decky, state, err.Error(), ev)
	if errors.Is(serr, decnet.ErrNotFound) {
		// No row to record the state on; the attempt still belongs in the log.
		_, serr = e.store.AppendEvent(rctx, ev)
	}
	if serr != nil {
		e.log.ErrorContext(ctx, "mutator_record_failed", "decky", res.Decky, "error", serr)
	}
	e.log.WarnContext(ctx, "decky_mutation_failed", "decky", res.Decky, "target", res.Target, "trigger", res.Trigger,
		"attempt", f.count, "retry_in", wait.String(), "error", err)
	e.note(f.until)
	return res
}

// event is the decky_mutated event of res; detail is extra key, value pairs.
func (e *Engine) event(res Result, now time.Time, detail ...string) repository.Event {
	ev := repository.Event{
		Time:        now,
		Kind:        EventMutated,
		HostUUID:    res.HostUUID,
		HostName:    res.Target,
		Decky:       res.Decky,
		Actor:       res.Actor,
		Trigger:     res.Trigger,
		OldServices: res.Old,
		NewServices: res.New,
		Outcome:     OutcomeOK,
		Detail:      map[string]string{"duration_ms": strconv.FormatInt(res.Duration.Milliseconds(), 10)},
	}
	if res.Target != "" {
		ev.Detail["target"] = res.Target
	}
	for i := 0; i+1 < len(detail); i += 2 {
		ev.Detail[detail[i]] = detail[i+1]
	}
	if res.Err != nil {
		ev.Outcome = OutcomeFailed
		ev.Error = res.Err.Error()
	}
	return ev
}
