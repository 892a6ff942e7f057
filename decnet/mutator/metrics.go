package mutator

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/decnet-swarm/sdk/decnet"
)

// Metric names, registered on Config.Registry.
const (
	MetricMutations        = "decnet_mutator_mutations_total"
	MetricDispatchDuration = "decnet_mutator_dispatch_duration_seconds"
	MetricOverdue          = "decnet_mutator_deckies_overdue"
)

type metrics struct {
	mutations *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	overdue   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricMutations,
			Help: "Mutation attempts by outcome (ok, failed) and trigger (scheduled, operator).",
		}, []string{"outcome", "trigger"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricDispatchDuration,
			Help:    "Time a dispatch to a target took, by outcome.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"outcome"}),
		overdue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricOverdue,
			Help: "Deckies due for rotation and not rotated yet, at the last evaluation.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.mutations, m.duration, m.overdue} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				return nil, fmt.Errorf("mutator metrics: %w: %w", decnet.ErrConflict, err)
			}
			return nil, fmt.Errorf("mutator metrics: %w", err)
		}
	}
	return m, nil
}
