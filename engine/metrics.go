package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"vncedge/engine/tlsio"
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
	revocations     *metrics.Counter
	tlsFailures     *metrics.Counter
	tls             *tlsMetrics // nil without --tls-listen
	lookups         sync.Map    // lookupKey -> *metrics.Counter
	lookupSeconds   sync.Map    // source -> *metrics.PrometheusHistogram
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
		revocations:     s.NewCounter("vncedge_token_revocations_total"),
		tlsFailures:     s.NewCounter("vncedge_tls_handshake_failures_total"),
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

// Build names the running binary in vncedge_build_info. cmd/vncedge fills
// it from the version stamped at link time; an empty field is exported as
// "unknown", so the series always exists and a dashboard can join on it.
type Build struct {
	Version string // `git describe --tags --always --dirty`, e.g. v0.3.0-4-gabc1234
	Commit  string // full commit hash
}

// registerServer adds the series that describe the server rather than its
// traffic: what binary runs, and the configured limits, so capacity alerts
// compare usage with the limit in force instead of a number copied into the
// alert. The limit gauges read the server's settings on every scrape.
func (m *serverMetrics) registerServer(s *Server) {
	b := s.cfg.Build
	m.set.NewGauge(fmt.Sprintf(`vncedge_build_info{version=%q,commit=%q,go=%q}`,
		labelValue(b.Version), labelValue(b.Commit), labelValue(runtime.Version())), func() float64 { return 1 })
	m.set.NewGauge("vncedge_limit_max_sessions", func() float64 { return float64(s.current().MaxSessions) })
	m.set.NewGauge("vncedge_limit_max_sessions_per_upstream", func() float64 { return float64(s.current().MaxSessionsPerVM) })
	m.set.NewGauge("vncedge_limit_max_frame_bytes", func() float64 { return float64(s.cfg.MaxFrame) })
	m.set.NewGauge("vncedge_limit_max_buffered_bytes", func() float64 { return float64(s.cfg.MaxBuffered) })
	m.set.NewGauge("vncedge_limit_max_pending_setups", func() float64 { return float64(cap(s.setups)) })
	m.set.NewGauge("vncedge_limit_max_sessions_per_ip", func() float64 { return float64(s.current().MaxSessionsPerIP) })
	m.set.NewGauge("vncedge_limit_max_upgrades_per_ip_per_second", func() float64 { return s.current().UpgradeRate })
	// s.maxHandshakes, not the flag: 0 there means a quarter of the descriptors.
	m.set.NewGauge("vncedge_limit_max_handshakes", func() float64 { return float64(s.maxHandshakes.Load()) })
	m.set.NewGauge("vncedge_limit_max_handshakes_per_ip", func() float64 { return float64(s.current().MaxHandshakesPerIP) })
	m.set.NewGauge("vncedge_limit_memory_budget_bytes", func() float64 { return float64(s.cfg.MemoryBudget) })
}

// labelValue keeps a build string to the characters a version or commit is
// made of, so a stray quote or newline from a build script can neither
// break the exposition nor make the metrics library panic on the name.
func labelValue(v string) string {
	if v == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-+_~/()", r):
			return r
		}
		return '_'
	}, v)
}

