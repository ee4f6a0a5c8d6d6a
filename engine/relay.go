package engine

import (
	"context"
	"net"
	"os"
	"syscall"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"vncedge/wsframe"
)

// relayChunk bounds how much buffered browser input is looked at in one
// piece. Bytes left over from earlier reads sit in gnet's ring buffer, and
// peeking across its wrap point copies them into one slice: in chunks, that
// copy stays small however much input was held back.
const relayChunk = 256 << 10

// relayFromClient forwards browser frames to the VM. A data frame's payload
// is unmasked in place in gnet's read buffer and written upstream as it
// arrives; only control frames (at most 125 bytes) wait to be complete.
func (s *session) relayFromClient(c gnet.Conn) gnet.Action {
	for s.state == stRelaying {
		up := s.upstream
		if up == nil {
			s.inputHeld = true // VM socket parked or resuming: it wakes us
			return s.holdInput(c)
		}
		if up.OutboundBuffered() > s.srv.highWater {
			if c.OutboundBuffered() > 0 {
				// Parking would drop what is queued for the browser: leave
				// its input unread (capped) until the VM catches up.
				s.inputHeld = true
				s.ls.wait(s)
				return s.holdInput(c)
			}
			if c.InboundBuffered() == 0 {
				// Stop reading the browser until the VM has taken its backlog.
				return s.park(c, &s.clientPark)
			}
			// Forward what this read brought first (at most one read
			// buffer), so nothing of the browser's is lost by the park.
		}
		s.inputHeld = false
		n := c.InboundBuffered()
		if n == 0 {
			break
		}
		buf, _ := c.Peek(min(n, relayChunk))
		off := s.relayFrames(buf)
		if off == 0 {
			// An incomplete header or control frame: wait for more bytes,
			// or for the VM to drain if that is what stopped us.
			if up := s.upstream; up != nil && up.OutboundBuffered() > s.srv.highWater {
				s.inputHeld = true
				s.ls.wait(s)
			}
			break
		}
		if s.state != stClosed { // a closed session's socket is gone
			_, _ = c.Discard(off) // never 0: gnet's Discard(0) drops everything
		}
	}
	return gnet.None
}

