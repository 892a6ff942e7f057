package agentbench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/decnet-swarm/sdk/decnet"
	"github.com/decnet-swarm/sdk/decnet/agent/agenttest"
	"github.com/decnet-swarm/sdk/decnet/agentclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// concurrency is the number of Mutate dry runs in flight at once.
const concurrency = 100

func fleet(n int) decnet.Config {
	cfg := decnet.Config{Mode: decnet.ModeSwarm}
	for i := range n {
		cfg.Deckies = append(cfg.Deckies, decnet.Decky{Name: fmt.Sprintf("decky-%02d", i), Services: []string{"ssh", "http", "ftp"}})
	}
	return cfg
}

func start(tb testing.TB) (*agenttest.Server, *agentclient.Client) {
	tb.Helper()
	srv := agenttest.Start(tb, agenttest.Options{})
	c := srv.Client(tb)
	if _, err := c.Deploy(context.Background(), fleet(10), agentclient.DeployOptions{}); err != nil {
		tb.Fatalf("deploy: %v", err)
	}
	return srv, c
}

// mutateBurst sends concurrency dry-run mutates at once and waits for all.
func mutateBurst(ctx context.Context, c *agentclient.Client) error {
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	for i := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("decky-%02d", i%10)
			res, err := c.Mutate(ctx, name, []string{"ssh", "smtp"}, agentclient.MutateOptions{DryRun: true})
			if err == nil && (res.Plan == nil || len(res.Plan.Keep) != 1) {
				err = fmt.Errorf("unexpected plan %+v", res.Plan)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func BenchmarkStatusSequential(b *testing.B) {
	srv, c := start(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	// Handshakes and connections over the whole run, the deploy included.
	b.ReportMetric(float64(srv.Agent.Handshakes()), "handshakes")
	b.ReportMetric(float64(srv.Conns()), "conns")
}

func BenchmarkMutateDryRun100Concurrent(b *testing.B) {
	srv, c := start(b)
	ctx := context.Background()
	for b.Loop() {
		if err := mutateBurst(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*concurrency)/b.Elapsed().Seconds(), "req/s")
	hs := srv.Agent.Handshakes()
	b.ReportMetric(float64(hs), "handshakes")
	b.ReportMetric(float64(srv.Conns()), "conns")
	if hs > concurrency {
		b.Fatalf("%d handshakes for %d requests, want ≤ %d (connections are not reused)", hs, b.N*concurrency, concurrency)
	}
}

// TestConnectionReuse checks the property the benchmark reports: repeated
// bursts of 100 concurrent requests open at most 100 connections in all.
func TestConnectionReuse(t *testing.T) {
	srv, c := start(t)
	for range 5 {
		if err := mutateBurst(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 {
		if _, err := c.Status(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	hs, conns := srv.Agent.Handshakes(), srv.Conns()
	t.Logf("700 requests: %d handshakes, %d connections (client counted %d)", hs, conns, c.Handshakes())
	if hs > concurrency || conns > concurrency {
		t.Fatalf("%d handshakes / %d connections for 700 requests, want ≤ %d", hs, conns, concurrency)
	}
}
