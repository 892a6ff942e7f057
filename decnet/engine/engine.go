package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/compose"
)

// PauseImage is the default image of base containers: the agent builds it
// locally from its own static binary (`decnet-agent pause`).
const PauseImage = compose.DefaultBaseImage

// DefaultHost is the Docker endpoint used when Config.Host is empty.
const DefaultHost = "unix:///var/run/docker.sock"

// DefaultConcurrency is the number of deckies applied at once when
// Config.Concurrency is zero.
const DefaultConcurrency = 4

// Config configures an Engine. Zero fields mean the documented defaults.
type Config struct {
	Host        string          // Docker endpoint; "" = DefaultHost
	Project     string          // compose project name; "" = "decnet"
	Catalog     *decnet.Catalog // nil = decnet.DefaultCatalog()
	BaseImage   string          // image of base containers; "" = PauseImage (a decky's BaseImage overrides)
	WorkDir     string          // absolute dir recorded in com.docker.compose.project.working_dir
	ComposeFile string          // absolute path recorded in com.docker.compose.project.config_files
	Concurrency int             // deckies applied at once; 0 = DefaultConcurrency
	Logger      *slog.Logger    // nil = discard
	Retry       RetryPolicy     // transient Engine API errors; zero = DefaultRetryPolicy
}

// RetryPolicy says how transient Engine API errors (daemon unreachable, 5xx)
// are retried: Attempts tries in all, waiting Base, 2×Base, … capped at Max
// between them. Permanent errors (4xx: not found, conflict, invalid) are
// never retried.
type RetryPolicy struct {
	Attempts int
	Base     time.Duration
	Max      time.Duration
}

// DefaultRetryPolicy returns the policy used when Config.Retry is zero: 4
// attempts, waiting 100 ms, 200 ms, 400 ms (capped at 2 s). It is a function,
// not a variable, so no importer can change every engine's policy.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{Attempts: 4, Base: 100 * time.Millisecond, Max: 2 * time.Second}
}

// Engine applies decnet fleets to one Docker Engine through the Engine API.
// It is safe for concurrent use; callers serialise state-changing calls on
// the same project (the agent does, through its state lock).
type Engine struct {
	api   *client.Client
	host  string
	opts  compose.Options
	conc  int
	retry RetryPolicy
	log   *slog.Logger
}

