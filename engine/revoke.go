package engine

import (
	"context"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

// Revocation (issue 11): routing tells the engine a token's hash when the
// token is revoked (the admin API, the Redis revoke channel, a key deleted
// in Redis, a token gone from the token file); every loop then ends the
// sessions that token opened, with 1008 "access revoked", and refuses the
// setups still running for it.

// revoked runs on whatever goroutine routing calls it from; it only hands
// the work to every loop.
func (srv *Server) revoked(tokenHash string) {
	if tokenHash == "" {
		return
	}
	srv.met.revocations.Inc()
	srv.forEachLoop(func(ls *loopState) {
		_ = ls.el.Execute(context.Background(), srv.guarded(func() { ls.endToken(tokenHash) }))
	})
}

// endToken ends this loop's sessions of one token.
func (ls *loopState) endToken(tokenHash string) {
	ls.sessions.each(func(s *session) {
		if s.tokenHash != tokenHash {
			return
		}
		switch s.state {
		case stResolving:
			s.failSetup(rejectRevoked, "token revoked while its route was looked up")
		case stDialing, stRFB, stRelaying:
			s.srv.log.Info("session revoked", "session", s.id, "client", s.remote, "token", tokenHash)
			s.closeWith(ws.StatusPolicyViolation, reasonRevoked, "access revoked")
		}
	})
}

// lookupKey names one series of vncedge_token_lookups_total.
type lookupKey struct {
	source string
	result routing.LookupResult
}

// observeLookup counts one source's answer in one lookup. routing calls it
// from workers and from the loops (fast lookups), so it only touches
// atomics and, the first time a source shows up, the metrics set.
func (srv *Server) observeLookup(source string, result routing.LookupResult, d time.Duration) {
	m := srv.met
	c, ok := m.lookups.Load(lookupKey{source, result})
	if !ok {
		c, _ = m.lookups.LoadOrStore(lookupKey{source, result}, m.set.GetOrCreateCounter(
			`vncedge_token_lookups_total{source="`+labelValue(source)+`",result="`+result.String()+`"}`))
	}
	c.(interface{ Inc() }).Inc()
	if result == routing.LookupCached {
		return // no source was asked: its latency would only dilute the figure
	}
	h, ok := m.lookupSeconds.Load(source)
	if !ok {
		h, _ = m.lookupSeconds.LoadOrStore(source, m.set.GetOrCreatePrometheusHistogramExt(
			`vncedge_token_lookup_duration_seconds{source="`+labelValue(source)+`"}`, lookupBuckets))
	}
	h.(interface{ Update(float64) }).Update(d.Seconds())
}

// lookupBuckets spans an in-memory hit (microseconds) to a lookup timeout.
var lookupBuckets = []float64{0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
