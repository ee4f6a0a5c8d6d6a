package engine

import (
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// closeReason classifies why a session ended; it labels
// vncedge_sessions_closed_total and appears in the close log line.
type closeReason uint8

const (
	reasonClientClosed   closeReason = iota // browser sent a close frame
	reasonClientGone                        // browser socket ended without a close frame
	reasonUpstreamClosed                    // VM closed its socket
	reasonUpstreamError                     // VM socket failed (reset, ...)
	reasonDialFailed                        // VM unreachable or refused
	reasonIdleTimeout
	reasonPongTimeout
	reasonProtocolError // bad frame (1002)
	reasonUnsupported   // text on a binary session or the reverse (1003)
	reasonBadData       // invalid UTF-8 / base64 (1007)
	reasonTooLarge      // frame over --max-frame (1009)
	reasonSlowConsumer  // over --max-buffered in either direction
	reasonShutdown      // drain timeout expired (1001)
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"client_closed", "client_gone", "upstream_closed", "upstream_error", "dial_failed",
	"idle_timeout", "pong_timeout", "protocol_error", "unsupported_data", "invalid_data",
	"frame_too_large", "slow_consumer", "shutdown",
}

func (r closeReason) String() string { return closeReasonNames[r] }

// rejectReason classifies upgrades that never became sessions; it labels
// vncedge_upgrades_failed_total.
type rejectReason uint8

const (
	rejectBadRequest   rejectReason = iota // 400 and other malformed requests
	rejectMethod                           // 405
	rejectVersion                          // 426
	rejectTooLarge                         // 431
	rejectTimeout                          // handshake timeout (408)
	rejectNotFound                         // 404 unknown route
	rejectForbidden                        // 403 target not allowed
	rejectOrigin                           // 403 origin
	rejectUnknownToken                     // 404 unknown token
	rejectLookup                           // 502/504 token source failed
	rejectCapacity                         // 503 over --max-sessions
	rejectUpstreamCap                      // 503 over --max-sessions-per-upstream
	rejectDraining                         // 503 shutting down
	rejectClientGone                       // browser left before the upgrade finished
	numRejectReasons
)

var rejectReasonNames = [numRejectReasons]string{
	"bad_request", "method_not_allowed", "unsupported_version", "header_too_large", "handshake_timeout",
	"not_found", "forbidden", "origin", "unknown_token", "lookup_failed", "capacity",
	"upstream_capacity", "draining", "client_gone",
}

func (r rejectReason) String() string { return rejectReasonNames[r] }

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
	bytesToUpstream *metrics.Counter
	bytesToClient   *metrics.Counter
	dialSeconds     *metrics.PrometheusHistogram
	sessionSeconds  *metrics.PrometheusHistogram
	backpressure    *metrics.Counter
	staticResponses *metrics.Counter
	reloads         *metrics.Counter
	reloadErrors    *metrics.Counter
	logLinesDropped *metrics.Counter
	pendingSetups   *metrics.Gauge
	panics          *metrics.Counter
}

func newServerMetrics() *serverMetrics {
	s := metrics.NewSet()
	m := &serverMetrics{
		set:             s,
		sessionsActive:  s.NewGauge("vncedge_sessions_active", nil),
		sessionsOpened:  s.NewCounter("vncedge_sessions_opened_total"),
		connectionsOpen: s.NewGauge("vncedge_connections_open", nil),
		bytesToUpstream: s.NewCounter(`vncedge_relayed_bytes_total{direction="browser_to_vm"}`),
		bytesToClient:   s.NewCounter(`vncedge_relayed_bytes_total{direction="vm_to_browser"}`),
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
