package mutator

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// AgentClient is the part of *agentclient.Client an [AgentTarget] uses.
type AgentClient interface {
	Mutate(ctx context.Context, deckyID string, services []string, opts agentclient.MutateOptions) (agentclient.MutateResult, error)
}

// AgentTarget mutates deckies through a worker agent.
//
// Until its first call succeeds, it lets one call through at a time, so that
// concurrent first dispatches to a worker share the connection the first
// one opens (one TLS handshake per worker) instead of each dialling its own.
type AgentTarget struct {
	name   string
	client AgentClient

	warm atomic.Bool
	gate chan struct{} // held by the one call allowed through while cold
}

// NewAgentTarget returns a target that mutates through client, labelled
// name (the worker's name) in events and plans.
func NewAgentTarget(name string, client AgentClient) *AgentTarget {
	return &AgentTarget{name: name, client: client, gate: make(chan struct{}, 1)}
}

// TargetName returns the worker's name.
func (t *AgentTarget) TargetName() string { return t.name }

// Mutate calls the agent's /mutate. Errors keep agentclient's classes
// (decnet.ErrUnavailable, ErrNotFound, ErrInvalid, ErrApplyFailed, …). An
// agent that reports other services than the ones sent fails with
// decnet.ErrConflict.
func (t *AgentTarget) Mutate(ctx context.Context, deckyID string, services []string, dryRun bool) error {
	if !t.warm.Load() {
		select {
		case t.gate <- struct{}{}:
			defer func() { <-t.gate }()
		case <-ctx.Done():
			return fmt.Errorf("wait for the first call to %s: %w: %w", t.name, decnet.ErrUnavailable, ctx.Err())
		}
	}
	res, err := t.client.Mutate(ctx, deckyID, services, agentclient.MutateOptions{DryRun: dryRun})
	if err != nil {
		return err
	}
	t.warm.Store(true)
	if !dryRun && !equalSet(res.Services, sortedSet(services)) {
		return decnet.Errorf(decnet.ErrConflict, "decky", deckyID,
			"worker %s reports services %v for decky %q after mutating to %v", t.name, res.Services, deckyID, services)
	}
	return nil
}

// ResolverConfig configures [NewResolver].
type ResolverConfig struct {
	// Hosts is where a decky's host is looked up. Required.
	Hosts HostStore
	// Local is the target of master-resident deckies (HostUUID ""); nil makes
	// them fail with decnet.ErrNotFound.
	Local Target
	// Credentials are the master's identity towards agents. Required unless
	// NewClient is set.
	Credentials agentclient.Credentials
	// ClientOptions are added to every client the resolver makes (logger,
	// retry policy, timeouts). The host's fingerprint is always pinned.
	ClientOptions []agentclient.Option
	// NewClient, when set, replaces agentclient.New for making a host's
	// client (an embedding program with its own transport).
	NewClient func(h repository.Host) (AgentClient, error)
}

// Resolver is the default [HostResolver]: a decky with a host goes to that
// host's agent, through one client per host kept for reuse (so connections
// are reused across mutations); a master-resident decky goes to the local
// target. It is safe for concurrent use.
type Resolver struct {
	hosts     HostStore
	local     Target
	creds     agentclient.Credentials
	opts      []agentclient.Option
	newClient func(h repository.Host) (AgentClient, error)

	mu      sync.Mutex
	clients map[string]cachedClient
}

type cachedClient struct {
	key    string // address, fingerprint and name the client was made for
	target *AgentTarget
	client AgentClient
}

// NewResolver checks cfg and returns the resolver.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	v := &decnet.ValidationError{}
	if cfg.Hosts == nil {
		v.Add("hosts", "required")
	}
	if cfg.NewClient == nil && cfg.Credentials.Bundle == nil {
		v.Add("credentials", "the master's bundle is required")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	r := &Resolver{hosts: cfg.Hosts, local: cfg.Local, creds: cfg.Credentials, opts: slices.Clone(cfg.ClientOptions),
		newClient: cfg.NewClient, clients: map[string]cachedClient{}}
	if r.newClient == nil {
		r.newClient = r.agentClient
	}
	return r, nil
}

// HostAddr returns the address the master dials for h: Address:AgentPort
// (repository.DefaultAgentPort when the port is zero).
func HostAddr(h repository.Host) string {
	port := h.AgentPort
	if port == 0 {
		port = repository.DefaultAgentPort
	}
	return net.JoinHostPort(h.Address, strconv.Itoa(port))
}

func (r *Resolver) agentClient(h repository.Host) (AgentClient, error) {
	opts := append(slices.Clone(r.opts), agentclient.WithFingerprint(h.Fingerprint))
	return agentclient.New(HostAddr(h), r.creds, opts...)
}

// Resolve returns the target of d: the local target for a master-resident
// decky, else the agent of its host. An unknown host is decnet.ErrNotFound;
// a host with no address or fingerprint is decnet.ErrInvalid. The client of
// a host is made once and kept until the host's address or fingerprint
// changes (or its name: the target's label).
func (r *Resolver) Resolve(ctx context.Context, d repository.Decky) (Target, error) {
	if d.HostUUID == "" {
		if r.local == nil {
			return nil, decnet.Errorf(decnet.ErrNotFound, "decky", d.Name, "decky %q is master-resident and no local target is configured", d.Name)
		}
		return r.local, nil
	}
	h, err := r.hosts.GetHost(ctx, d.HostUUID)
	if err != nil {
		return nil, fmt.Errorf("host of decky %q: %w", d.Name, err)
	}
	if h.Address == "" || h.Fingerprint == "" {
		return nil, decnet.Errorf(decnet.ErrInvalid, "host", h.Name, "host %s has no address or fingerprint to dial", h.Name)
	}
	key := HostAddr(h) + "|" + h.Fingerprint + "|" + h.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[h.UUID]; ok {
		if c.key == key {
			return c.target, nil
		}
		closeClient(c.client)
		delete(r.clients, h.UUID)
	}
	client, err := r.newClient(h)
	if err != nil {
		return nil, fmt.Errorf("client for host %s: %w", h.Name, err)
	}
	c := cachedClient{key: key, target: NewAgentTarget(h.Name, client), client: client}
	r.clients[h.UUID] = c
	return c.target, nil
}

// Forget drops the cached client of host uuid (after a decommission).
func (r *Resolver) Forget(uuid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[uuid]; ok {
		closeClient(c.client)
		delete(r.clients, uuid)
	}
}

// Close releases the idle connections of every cached client and forgets them.
func (r *Resolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for uuid, c := range r.clients {
		closeClient(c.client)
		delete(r.clients, uuid)
	}
	return nil
}

func closeClient(c AgentClient) {
	if cl, ok := c.(interface{ Close() error }); ok {
		_ = cl.Close()
	}
}