// metricHelp is the HELP text of each family the engine exports (docs/metrics.md
// says the same at more length; a test keeps the two in step).
func metricHelp(family string) string {
	switch family {
	case "vncedge_sessions_active":
		return "Sessions past the WebSocket upgrade and not yet closed."
	case "vncedge_sessions_opened_total":
		return "Sessions that started relaying."
	case "vncedge_sessions_closed_total":
		return "Sessions that ended, by reason."
	case "vncedge_upgrades_failed_total":
		return "WebSocket upgrades that never became sessions, by reason."
	case "vncedge_connections_open":
		return "Browser sockets open, including those still in their HTTP request."
	case "vncedge_relayed_bytes_total":
		return "WebSocket payload bytes relayed, by direction."
	case "vncedge_upstream_dial_duration_seconds":
		return "Time to connect to the VNC server."
	case "vncedge_session_duration_seconds":
		return "Lifetime of sessions that ended."
	case "vncedge_backpressure_pauses_total":
		return "Times one side of a session stopped being read because the other side fell behind."
	case "vncedge_static_responses_total":
		return "Static file responses on the listen port."
	case "vncedge_reloads_total":
		return "Reloads (SIGHUP) attempted."
	case "vncedge_reload_errors_total":
		return "Reloads that failed; the previous routing stays in use."
	case "vncedge_log_lines_dropped_total":
		return "Log lines dropped because the log writer fell behind."
	case "vncedge_pending_setups":
		return "Route lookups and VNC server dials in flight."
	case "vncedge_panics_total":
		return "Panics recovered while handling one connection (a bug: that connection was dropped)."
	case "vncedge_upstreams_active":
		return "Distinct VNC servers with at least one session."
	case "vncedge_draining":
		return "1 while the server drains for shutdown, else 0."
	case "vncedge_build_info":
		return "Always 1; the labels name the running binary."
	case "vncedge_limit_max_sessions":
		return "Configured --max-sessions (0: no limit)."
	case "vncedge_limit_max_sessions_per_upstream":
		return "Configured --max-sessions-per-upstream (0: no limit)."
	case "vncedge_limit_max_frame_bytes":
		return "Configured --max-frame in bytes (0: no limit)."
	case "vncedge_limit_max_buffered_bytes":
		return "Configured --max-buffered in bytes per session and direction (0: no limit)."
	case "vncedge_limit_max_sessions_per_ip":
		return "Configured --max-sessions-per-ip (0: no limit)."
	case "vncedge_limit_max_upgrades_per_ip_per_second":
		return "Configured --max-upgrades-per-ip as a rate per second (0: no limit)."
	case "vncedge_limit_max_handshakes":
		return "Connections not yet relaying that may be open at once (--max-handshakes, or a quarter of the descriptors)."
	case "vncedge_limit_max_handshakes_per_ip":
		return "Configured --max-handshakes-per-ip (0: no limit)."
	case "vncedge_handshakes_active":
		return "Connections not yet relaying: HTTP requests, static files, setups."
	case "vncedge_connections_shed_total":
		return "Connections refused at accept, before any byte was read, by reason."
	case "vncedge_descriptors_used":
		return "File descriptors the engine holds for connections (its budget's use)."
	case "vncedge_descriptors_limit":
		return "The engine's descriptor budget, from RLIMIT_NOFILE."
	case "vncedge_accept_errors_total":
		return "Errors from accepting a connection (the listener goes on)."
	case "vncedge_enroll_errors_total":
		return "Sockets that could not be handed to an event loop (the connection was closed)."
	case "vncedge_log_lines_suppressed_total":
		return "Repeated log lines left out by sampling (floods of the same refusal)."
	case "vncedge_queued_bytes":
		return "Bytes queued for slow or stalled peers in all sessions together."
	case "vncedge_memory_budget_sheds_total":
		return "Sessions closed (1008) because the queues of all sessions went over --memory-budget."
	case "vncedge_limit_memory_budget_bytes":
		return "Configured --memory-budget in bytes (0: no limit)."
	case "vncedge_token_lookups_total":
		return "Answers of each token source in route lookups, by source and result (cached: the cache answered for it)."
	case "vncedge_token_lookup_duration_seconds":
		return "Time a token source took to answer one lookup, by source (cached answers not included)."
	case "vncedge_token_revocations_total":
		return "Token revocations seen (admin API, Redis, token file reload); their sessions end with 1008."
	case "vncedge_tls_handshake_failures_total":
		return "TLS handshakes from browsers that failed (bad ClientHello, no shared version or suite, a refused client certificate, a timeout)."
	case "vncedge_tls_handshakes_total":
		return "TLS handshakes from browsers handed to a worker."
	case "vncedge_tls_handshakes_running":
		return "TLS handshakes running on workers now."
	case "vncedge_tls_handshakes_queued":
		return "TLS handshakes waiting for a worker."
	case "vncedge_tls_handshakes_rejected_total":
		return "TLS handshakes refused because every worker and the queue were busy."
	case "vncedge_tls_certificate_reloads_total":
		return "Certificate reloads that replaced the certificates in use."
	case "vncedge_tls_certificate_reload_errors_total":
		return "Certificate reloads that failed; the previous certificates stay in use."
	case "vncedge_recordings_started_total":
		return "Session recordings started."
	case "vncedge_recordings_completed_total":
		return "Recordings that ended with their session, whole."
	case "vncedge_recordings_truncated_total":
		return "Recordings cut because the disk fell behind (queue full)."
	case "vncedge_recordings_failed_total":
		return "Recordings cut by an error (a file not created or written)."
	case "vncedge_recordings_active":
		return "Recordings in progress."
	case "vncedge_recording_bytes_written_total":
		return "Bytes written to recording files."
	case "vncedge_recording_pixel_format_changes_total":
		return "Clients that changed their pixel format mid-recording."
	case "vncedge_recording_queued_bytes":
		return "Recording bytes waiting for the disk, in all."
	case "vncedge_recording_queue_high_water_bytes":
		return "The largest queue one recording reached."
	case "vncedge_limit_max_pending_setups":
		return "Route lookups and dials that may run at once; more get 503 (reason capacity)."
	}
	return ""
}

