package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/engine/recorder"
	"vncedge/engine/tlsio"
	"vncedge/rfb"
)

// The RFB layer (issue 12). A session needs it only when its grant asks
// (the VM's password is at the proxy, view-only, recording) or a failure
// must be explained to noVNC; every other session stays the byte relay of
// relay.go, untouched.
//
// With credentials the proxy completes the RFB handshake with the VM itself
// (rfb.VMHandshake), then offers the browser exactly security type None
// (rfb.BrowserHandshake), so noVNC connects without a password and the
// password never leaves the proxy. ServerInit and everything after it pass
// through. noVNC shows a reason only when it arrives as an RFB security
// failure ("New connection has been rejected with reason: ..."): a
// WebSocket close reason or an HTTP status never reaches its UI. So a
// failure it should explain (an unknown link, an unreachable VM, a VM that
// refuses the proxy) is an RFB refusal after the 101 (--rfb-errors).

// rfbHandshake is what a session holds only while its handshakes run.
type rfbHandshake struct {
	vm        rfb.VMHandshake
	br        rfb.BrowserHandshake
	browserUp bool // the browser handshake started (our version went out)
	// tlsName is the name the VM's certificate must carry if the VM takes
	// VeNCrypt with TLS (Config.VMVeNCrypt).
	tlsName string
	out     [64]byte
}

// rfbSession is what a session holds while relaying with RFB awareness:
// the scanner of browser-to-VM messages and what it enforces.
type rfbSession struct {
	viewOnly bool
	initSeen bool // the browser's ClientInit went to the VM
	scanning bool // messages after ClientInit go through the scanner
	drop     rfb.KindSet
	scan     rfb.Scanner
	observe  func(rfb.Message)
	dropped  int64
	record   bool                // the session should be recorded
	recInput bool                // and its input too (--record-input)
	rec      *recorder.Recording // its recording, from the end of the handshakes on
}

// rfbPolicy is what the grant and the flags ask of one session. The
// password is the session's own copy (the caller clears it when done): the
// --vnc-password-file slice is shared by every session and must survive.
func (s *session) rfbPolicy() (password []byte, viewOnly bool) {
	if p := s.setup.target.Password; p != "" {
		password = []byte(p)
	} else if p := s.srv.vncPassword.Load(); p != nil {
		password = bytes.Clone(*p)
	}
	viewOnly = s.setup.target.ViewOnly || s.srv.cfg.ViewOnly
	return password, viewOnly
}

// hasPassword reports whether the proxy holds a VNC password for the session.
func (s *session) hasPassword() bool {
	if s.setup.target.Password != "" {
		return true
	}
	p := s.srv.vncPassword.Load()
	return p != nil && len(*p) > 0
}

// wantsRecording reports whether the grant or the flags ask to record.
func (s *session) wantsRecording() bool { return s.srv.cfg.RecordAll || s.setup.target.Record }

// wantsRFB reports whether the session terminates RFB at the proxy.
func (s *session) wantsRFB() bool {
	// A grant's vencrypt asks for TLS inside RFB, which only the proxy's
	// own handshake with the VM can speak (noVNC has no VeNCrypt TLS).
	return s.hasPassword() || s.setup.target.ViewOnly || s.srv.cfg.ViewOnly || s.wantsRecording() ||
		(s.setup.target.VeNCrypt && !s.setup.target.TLS)
}

// startRFB runs once the VM socket is on the loop: the 101 goes out and the
// proxy's handshake with the VM begins (the VM speaks first).
func (s *session) startRFB() {
	if !s.to(stRFB) {
		return
	}
	s.sendUpgradeResponse()
	pw, viewOnly := s.rfbPolicy()
	// VeNCrypt's TLS only on a plain socket: a tls target is encrypted already.
	vencrypt := (s.srv.cfg.VMVeNCrypt || s.setup.target.VeNCrypt) && s.vmTLS == nil && s.pendingVMTLS.Load() == nil
	s.hs = &rfbHandshake{vm: rfb.NewVMHandshake(rfb.VMConfig{Password: pw, VeNCryptTLS: vencrypt})}
	if vencrypt {
		s.hs.tlsName = vmServerName(s.setup.target)
	}
	clear(pw)
	r := &rfbSession{viewOnly: viewOnly, record: s.wantsRecording(), recInput: s.srv.cfg.RecordInput}
	r.scanning = viewOnly || r.record // a recording needs the client's pixel format, and its input
	if viewOnly {
		r.drop = rfb.ViewOnly
	}
	if r.scanning {
		r.observe = r.seen
	}
	s.rfb = r
	if s.vm != nil && s.vm.InboundBuffered() > 0 {
		_ = s.vm.Wake(nil)
	}
}

