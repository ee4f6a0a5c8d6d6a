package engine

import (
	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/wsframe"
)

// The byte path: browser frames decoded into the VM's stream, the VM's
// stream framed for the browser. Zero allocations per message on the
// binary path (relay_bench_test.go enforces it).

// inbound is the browser->VM frame parser's state between reads: a data
// frame's payload is forwarded as it arrives, so a frame can span reads.
type inbound struct {
	remaining int64   // payload bytes of the current data frame not yet seen
	mask      [4]byte // its masking key
	maskOff   int     // position in the mask cycle of the next payload byte
	fin       bool    // the current frame ends its message
	inMessage bool    // a fragmented message is in progress
	b64       wsframe.Base64Decoder
}

// relayFromBrowser forwards browser frames to the VM. A data frame's
// payload is unmasked in place in gnet's read buffer and written to the VM
// as it arrives; only control frames (at most 125 bytes) wait to be
// complete. While the VM is behind (more than the high mark queued
// towards it), the browser is parked, or its input left unread, until the
// VM is below the low mark again.
func (s *session) relayFromBrowser(c gnet.Conn) gnet.Action {
	high, low, chunk := s.srv.tune.highWater, s.srv.tune.lowWater, s.srv.cfg.ChunkSize
	budget := -1 // what may still be forwarded past the high mark; -1 until it is reached
	for s.state == stRelaying {
		vm := s.vm
		if vm == nil {
			s.holdBrowser() // VM socket parked or resuming: it wakes us
			return s.holdInput(c)
		}
		switch q := vm.OutboundBuffered(); {
		case s.inputHeld && q > low:
			if s.browser.inbound() == 0 && s.browser.unreadRaw() == 0 && c.OutboundBuffered() == 0 {
				return s.park(c, &s.browserPark) // nothing to lose: stop reading it
			}
			return s.holdInput(c) // pollBackpressure wakes us below the low mark
		case q > high:
			if s.browser.inbound() == 0 && s.browser.unreadRaw() == 0 && c.OutboundBuffered() == 0 {
				// Stop reading the browser until the VM has taken its backlog.
				return s.park(c, &s.browserPark)
			}
			// Parking now would drop what gnet holds for the browser (input
			// not yet relayed, or output not yet written): forward at most
			// one more chunk, then leave the rest unread (capped).
			if budget < 0 {
				budget = chunk
			}
			if budget == 0 {
				s.holdBrowser()
				return s.holdInput(c)
			}
		}
		s.inputHeld = false
		n := s.browser.inbound()
		if n == 0 {
			break
		}
		take := min(n, chunk)
		if budget > 0 {
			take = min(take, budget)
		}
		buf := s.browser.peek(take)
		off := s.relayFrames(buf)
		if budget > 0 {
			budget = max(budget-off, 0)
		}
		if off == 0 {
			// An incomplete header or control frame: wait for more bytes,
			// or for the VM to drain if that is what stopped us.
			if vm := s.vm; vm != nil && vm.OutboundBuffered() > high {
				s.holdBrowser()
			}
			break
		}
		if s.state != stClosed { // a closed session's socket is gone
			s.browser.discard(off)
		}
	}
	return gnet.None
}

// holdBrowser leaves browser input unread until the VM catches up; the
// poll list brings it back.
func (s *session) holdBrowser() {
	if !s.inputHeld {
		s.inputHeld, s.heldSince = true, s.srv.now()
	}
	s.ls.wait(s)
}

// readHandshakeFrames reads the browser's frames while an RFB handshake
// runs (rfb.go): their payload goes to the handshake, and once it is over
// what follows is relayed as usual.
func (s *session) readHandshakeFrames(c gnet.Conn) gnet.Action {
	for s.state == stRFB || s.state == stRefusing {
		n := s.browser.inbound()
		if n == 0 {
			return gnet.None
		}
		buf := s.browser.peek(min(n, s.srv.cfg.ChunkSize))
		off := s.relayFrames(buf)
		if off == 0 {
			break
		}
		if s.state != stClosed {
			s.browser.discard(off)
		}
	}
	if s.state == stRelaying && s.browser.inbound() > 0 {
		return s.relayFromBrowser(c)
	}
	return s.holdInput(c)
}

