package engine_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// withCleanup runs the tests, then removes this process's test images.
type withCleanup struct{ m *testing.M }

func (w withCleanup) Run() int {
	code := w.m.Run()
	dockertest.RemoveImages()
	return code
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(withCleanup{m})
}