// relayFrames parses and forwards the frames in buf and returns how many
// bytes it consumed.
func (s *session) relayFrames(buf []byte) int {
	off := 0
	for off < len(buf) && s.state == stRelaying {
		if s.in.remaining > 0 {
			n := len(buf) - off
			if int64(n) > s.in.remaining {
				n = int(s.in.remaining)
			}
			p := buf[off : off+n]
			s.in.maskOff = wsframe.Unmask(p, s.in.mask, s.in.maskOff)
			off += n
			s.in.remaining -= int64(n)
			if !s.deliverToUpstream(p) {
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
				s.closeWith(ws.StatusUnsupportedData, reasonUnsupported, "unexpected "+opName(h.OpCode)+" frame on a "+s.modeName()+" session")
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

// deliverToUpstream writes unmasked payload bytes to the VM and reports
// whether the session is still relaying afterwards.
func (s *session) deliverToUpstream(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if s.mode == modeBase64 {
		bb := bytebufferpool.Get()
		var err error
		bb.B, err = s.in.b64.Decode(bb.B[:0], p)
		if err != nil {
			bytebufferpool.Put(bb)
			s.closeWith(ws.StatusInvalidFramePayloadData, reasonBadData, "invalid base64: "+err.Error())
			return false
		}
		s.toUpstream += int64(len(bb.B))
		_, _ = s.upstream.Write(bb.B)
		bytebufferpool.Put(bb)
	} else {
		s.toUpstream += int64(len(p))
		_, _ = s.upstream.Write(p)
	}
	// A failed write closes the VM socket synchronously, inside Write.
	return s.state == stRelaying && s.upstream != nil
}

// onControl answers ping, notes pong, and completes the close handshake.
func (s *session) onControl(op ws.OpCode, p []byte) {
	switch op {
	case ws.OpPing:
		bb := bytebufferpool.Get()
		bb.B = wsframe.AppendFrame(bb.B[:0], true, ws.OpPong, p)
		_, _ = s.client.Write(bb.B)
		bytebufferpool.Put(bb)
	case ws.OpPong:
		// Any byte from the browser already proved it alive (onClientTraffic).
	case ws.OpClose:
		code, reason, err := wsframe.ParseClose(p)
		if err != nil {
			s.closeWith(wsframe.CloseCodeFor(err), reasonProtocolError, "bad close frame: "+err.Error())
			return
		}
		if code == ws.StatusNoStatusRcvd {
			code = ws.StatusNormalClosure
		}
		s.closeWith(code, reasonClientClosed, string(reason))
	}
}

// relayFromUpstream wraps everything the VM sent since the last read into
// one frame: the header and gnet's read buffer go out in one writev, so the
// payload is never copied by us (gnet copies only what the socket refuses).
func (s *session) relayFromUpstream(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return gnet.None
	}
	s.writeToClient(buf)
	_, _ = c.Discard(len(buf))
	if s.state != stRelaying || s.client == nil {
		return gnet.None // the browser write failed; the session is ending
	}
	queued := s.client.OutboundBuffered()
	if max := s.srv.cfg.MaxBuffered; max > 0 && queued > max {
		s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "browser is not reading")
		return gnet.None
	}
	if queued <= s.srv.highWater || c.OutboundBuffered() > 0 {
		return gnet.None // below the mark, or parking would drop bytes queued for the VM
	}
	return s.park(c, &s.upPark)
}

// writeToClient sends VM bytes to the browser as one data frame.
func (s *session) writeToClient(p []byte) {
	if s.mode == modeBase64 {
		bb := bytebufferpool.Get()
		bb.B = append(bb.B[:0], s.hdr[:wsframe.PutHeader(s.hdr[:], true, ws.OpText, wsframe.Base64EncodedLen(len(p)))]...)
		bb.B = wsframe.AppendBase64(bb.B, p)
		_, _ = s.client.Write(bb.B)
		bytebufferpool.Put(bb)
	} else {
		n := wsframe.PutHeader(s.hdr[:], true, ws.OpBinary, len(p))
		s.iov[0], s.iov[1] = s.hdr[:n], p
		_, _ = s.client.Writev(s.iov[:])
		s.iov[1] = nil // do not keep gnet's buffer reachable
	}
	s.toClient += int64(len(p))
}

// parkState is one socket of a session taken out of its event loop for
// backpressure.
type parkState struct {
	fd       int  // dup of the socket while parked; -1 otherwise
	parking  bool // the socket's next OnClose is this park, not an end
	resuming bool // the dup is being enrolled again
}

// drop closes a parked socket for good (the session is ending).
func (p *parkState) drop() {
	if p.fd >= 0 {
		_ = syscall.Close(p.fd)
		p.fd = -1
	}
}

// park stops reading socket c while the other side is behind: gnet cannot
// pause a socket, so we keep a dup of the descriptor, let gnet close its
// copy (no FIN: the dup holds the socket open) and re-enroll the dup once
// the other side caught up. Meanwhile the kernel buffer fills and the
// sender's TCP window closes: real backpressure, end to end. The caller
// makes sure gnet holds nothing for c that its close would drop (nothing
// queued to write, nothing unread).
func (s *session) park(c gnet.Conn, p *parkState) gnet.Action {
	fd, err := c.Dup()
	if err != nil {
		return gnet.None // the hard cap (MaxBuffered) still protects us
	}
	p.fd, p.parking = fd, true
	s.srv.met.backpressure.Inc()
	s.ls.wait(s)
	return gnet.Close
}

// pollBackpressure resumes what park or a full VM queue held back, and
// reports whether the session must keep waiting.
func (s *session) pollBackpressure() bool {
	if s.upPark.fd >= 0 && s.client != nil && s.client.OutboundBuffered() <= s.srv.lowWater {
		s.resume(&s.upPark, &s.upRef)
	}
	if s.clientPark.fd >= 0 && (s.upstream == nil || s.upstream.OutboundBuffered() <= s.srv.lowWater) {
		s.resume(&s.clientPark, &s.clientRef)
	}
	if s.inputHeld && s.client != nil && s.upstream != nil && s.upstream.OutboundBuffered() <= s.srv.lowWater {
		s.inputHeld = false
		_ = s.client.Wake(nil)
	}
	if s.state != stRelaying {
		return false
	}
	return s.upPark.fd >= 0 || s.upPark.resuming || s.clientPark.fd >= 0 || s.clientPark.resuming || s.inputHeld
}

// resume enrolls a parked descriptor on this loop again; its OnOpen
// (onEnrolled) links it back to the session through ref.
func (s *session) resume(p *parkState, ref *connRef) {
	if p.fd < 0 {
		return // not parked, or already resuming
	}
	fd := p.fd
	p.fd = -1
	f := os.NewFile(uintptr(fd), "vncedge-parked")
	nc, err := net.FileConn(f) // dups fd; f's copy is closed below
	_ = f.Close()
	if err == nil {
		if _, err = s.ls.el.Enroll(gnet.NewContext(context.Background(), ref), nc); err != nil {
			_ = nc.Close()
		}
	}
	if err != nil {
		s.closeWith(ws.StatusInternalServerError, reasonUpstreamError, "resume parked connection: "+errText(err))
		return
	}
	p.resuming = true
}