// writePrometheus writes the engine's series plus process and Go runtime
// metrics in Prometheus text format. HELP and TYPE lines appear when the
// program turned them on with metrics.ExposeMetadata (a switch of the whole
// process, so cmd/vncedge sets it once in main, not each Server); the
// library writes HELP lines without text, so the engine's own families get
// theirs from metricHelp here.
func (m *serverMetrics) writePrometheus(w io.Writer) {
	var buf bytes.Buffer
	m.set.WritePrometheus(&buf)
	bw := bufio.NewWriter(w)
	for rest := buf.Bytes(); len(rest) > 0; {
		line, tail, _ := bytes.Cut(rest, []byte("\n"))
		rest = tail
		bw.Write(line)
		if family, ok := bytes.CutPrefix(line, []byte("# HELP ")); ok && bytes.IndexByte(family, ' ') < 0 {
			if h := metricHelp(string(family)); h != "" {
				bw.WriteByte(' ')
				bw.WriteString(h)
			}
		}
		bw.WriteByte('\n')
	}
	bw.Flush()
	metrics.WriteProcessMetrics(w)
	// process_open_fds and process_max_fds: every session holds two or three
	// descriptors, so this is the capacity figure operators alert on. It
	// lists /proc/self/fd (a few ms at 100,000 descriptors), on the admin
	// goroutine, once per scrape.
	metrics.WriteFDMetrics(w)
}

// tlsMetrics mirrors engine/tlsio's counters, copied on every tick (the
// pool and the store count with their own atomics).
type tlsMetrics struct {
	handshakes, rejected, reloads, reloadErrors *metrics.Counter
}

// registerTLSMetrics exports the TLS layer's own counters and gauges (all
// of them even without --tls-listen, at 0, so dashboards need no case).
func (s *Server) registerTLSMetrics() {
	set := s.met.set
	s.met.tls = &tlsMetrics{
		handshakes:   set.NewCounter("vncedge_tls_handshakes_total"),
		rejected:     set.NewCounter("vncedge_tls_handshakes_rejected_total"),
		reloads:      set.NewCounter("vncedge_tls_certificate_reloads_total"),
		reloadErrors: set.NewCounter("vncedge_tls_certificate_reload_errors_total"),
	}
	pool := func() tlsio.PoolStats {
		if s.tlsPool == nil {
			return tlsio.PoolStats{}
		}
		return s.tlsPool.Stats()
	}
	set.NewGauge("vncedge_tls_handshakes_running", func() float64 { return float64(pool().Running) })
	set.NewGauge("vncedge_tls_handshakes_queued", func() float64 { return float64(pool().Queued) })
}

// copyTLSStats runs on the ticker.
func (s *Server) copyTLSStats() {
	if s.tlsPool == nil {
		return
	}
	ps, st := s.tlsPool.Stats(), s.tlsStore.Stats()
	s.met.tls.handshakes.Set(ps.Started)
	s.met.tls.rejected.Set(ps.Rejected)
	s.met.tls.reloads.Set(st.Reloads)
	s.met.tls.reloadErrors.Set(st.Failures)
}