// New validates cfg and returns an Engine. It does no I/O: an unreachable
// daemon shows up on the first call (as decnet.ErrUnavailable).
func New(cfg Config) (*Engine, error) {
	v := &decnet.ValidationError{}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if cfg.Project == "" {
		cfg.Project = compose.DefaultProject
	}
	if scheme, _, ok := strings.Cut(cfg.Host, "://"); !ok || !slices.Contains([]string{"unix", "tcp", "http", "https"}, scheme) {
		v.Add("host", "%q is not a Docker endpoint (unix://, tcp://, http:// or https://)", cfg.Host)
	}
	if !validProject(cfg.Project) {
		v.Add("project", "%q must match [a-z0-9][a-z0-9_-]*", cfg.Project)
	}
	if cfg.WorkDir != "" && !filepath.IsAbs(cfg.WorkDir) {
		v.Add("work_dir", "%q is not an absolute path", cfg.WorkDir)
	}
	if cfg.ComposeFile != "" && !filepath.IsAbs(cfg.ComposeFile) {
		v.Add("compose_file", "%q is not an absolute path", cfg.ComposeFile)
	}
	if cfg.Concurrency < 0 {
		v.Add("concurrency", "must not be negative")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Retry.Attempts < 0 || cfg.Retry.Base < 0 || cfg.Retry.Max < 0 {
		v.Add("retry", "must not be negative")
	}
	if cfg.Retry == (RetryPolicy{}) {
		cfg.Retry = DefaultRetryPolicy()
	}
	if cfg.Retry.Attempts == 0 {
		cfg.Retry.Attempts = 1
	}
	if cfg.Catalog == nil {
		cfg.Catalog = decnet.DefaultCatalog()
	}
	if cfg.BaseImage == "" {
		cfg.BaseImage = PauseImage
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	api, err := client.New(client.WithHost(cfg.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, decnet.Errorf(decnet.ErrInvalid, "host", cfg.Host, "docker host %q: %v", cfg.Host, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Engine{
		api:  api,
		host: cfg.Host,
		opts: compose.Options{
			Project:     cfg.Project,
			Catalog:     cfg.Catalog,
			BaseImage:   cfg.BaseImage,
			WorkDir:     cfg.WorkDir,
			ComposeFile: cfg.ComposeFile,
		},
		conc:  cfg.Concurrency,
		retry: cfg.Retry,
		log:   log,
	}, nil
}

func validProject(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case (r == '-' || r == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Project returns the compose project the engine manages.
func (e *Engine) Project() string { return e.opts.Project }

// projectLabel is the label filter ("key=value") selecting the containers
// and networks of a compose project.
func projectLabel(project string) string { return compose.ComposeProject + "=" + project }

// Render returns the compose file (YAML) for cfg, rendered from the same
// project Apply creates containers from (the same labels, hashes and names).
func (e *Engine) Render(cfg decnet.Config) ([]byte, error) {
	p, err := compose.Render(cfg, e.opts)
	if err != nil {
		return nil, err
	}
	return compose.MarshalYAML(p)
}

// Close releases the engine's connections.
func (e *Engine) Close() error { return e.api.Close() }

// Ping checks that the daemon answers.
func (e *Engine) Ping(ctx context.Context) error {
	return e.do(ctx, "ping", "daemon", e.host, func(ctx context.Context) error {
		_, err := e.api.Ping(ctx, client.PingOptions{})
		return err
	})
}

// do runs one Engine API call with the retry policy and classifies its
// final error into a decnet class (kind/id name the object for messages).
func (e *Engine) do(ctx context.Context, op, kind, id string, fn func(context.Context) error) error {
	delay := e.retry.Base
	var err error
	for attempt := 1; ; attempt++ {
		err = fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !transient(err) || attempt >= e.retry.Attempts {
			break
		}
		e.log.DebugContext(ctx, "docker_call_retry", "op", op, "attempt", attempt, "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return classify(op, kind, id, ctx.Err())
		case <-t.C:
		}
		delay *= 2
		if e.retry.Max > 0 && delay > e.retry.Max {
			delay = e.retry.Max
		}
	}
	return classify(op, kind, id, err)
}

// transient reports whether an Engine API error may go away on retry: the
// daemon could not be reached, or it answered with a server-side error.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case client.IsErrConnectionFailed(err):
		return true
	case cerrdefs.IsUnavailable(err), cerrdefs.IsInternal(err), cerrdefs.IsResourceExhausted(err),
		cerrdefs.IsDeadlineExceeded(err), cerrdefs.IsUnknown(err):
		return true
	}
	return false
}

// classify wraps an Engine API error in its decnet class. An error that
// already is a *decnet.Error (one the call itself classified, such as a
// failed build) keeps its class.
func classify(op, kind, id string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*decnet.Error](err); ok {
		return err
	}
	class := decnet.ErrUnavailable
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("docker %s %s %q: %w: %w", op, kind, id, decnet.ErrUnavailable, err)
	case client.IsErrConnectionFailed(err):
		class = decnet.ErrUnavailable
	case cerrdefs.IsNotFound(err):
		class = decnet.ErrNotFound
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		class = decnet.ErrConflict
	case cerrdefs.IsInvalidArgument(err), cerrdefs.IsNotImplemented(err), cerrdefs.IsFailedPrecondition(err):
		class = decnet.ErrInvalid
	case cerrdefs.IsUnauthorized(err), cerrdefs.IsPermissionDenied(err):
		class = decnet.ErrUnauthorized
	}
	return &decnet.Error{Class: class, Kind: kind, ID: id, Message: fmt.Sprintf("docker %s %s %q: %v", op, kind, id, err)}
}
