package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// asyncHandler moves log output off the event loops: a loop must never wait
// on stderr or a full pipe. Records are queued and written by one goroutine;
// when the queue is full the record is dropped and counted, because stalling
// thousands of sessions to keep a log line is the wrong trade.
type asyncHandler struct {
	inner   slog.Handler
	q       chan slog.Record
	dropped func()
	done    chan struct{}
	mu      *sync.RWMutex // Handle holds it shared so close never races a send
	closed  bool
}

func newAsyncHandler(inner slog.Handler, size int, dropped func()) *asyncHandler {
	h := &asyncHandler{inner: inner, q: make(chan slog.Record, size), dropped: dropped,
		done: make(chan struct{}), mu: new(sync.RWMutex)}
	go h.drain()
	return h
}

func (h *asyncHandler) drain() {
	defer close(h.done)
	for r := range h.q {
		_ = h.inner.Handle(context.Background(), r)
	}
}

func (h *asyncHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *asyncHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return nil
	}
	select {
	case h.q <- r.Clone():
	default:
		h.dropped()
	}
	return nil
}

// WithAttrs and WithGroup are not used by the engine's own loggers; a
// derived handler writes synchronously, which is correct, just not async.
func (h *asyncHandler) WithAttrs(as []slog.Attr) slog.Handler { return h.inner.WithAttrs(as) }

func (h *asyncHandler) WithGroup(name string) slog.Handler { return h.inner.WithGroup(name) }

// close flushes what is queued and stops the writer goroutine.
func (h *asyncHandler) close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.q)
	}
	h.mu.Unlock()
	<-h.done
}

// gnetLogger routes gnet's own messages into the engine's slog logger.
// gnet's "info" lines (its start banner) are debug noise for an operator.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) {
	g.l.Debug("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Infof(format string, args ...any) {
	g.l.Debug("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Warnf(format string, args ...any) {
	g.l.Warn("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Errorf(format string, args ...any) {
	g.l.Error("gnet: " + fmt.Sprintf(format, args...))
}
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.l.Error("gnet: " + fmt.Sprintf(format, args...))
}

// sampledLog keeps a class of warnings that an attacker can trigger at will
// (refused connections, malformed requests) from flooding the log: at most
// a burst of lines, then one per interval, each saying how many were
// suppressed since the last; the suppressed ones are counted too.
type sampledLog struct {
	lim        *rate.Limiter
	suppressed atomic.Int64
}

func newSampledLog() sampledLog {
	return sampledLog{lim: rate.NewLimiter(rate.Every(time.Second), 10)}
}

// logSampled writes msg through sl's limit.
func (srv *Server) logSampled(sl *sampledLog, level slog.Level, msg string, attrs ...slog.Attr) {
	if !sl.lim.Allow() {
		sl.suppressed.Add(1)
		srv.met.logLinesSampled.Inc()
		return
	}
	if n := sl.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Int64("suppressed_since_last", n))
	}
	srv.log.LogAttrs(context.Background(), level, msg, attrs...)
}
