// Command repository benchmarks the master's store at swarm scale: it loads
// 10,000 hosts and 100,000 deckies into SQLite (and PostgreSQL when -postgres
// gives a DSN) and prints the latency distribution of the lookups and
// writes the master performs all the time.
//
//	go run ./bench/repository
//	go run ./bench/repository -postgres 'postgres://decnet:decnet@127.0.0.1:5432/decnet_test?sslmode=disable'
//
// PostgreSQL runs in a fresh schema that is dropped afterwards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/decnet-swarm/sdk/decnet/repository/postgres"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/repository:", err)
		os.Exit(1)
	}
}

type config struct {
	hosts, deckies, iterations int
	dir, pgDSN                 string
	skipSQLite                 bool
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var c config
	fs := flag.NewFlagSet("repository", flag.ContinueOnError)
	fs.IntVar(&c.hosts, "hosts", 10_000, "hosts to load")
	fs.IntVar(&c.deckies, "deckies", 100_000, "deckies to load (spread evenly over the hosts)")
	fs.IntVar(&c.iterations, "n", 500, "measured iterations per operation")
	fs.StringVar(&c.dir, "dir", "", "directory for the SQLite file (default: a temporary directory, removed afterwards)")
	fs.StringVar(&c.pgDSN, "postgres", "", "PostgreSQL DSN; when set, PostgreSQL is measured too (in a fresh schema, dropped afterwards)")
	fs.BoolVar(&c.skipSQLite, "skip-sqlite", false, "measure PostgreSQL only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.hosts < 1 || c.deckies < 1 || c.iterations < 1 {
		return errors.New("-hosts, -deckies and -n must be positive")
	}
	f := newFleet(c.hosts, c.deckies, 1)
	fmt.Fprintf(out, "fleet: %d hosts, %d deckies (%d per host), %d iterations per operation\n\n",
		c.hosts, c.deckies, c.deckies/c.hosts, c.iterations)
	if !c.skipSQLite {
		if err := benchSQLite(ctx, c, f, out); err != nil {
			return fmt.Errorf("sqlite: %w", err)
		}
	}
	if c.pgDSN != "" {
		if err := benchPostgres(ctx, c, f, out); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
	}
	return nil
}

func benchSQLite(ctx context.Context, c config, f fleet, out io.Writer) error {
	dir := c.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "decnet-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	s, err := sqlite.Open(ctx, filepath.Join(dir, "bench.db"))
	if err != nil {
		return err
	}
	defer s.Close()
	return benchStore(ctx, "sqlite", s, c, f, out)
}

func benchPostgres(ctx context.Context, c config, f fleet, out io.Writer) error {
	s, cleanup, err := openPostgresSchema(ctx, c.pgDSN)
	if err != nil {
		return err
	}
	defer cleanup()
	return benchStore(ctx, "postgres", s, c, f, out)
}

// openPostgresSchema opens a store in a fresh schema; cleanup closes it and
// drops the schema.
func openPostgresSchema(ctx context.Context, dsn string) (*postgres.Store, func(), error) {
	scoped, drop, err := postgres.ScratchSchema(ctx, dsn, "dnb_repo")
	if err != nil {
		return nil, nil, err
	}
	dropNow := func() { _ = drop(context.Background()) }
	s, err := postgres.Open(ctx, scoped)
	if err != nil {
		dropNow()
		return nil, nil, err
	}
	return s, func() { s.Close(); dropNow() }, nil
}

func benchStore(ctx context.Context, backend string, s store, c config, f fleet, out io.Writer) error {
	start := time.Now()
	if err := s.BulkLoad(ctx, f.hosts, f.deckies); err != nil {
		return fmt.Errorf("bulk load: %w", err)
	}
	fmt.Fprintf(out, "%s: bulk load of %d hosts + %d deckies: %v\n", backend, len(f.hosts), len(f.deckies), time.Since(start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\trows\tmedian\tp90\tp99\tmax\tgoal (median)\t")
	for i, o := range ops(f) {
		r, err := measure(ctx, s, o, c.iterations, uint64(i+1))
		if err != nil {
			return err
		}
		verdict := "ok"
		if r.median > r.goal {
			verdict = "MISSED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%v\t%v\t≤ %v %s\t\n", r.op, r.rows, round(r.median), round(r.p90), round(r.p99), round(r.maxD), r.goal, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	return nil
}

func round(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}