// seen is the scanner's observer: it counts what view-only drops and
// hands the recording what it needs (the pixel format, input events).
func (r *rfbSession) seen(m rfb.Message) {
	if m.Dropped {
		r.dropped++
	}
	// Without --record-input the recording wants SetPixelFormat only: no
	// clock read (54 ns here) for every other message it would ignore.
	if r.rec != nil && (r.recInput || m.Kind == rfb.KindSetPixelFormat) {
		r.rec.Observe(m, time.Now())
	}
}

// rfbFromVM feeds the VM's bytes to the proxy's handshake with it.
func (s *session) rfbFromVM(c gnet.Conn) gnet.Action {
	hs := s.hs
	if hs.vm.Done() {
		return gnet.None // ServerInit waits for the browser's ClientInit
	}
	s.vmInbound(c) // a TLS VM: decrypt what arrived (or hand it to VeNCrypt's TLS handshake)
	if hs.vm.NeedTLS() {
		if !s.vmTLSProgress() {
			return gnet.None
		}
		s.vmInbound(c) // what came with the server's Finished
	}
	buf := s.vmPeek(c, -1)
	n, err := hs.vm.Feed(buf)
	s.vmDiscard(c, n)
	if hs.vm.Pending() > 0 && s.vm != nil {
		s.vmWrite(hs.vm.AppendOutput(hs.out[:0]))
	}
	switch {
	case err != nil:
		s.vmHandshakeFailed(err)
	case hs.vm.NeedTLS():
		s.startVMVeNCrypt(c)
	case hs.vm.Done():
		s.startBrowserHandshake()
	}
	return gnet.None
}

// startVMVeNCrypt starts the TLS client handshake that VeNCrypt's X509
// sub-types call for, on the VM socket that is already on the loop: the
// handshake runs on a TLS worker (tlsio.NewClient), whose news reaches the
// loop through Execute (not the socket's Wake: the VM may hang up on our
// alert before the worker's verdict is in, and a closed socket wakes
// nothing); rfbFromVM then carries on inside TLS.
func (s *session) startVMVeNCrypt(c gnet.Conn) {
	el, srv := s.ls.el, s.srv
	t, err := tlsio.NewClient(srv.tlsPool, srv.tlsStore.UpstreamConfig(s.hs.tlsName), c,
		func() { _ = el.Execute(context.Background(), srv.guarded(s.vencryptNotified)) })
	if err != nil {
		s.vencryptFailed(err)
		return
	}
	s.vmTLS = t
	if c.InboundBuffered() > 0 {
		_ = c.Wake(nil) // the server's first TLS bytes came with its ack
	}
}

// vencryptFailed refuses the session for a failure of VeNCrypt's TLS.
func (s *session) vencryptFailed(err error) {
	s.vmHandshakeFailed(fmt.Errorf("VeNCrypt TLS towards the VM: %w", err))
}

// vencryptNotified runs on the loop when VeNCrypt's TLS handshake has news.
func (s *session) vencryptNotified() {
	if !s.vencryptStarting() {
		return // over already (refused, closed, or established and moved on)
	}
	if s.vm != nil {
		s.rfbFromVM(s.vm)
		return
	}
	// The VM hung up during the handshake (onVMClose waited for this):
	// the worker's verdict, an untrusted certificate say, says why.
	if done, err := s.vmTLS.Progress(); done {
		if err == nil {
			err = io.EOF
		}
		s.vencryptFailed(err)
	}
}

// vmTLSProgress collects the VeNCrypt TLS handshake's progress: true once
// it is established (the RFB handshake goes on inside it), false while it
// runs or after it failed (the session is being refused).
func (s *session) vmTLSProgress() bool {
	done, err := s.vmTLS.Progress()
	switch {
	case err != nil:
		s.vencryptFailed(err)
		return false
	case !done:
		return false
	}
	s.hs.vm.TLSStarted()
	return true
}

