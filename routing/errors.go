package routing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// Sentinels for errors.Is. Every error this package returns to the engine is
// an *Error whose Err chain holds one of them (ErrUnavailable comes together
// with ErrLookup, so code that knows only ErrLookup still maps it).
var (
	ErrNoRoute      = errors.New("no route")                // 404: neither the path-route prefix nor the token path
	ErrBadTarget    = errors.New("bad target")              // 400: /vnc/ with a malformed ip[:port]
	ErrMissingToken = errors.New("missing token")           // 400: token path without a usable token
	ErrUnknownToken = errors.New("unknown token")           // 404: no source knows the token
	ErrInvalidToken = errors.New("invalid token")           // 403: a source recognised the token and refused it (bad signature, forbidden claim)
	ErrExpired      = errors.New("token expired")           // 403: past its expiry, or not valid yet
	ErrRevoked      = errors.New("token revoked")           // 403: revoked (Router.Revoke, the Redis revoke channel)
	ErrTokenUsed    = errors.New("token already used")      // 403: --token-single-use and the token opened a session before
	ErrForbidden    = errors.New("forbidden")               // 403: the target is not allowed
	ErrLookup       = errors.New("lookup failed")           // 502; 503 with ErrUnavailable; 504 when a deadline hit
	ErrUnavailable  = errors.New("token store unavailable") // 503: the store cannot be reached (always with ErrLookup)
)

// ErrWouldBlock is returned by Router.ResolveFast when the answer needs I/O
// (a remote source, DNS, a remote single-use claim): call Resolve off the
// event loop instead. It is not an *Error and never reaches a client.
var ErrWouldBlock = errors.New("routing: answer needs I/O; call Resolve off the event loop")

// Error carries the HTTP status the proxy answers with (before the WebSocket
// upgrade) and a reason for the log. The reason may name internal addresses,
// so it belongs in the log, not in the response body (see PublicReason); it
// never holds a token or a password.
type Error struct {
	Status int
	Reason string
	Err    error
}

func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Reason
	case e.Reason == "":
		return e.Err.Error()
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// PublicReason is the text a client may see for err: one generic phrase per
// sentinel, so a response never echoes the allow-list, a source's address or
// the token. Everything else is for the log (Error.Reason).
func PublicReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnknownToken), errors.Is(err, ErrInvalidToken), errors.Is(err, ErrExpired),
		errors.Is(err, ErrRevoked), errors.Is(err, ErrTokenUsed):
		return "unknown or expired link"
	case errors.Is(err, ErrForbidden):
		return "target not allowed"
	case errors.Is(err, ErrLookup):
		return "token lookup failed"
	case errors.Is(err, ErrMissingToken):
		return "missing token"
	case errors.Is(err, ErrBadTarget):
		return "bad target"
	case errors.Is(err, ErrNoRoute):
		return "not found"
	}
	var e *Error
	if errors.As(err, &e) && http.StatusText(e.Status) != "" {
		return http.StatusText(e.Status)
	}
	return "request refused"
}

func newError(status int, sentinel error, reason string) *Error {
	return &Error{Status: status, Reason: reason, Err: sentinel}
}

func forbidden(reason string) *Error {
	return newError(http.StatusForbidden, ErrForbidden, reason)
}

func badTarget(reason string) *Error {
	return newError(http.StatusBadRequest, ErrBadTarget, reason)
}

// lookupError makes the answer for a failed source or resolver: 504 when a
// deadline hit, 503 when the store is unreachable, else 502.
func lookupError(reason string, err error) *Error {
	status := http.StatusBadGateway
	switch {
	case isTimeout(err):
		status = http.StatusGatewayTimeout
	case errors.Is(err, ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	if errors.Is(err, ErrLookup) {
		return &Error{Status: status, Reason: reason, Err: err}
	}
	return &Error{Status: status, Reason: reason, Err: fmt.Errorf("%w: %w", ErrLookup, err)}
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

// unavailable marks a source's error as "the store cannot be reached" (503).
func unavailable(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }

// refused makes the 403 for a token a source knows but will not honour.
func refused(sentinel error, reason string) *Error {
	return newError(http.StatusForbidden, sentinel, reason)
}

func withReasonPrefix(err error, prefix string) error {
	var e *Error
	if errors.As(err, &e) {
		return &Error{Status: e.Status, Reason: prefix + ": " + e.Reason, Err: e.Err}
	}
	return err
}

// TokenHashLen is the length of TokenHash's result.
const TokenHashLen = 16

// TokenHash is a stable digest of a token for logs, metrics, the admin API
// and revocation: 16 hex digits (64 bits) of its SHA-256, enough to match a
// session to its token among millions without collisions in practice, and
// useless to replay.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:TokenHashLen/2])
}
