package routing

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
)

// mapSource is an in-memory TokenSource for tests. It counts as blocking
// (see fastSource) unless wrapped.
type mapSource struct {
	name    string
	m       map[string]string // token -> target
	g       map[string]Grant  // token -> grant, consulted before m
	err     error             // returned for every lookup when set
	lookups atomic.Int64
	// gate, when set, makes every lookup wait for it (or ctx).
	gate chan struct{}
}

func (s *mapSource) Name() string { return s.name }

func (s *mapSource) Lookup(ctx context.Context, token string) (Grant, error) {
	s.lookups.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return Grant{}, ctx.Err()
		}
	}
	if s.err != nil {
		return Grant{}, s.err
	}
	if g, ok := s.g[token]; ok {
		return g, nil
	}
	if hp, ok := s.m[token]; ok {
		return Grant{Target: hp}, nil
	}
	return Grant{}, ErrUnknownToken
}

// fastSource is a mapSource that declares itself NonBlocking.
type fastSource struct{ mapSource }

func (*fastSource) NonBlocking() {}

func addrString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return ""
	}
	return ap.String()
}

func newRouter(t testing.TB, cfg Config) *Router {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// wantError checks that err is an *Error with the status and sentinel.
func wantError(t testing.TB, err error, status int, sentinel error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *Error %d %v", err, err, status, sentinel)
	}
	if e.Status != status || !errors.Is(err, sentinel) {
		t.Fatalf("err = %d %q (%v), want %d %v", e.Status, e.Reason, e.Err, status, sentinel)
	}
	if e.Reason == "" {
		t.Fatalf("err %d %v has no reason", e.Status, e.Err)
	}
}
