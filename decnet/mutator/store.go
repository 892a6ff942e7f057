package mutator

import (
	"context"
	"time"

	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Store is the part of repository.Repository the engine uses. Every
// repository.Repository satisfies it.
type Store interface {
	GetDecky(ctx context.Context, name string) (repository.Decky, error)
	ListDeckies(ctx context.Context, f repository.DeckyFilter) ([]repository.Decky, error)
	// UpdateDeckyWithEvent writes d and appends ev in one transaction if
	// d.Version is current, else fails with decnet.ErrConflict and writes
	// nothing.
	UpdateDeckyWithEvent(ctx context.Context, d repository.Decky, ev repository.Event) (repository.Decky, repository.Event, error)
	// SetDeckyStateWithEvent writes the decky's runtime state and appends ev
	// in one transaction.
	SetDeckyStateWithEvent(ctx context.Context, name string, state repository.DeckyState, lastError string, ev repository.Event) (repository.Event, error)
	ListDue(ctx context.Context, t time.Time, defaultInterval time.Duration) ([]repository.Decky, error)
	NextDue(ctx context.Context, defaultInterval time.Duration) (at time.Time, ok bool, err error)
	AppendEvent(ctx context.Context, e repository.Event) (repository.Event, error)
}

// HostStore is the part of repository.Repository the default [Resolver] uses.
type HostStore interface {
	GetHost(ctx context.Context, uuid string) (repository.Host, error)
}

// DeckyStore is the part of repository.Repository a [LocalTarget] uses.
type DeckyStore interface {
	GetDecky(ctx context.Context, name string) (repository.Decky, error)
	ListDeckies(ctx context.Context, f repository.DeckyFilter) ([]repository.Decky, error)
}
