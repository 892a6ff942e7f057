package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/engine"
	"github.com/decnet-swarm/sdk/internal/dockertest"
)

// The comparison with the compose CLI and the bare-API floor is the program
// bench/engine (go run ./bench/engine); these measure the engine alone:
//
//	go test -run '^$' -bench . -benchtime 5x ./decnet/engine

func benchFleet(b *testing.B, n int) (*engine.Engine, decnet.Config) {
	dockertest.Require(b)
	img := dockertest.Images(b)
	project := dockertest.Project(b, "bench")
	eng := dockertest.NewEngine(b, engine.Config{Project: project, Catalog: dockertest.Catalog(b, img), BaseImage: img.Pause})
	net := dockertest.Network(b)
	cfg := decnet.Config{Mode: decnet.ModeUnihost, Network: net}
	prefix := dockertest.Name(b, "bn")
	for i := range n {
		cfg.Deckies = append(cfg.Deckies, decnet.Decky{Name: fmt.Sprintf("%s-%02d", prefix, i),
			IP: dockertest.Addr(net.Subnet, 10+i), Services: []string{"ssh", "http", "ftp"}})
	}
	return eng, cfg
}

// BenchmarkApplyDeckyMutate: one decky swaps 2 of its 3 services.
func BenchmarkApplyDeckyMutate(b *testing.B) {
	eng, cfg := benchFleet(b, 1)
	ctx := context.Background()
	if err := eng.Apply(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	sets := [][]string{{"ssh", "smtp", "telnet"}, {"ssh", "http", "ftp"}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cfg.Deckies[0].Services = slices.Clone(sets[i%2])
		if err := eng.ApplyDecky(ctx, cfg, cfg.Deckies[0].Name); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyDeploy20: 20 deckies × 3 services from nothing.
func BenchmarkApplyDeploy20(b *testing.B) {
	eng, cfg := benchFleet(b, 20)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := eng.Apply(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := eng.Teardown(ctx, ""); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
