// Command custom-resolver embeds the decnet mutator with a resolver and a
// chooser of its own.
//
// It stores three deckies in a SQLite repository (in a temporary directory
// unless -db is given), then runs the mutator for a few seconds: the
// resolver sends deckies whose name starts with "dmz-" to one target and
// the others to another, both of which print what they are asked to do
// instead of calling a worker; the chooser walks each decky through a fixed
// playlist of service sets instead of drawing at random. At the end it
// prints the event log the mutator recorded.
//
//	go run ./examples/custom-resolver -for 5s -interval 1s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "custom-resolver:", err)
		os.Exit(1)
	}
}

// printer is a mutator.Target that prints each mutation.
type printer struct {
	zone string
	out  io.Writer
}

func (p printer) TargetName() string { return p.zone }

func (p printer) Mutate(_ context.Context, decky string, services []string, dryRun bool) error {
	verb := "mutate"
	if dryRun {
		verb = "plan"
	}
	fmt.Fprintf(p.out, "[%s] %s %s -> %s\n", p.zone, verb, decky, strings.Join(services, ","))
	return nil
}

// playlist is a mutator.Chooser that moves each decky to the set after the
// one it runs now (the first set when it runs none of them).
type playlist [][]string

func (pl playlist) Choose(d repository.Decky) ([]string, error) {
	cur := slices.Clone(d.Services)
	slices.Sort(cur)
	for i, set := range pl {
		if slices.Equal(set, cur) {
			if len(pl) == 1 {
				return nil, decnet.Errorf(decnet.ErrInvalid, "decky", d.Name, "decky %q already runs the playlist's only set", d.Name)
			}
			return slices.Clone(pl[(i+1)%len(pl)]), nil
		}
	}
	return slices.Clone(pl[0]), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("custom-resolver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbPath := fs.String("db", "", "SQLite file (default: a new file in a temporary directory)")
	runFor := fs.Duration("for", 5*time.Second, "how long to run the mutator")
	interval := fs.Duration("interval", time.Second, "rotation interval of the example deckies")
	verbose := fs.Bool("v", false, "log the mutator's messages to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *interval <= 0 || *runFor <= 0 {
		return errors.New("-for and -interval must be positive")
	}
	if *dbPath == "" {
		dir, err := os.MkdirTemp("", "custom-resolver-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*dbPath = filepath.Join(dir, "decnet.db")
	}
	store, err := sqlite.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer store.Close()

	for _, name := range []string{"dmz-web", "dmz-mail", "lan-files"} {
		_, err := store.CreateDecky(ctx, repository.Decky{
			Name:           name,
			Spec:           decnet.Decky{Name: name, Services: []string{"ssh"}},
			Services:       []string{"ssh"},
			MutateInterval: interval,
			State:          repository.DeckyRunning,
		})
		if err != nil && !errors.Is(err, decnet.ErrConflict) { // a reused -db keeps its deckies
			return err
		}
	}

	dmz, lan := printer{zone: "dmz", out: stdout}, printer{zone: "lan", out: stdout}
	resolver := mutator.ResolverFunc(func(_ context.Context, d repository.Decky) (mutator.Target, error) {
		if strings.HasPrefix(d.Name, "dmz-") {
			return dmz, nil
		}
		return lan, nil
	})
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	eng, err := mutator.New(mutator.Config{
		Store:    store,
		Resolver: resolver,
		Chooser:  playlist{{"http", "ssh"}, {"ftp", "smtp"}, {"https", "mysql", "redis"}},
		Logger:   logger,
	})
	if err != nil {
		return err
	}

	plan, err := eng.Plan(ctx, "dmz-web")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "plan for %s via %s: %v -> %v (add %v, remove %v), next due %s\n",
		plan.Decky, plan.Target, plan.Old, plan.New, plan.Add, plan.Remove, plan.NextDue.Format(time.TimeOnly))

	runCtx, cancel := context.WithTimeout(ctx, *runFor)
	defer cancel()
	if err := eng.Run(runCtx); err != nil {
		return err
	}

	evs, _, err := store.ListEvents(ctx, repository.EventFilter{Kind: mutator.EventMutated, Limit: repository.MaxEventLimit})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d mutations recorded:\n", len(evs))
	for _, e := range evs {
		fmt.Fprintf(stdout, "  %s %-9s via %-3s %-9s %v -> %v %s\n", e.Time.Local().Format("15:04:05.000"), e.Decky, e.HostName,
			e.Trigger, e.OldServices, e.NewServices, e.Outcome)
	}
	return nil
}