// readsFrames reports whether browser frames are parsed in this state.
func (s *session) readsFrames() bool {
	return s.state == stRelaying || s.state == stRFB || s.state == stRefusing
}

// relayFrames parses and forwards the frames in buf and returns how many
// bytes it consumed.
func (s *session) relayFrames(buf []byte) int {
	off := 0
	for off < len(buf) && s.readsFrames() {
		if s.in.remaining > 0 {
			n := len(buf) - off
			if int64(n) > s.in.remaining {
				n = int(s.in.remaining)
			}
			p := buf[off : off+n]
			s.in.maskOff = wsframe.Unmask(p, s.in.mask, s.in.maskOff)
			off += n
			s.in.remaining -= int64(n)
			if !s.deliver(p) {
				break
			}
			if s.in.remaining == 0 {
				s.endFrame()
			}
			continue
		}
		h, hl, err := wsframe.ParseHeader(buf[off:])
		if err == wsframe.ErrShort {
			break
		}
		if err == nil {
			err = wsframe.CheckClient(h, s.in.inMessage)
		}
		if err != nil {
			s.closeWith(wsframe.CloseCodeFor(err), reasonProtocolError, err.Error())
			break
		}
		if h.OpCode.IsControl() {
			end := off + hl + int(h.Length)
			if end > len(buf) {
				break // wait for the whole control frame
			}
			p := buf[off+hl : end]
			wsframe.Unmask(p, h.Mask, 0)
			off = end
			s.onControl(h.OpCode, p)
			continue
		}
		if max := s.srv.cfg.MaxFrame; max > 0 && h.Length > max {
			s.closeWith(ws.StatusMessageTooBig, reasonTooLarge, "frame larger than the proxy accepts")
			break
		}
		if h.OpCode != ws.OpContinuation {
			if want := s.dataOpCode(); h.OpCode != want {
				s.closeWith(ws.StatusUnsupportedData, reasonUnsupported, "unexpected "+opName(h.OpCode)+" frame on a "+s.mode.String()+" session")
				break
			}
		}
		s.in.inMessage = !h.Fin
		s.in.fin = h.Fin
		s.in.remaining = h.Length
		s.in.mask = h.Mask
		s.in.maskOff = 0
		off += hl
		if h.Length == 0 {
			s.endFrame()
		}
	}
	return off
}

func (s *session) dataOpCode() ws.OpCode {
	if s.mode == modeBase64 {
		return ws.OpText
	}
	return ws.OpBinary
}

func opName(op ws.OpCode) string {
	if op == ws.OpText {
		return "text"
	}
	return "binary"
}

// endFrame runs when a data frame's payload is complete.
func (s *session) endFrame() {
	if !s.in.fin || s.mode != modeBase64 {
		return
	}
	if err := s.in.b64.End(); err != nil {
		s.closeWith(ws.StatusInvalidFramePayloadData, reasonBadData, "invalid base64: "+err.Error())
	}
}

// deliver takes unmasked payload from the browser's frames, decodes it on
// a base64 session, and sends it on, reporting whether the session still
// reads frames afterwards.
func (s *session) deliver(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if s.mode != modeBase64 {
		return s.sendToVM(p)
	}
	bb := bytebufferpool.Get()
	var err error
	bb.B, err = s.in.b64.Decode(bb.B[:0], p)
	ok := err == nil && s.sendToVM(bb.B)
	bytebufferpool.Put(bb)
	if err != nil {
		s.closeWith(ws.StatusInvalidFramePayloadData, reasonBadData, "invalid base64: "+err.Error())
	}
	return ok
}

// sendToVM routes browser payload: to the VM, through the RFB layer when
// the session has one, or to the RFB handshake before relaying.
func (s *session) sendToVM(p []byte) bool {
	switch {
	case s.state != stRelaying:
		return s.rfbFromBrowser(p)
	case s.rfb != nil:
		return s.filterToVM(p)
	}
	return s.writeToVM(p)
}

