package rfb

import "encoding/binary"

// maxHeader is the longest fixed part of a client message the Scanner keeps: SetPixelFormat's
// 20 bytes. Everything after a message's header (encodings, cut text, screens, fence and gii
// payloads) streams through without being held.
const maxHeader = 20

// Scanner follows a stream of client-to-server messages fed in chunks of any size: a message may
// span chunks, a chunk may hold many messages. It knows the length of every message noVNC sends
// (RFC 6143 7.5 and the extensions of the community protocol document) and holds at most one
// message header, so its state is a few dozen bytes whatever the input. It never allocates and
// never buffers a body: a 2 GiB ClientCutText streams through in O(1) memory.
//
// An unknown message type (or QEMU sub-type or audio operation) is an error, because nothing
// tells where such a message ends: the stream cannot be followed past it. The error is sticky.
//
// PointerEvent is 6 bytes, or 7 when the client announced EncodingExtendedMouseButtons in its
// last SetEncodings and sets the mask's top bit, the marker of the extended form. (Whether the
// server confirmed the extension is on the other direction; a client only sets the marker once
// it has, and noVNC clears that bit otherwise.)
//
// The zero value is ready to scan a stream from its first message (after ClientInit). Use either
// Scan or Filter on one stream, not both: only Filter holds bytes back.
type Scanner struct {
	hdr  [maxHeader]byte
	have uint8 // header bytes of the current message in hdr
	need uint8 // header bytes the current message needs so far; 0 between messages
	kind Kind
	// inBody: the header is complete and body bytes remain.
	inBody bool
	body   int64 // body bytes still to come
	total  int64 // the current message's length, once its header is complete
	start  int64 // stream offset of the current message
	pos    int64 // bytes scanned

	extMouse bool // the last complete SetEncodings announced ExtendedMouseButtons
	encSeen  bool // the SetEncodings in progress announced it so far
	encHave  uint8
	enc      [4]byte

	// Filter holds back the type byte of a gii or QEMU message whose sub-type is in the next
	// chunk (keep or drop depends on it), and hands it out as carry once it knows.
	held    uint8
	heldBuf [2]byte
	carry   [2]byte

	err error
}

// Events of one run of bytes.
const (
	evHeader = 1 << iota // the message's header completed in this run
	evEnd                // the message ended with this run
)

// Message is what the Scanner knows about one client message once its header is complete. It is
// a value (the header bytes are copied in), so an observer may keep it.
type Message struct {
	Kind Kind
	// Dropped says whether Filter removed the message.
	Dropped bool
	// Len is the message's length in bytes, header and body.
	Len int64
	// Offset is the position of the message's first byte in the scanned stream.
	Offset int64
	hlen   uint8
	header [maxHeader]byte
}

// Type is the message type byte.
func (m Message) Type() uint8 { return m.header[0] }

// HeaderLen is the length of the fixed header the Scanner parsed (the message's first bytes).
func (m Message) HeaderLen() int { return int(m.hlen) }

// Key gives a KeyEvent's or QEMU key event's down flag and X11 keysym.
func (m Message) Key() (down bool, keysym uint32) {
	switch m.Kind {
	case KindKeyEvent:
		return m.header[1] != 0, binary.BigEndian.Uint32(m.header[4:])
	case KindQEMUKeyEvent:
		return binary.BigEndian.Uint16(m.header[2:]) != 0, binary.BigEndian.Uint32(m.header[4:])
	}
	return false, 0
}

// KeyCode gives a QEMU key event's XT scan code (0 for other messages).
func (m Message) KeyCode() uint32 {
	if m.Kind != KindQEMUKeyEvent {
		return 0
	}
	return binary.BigEndian.Uint32(m.header[8:])
}

