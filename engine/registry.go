package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// The admin API's view of sessions. There is no process-wide index of
// sessions: every request (list, close one, drain a VM) runs on every loop
// with Execute and looks through that loop's sessions, which costs the
// loops a few microseconds per thousand sessions per request and costs an
// idle session nothing (a global map was 128 bytes per session and a lock
// on every setup and end).

// SessionInfo is one session as the admin API shows it.
type SessionInfo struct {
	ID             string    `json:"id"`
	Client         string    `json:"client"`
	Route          string    `json:"route"`
	Target         string    `json:"target"`
	VM             string    `json:"vm"`
	Token          string    `json:"token,omitempty"` // the token's hash, never the token
	State          string    `json:"state"`
	ViewOnly       bool      `json:"view_only"`
	Recording      bool      `json:"recording"`
	BytesToVM      int64     `json:"bytes_to_vm"`
	BytesToBrowser int64     `json:"bytes_to_browser"`
	Started        time.Time `json:"started"`
}

func (s *session) info() SessionInfo {
	return SessionInfo{
		ID: s.id, Client: s.remote, Route: s.routeKind.String(), Target: s.targetName,
		VM: s.slots.vm, Token: s.tokenHash, State: s.state.String(),
		ViewOnly: s.rfb != nil && s.rfb.viewOnly, Recording: s.rfb != nil && s.rfb.rec != nil,
		BytesToVM: s.toVM, BytesToBrowser: s.toBrowser, Started: time.Unix(0, s.started).UTC(),
	}
}

// onLoops runs f on every loop and waits (up to timeout) for all of them.
func (srv *Server) onLoops(ctx context.Context, timeout time.Duration, f func(*loopState)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	srv.forEachLoop(func(ls *loopState) {
		wg.Add(1)
		if err := ls.el.Execute(ctx, srv.guarded(func() { defer wg.Done(); f(ls) })); err != nil {
			wg.Done()
		}
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("event loops did not answer within %v", timeout)
	}
}

// Sessions lists the sessions that match target (a VM key or the target as
// named; "" for all) and tokenHash ("" for all), oldest first.
func (srv *Server) Sessions(ctx context.Context, target, tokenHash string) ([]SessionInfo, error) {
	var mu sync.Mutex
	out := []SessionInfo{}
	err := srv.onLoops(ctx, 2*time.Second, func(ls *loopState) {
		ls.sessions.each(func(s *session) {
			if s.state >= stClosed || (tokenHash != "" && s.tokenHash != tokenHash) ||
				(target != "" && s.slots.vm != target && s.targetName != target) {
				return
			}
			in := s.info()
			mu.Lock()
			out = append(out, in)
			mu.Unlock()
		})
	})
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, err
}

// CloseSession ends one session with 1008 "closed by operator"; false
// means there is no such session.
func (srv *Server) CloseSession(ctx context.Context, id string) (bool, error) {
	var found atomic.Bool
	err := srv.onLoops(ctx, 2*time.Second, func(ls *loopState) {
		ls.sessions.each(func(s *session) {
			if s.id != id || s.state >= stClosing {
				return
			}
			found.Store(true)
			srv.log.Info("session closed by operator", "session", s.id, "client", s.remote)
			if s.state == stResolving {
				s.failSetup(rejectForbidden, "closed by operator during setup")
			} else {
				s.closeWith(ws.StatusPolicyViolation, reasonOperator, "closed by operator")
			}
		})
	})
	return found.Load(), err
}

// vmKeys turns an operator's "host:port" or "unix:/path" into the VM keys
// the per-VM limit uses (resolved addresses), so draining a VM by name
// reaches the sessions that dialled its address.
func vmKeys(ctx context.Context, target string) ([]string, error) {
	if strings.HasPrefix(target, "unix:") {
		return []string{target}, nil
	}
	if ap, err := netip.ParseAddrPort(target); err == nil {
		return []string{netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()}, nil
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: want host:port or unix:/path", target)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	keys := make([]string, 0, len(addrs))
	for _, a := range addrs {
		keys = append(keys, net.JoinHostPort(a.Unmap().String(), port))
	}
	return keys, nil
}

// DrainVM refuses new sessions to the VM target and ends its running ones
// with 1001, until UndrainVM; it returns the VM keys drained and how many
// sessions it ended.
func (srv *Server) DrainVM(ctx context.Context, target string) ([]string, int, error) {
	keys, err := vmKeys(ctx, target)
	if err != nil {
		return nil, 0, err
	}
	for _, k := range keys {
		srv.drainedVMs.Store(k, struct{}{})
	}
	var mu sync.Mutex
	ended := 0
	err = srv.onLoops(ctx, 2*time.Second, func(ls *loopState) {
		n := 0
		ls.sessions.each(func(s *session) {
			for _, k := range keys {
				if s.slots.vm == k && (s.state == stDialing || s.state == stRFB || s.state == stRelaying) {
					s.closeWith(ws.StatusGoingAway, reasonVMDrained, "VNC server in maintenance")
					n++
				}
			}
		})
		mu.Lock()
		ended += n
		mu.Unlock()
	})
	srv.log.Info("VM drained", "vm", target, "keys", strings.Join(keys, ","), "sessions_ended", ended)
	return keys, ended, err
}

// UndrainVM lets sessions reach the VM target again.
func (srv *Server) UndrainVM(ctx context.Context, target string) ([]string, error) {
	keys, err := vmKeys(ctx, target)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		srv.drainedVMs.Delete(k)
	}
	srv.log.Info("VM undrained", "vm", target, "keys", strings.Join(keys, ","))
	return keys, nil
}

func (srv *Server) vmDrained(key string) bool {
	_, ok := srv.drainedVMs.Load(key)
	return ok
}
