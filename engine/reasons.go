package engine

import (
	"context"
	"errors"
	"net/http"

	"vncedge/routing"
)

// closeReason classifies why a session ended; it labels
// vncedge_sessions_closed_total and appears in the close log line.
type closeReason uint8

const (
	reasonBrowserClosed closeReason = iota // browser sent a close frame
	reasonBrowserGone                      // browser socket ended without a close frame
	reasonVMClosed                         // VM closed its socket
	reasonVMError                          // VM socket failed (reset, ...)
	reasonDialFailed                       // VM unreachable or refused
	reasonIdleTimeout
	reasonPongTimeout
	reasonProtocolError    // bad frame (1002)
	reasonUnsupported      // text on a binary session or the reverse (1003)
	reasonBadData          // invalid UTF-8 / base64 (1007)
	reasonTooLarge         // frame over --max-frame (1009)
	reasonSlowConsumer     // over --max-buffered in either direction
	reasonShutdown         // drain timeout expired (1001)
	reasonMemoryBudget     // the process's queued bytes were over MemoryBudget (1008)
	reasonRevoked          // its token was revoked (1008)
	reasonExpired          // its grant expired, with --token-expiry-closes (1008)
	reasonOperator         // ended through the admin API (1008)
	reasonVMDrained        // its VM was drained through the admin API (1001)
	reasonVMHandshake      // the proxy's RFB handshake with the VM failed (refused credentials, not RFB)
	reasonHandshakeTimeout // an RFB handshake did not finish within --handshake-timeout
	reasonRFBError         // the browser sent RFB the proxy cannot follow (1008)
	reasonRecordFailed     // --record-required, and the recording failed (1011)
	numCloseReasons
)

// closeReasonNames are released metric label values: never rename one.
var closeReasonNames = [numCloseReasons]string{
	"client_closed", "client_gone", "upstream_closed", "upstream_error", "dial_failed",
	"idle_timeout", "pong_timeout", "protocol_error", "unsupported_data", "invalid_data",
	"frame_too_large", "slow_consumer", "shutdown", "memory_budget", "revoked", "expired",
	"operator", "vm_drained", "vm_handshake_failed", "rfb_handshake_timeout", "rfb_error",
	"record_failed",
}

func (r closeReason) String() string { return closeReasonNames[r] }

// rejectReason classifies upgrades that never became relaying sessions; it
// labels vncedge_upgrades_failed_total.
type rejectReason uint8

const (
	rejectBadRequest   rejectReason = iota // 400 and other malformed requests
	rejectMethod                           // 405
	rejectVersion                          // 426
	rejectTooLarge                         // 431
	rejectTimeout                          // handshake timeout (408)
	rejectNotFound                         // 404 unknown route
	rejectForbidden                        // 403 target not allowed
	rejectOrigin                           // 403 origin
	rejectUnknownToken                     // 404 unknown token
	rejectLookup                           // 502/504 token source failed
	rejectCapacity                         // 503 over --max-sessions
	rejectVMCap                            // 503 over --max-sessions-per-upstream
	rejectDraining                         // 503 shutting down
	rejectBrowserGone                      // browser left before the upgrade finished
	rejectRateLimited                      // 429 over --max-upgrades-per-ip
	rejectClientCap                        // 429 over --max-sessions-per-ip
	rejectHandshakes                       // 503 over the handshake limits (a PROXY header named a client at its limit)
	rejectDescriptors                      // 503 the descriptor budget is spent
	rejectStaticBusy                       // 503 too many static response bytes queued in all
	rejectInvalidToken                     // 403 a source knows the token and refuses it (bad signature, forbidden claim)
	rejectExpired                          // 403 the token is past its expiry or not yet valid
	rejectRevoked                          // 403 the token was revoked
	rejectTokenUsed                        // 403 --token-single-use, and the token was used
	rejectUnavailable                      // 503 a token store cannot be reached
	rejectVMDrained                        // 503 the VM is being drained (admin API)
	numRejectReasons
)

