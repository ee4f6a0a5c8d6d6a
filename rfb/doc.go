// Package rfb is the RFB (VNC, RFC 6143) codec of vncedge: pure functions and small state
// machines over byte slices that the caller owns, for the parts of the protocol a proxy needs.
//
//   - version.go: ProtocolVersion parse/format, which versions are spoken with which peers, and
//     a clear ErrNotRFB for a peer speaking HTTP, TLS, SSH or anything else.
//   - security.go, vncauth.go, vencrypt.go: security type lists (3.7+) and 3.3's single type,
//     SecurityResult with the 3.8 reason, the refusal a server sends to explain a failure, VNC
//     Authentication's DES challenge-response, and VeNCrypt's sub-type negotiation.
//   - init.go: ClientInit (and ForceShared), ServerInit, PixelFormat.
//   - vmhandshake.go, browserhandshake.go: the proxy's two handshakes, as client towards the VM
//     (credential injection) and as server towards the browser (security type None, or a
//     refusal with a reason noVNC shows).
//   - scanner.go, kind.go: a Scanner that follows client-to-server messages across arbitrary
//     chunk boundaries, to observe input events and to filter messages out in place (view-only).
//   - fbs.go: the FBS 001.000 recording format and the synthesized handshake that makes a
//     recording playable.
//   - messages.go: message numbers and builders for client messages.
//
// Nothing here does I/O, starts a goroutine or holds a package-level variable, so the engine
// runs it on the event loop, fed with bytes as they arrive (one at a time is fine: every parser
// returns ErrShort with the length it needs, and the state machines carry partial fields).
//
// These calls allocate nothing (alloc_test.go enforces the list): Scanner.Scan and Scanner.Filter
// (with an observer that does not allocate), the Message accessors, ParseVersion,
// CheckVersionPrefix and AppendVersion into a buffer with room, ParseSecurityTypes,
// ParseSecurityType33, ParseReason, ParseSecurityResult, ParseVeNCryptSubtypes, ParseClientInit,
// ForceShared, ParseSetPixelFormat, GetPixelFormat, PixelFormat.Put and Pixel, FBSDecoder.Next,
// AppendFBSBlockHead, AppendFBSBlockTail and AppendFBSBlock into a buffer with room,
// BrowserHandshake.Feed (both modes), VMHandshake.Feed with a VM using security type None, and both
// machines' AppendOutput into a buffer with room. VNC Authentication (crypto/des), ParseServerInit
// (the name string) and errors allocate; they happen once per connection.
package rfb