// startBrowserHandshake announces RFB 3.8 to the browser, once the VM let
// the proxy in.
func (s *session) startBrowserHandshake() {
	if s.rfb.record && !s.startRecording() {
		return // refused before the browser heard a word of RFB
	}
	hs := s.hs
	hs.br = rfb.NewBrowserHandshake()
	hs.browserUp = true
	s.flushBrowserHandshake()
	if c := s.browser.c; c != nil && c.InboundBuffered() > 0 {
		_ = c.Wake(nil) // a client that spoke before its turn
	}
}

func (s *session) flushBrowserHandshake() {
	if s.hs.br.Pending() > 0 && s.browser.c != nil {
		s.writeToBrowser(s.hs.br.AppendOutput(s.hs.out[:0]))
	}
}

// rfbFromBrowser takes the browser's payload while a handshake runs.
func (s *session) rfbFromBrowser(p []byte) bool {
	hs := s.hs
	if hs == nil || !hs.browserUp {
		s.closeWith(ws.StatusPolicyViolation, reasonRFBError, "RFB client spoke before the server")
		return false
	}
	n, err := hs.br.Feed(p)
	s.flushBrowserHandshake()
	_ = n
	if err != nil {
		s.closeWith(ws.StatusPolicyViolation, reasonRFBError, "not an RFB client: "+errText(err))
		return false
	}
	if !hs.br.Done() {
		return true
	}
	if s.state == stRefusing {
		// The refusal is queued: close after it.
		s.closeWith(ws.StatusNormalClosure, s.why, s.reason)
		return false
	}
	s.hs = nil // the handshakes are over: what they held is garbage now
	s.startRelay()
	if s.state != stRelaying {
		return false
	}
	return s.sendToVM(p[n:])
}

// filterToVM sends browser payload to the VM through the RFB layer: the
// ClientInit (its shared flag forced on view-only sessions, so a watcher
// never disconnects the person working on the VM), then the messages,
// scanned when the session must drop some (view-only).
func (s *session) filterToVM(p []byte) bool {
	r := s.rfb
	if !r.initSeen {
		if len(p) == 0 {
			return true
		}
		if r.viewOnly {
			rfb.ForceShared(p)
		}
		r.initSeen = true
		if !s.writeToVM(p[:1]) {
			return false
		}
		p = p[1:]
		if !r.scanning {
			s.rfb = nil // nothing more to look at: the plain relay from here
			return s.writeToVM(p)
		}
	}
	if len(p) == 0 {
		return true
	}
	carry, kept, err := r.scan.Filter(p, r.drop, r.observe)
	if len(carry) > 0 && !s.writeToVM(carry) {
		return false
	}
	if len(kept) > 0 && !s.writeToVM(kept) {
		return false
	}
	if err != nil {
		s.srv.log.LogAttrs(context.Background(), slog.LevelWarn, "unknown RFB message from the browser",
			slog.String("session", s.id), slog.String("error", err.Error()))
		s.closeWith(ws.StatusPolicyViolation, reasonRFBError, "unknown RFB message from the browser")
		return false
	}
	return true
}

// startRecording opens the session's recording once the VM let the proxy
// in (the VM's bytes from the relay on, ServerInit first, are recorded),
// and reports whether the session may go on: without --record-required a recording that cannot start is
// logged and the session continues unrecorded.
func (s *session) startRecording() bool {
	srv := s.srv
	var err error
	files := int64(1) // the recording's descriptors, given back with the session's slots
	if srv.cfg.RecordInput {
		files++ // the input log
	}
	switch {
	case srv.recorder == nil:
		err = errors.New("the grant asks to record, but no --record-dir is set")
	case !srv.fds.take(files):
		err = errors.New("descriptor budget spent: no room for the recording's files")
	default:
		s.rfb.rec, err = srv.recorder.Start(recorder.Session{ID: s.id, Target: s.targetName,
			Begin: time.Now(), Input: srv.cfg.RecordInput})
		if err != nil {
			srv.fds.give(files)
		}
	}
	if err == nil {
		s.slots.fds += files
		return true
	}
	srv.log.LogAttrs(context.Background(), slog.LevelWarn, "recording not started",
		slog.String("session", s.id), slog.String("target", s.targetName), slog.String("error", err.Error()))
	if srv.cfg.RecordRequired {
		s.refuse(reasonRecordFailed, "this session must be recorded, and recording is not possible now")
		return false
	}
	return true
}

// recordFromVM gives the recording the VM's bytes relayed to the browser
// (the proxy's own handshake output to the browser is not the VM's).
func (s *session) recordFromVM(p []byte) {
	if s.rfb != nil && s.rfb.rec != nil && s.state == stRelaying {
		s.rfb.rec.FromVM(p, time.Now())
	}
}

