package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

// The go test -bench entries: the same fleet and operations as the
// program, reported by the testing package (mean ns/op):
//
//	go test -run '^$' -bench . ./bench/repository
//	DECNET_TEST_POSTGRES_DSN=postgres://… go test -run '^$' -bench Postgres ./bench/repository

const (
	benchHosts   = 10_000
	benchDeckies = 100_000
)

func benchOps(b *testing.B, s store, f fleet) {
	if err := s.BulkLoad(b.Context(), f.hosts, f.deckies); err != nil {
		b.Fatal(err)
	}
	for _, o := range ops(f) {
		b.Run(o.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				if _, err := o.run(context.Background(), s, rng); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSQLite(b *testing.B) {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchOps(b, s, newFleet(benchHosts, benchDeckies, 1))
}

func BenchmarkPostgres(b *testing.B) {
	dsn := os.Getenv("DECNET_TEST_POSTGRES_DSN")
	if dsn == "" {
		b.Skip("DECNET_TEST_POSTGRES_DSN is not set: PostgreSQL benchmark skipped")
	}
	s, cleanup, err := openPostgresSchema(b.Context(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer cleanup()
	benchOps(b, s, newFleet(benchHosts, benchDeckies, 1))
}

// TestRunSmall runs the program end to end on a small fleet and checks it
// reports every operation.
func TestRunSmall(t *testing.T) {
	var out bytes.Buffer
	args := []string{"-hosts", "20", "-deckies", "200", "-n", "5", "-dir", t.TempDir()}
	if dsn := os.Getenv("DECNET_TEST_POSTGRES_DSN"); dsn != "" {
		args = append(args, "-postgres", dsn)
	}
	if err := run(t.Context(), args, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, o := range ops(fleet{}) {
		if !strings.Contains(out.String(), o.name) {
			t.Fatalf("output lacks %s:\n%s", o.name, out.String())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-hosts", "0"}, &out); err == nil {
		t.Fatal("run accepted -hosts 0")
	}
}

func TestFleetDueCount(t *testing.T) {
	f := newFleet(100, 10_000, 1)
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.BulkLoad(t.Context(), f.hosts, f.deckies); err != nil {
		t.Fatal(err)
	}
	due, err := s.ListDue(t.Context(), f.dueAt, defaultInterval)
	if err != nil {
		t.Fatal(err)
	}
	// dueTarget steps in, minus the one in a hundred that never rotates.
	if len(due) < dueTarget*9/10 || len(due) > dueTarget+1 {
		t.Fatalf("%d deckies due at dueAt, want about %d", len(due), dueTarget)
	}
	hs, err := s.ListDeckies(t.Context(), repository.DeckyFilter{HostUUID: f.hosts[3].UUID})
	if err != nil || len(hs) != 100 {
		t.Fatalf("deckies on one host: %d, %v; want 100", len(hs), err)
	}
}
