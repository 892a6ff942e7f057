package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// DefaultSelfDestructTimeout bounds the self-destruct request of
// Decommission when DecommissionOptions.SelfDestructTimeout is zero.
const DefaultSelfDestructTimeout = 5 * time.Second

// EventHostDecommissioned is the kind of the event Decommission records.
const EventHostDecommissioned = "host_decommissioned"

// Outcomes of the decommission event: did the worker acknowledge the
// self-destruct?
const (
	OutcomeAcknowledged   = "acknowledged"
	OutcomeUnacknowledged = "unacknowledged"
)

// SelfDestructer asks one worker to wipe itself; *agentclient.Client
// implements it.
type SelfDestructer interface {
	SelfDestruct(ctx context.Context) error
}

// Dialer returns the self-destruct client of a host's agent. A returned
// value that is an io.Closer is closed after use.
type Dialer func(h repository.Host) (SelfDestructer, error)

// AgentDialer returns a Dialer that reaches the host's agent at
// Address:AgentPort with agentclient, presenting creds (the master's
// identity) and pinning the host's recorded certificate fingerprint. opts
// come after (and so override) those.
func AgentDialer(creds agentclient.Credentials, opts ...agentclient.Option) Dialer {
	return func(h repository.Host) (SelfDestructer, error) {
		port := h.AgentPort
		if port == 0 {
			port = repository.DefaultAgentPort
		}
		all := append([]agentclient.Option{agentclient.WithFingerprint(h.Fingerprint)}, opts...)
		return agentclient.New(net.JoinHostPort(h.Address, strconv.Itoa(port)), creds, all...)
	}
}

// DecommissionOptions tune Decommission; zero fields mean the defaults.
type DecommissionOptions struct {
	// Reason is recorded with the denied fingerprint; "" means
	// "decommissioned".
	Reason string
	// Actor is who asked, recorded in the event ("operator:<cn>").
	Actor string
	// SelfDestructTimeout bounds the self-destruct request (dial, retries
	// and answer); 0 means DefaultSelfDestructTimeout.
	SelfDestructTimeout time.Duration
	// Logger receives what happened; nil discards.
	Logger *slog.Logger
}

// DecommissionResult is what Decommission did.
type DecommissionResult struct {
	// Host is the deleted host row.
	Host repository.Host
	// Acknowledged is true when the agent answered the self-destruct.
	Acknowledged bool
	// SelfDestructErr is why it did not (nil when acknowledged).
	SelfDestructErr error
	// Event is the recorded event as passed to the repository.
	Event repository.Event
}

// Decommission forgets the host named by host (a UUID, or else a name):
// first a best-effort self-destruct through dial (nil dial skips it),
// bounded by the timeout; then repo.Decommission in one transaction: the
// host's deckies and row deleted, its fingerprint denied, and an event of
// kind EventHostDecommissioned whose Outcome says whether the worker
// acknowledged. A self-destruct failure is not an error of Decommission; an
// unknown host wraps decnet.ErrNotFound and changes nothing.
func Decommission(ctx context.Context, repo repository.Repository, host string, dial Dialer, opts DecommissionOptions) (DecommissionResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := findHost(ctx, repo, host)
	if err != nil {
		return DecommissionResult{}, err
	}
	res := DecommissionResult{}
	if dial == nil {
		res.SelfDestructErr = errors.New("no dialer: self-destruct not requested")
	} else {
		res.SelfDestructErr = selfDestruct(ctx, h, dial, opts.SelfDestructTimeout)
	}
	res.Acknowledged = res.SelfDestructErr == nil
	ev := repository.Event{
		Kind:    EventHostDecommissioned,
		Actor:   opts.Actor,
		Outcome: OutcomeAcknowledged,
		Detail:  map[string]string{"self_destruct": OutcomeAcknowledged},
	}
	if !res.Acknowledged {
		ev.Outcome = OutcomeUnacknowledged
		ev.Error = res.SelfDestructErr.Error()
		ev.Detail["self_destruct"] = OutcomeUnacknowledged
		log.WarnContext(ctx, "swarm_self_destruct_unacknowledged", "host", h.Name, "host_uuid", h.UUID, "error", res.SelfDestructErr)
	} else {
		log.InfoContext(ctx, "swarm_self_destruct_acknowledged", "host", h.Name, "host_uuid", h.UUID)
	}
	reason := opts.Reason
	if reason == "" {
		reason = "decommissioned"
	}
	deleted, err := repo.Decommission(ctx, h.UUID, reason, ev)
	if err != nil {
		return res, fmt.Errorf("decommission host %s: %w", h.Name, err)
	}
	res.Host, res.Event = deleted, ev
	log.InfoContext(ctx, "swarm_host_decommissioned", "host", h.Name, "host_uuid", h.UUID, "acknowledged", res.Acknowledged)
	return res, nil
}

func findHost(ctx context.Context, repo repository.Repository, host string) (repository.Host, error) {
	if host == "" {
		return repository.Host{}, decnet.Errorf(decnet.ErrInvalid, "host", "", "no host given")
	}
	h, err := repo.GetHost(ctx, host)
	if errors.Is(err, decnet.ErrNotFound) {
		h, err = repo.GetHostByName(ctx, host)
	}
	return h, err
}

func selfDestruct(ctx context.Context, h repository.Host, dial Dialer, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultSelfDestructTimeout
	}
	c, err := dial(h)
	if err != nil {
		return fmt.Errorf("dial agent of %s: %w", h.Name, err)
	}
	if cl, ok := c.(io.Closer); ok {
		defer cl.Close()
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.SelfDestruct(sctx); err != nil {
		return fmt.Errorf("self-destruct %s: %w", h.Name, err)
	}
	return nil
}
