package mutator

import (
	"context"
	"fmt"

	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Target is the machine a decky is mutated through: a worker agent, the
// master's own engine, or anything an embedding program supplies.
//
// Mutate replaces the decky's services with services. With dryRun it only
// checks that it would accept the change and has no side effect. Errors wrap
// a decnet error class (decnet.ErrUnavailable for an unreachable worker,
// decnet.ErrNotFound for an unknown decky, decnet.ErrInvalid for a rejected
// service list, decnet.ErrApplyFailed when the change was recorded but not
// fully applied).
type Target interface {
	Mutate(ctx context.Context, deckyID string, services []string, dryRun bool) error
}

// TargetFunc adapts a function to a [Target].
type TargetFunc func(ctx context.Context, deckyID string, services []string, dryRun bool) error

// Mutate calls f.
func (f TargetFunc) Mutate(ctx context.Context, deckyID string, services []string, dryRun bool) error {
	return f(ctx, deckyID, services, dryRun)
}

// NamedTarget is implemented by targets that have a label for events and
// plans (a worker's name, "local"). It is optional: a Target is one method.
type NamedTarget interface {
	Target
	TargetName() string
}

// Named returns t labelled name: the engine records name as the event's host
// name and reports it in plans.
func Named(name string, t Target) Target { return named{name: name, Target: t} }

type named struct {
	name string
	Target
}

func (n named) TargetName() string { return n.name }

// TargetName returns t's label: its TargetName when it has one, else its Go type.
func TargetName(t Target) string {
	if n, ok := t.(NamedTarget); ok {
		return n.TargetName()
	}
	return fmt.Sprintf("%T", t)
}

// HostResolver finds the target a decky is mutated through.
type HostResolver interface {
	Resolve(ctx context.Context, d repository.Decky) (Target, error)
}

// ResolverFunc adapts a function to a [HostResolver].
type ResolverFunc func(ctx context.Context, d repository.Decky) (Target, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, d repository.Decky) (Target, error) {
	return f(ctx, d)
}
