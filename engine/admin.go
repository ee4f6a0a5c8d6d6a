package engine

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// startAdmin serves /metrics, /healthz, /readyz (and pprof when enabled) on
// a plain net/http listener, kept apart from the public port so it can stay
// on 127.0.0.1 or an internal network.
func (s *Server) startAdmin() error {
	ln, err := net.Listen("tcp", s.cfg.Admin)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	s.adminLn = ln
	s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.admin.Serve(ln) }()
	return nil
}

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.met.writePrometheus(w)
	})
	// healthz: the process is alive and every event loop runs a task
	// within a second; a wedged loop freezes its sessions, so say so.
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !s.booted.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if err := s.pingLoops(r.Context(), time.Second); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	// readyz: send new sessions here. Fails while starting and draining, so
	// a load balancer stops routing to an instance before it closes sessions.
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case !s.booted.Load():
			http.Error(w, "starting", http.StatusServiceUnavailable)
		case s.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		default:
			fmt.Fprintf(w, "ready: %d sessions\n", s.limits.sessions())
		}
	})
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// pingLoops runs a no-op on every known event loop and waits for all of them.
func (s *Server) pingLoops(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var want int
	var got atomic.Int32
	done := make(chan struct{}, 64)
	s.forEachLoop(func(ls *loopState) {
		want++
		_ = ls.el.Execute(ctx, gnet.RunnableFunc(func(context.Context) error {
			got.Add(1)
			select {
			case done <- struct{}{}:
			default:
			}
			return nil
		}))
	})
	for int(got.Load()) < want {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d event loops did not answer within %v", want-int(got.Load()), want, timeout)
		}
	}
	return nil
}
