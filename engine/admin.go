package engine

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/net/netutil"

	"vncedge/routing"
)

// startAdmin serves /metrics, /healthz, /readyz (and pprof when enabled) on
// a plain net/http listener, kept apart from the public port so it can stay
// on 127.0.0.1 or an internal network. Listen has bound its socket.
func (s *Server) startAdmin() {
	var ln net.Listener = s.adminSock
	if s.cfg.MaxAdminConns > 0 {
		ln = netutil.LimitListener(ln, s.cfg.MaxAdminConns)
	}
	s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() { _ = s.admin.Serve(ln) }()
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
	// The live-session API (CONTRACT.md, docs/reference.md).
	mux.HandleFunc("GET /sessions", s.adminListSessions)
	mux.HandleFunc("DELETE /sessions/{id}", s.adminCloseSession)
	mux.HandleFunc("/targets/{target...}", s.adminTarget)
	mux.HandleFunc("POST /tokens/revoke", s.adminRevoke)
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return s.adminAuth(mux)
}

// adminAuth requires the --admin-token-file bearer token on every request
// but /healthz and /readyz (load balancers and Kubernetes probes carry no
// secret), once the file is configured.
func (s *Server) adminAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if want := s.adminToken.Load(); want != nil && r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(*want)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="vncedge admin"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// loadAdminToken reads --admin-token-file (one line; surrounding white
// space ignored). An empty file is refused: it would mean "no secret".
func loadAdminToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, "\r\n") {
		return "", fmt.Errorf("admin token file %s: want one non-empty line", path)
	}
	return tok, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) adminListSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list, err := s.Sessions(r.Context(), q.Get("target"), q.Get("token"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (s *Server) adminCloseSession(w http.ResponseWriter, r *http.Request) {
	ok, err := s.CloseSession(r.Context(), r.PathValue("id"))
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case !ok:
		http.Error(w, "no such session", http.StatusNotFound)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"closed": r.PathValue("id")})
	}
}

// adminTarget serves POST (drain) and DELETE (undrain) of
// /targets/{host:port}/drain; a unix:/path target keeps its slashes.
func (s *Server) adminTarget(w http.ResponseWriter, r *http.Request) {
	target, ok := strings.CutSuffix(r.PathValue("target"), "/drain")
	if !ok || target == "" {
		http.Error(w, "want /targets/{host:port}/drain", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodPost:
		keys, ended, err := s.DrainVM(r.Context(), target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"drained": keys, "sessions_ended": ended})
	case http.MethodDelete:
		keys, err := s.UndrainVM(r.Context(), target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"undrained": keys})
	default:
		w.Header().Set("Allow", "POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// adminRevoke revokes the token in the request body: its sessions end on
// every instance (through Redis when configured), and it is refused.
func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	token := strings.TrimSpace(string(body))
	if token == "" {
		http.Error(w, "the body must be the token", http.StatusBadRequest)
		return
	}
	hash := routing.TokenHash(token)
	if err := s.router.Revoke(r.Context(), token); err != nil {
		// Revoked here anyway; other instances may not know.
		writeJSON(w, http.StatusAccepted, map[string]any{"revoked": hash, "warning": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"revoked": hash})
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
