package mutator_test

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/mutator"
	"github.com/decnet-swarm/sdk/decnet/repository"
	"github.com/decnet-swarm/sdk/decnet/repository/sqlite"
)

// The default chooser draws from the decky's archetype pool and never
// returns the decky's current set; with a seeded source it is deterministic.
func ExampleDefaultChooser_Choose() {
	c, err := mutator.NewChooser(mutator.ChooserConfig{Rand: rand.New(rand.NewPCG(1, 2))})
	if err != nil {
		log.Fatal(err)
	}
	d := repository.Decky{Name: "db-1", Services: []string{"mysql"}, Spec: decnet.Decky{Name: "db-1", Archetype: "database-server"}}
	pool, _ := c.Pool("database-server")
	fmt.Println("pool:", pool)
	for range 3 {
		next, err := c.Choose(d)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(next)
		d.Services = next
	}
	// Output:
	// pool: [mysql redis ssh]
	// [mysql redis ssh]
	// [mysql redis]
	// [redis ssh]
}

// An engine over a SQLite repository, with a target of the embedding
// program's own: MutateNow rotates a decky at once.
func ExampleEngine_MutateNow() {
	dir, err := os.MkdirTemp("", "mutator-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(dir, "decnet.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateDecky(ctx, repository.Decky{Name: "web-1", Services: []string{"http"},
		Spec: decnet.Decky{Name: "web-1", Services: []string{"http"}}, State: repository.DeckyRunning}); err != nil {
		log.Fatal(err)
	}
	target := mutator.Named("printer", mutator.TargetFunc(func(_ context.Context, decky string, services []string, dryRun bool) error {
		fmt.Println("mutate", decky, "to", services)
		return nil
	}))
	eng, err := mutator.New(mutator.Config{
		Store:    store,
		Resolver: mutator.ResolverFunc(func(context.Context, repository.Decky) (mutator.Target, error) { return target, nil }),
		Chooser: mutator.ChooserFunc(func(repository.Decky) ([]string, error) {
			return []string{"ssh", "smtp"}, nil
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := eng.MutateNow(ctx, "web-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res[0].Old, "->", res[0].New, "via", res[0].Target)
	// Output:
	// mutate web-1 to [ssh smtp]
	// [http] -> [ssh smtp] via printer
}
