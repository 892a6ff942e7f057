package engine_test

import (
	"context"
	"net/netip"
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

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
