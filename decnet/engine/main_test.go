package engine_test

import (
	"testing"

	"github.com/decnet-swarm/sdk/internal/dockertest"
)

func TestMain(m *testing.M) {
	dockertest.Main(m)
}
