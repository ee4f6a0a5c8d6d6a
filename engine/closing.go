package engine

import (
	"errors"
	"io"
	"net"
	"os"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/engine/tlsio"
	"vncedge/wsframe"
)

// The end of a session: either side ends, an error, a timeout, shutdown.

// closeWith ends a session that has sent, or can now send, its 101: a close
// frame with code and reason goes to the browser after everything already
// queued for it; the VM socket closes now; the browser socket closes once
// drained (browserConn.startClose).
func (s *session) closeWith(code ws.StatusCode, why closeReason, reason string) {
	if s.state >= stClosing {
		return
	}
	s.code, s.why, s.reason = code, why, reason
	if !s.to(stClosing) {
		return
	}
	s.browser.closeBy = s.srv.now() + int64(s.srv.cfg.CloseLinger)
	s.drainVM()
	if s.browser.c == nil {
		// The browser socket is parked: bring it back to say goodbye
		// properly (closing the dup now, with upload bytes unread, would
		// reset the connection). browserResumed sends the close frame.
		s.resume(&s.browserPark, &s.browserRef)
		if s.browserPark.state != parkResuming {
			s.finish()
		}
		return
	}
	s.sendClose()
}

// sendClose writes the held 101 if the browser never got it (a failed
// dial), then the close frame, and starts the graceful close.
func (s *session) sendClose() {
	s.sendUpgradeResponse()
	buf := bytebufferpool.Get()
	buf.B = wsframe.AppendClose(buf.B[:0], s.code, s.reason)
	s.browser.write(buf.B)
	bytebufferpool.Put(buf)
	if s.browser.c == nil { // the write failed and gnet closed it under us
		return
	}
	now := s.srv.now()
	if s.browser.startClose(now, s.browser.closeBy, s.srv.cfg.CloseGrace) {
		s.ls.wait(s)
	}
}

func (s *session) closeVM() {
	if s.vm != nil {
		_ = s.vm.Close()
		s.vm = nil
	}
	s.releaseVMTLS()
	s.vmDrainBy = 0
	s.vmPark.drop()
}

// drainVM closes the VM socket once what the browser sent last has been
// written to it, within CloseGrace: gnet's close drops what the socket
// has not taken yet.
func (s *session) drainVM() {
	if s.vm == nil || s.vm.OutboundBuffered() == 0 {
		s.closeVM()
		return
	}
	s.vmDrainBy = s.srv.now() + int64(s.srv.cfg.CloseGrace)
	s.ls.wait(s)
}

// pollVMDrain continues drainVM from the poll list and reports whether it
// must still wait.
func (s *session) pollVMDrain(now int64) bool {
	if s.vmDrainBy == 0 {
		return false
	}
	if s.vm != nil && s.vm.OutboundBuffered() > 0 && now <= s.vmDrainBy {
		return true
	}
	s.closeVM()
	if s.browser.c == nil && s.browserPark.state == parkActive {
		s.finish() // the browser left while the VM drained
	}
	return false
}

// onVMClose handles the VM socket going away: a park, or the end.
func (s *session) onVMClose(c gnet.Conn, err error) {
	if c != s.vm {
		return // stale (already replaced or the session is over)
	}
	s.vm = nil
	if s.state == stRFB {
		if s.vencryptStarting() {
			// Often the VM hangs up on the alert our TLS handshake sent
			// it: the worker's verdict follows (vencryptNotified), and
			// says more than the EOF. The state's deadline bounds the wait.
			herr := s.vmTLS.EOF()
			if errors.Is(herr, tlsio.ErrTruncated) {
				return
			}
			if herr != nil {
				s.vencryptFailed(herr)
				return
			}
		}
		if err == nil {
			err = io.EOF
		}
		s.vmHandshakeFailed(err) // the VM hung up during the proxy's handshake
		return
	}
	if s.vmPark.closed() || s.state != stRelaying {
		return
	}
	if s.browser.c == nil {
		// The browser socket is parked. gnet is about to free what the VM
		// sent last, unread: keep it for the browser, and end after it.
		s.vmEnd = &vmEnding{err: err}
		s.vmInbound(c)
		if buf := s.vmPeek(c, -1); len(buf) > 0 {
			s.vmEnd.pending = bytebufferpool.Get()
			s.vmEnd.pending.B = append(s.vmEnd.pending.B[:0], buf...)
		}
		s.resume(&s.browserPark, &s.browserRef)
		return
	}
	s.endForVM(err)
}

// deliverVMEnd completes a VM end that happened while the browser socket
// was parked, now that it is back.
func (s *session) deliverVMEnd() {
	e := s.vmEnd
	if e == nil {
		return
	}
	s.vmEnd = nil
	if e.pending != nil {
		s.writeChunked(e.pending.B)
		bytebufferpool.Put(e.pending)
	}
	if s.state == stRelaying {
		s.endForVM(e.err)
	}
}

// endForVM closes the session because the VM socket ended with err.
func (s *session) endForVM(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		s.closeWith(ws.StatusNormalClosure, reasonVMClosed, "VNC server closed the connection")
		return
	}
	s.closeWith(ws.StatusInternalServerError, reasonVMError, "VNC server connection failed: "+errText(err))
}

// errText is err's message without the "read: " decoration noise, for
// close reasons a person reads in noVNC.
func errText(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