// writeToVM writes payload bytes to the VM and reports whether the session
// is still relaying afterwards.
func (s *session) writeToVM(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	s.toVM += int64(len(p))
	s.vmWrite(p)
	s.lastActive = s.srv.now()
	// A failed write closes the VM socket synchronously, inside Write.
	if s.state != stRelaying || s.vm == nil {
		return false
	}
	// The hard cap on what waits for the VM, whatever the marks did.
	if max := s.srv.cfg.MaxBuffered; max > 0 && s.vm.OutboundBuffered() > max {
		s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "VNC server is not reading")
		return false
	}
	return true
}

// onControl answers ping, notes pong, and completes the close handshake.
func (s *session) onControl(op ws.OpCode, p []byte) {
	switch op {
	case ws.OpPing:
		// A pong is queued like data and counts against the same cap: a
		// browser that pings and never reads must not grow our memory.
		if max := s.srv.cfg.MaxBuffered; max > 0 && s.browser.c.OutboundBuffered() > max {
			s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "browser is not reading")
			return
		}
		bb := bytebufferpool.Get()
		bb.B = wsframe.AppendFrame(bb.B[:0], true, ws.OpPong, p)
		s.browser.write(bb.B)
		bytebufferpool.Put(bb)
	case ws.OpPong:
		// Only a pong proves the browser reads what we send (our ping went
		// out behind everything queued before it).
		s.pingSent, s.lastPong = 0, s.srv.now()
	case ws.OpClose:
		code, reason, err := wsframe.ParseClose(p)
		if err != nil {
			s.closeWith(wsframe.CloseCodeFor(err), reasonProtocolError, "bad close frame: "+err.Error())
			return
		}
		if code == ws.StatusNoStatusRcvd {
			code = ws.StatusNormalClosure
		}
		s.closeWith(code, reasonBrowserClosed, string(reason))
	}
}

// relayFromVM wraps what the VM sent into binary frames of at most
// ChunkSize: each header and its piece of gnet's read buffer go out in one
// writev, so the payload is never copied by us (gnet copies only what the
// socket refuses), and a backlog (after a park) never becomes one huge
// frame or one huge copy across the ring's wrap point.
func (s *session) relayFromVM(c gnet.Conn) gnet.Action {
	chunk := s.srv.cfg.ChunkSize
	for {
		n := s.vmInbound(c)
		if n == 0 {
			break
		}
		buf := s.vmPeek(c, min(n, chunk))
		s.writeToBrowser(buf)
		s.vmDiscard(c, len(buf))
		if s.state != stRelaying || s.browser.c == nil {
			return gnet.None // the browser write failed; the session is ending
		}
		if max := s.srv.cfg.MaxBuffered; max > 0 && s.browser.c.OutboundBuffered() > max {
			s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "browser is not reading")
			return gnet.None
		}
	}
	if s.browser.c.OutboundBuffered() <= s.srv.tune.highWater || c.OutboundBuffered() > 0 || c.InboundBuffered() > 0 {
		return gnet.None // below the mark, or parking would drop bytes queued for or from the VM
	}
	if s.vmTLS != nil {
		_ = s.vmTLS.SetSink(nil)
	}
	return s.park(c, &s.vmPark)
}

// writeToBrowser sends VM bytes to the browser as one data frame.
func (s *session) writeToBrowser(p []byte) {
	if s.mode == modeBase64 {
		bb := bytebufferpool.Get()
		hdr := &s.ls.hdr
		bb.B = append(bb.B[:0], hdr[:wsframe.PutHeader(hdr[:], true, ws.OpText, wsframe.Base64EncodedLen(len(p)))]...)
		bb.B = wsframe.AppendBase64(bb.B, p)
		s.browser.write(bb.B)
		bytebufferpool.Put(bb)
	} else {
		hdr := &s.ls.hdr
		n := wsframe.PutHeader(hdr[:], true, ws.OpBinary, len(p))
		s.browser.writev(&s.ls.iov, hdr[:n], p)
	}
	s.toBrowser += int64(len(p))
	s.lastActive = s.srv.now()
	if s.rfb != nil {
		s.recordFromVM(p)
	}
}

// writeChunked sends a held backlog to the browser in frames of at most
// ChunkSize.
func (s *session) writeChunked(p []byte) {
	for len(p) > 0 && s.browser.c != nil {
		n := min(len(p), s.srv.cfg.ChunkSize)
		s.writeToBrowser(p[:n])
		p = p[n:]
	}
}
