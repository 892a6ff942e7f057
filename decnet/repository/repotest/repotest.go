package repotest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// Open returns a fresh, empty repository for one test.
type Open func(t *testing.T) repository.Repository

// Run runs every conformance test against the implementation open returns.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, Open)
	}{
		{"HostCRUD", testHostCRUD},
		{"HostUpdateVersions", testHostUpdateVersions},
		{"HostConflicts", testHostConflicts},
		{"HostRejectsBadInput", testHostRejectsBadInput},
		{"DeleteHostDeletesItsDeckies", testDeleteHostDeletesDeckies},
		{"Decommission", testDecommission},
		{"RecordHeartbeat", testRecordHeartbeat},
		{"SetHostStatus", testSetHostStatus},
		{"RuntimeFieldsSurviveUpdates", testRuntimeFieldsSurviveUpdates},
		{"DeckyCRUD", testDeckyCRUD},
		{"DeckyListFilters", testDeckyListFilters},
		{"DeckyUpdateVersions", testDeckyUpdateVersions},
		{"DeckyUpdateNeverMoves", testDeckyUpdateNeverMoves},
		{"DeckyRejectsBadInput", testDeckyRejectsBadInput},
		{"AssignDecky", testAssignDecky},
		{"SetDeckyState", testSetDeckyState},
		{"UpdateDeckyWithEvent", testUpdateDeckyWithEvent},
		{"SetDeckyStateWithEvent", testSetDeckyStateWithEvent},
		{"ListDueAndNextDue", testListDue},
		{"Tokens", testTokens},
		{"TokenRejectsBadInput", testTokenRejectsBadInput},
		{"DeniedFingerprints", testDenied},
		{"Events", testEvents},
		{"EventPaging", testEventPaging},
		{"TimesRoundTripInUTC", testTimes},
		{"ConcurrentDeckyUpdatesLoseNothing", testConcurrentDeckyUpdates},
		{"ConcurrentStaleUpdatesOneWins", testConcurrentStaleUpdates},
		{"ConcurrentTokenConsumeOneWins", testConcurrentTokenConsume},
		{"ConcurrentOutcomesVisibleTogether", testConcurrentOutcomesVisibleTogether},
		{"ConcurrentStaleOutcomesOneEvent", testConcurrentStaleOutcomesOneEvent},
		{"ModelProperty", testModelProperty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

// fp returns a deterministic certificate fingerprint for seed.
func fp(seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return hex.EncodeToString(sum[:])
}

func ctxOf(t *testing.T) context.Context { return t.Context() }

func mustAddHost(t *testing.T, r repository.Repository, name string) repository.Host {
	t.Helper()
	h, err := r.AddHost(ctxOf(t), repository.Host{Name: name, Address: "10.0.0.1", Fingerprint: fp(name)})
	if err != nil {
		t.Fatalf("AddHost(%q): %v", name, err)
	}
	return h
}

func deckyOn(name, host string, services ...string) repository.Decky {
	if len(services) == 0 {
		services = []string{"ssh", "http"}
	}
	return repository.Decky{
		Name:     name,
		HostUUID: host,
		Services: services,
		Spec: decnet.Decky{
			Name:      name,
			Hostname:  name + ".corp",
			Archetype: "linux-server",
			OS:        decnet.OSLinux,
			ServiceConfig: map[string]map[string]string{
				"ssh": {"SSH_PASSWORD": "hunter2"},
			},
		},
	}
}

func mustCreateDecky(t *testing.T, r repository.Repository, d repository.Decky) repository.Decky {
	t.Helper()
	got, err := r.CreateDecky(ctxOf(t), d)
	if err != nil {
		t.Fatalf("CreateDecky(%q): %v", d.Name, err)
	}
	return got
}

// wantErr fails unless err belongs to class.
func wantErr(t *testing.T, what string, err, class error) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("%s: error %v, want class %v", what, err, class)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

var cmpOpts = []cmp.Option{cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts...); d != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func hostNames(hs []repository.Host) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

func deckyNames(ds []repository.Decky) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Name
	}
	return out
}

// micro truncates t the way the repository stores it.
func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
