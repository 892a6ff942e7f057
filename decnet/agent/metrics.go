package agent

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's Prometheus collectors, registered on the registry
// the caller passes in Config.Metrics (never the global one).
type metrics struct {
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	handshakes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "decnet", Subsystem: "agent", Name: "requests_total",
			Help: "Requests answered by the agent, by method, path and status code.",
		}, []string{"method", "path", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "decnet", Subsystem: "agent", Name: "request_duration_seconds",
			Help:    "Time to answer a request, by path.",
			Buckets: []float64{.001, .005, .025, .1, .5, 2.5, 10, 60, 300, 600},
		}, []string{"path"}),
		handshakes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "decnet", Subsystem: "agent", Name: "tls_handshakes_total",
			Help: "TLS handshakes completed (each new connection is one).",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.handshakes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(method, path string, status int, d time.Duration) {
	m.requests.WithLabelValues(method, path, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(path).Observe(d.Seconds())
}
