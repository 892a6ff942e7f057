package engine_test

import (
	"context"
	"testing"
)

// containerIDs maps decnet.service → container ID for the fixture's project.
func containerIDs(t *testing.T, ctx context.Context, f *fixture) map[string]string {
	t.Helper()
	out, err := f.eng.Containers(ctx)
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}
	m := map[string]string{}
	for _, c := range out {
		m[c.Service] = c.ID
	}
	return m
}
