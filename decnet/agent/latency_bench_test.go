package agent_test

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkHealthStatusDuringLongDeploy measures one /health plus one
// /status over mTLS while a deploy holds the state lock inside a slow
// engine: the latency an operator sees on a busy worker (goal: < 100 ms).
// It reports the median and the worst pair.
//
//	go test -run '^$' -bench HealthStatusDuringLongDeploy ./decnet/agent
func BenchmarkHealthStatusDuringLongDeploy(b *testing.B) {
	_, blk, c, deployDone := startBlockedDeploy(b)
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	var took []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := c.Health(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Status(ctx); err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	close(blk.release)
	if err := <-deployDone; err != nil {
		b.Fatal(err)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}