// checkRecording runs from the sweep: with --record-required a recording
// that was cut ends its session.
func (s *session) checkRecording() {
	if s.rfb == nil || s.rfb.rec == nil || !s.srv.cfg.RecordRequired || !s.rfb.rec.Failed() {
		return
	}
	s.closeWith(ws.StatusInternalServerError, reasonRecordFailed, "recording failed")
}

// endRecording closes the session's recording.
func (s *session) endRecording() {
	if s.rfb != nil && s.rfb.rec != nil {
		s.rfb.rec.End(s.why.String(), time.Now())
		s.rfb.rec = nil
	}
}

// vmHandshakeFailed explains a VM that refused the proxy, or is not a VNC
// server at all, to noVNC, and logs why (never the password).
func (s *session) vmHandshakeFailed(err error) {
	s.srv.log.LogAttrs(context.Background(), slog.LevelWarn, "VM handshake failed",
		slog.String("session", s.id), slog.String("target", s.targetName),
		slog.String("vm", s.slots.vm), slog.String("error", err.Error()))
	s.refuse(reasonVMHandshake, vmFailureReason(err))
}

// vmFailureReason is what noVNC shows for a failed handshake with the VM.
func vmFailureReason(err error) string {
	var he *rfb.HandshakeError
	switch {
	case errors.Is(err, rfb.ErrAuthFailed):
		return "the VNC server refused the proxy's credentials"
	case errors.As(err, new(*tls.CertificateVerificationError)):
		return "the VNC server's TLS certificate is not trusted"
	case errors.Is(err, rfb.ErrNotRFB):
		return "this VM does not speak VNC"
	case errors.Is(err, rfb.ErrNoUsableType), errors.Is(err, rfb.ErrVeNCrypt):
		return "this VM asks for a login vncedge cannot give"
	case errors.Is(err, rfb.ErrRefused) && errors.As(err, &he) && he.Reason != "":
		return "the VNC server refused the connection: " + sanitizeReason(he.Reason)
	}
	return "the VNC server's handshake failed"
}

// sanitizeReason keeps a VM's own words printable and short.
func sanitizeReason(r string) string {
	r = strings.Map(func(c rune) rune {
		if c < 0x20 || c == 0x7f {
			return ' '
		}
		return c
	}, r)
	if len(r) > 120 {
		r = r[:120]
	}
	return strings.TrimSpace(r)
}

// refuse ends a session with an RFB refusal noVNC shows: the 101 (if not
// sent yet), our version, and, after the client's version, zero security
// types and reason. why is the close reason counted when it ends.
func (s *session) refuse(why closeReason, reason string) {
	if !s.to(stRefusing) {
		return
	}
	s.closeVM()
	s.sendUpgradeResponse()
	s.rfb = nil
	s.hs = &rfbHandshake{br: rfb.NewBrowserFailure(reason), browserUp: true}
	s.code, s.why, s.reason = ws.StatusNormalClosure, why, reason
	s.flushBrowserHandshake()
	if c := s.browser.c; c != nil && c.InboundBuffered() > 0 {
		_ = c.Wake(nil)
	}
}

// refusesInRFB reports whether a setup failure of this kind is explained to
// noVNC in RFB (--rfb-errors) rather than answered with an HTTP status:
// the failures a user with a valid link from a real page can meet. Bad
// requests, foreign origins, targets outside --allow, limits and drains
// stay HTTP: cheap to refuse, never upgraded.
func (srv *Server) refusesInRFB(why rejectReason) bool {
	if !srv.cfg.RFBErrors {
		return false
	}
	switch why {
	case rejectUnknownToken, rejectInvalidToken, rejectExpired, rejectRevoked, rejectTokenUsed,
		rejectUnavailable, rejectLookup:
		return true
	}
	return false
}

// rfbReason is what noVNC shows for a setup failure: generic, never the
// allow-list, a token or an internal address.
func rfbReason(why rejectReason) string {
	switch why {
	case rejectUnavailable, rejectLookup:
		return "the connection service is unavailable right now; try again shortly"
	}
	return "unknown or expired link"
}

// loadVNCPassword reads --vnc-password-file: the first line, as VNC
// passwords have no newline (only the first 8 bytes count).
func loadVNCPassword(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, errors.New("empty VNC password file")
	}
	return []byte(line), nil
}