// rejections is the one table between reasons, HTTP statuses and what a
// browser may read: the public text never names an internal address, file
// or token (the detail goes to the log). Label names are released metric
// label values: never rename one.
var rejections = [numRejectReasons]struct {
	label  string
	status int
	public string // "" means the status text
}{
	rejectBadRequest:   {"bad_request", http.StatusBadRequest, "malformed request"},
	rejectMethod:       {"method_not_allowed", http.StatusMethodNotAllowed, ""},
	rejectVersion:      {"unsupported_version", http.StatusUpgradeRequired, ""},
	rejectTooLarge:     {"header_too_large", http.StatusRequestHeaderFieldsTooLarge, "request header fields too large"},
	rejectTimeout:      {"handshake_timeout", http.StatusRequestTimeout, "handshake timeout"},
	rejectNotFound:     {"not_found", http.StatusNotFound, ""},
	rejectForbidden:    {"forbidden", http.StatusForbidden, "target not allowed"},
	rejectOrigin:       {"origin", http.StatusForbidden, "origin not allowed"},
	rejectUnknownToken: {"unknown_token", http.StatusNotFound, "unknown token"},
	rejectLookup:       {"lookup_failed", http.StatusBadGateway, "token lookup failed"},
	rejectCapacity:     {"capacity", http.StatusServiceUnavailable, "server at capacity"},
	rejectVMCap:        {"upstream_capacity", http.StatusServiceUnavailable, "too many sessions for this VM"},
	rejectDraining:     {"draining", http.StatusServiceUnavailable, "server is draining"},
	rejectBrowserGone:  {"client_gone", 0, ""},
	rejectRateLimited:  {"rate_limited", http.StatusTooManyRequests, "too many connection attempts; try again shortly"},
	rejectClientCap:    {"client_capacity", http.StatusTooManyRequests, "too many sessions from your address"},
	rejectHandshakes:   {"handshakes", http.StatusServiceUnavailable, "server too busy"},
	rejectDescriptors:  {"descriptors", http.StatusServiceUnavailable, "server too busy"},
	rejectStaticBusy:   {"static_busy", http.StatusServiceUnavailable, "server too busy"},
	rejectInvalidToken: {"invalid_token", http.StatusForbidden, "invalid link"},
	rejectExpired:      {"token_expired", http.StatusForbidden, "expired link"},
	rejectRevoked:      {"token_revoked", http.StatusForbidden, "revoked link"},
	rejectTokenUsed:    {"token_used", http.StatusForbidden, "link already used"},
	rejectUnavailable:  {"store_unavailable", http.StatusServiceUnavailable, "try again shortly"},
	rejectVMDrained:    {"vm_drained", http.StatusServiceUnavailable, "this VM is in maintenance"},
}

func (r rejectReason) String() string { return rejections[r].label }

// status is the HTTP status a rejection answers with.
func (r rejectReason) status() int { return rejections[r].status }

// public is the text a browser gets for a rejection.
func (r rejectReason) public() string {
	if p := rejections[r].public; p != "" {
		return p
	}
	return http.StatusText(rejections[r].status)
}

// reasonForStatus classifies a status that gobwas/ws wrote itself: the
// first reason in the table with that status.
func reasonForStatus(status int) rejectReason {
	if status == http.StatusGatewayTimeout {
		return rejectLookup
	}
	for r := range numRejectReasons {
		if rejections[r].status == status {
			return r
		}
	}
	return rejectBadRequest
}

// routeReject classifies a routing error and gives the status to answer
// with: routing's own (a lookup that timed out is a 504), else the table's.
func routeReject(err error) (rejectReason, int) {
	var why rejectReason
	switch {
	case errors.Is(err, routing.ErrUnknownToken):
		why = rejectUnknownToken
	case errors.Is(err, routing.ErrRevoked):
		why = rejectRevoked
	case errors.Is(err, routing.ErrExpired):
		why = rejectExpired
	case errors.Is(err, routing.ErrTokenUsed):
		why = rejectTokenUsed
	case errors.Is(err, routing.ErrInvalidToken):
		why = rejectInvalidToken
	case errors.Is(err, routing.ErrUnavailable):
		why = rejectUnavailable
	case errors.Is(err, routing.ErrForbidden):
		why = rejectForbidden
	case errors.Is(err, routing.ErrNoRoute):
		why = rejectNotFound
	case errors.Is(err, routing.ErrLookup), errors.Is(err, context.DeadlineExceeded):
		why = rejectLookup
	default:
		why = rejectBadRequest
	}
	status := why.status()
	var re *routing.Error
	if errors.As(err, &re) && re.Status != 0 {
		status = re.Status
	}
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	return why, status
}

// shedReason classifies connections refused at accept, before any HTTP
// byte is read; it labels vncedge_connections_shed_total.
type shedReason uint8

const (
	shedNone             shedReason = iota
	shedDescriptors                 // the descriptor budget (RLIMIT_NOFILE) is spent
	shedHandshakes                  // too many connections in their handshake overall
	shedClientHandshakes            // too many from this address
	numShedReasons
)

var shedReasonNames = [numShedReasons]string{"", "descriptors", "handshakes", "client_handshakes"}

func (r shedReason) String() string { return shedReasonNames[r] }