// Pointer gives a PointerEvent's button mask and position. For the 7-byte extended form the
// mask holds buttons 1-7 in bits 0-6 and buttons 8-9 in bits 7-8, as noVNC builds it.
func (m Message) Pointer() (buttons uint16, x, y uint16) {
	if m.Kind != KindPointerEvent {
		return 0, 0, 0
	}
	buttons = uint16(m.header[1])
	if m.hlen == 7 {
		buttons = uint16(m.header[1]&0x7f) | uint16(m.header[6])<<7
	}
	return buttons, binary.BigEndian.Uint16(m.header[2:]), binary.BigEndian.Uint16(m.header[4:])
}

// PixelFormat gives the format a SetPixelFormat asks for.
func (m Message) PixelFormat() PixelFormat {
	if m.Kind != KindSetPixelFormat {
		return PixelFormat{}
	}
	return GetPixelFormat(m.header[4:])
}

// CutText gives a ClientCutText's text length and whether it is the extended-clipboard form
// (negative length on the wire).
func (m Message) CutText() (length int64, extended bool) {
	if m.Kind != KindClientCutText {
		return 0, false
	}
	l := int32(binary.BigEndian.Uint32(m.header[4:]))
	return m.Len - 8, l < 0
}

// UpdateRequest gives a FramebufferUpdateRequest's fields.
func (m Message) UpdateRequest() (incremental bool, x, y, w, h uint16) {
	if m.Kind != KindFramebufferUpdateRequest {
		return false, 0, 0, 0, 0
	}
	b := m.header[:]
	return b[1] != 0, binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint16(b[4:]),
		binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:])
}

// DesktopSize gives a SetDesktopSize's requested size and number of screens.
func (m Message) DesktopSize() (w, h uint16, screens int) {
	if m.Kind != KindSetDesktopSize {
		return 0, 0, 0
	}
	return binary.BigEndian.Uint16(m.header[2:]), binary.BigEndian.Uint16(m.header[4:]), int(m.header[6])
}

// Xvp gives an xvp message's version and operation.
func (m Message) Xvp() (version, op uint8) {
	if m.Kind != KindXvp {
		return 0, 0
	}
	return m.header[2], m.header[3]
}

// kindOf classifies a message from its first bytes; KindUnknown when its sub-type is not there
// yet. Types headerNeed rejects give KindUnknown too.
func kindOf(h []byte) Kind {
	switch h[0] {
	case MsgSetPixelFormat:
		return KindSetPixelFormat
	case MsgSetEncodings:
		return KindSetEncodings
	case MsgFramebufferUpdateRequest:
		return KindFramebufferUpdateRequest
	case MsgKeyEvent:
		return KindKeyEvent
	case MsgPointerEvent:
		return KindPointerEvent
	case MsgClientCutText:
		return KindClientCutText
	case MsgEnableContinuousUpdates:
		return KindEnableContinuousUpdates
	case MsgClientFence:
		return KindFence
	case MsgXvp:
		return KindXvp
	case MsgSetDesktopSize:
		return KindSetDesktopSize
	case MsgGII:
		if len(h) < 2 {
			return KindUnknown
		}
		if h[1]&^GIIBigEndian == GIIEvents {
			return KindGIIEvents
		}
		return KindGII
	case MsgQEMU:
		if len(h) < 2 {
			return KindUnknown
		}
		switch h[1] {
		case QEMUExtendedKeyEvent:
			return KindQEMUKeyEvent
		case QEMUAudio:
			return KindQEMUAudio
		}
	}
	return KindUnknown
}

