package routing

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// mapSource is an in-memory TokenSource for tests.
type mapSource struct {
	name    string
	m       map[string]string
	err     error // returned for every lookup when set
	lookups atomic.Int64
}

func (s *mapSource) Name() string { return s.name }

func (s *mapSource) Lookup(ctx context.Context, token string) (string, error) {
	s.lookups.Add(1)
	if s.err != nil {
		return "", s.err
	}
	if hp, ok := s.m[token]; ok {
		return hp, nil
	}
	return "", ErrUnknownToken
}

func newRouter(t testing.TB, cfg Config) *Router {
	t.Helper()
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
