package engine

import (
	"context"

	"github.com/moby/moby/client"
)

// StopContainer stops a container by name (tests simulate a crashed one).
func (e *Engine) StopContainer(ctx context.Context, name string) error {
	t := 0
	_, err := e.api.ContainerStop(ctx, name, client.ContainerStopOptions{Timeout: &t})
	return err
}