// headerNeed gives, from the first bytes h of a message (len(h) >= 1), the length of its fixed
// header as far as h tells. When need > len(h) more bytes are needed to tell more; when need ==
// len(h) the header is complete and body is the number of bytes that follow it. bad is set when
// the message's length cannot be known (unknown type, QEMU sub-type or audio operation).
func headerNeed(h []byte, extMouse bool) (need int, body int64, bad bool) {
	switch h[0] {
	case MsgSetPixelFormat:
		return 20, 0, false
	case MsgSetEncodings:
		if len(h) < 4 {
			return 4, 0, false
		}
		return 4, 4 * int64(binary.BigEndian.Uint16(h[2:])), false
	case MsgFramebufferUpdateRequest, MsgEnableContinuousUpdates:
		return 10, 0, false
	case MsgKeyEvent:
		return 8, 0, false
	case MsgPointerEvent:
		if len(h) < 2 {
			return 2, 0, false
		}
		if extMouse && h[1]&0x80 != 0 {
			return 7, 0, false
		}
		return 6, 0, false
	case MsgClientCutText:
		if len(h) < 8 {
			return 8, 0, false
		}
		l := int64(int32(binary.BigEndian.Uint32(h[4:])))
		if l < 0 {
			l = -l // extended clipboard: |length| bytes follow
		}
		return 8, l, false
	case MsgClientFence:
		if len(h) < 9 {
			return 9, 0, false
		}
		return 9, int64(h[8]), false
	case MsgXvp:
		return 4, 0, false
	case MsgSetDesktopSize:
		if len(h) < 8 {
			return 8, 0, false
		}
		return 8, 16 * int64(h[6]), false
	case MsgGII:
		if len(h) < 4 {
			return 4, 0, false
		}
		if h[1]&GIIBigEndian != 0 {
			return 4, int64(binary.BigEndian.Uint16(h[2:])), false
		}
		return 4, int64(binary.LittleEndian.Uint16(h[2:])), false
	case MsgQEMU:
		if len(h) < 2 {
			return 2, 0, false
		}
		switch h[1] {
		case QEMUExtendedKeyEvent:
			return 12, 0, false
		case QEMUAudio:
			if len(h) < 4 {
				return 4, 0, false
			}
			switch binary.BigEndian.Uint16(h[2:]) {
			case QEMUAudioEnable, QEMUAudioDisable:
				return 4, 0, false
			case QEMUAudioSetFormat:
				return 10, 0, false
			}
		}
	}
	return 0, 0, true
}

// run advances over the first bytes of p (len(p) > 0) that belong to the current message,
// starting a new one when none is in progress, and reports what happened in evHeader/evEnd.
func (s *Scanner) run(p []byte) (n int, ev uint8, err error) {
	if s.need == 0 && !s.inBody {
		s.start, s.have, s.need, s.kind = s.pos, 0, 1, KindUnknown
	}
	if !s.inBody {
		for {
			k := copy(s.hdr[s.have:s.need], p[n:])
			s.have += uint8(k)
			n += k
			if s.have < s.need {
				if s.kind == KindUnknown {
					s.kind = kindOf(s.hdr[:s.have])
				}
				s.pos += int64(n)
				return n, ev, nil
			}
			need, body, bad := headerNeed(s.hdr[:s.have], s.extMouse)
			if bad {
				return n, ev, s.unknown()
			}
			if need > int(s.have) {
				s.need = uint8(need)
				continue
			}
			s.kind = kindOf(s.hdr[:s.have])
			s.body, s.total, s.inBody = body, int64(s.have)+body, true
			ev |= evHeader
			if s.kind == KindSetEncodings {
				s.encSeen, s.encHave = false, 0
			}
			break
		}
	}
	k := int(min(s.body, int64(len(p)-n)))
	if s.kind == KindSetEncodings {
		s.scanEncodings(p[n : n+k])
	}
	s.body -= int64(k)
	n += k
	if s.body == 0 {
		ev |= evEnd
		if s.kind == KindSetEncodings {
			s.extMouse = s.encSeen
		}
		s.need, s.inBody = 0, false
	}
	s.pos += int64(n)
	return n, ev, nil
}

func (s *Scanner) unknown() error {
	e := &MessageError{Type: s.hdr[0], SubType: -1, Op: -1, Offset: s.start}
	if s.hdr[0] == MsgQEMU && s.have >= 2 {
		e.SubType = int(s.hdr[1])
		if s.hdr[1] == QEMUAudio && s.have >= 4 {
			e.Op = int(binary.BigEndian.Uint16(s.hdr[2:]))
		}
	}
	return e
}

