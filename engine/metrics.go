package engine

import (
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// serverMetrics holds every series the engine exports. All are atomics
// underneath, so the event loops update them without locks; the set belongs
// to one Server so tests can run several servers in one process.
type serverMetrics struct {
	set *metrics.Set

	sessionsActive  *metrics.Gauge
	sessionsOpened  *metrics.Counter
	sessionsClosed  [numCloseReasons]*metrics.Counter
	upgradesFailed  [numRejectReasons]*metrics.Counter
	connectionsOpen *metrics.Gauge
	bytesToVM       *metrics.Counter
	bytesToBrowser  *metrics.Counter
	dialSeconds     *metrics.PrometheusHistogram
	sessionSeconds  *metrics.PrometheusHistogram
	backpressure    *metrics.Counter
	staticResponses *metrics.Counter
	reloads         *metrics.Counter
	reloadErrors    *metrics.Counter
	logLinesDropped *metrics.Counter
	pendingSetups   *metrics.Gauge
	panics          *metrics.Counter
	connectionsShed [numShedReasons]*metrics.Counter
	acceptErrors    *metrics.Counter
	enrollErrors    *metrics.Counter
	logLinesSampled *metrics.Counter
	budgetSheds     *metrics.Counter
}

func newServerMetrics() *serverMetrics {
	s := metrics.NewSet()
	m := &serverMetrics{
		set:             s,
		sessionsActive:  s.NewGauge("vncedge_sessions_active", nil),
		sessionsOpened:  s.NewCounter("vncedge_sessions_opened_total"),
		connectionsOpen: s.NewGauge("vncedge_connections_open", nil),
		bytesToVM:       s.NewCounter(`vncedge_relayed_bytes_total{direction="browser_to_vm"}`),
		bytesToBrowser:  s.NewCounter(`vncedge_relayed_bytes_total{direction="vm_to_browser"}`),
		dialSeconds: s.NewPrometheusHistogramExt("vncedge_upstream_dial_duration_seconds",
			[]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
		sessionSeconds: s.NewPrometheusHistogramExt("vncedge_session_duration_seconds",
			[]float64{0.1, 1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400}),
		backpressure:    s.NewCounter("vncedge_backpressure_pauses_total"),
		staticResponses: s.NewCounter("vncedge_static_responses_total"),
		reloads:         s.NewCounter("vncedge_reloads_total"),
		reloadErrors:    s.NewCounter("vncedge_reload_errors_total"),
		logLinesDropped: s.NewCounter("vncedge_log_lines_dropped_total"),
		pendingSetups:   s.NewGauge("vncedge_pending_setups", nil),
		panics:          s.NewCounter("vncedge_panics_total"),
		acceptErrors:    s.NewCounter("vncedge_accept_errors_total"),
		enrollErrors:    s.NewCounter("vncedge_enroll_errors_total"),
		logLinesSampled: s.NewCounter("vncedge_log_lines_suppressed_total"),
		budgetSheds:     s.NewCounter("vncedge_memory_budget_sheds_total"),
	}
	for r := shedNone + 1; r < numShedReasons; r++ {
		m.connectionsShed[r] = s.NewCounter(fmt.Sprintf(`vncedge_connections_shed_total{reason=%q}`, r.String()))
	}
	for r := range numCloseReasons {
		m.sessionsClosed[r] = s.NewCounter(fmt.Sprintf(`vncedge_sessions_closed_total{reason=%q}`, r.String()))
	}
	for r := range numRejectReasons {
		m.upgradesFailed[r] = s.NewCounter(fmt.Sprintf(`vncedge_upgrades_failed_total{reason=%q}`, r.String()))
	}
	return m
}

// writePrometheus writes the engine's series plus process and Go runtime
// metrics in Prometheus text format.
func (m *serverMetrics) writePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
}
