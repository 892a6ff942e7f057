package engine_test

import (
	"net/netip"
	"testing"
)

// idsByName maps container name → container ID for the fixture's project.
func idsByName(t *testing.T, f *fixture) map[string]string {
	t.Helper()
	cs, err := f.eng.Containers(testCtx(t))
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}
	m := map[string]string{}
	for _, c := range cs {
		m[c.Name] = c.ID
	}
	return m
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
