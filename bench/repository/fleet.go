package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/repository"
)

// store is what the benchmark needs of a backend: the contract plus its
// bulk loader.
type store interface {
	repository.Repository
	BulkLoad(ctx context.Context, hosts []repository.Host, deckies []repository.Decky) error
}

// fleet is a generated swarm: hosts, deckies per host, and the instant at
// which about dueTarget deckies are due.
type fleet struct {
	hosts   []repository.Host
	deckies []repository.Decky
	base    time.Time
	dueAt   time.Time
}

const (
	defaultInterval = 30 * time.Minute
	dueTarget       = 100
)

var services = []string{"ssh", "http", "https", "smb", "rdp", "ftp", "telnet", "mysql", "mssql", "snmp", "sip", "vnc"}

func fingerprint(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// newFleet builds nHosts hosts and nDeckies deckies spread evenly over them.
// Last-mutation times are spread over one default interval so that at
// dueAt about dueTarget deckies are due; a tenth of the deckies have their
// own interval (1 h) and one in a hundred never rotates.
func newFleet(nHosts, nDeckies int, seed uint64) fleet {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := fleet{base: base}
	for i := range nHosts {
		name := fmt.Sprintf("worker-%05d", i)
		f.hosts = append(f.hosts, repository.Host{
			UUID:        fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			Name:        name,
			Address:     fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255),
			AgentPort:   8765,
			Status:      repository.HostActive,
			Fingerprint: fingerprint(name),
			EnrolledAt:  base.Add(-30 * 24 * time.Hour),
			Labels:      map[string]string{"site": fmt.Sprintf("site-%d", i%7)},
		})
	}
	step := defaultInterval / time.Duration(max(nDeckies, 1))
	order := rng.Perm(nDeckies)
	own := time.Hour
	never := time.Duration(0)
	for i := range nDeckies {
		name := fmt.Sprintf("decky-%06d", i)
		svcs := slices.Clone(services)
		rng.Shuffle(len(svcs), func(a, b int) { svcs[a], svcs[b] = svcs[b], svcs[a] })
		svcs = svcs[:1+rng.IntN(3)]
		d := repository.Decky{
			Name:     name,
			HostUUID: f.hosts[i%max(nHosts, 1)].UUID,
			Services: svcs,
			State:    repository.DeckyRunning,
			Spec: decnet.Decky{
				Hostname:  fmt.Sprintf("%s.corp.example", name),
				Archetype: "windows-workstation",
				OS:        decnet.OSWindows,
				ServiceConfig: map[string]map[string]string{
					svcs[0]: {"BANNER": "Microsoft Windows 10 Pro"},
				},
			},
			LastMutated: base.Add(-defaultInterval + time.Duration(order[i])*step),
		}
		switch {
		case i%100 == 99:
			d.MutateInterval = &never
		case i%10 == 9:
			d.MutateInterval = &own
			d.LastMutated = d.LastMutated.Add(-defaultInterval) // due at the same pace
		}
		f.deckies = append(f.deckies, d)
	}
	f.dueAt = base.Add(time.Duration(dueTarget) * step)
	return f
}

// op is one measured operation; it returns how many rows it touched.
type op struct {
	name string
	goal time.Duration
	run  func(ctx context.Context, s store, rng *rand.Rand) (int, error)
}

func ops(f fleet) []op {
	pickHost := func(rng *rand.Rand) repository.Host { return f.hosts[rng.IntN(len(f.hosts))] }
	return []op{
		{"list-deckies-by-host", 5 * time.Millisecond, func(ctx context.Context, s store, rng *rand.Rand) (int, error) {
			ds, err := s.ListDeckies(ctx, repository.DeckyFilter{HostUUID: pickHost(rng).UUID})
			return len(ds), err
		}},
		{"list-due-deckies", 5 * time.Millisecond, func(ctx context.Context, s store, rng *rand.Rand) (int, error) {
			ds, err := s.ListDue(ctx, f.dueAt, defaultInterval)
			return len(ds), err
		}},
		{"next-due", 5 * time.Millisecond, func(ctx context.Context, s store, rng *rand.Rand) (int, error) {
			_, ok, err := s.NextDue(ctx, defaultInterval)
			if !ok {
				return 0, err
			}
			return 1, err
		}},
		{"get-host-by-fingerprint", 5 * time.Millisecond, func(ctx context.Context, s store, rng *rand.Rand) (int, error) {
			_, err := s.GetHostByFingerprint(ctx, pickHost(rng).Fingerprint)
			return 1, err
		}},
		{"heartbeat-host+10-deckies", 10 * time.Millisecond, func(ctx context.Context, s store, rng *rand.Rand) (int, error) {
			i := rng.IntN(len(f.hosts))
			hb := repository.Heartbeat{HostUUID: f.hosts[i].UUID, At: time.Now()}
			for j := i; j < len(f.deckies) && len(hb.Deckies) < 10; j += len(f.hosts) {
				hb.Deckies = append(hb.Deckies, repository.DeckyRuntime{Name: f.deckies[j].Name, State: repository.DeckyRunning})
			}
			return 1 + len(hb.Deckies), s.RecordHeartbeat(ctx, hb)
		}},
	}
}

// result is one operation's latency distribution.
type result struct {
	op                     string
	goal                   time.Duration
	n, rows                int
	median, p90, p99, maxD time.Duration
}

func measure(ctx context.Context, s store, o op, iterations int, seed uint64) (result, error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for range min(10, iterations) { // warm caches and prepared plans
		if _, err := o.run(ctx, s, rng); err != nil {
			return result{}, fmt.Errorf("%s: %w", o.name, err)
		}
	}
	lat := make([]time.Duration, 0, iterations)
	rows := 0
	for range iterations {
		start := time.Now()
		n, err := o.run(ctx, s, rng)
		lat = append(lat, time.Since(start))
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", o.name, err)
		}
		rows = n
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return result{op: o.name, goal: o.goal, n: iterations, rows: rows,
		median: q(0.5), p90: q(0.9), p99: q(0.99), maxD: lat[len(lat)-1]}, nil
}