// scanEncodings looks for EncodingExtendedMouseButtons in a piece of a SetEncodings body.
func (s *Scanner) scanEncodings(b []byte) {
	for len(b) > 0 {
		if s.encHave == 0 {
			for len(b) >= 4 {
				if int32(binary.BigEndian.Uint32(b)) == EncodingExtendedMouseButtons {
					s.encSeen = true
				}
				b = b[4:]
			}
			if len(b) == 0 {
				return
			}
		}
		k := copy(s.enc[s.encHave:], b)
		s.encHave += uint8(k)
		b = b[k:]
		if s.encHave == 4 {
			if int32(binary.BigEndian.Uint32(s.enc[:])) == EncodingExtendedMouseButtons {
				s.encSeen = true
			}
			s.encHave = 0
		}
	}
}

func (s *Scanner) message(dropped bool) Message {
	return Message{Kind: s.kind, Dropped: dropped, Len: s.total, Offset: s.start, hlen: s.have, header: s.hdr}
}

// Scan follows p, the next bytes of the stream, and calls observe (when not nil) for every
// message whose header completes in p, in stream order. It returns a *MessageError wrapping
// ErrUnknownMessage at a message it cannot follow; that error is sticky.
func (s *Scanner) Scan(p []byte, observe func(Message)) error {
	if s.err != nil {
		return s.err
	}
	for len(p) > 0 {
		n, ev, err := s.run(p)
		if err != nil {
			s.err = err
			return err
		}
		if ev&evHeader != 0 && observe != nil {
			observe(s.message(false))
		}
		p = p[n:]
	}
	return nil
}

// Filter follows p like Scan and removes from it, in place, the bytes of every message whose
// Kind is in drop, moving the rest to the front without changing their order. The bytes to
// forward are carry followed by kept (a prefix of p). carry is almost always empty: it holds
// the type byte of a gii or QEMU message that ended the previous chunk and is kept (whether such
// a message is dropped depends on its sub-type, the next byte); it is valid until the next call.
// observe, when not nil, sees every message whose header completes in p, with Dropped set for
// the removed ones.
//
// On an error (sticky, as for Scan) kept holds what was kept before the bad message; a session
// that cannot be followed should be closed rather than forwarded further.
func (s *Scanner) Filter(p []byte, drop KindSet, observe func(Message)) (carry, kept []byte, err error) {
	if s.err != nil {
		return nil, nil, s.err
	}
	w := 0
	for i := 0; i < len(p); {
		n, ev, err := s.run(p[i:])
		if err != nil {
			s.err = err
			return carry, p[:w], err
		}
		if s.kind == KindUnknown {
			// The run is the type byte of a gii or QEMU message, at the end of p.
			s.held += uint8(copy(s.heldBuf[s.held:], p[i:i+n]))
			i += n
			continue
		}
		keep := !drop.Has(s.kind)
		if s.held > 0 {
			if keep {
				carry = s.carry[:copy(s.carry[:], s.heldBuf[:s.held])]
			}
			s.held = 0
		}
		if keep {
			if w != i {
				copy(p[w:], p[i:i+n])
			}
			w += n
		}
		if ev&evHeader != 0 && observe != nil {
			observe(s.message(!keep))
		}
		i += n
	}
	return carry, p[:w], nil
}

// Between reports whether the stream scanned so far ends at a message boundary.
func (s *Scanner) Between() bool { return s.err == nil && s.need == 0 && !s.inBody }

// Offset is the number of bytes scanned so far.
func (s *Scanner) Offset() int64 { return s.pos }

// Err is the sticky error, if any.
func (s *Scanner) Err() error { return s.err }

// Reset makes s ready for a new stream.
func (s *Scanner) Reset() { *s = Scanner{} }
