package routing

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
)

// Sentinels for errors.Is. Every error this package returns to the engine is
// an *Error whose Err chain holds one of them.
var (
	ErrNoRoute      = errors.New("no route")      // 404: neither the path-route prefix nor the token path
	ErrBadTarget    = errors.New("bad target")    // 400: /vnc/ with a malformed ip[:port]
	ErrMissingToken = errors.New("missing token") // 400: token path without a usable token
	ErrUnknownToken = errors.New("unknown token") // 404: no source knows the token
	ErrForbidden    = errors.New("forbidden")     // 403: the target is not allowed
	ErrLookup       = errors.New("lookup failed") // 502, or 504 when the context deadline hit
)

// Error carries the HTTP status the proxy answers with (before the WebSocket
// upgrade) and a reason for the log. The reason may name internal addresses,
// so it belongs in the log, not in the response body; it never holds a token.
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

func newError(status int, sentinel error, reason string) *Error {
	return &Error{Status: status, Reason: reason, Err: sentinel}
}

func forbidden(reason string) *Error {
	return newError(http.StatusForbidden, ErrForbidden, reason)
}

func badTarget(reason string) *Error {
	return newError(http.StatusBadRequest, ErrBadTarget, reason)
}

// TokenHash is a short, stable digest of a token (8 hex digits of its SHA-256)
// for logs and metrics: enough to correlate lines, useless to replay.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:4])
}
