// Package wsstream turns an upgraded WebSocket connection into a plain byte stream, the way
// noVNC and websockify carry RFB: every Write goes out as binary frames, Read returns the
// payload of data frames in order, and control frames (ping, close) are answered on the way.
package wsstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/gobwas/ws"
)

// ErrProtocol marks a frame that breaks RFC 6455 for this role.
var ErrProtocol = errors.New("wsstream: protocol error")

// maxClientChunk bounds the scratch buffer a client needs to mask its payload: larger writes
// are sent as several frames, which is still one byte stream to the peer.
const maxClientChunk = 64 << 10

// smallWrite is the size under which the header and payload are copied into one buffer and
// written with one syscall, so small messages do not cost two packets.
const smallWrite = 4 << 10

// Stream is one side of a WebSocket connection carrying a byte stream. Read may be called
// from one goroutine while Write is called from another.
type Stream struct {
	r      io.Reader
	w      io.Writer
	client bool

	// read side, owned by the reader goroutine
	hdrBuf    [ws.MaxHeaderSize]byte
	remaining int64
	mask      [4]byte
	masked    bool
	maskOff   int
	eof       bool
	ctrl      [125]byte

	wmu       sync.Mutex
	wbuf      []byte
	closeSent bool
}

// NewServer wraps the server side of an upgraded connection: it expects masked frames and
// writes unmasked ones. r should be the bufio.Reader the upgrade used if it holds bytes.
func NewServer(r io.Reader, w io.Writer) *Stream { return &Stream{r: r, w: w} }

// NewClient wraps the client side: it masks what it writes and expects unmasked frames.
func NewClient(r io.Reader, w io.Writer) *Stream { return &Stream{r: r, w: w, client: true} }

// Read returns payload bytes of binary (and continuation) frames. It answers pings with pongs
// and a close frame with a close echo, then returns io.EOF.
func (s *Stream) Read(p []byte) (int, error) {
	for {
		if s.remaining > 0 {
			n := len(p)
			if int64(n) > s.remaining {
				n = int(s.remaining)
			}
			n, err := s.r.Read(p[:n])
			if s.masked {
				ws.Cipher(p[:n], s.mask, s.maskOff)
				s.maskOff += n
			}
			s.remaining -= int64(n)
			if err == io.EOF && s.remaining > 0 {
				err = io.ErrUnexpectedEOF
			} else if err == io.EOF && n > 0 {
				err = nil
			}
			return n, err
		}
		if s.eof {
			return 0, io.EOF
		}
		if len(p) == 0 {
			return 0, nil
		}
		if err := s.nextFrame(); err != nil {
			return 0, err
		}
	}
}

func (s *Stream) nextFrame() error {
	h, err := ws.ReadHeaderBuffer(s.r, s.hdrBuf[:])
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return fmt.Errorf("wsstream: read frame header: %w", err)
	}
	if h.Rsv != 0 {
		return fmt.Errorf("%w: reserved bits %#x set", ErrProtocol, h.Rsv)
	}
	if h.Masked == s.client {
		return fmt.Errorf("%w: frame masked=%v on the %s side", ErrProtocol, h.Masked, s.side())
	}
	switch h.OpCode {
	case ws.OpBinary, ws.OpContinuation:
		s.remaining, s.mask, s.masked, s.maskOff = h.Length, h.Mask, h.Masked, 0
		return nil
	case ws.OpPing, ws.OpPong, ws.OpClose:
		if h.Length > int64(len(s.ctrl)) || !h.Fin {
			return fmt.Errorf("%w: control frame of %d bytes, fin=%v", ErrProtocol, h.Length, h.Fin)
		}
		p := s.ctrl[:h.Length]
		if _, err := io.ReadFull(s.r, p); err != nil {
			return fmt.Errorf("wsstream: read control frame: %w", err)
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			return s.writeFrame(ws.OpPong, p)
		case ws.OpClose:
			s.eof = true
			code := ws.StatusNormalClosure
			if len(p) >= 2 {
				code, _ = ws.ParseCloseFrameDataUnsafe(p)
			}
			if err := s.sendClose(code, ""); err != nil {
				return err
			}
			return io.EOF
		}
		return nil
	default:
		return fmt.Errorf("%w: opcode %v on a binary stream", ErrProtocol, h.OpCode)
	}
}

func (s *Stream) side() string {
	if s.client {
		return "client"
	}
	return "server"
}

// Write sends p as binary frames (one frame on the server side; chunks of 64 KiB on the
// client side, because the client must mask a copy).
func (s *Stream) Write(p []byte) (int, error) {
	if !s.client {
		if err := s.writeFrame(ws.OpBinary, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	done := 0
	for done < len(p) || len(p) == 0 {
		n := min(len(p)-done, maxClientChunk)
		if err := s.writeFrame(ws.OpBinary, p[done:done+n]); err != nil {
			return done, err
		}
		done += n
		if len(p) == 0 {
			break
		}
	}
	return done, nil
}

// SendClose sends a close frame with code and reason (once; later calls do nothing). The
// caller closes the connection after the peer's echo or a deadline.
func (s *Stream) SendClose(code ws.StatusCode, reason string) error {
	return s.sendClose(code, reason)
}

func (s *Stream) sendClose(code ws.StatusCode, reason string) error {
	s.wmu.Lock()
	sent := s.closeSent
	s.closeSent = true
	s.wmu.Unlock()
	if sent {
		return nil
	}
	var body [125]byte
	if len(reason) > len(body)-2 {
		reason = reason[:len(body)-2]
	}
	ws.PutCloseFrameBody(body[:], code, reason)
	return s.writeFrame(ws.OpClose, body[:2+len(reason)])
}

// writeFrame writes one final frame. Header and payload go out in one Write so frames from
// the reader goroutine (pongs) and the writer never interleave.
func (s *Stream) writeFrame(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if s.client {
		h.Masked = true
		h.Mask = ws.NewMask()
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	hs := ws.HeaderSize(h)
	if s.client || len(p) <= smallWrite {
		need := hs + len(p)
		if cap(s.wbuf) < need {
			s.wbuf = make([]byte, need)
		}
		b := s.wbuf[:need]
		putHeader(b, h)
		copy(b[hs:], p)
		if h.Masked {
			ws.Cipher(b[hs:], h.Mask, 0)
		}
		if _, err := s.w.Write(b); err != nil {
			return fmt.Errorf("wsstream: write frame: %w", err)
		}
		return nil
	}
	// Large server frames: header and payload in one writev, so the payload is not copied.
	var hb [ws.MaxHeaderSize]byte
	putHeader(hb[:hs], h)
	bufs := net.Buffers{hb[:hs], p}
	if _, err := bufs.WriteTo(s.w); err != nil {
		return fmt.Errorf("wsstream: write frame: %w", err)
	}
	return nil
}

// putHeader encodes h into b, which is exactly ws.HeaderSize(h) long (RFC 6455 5.2).
func putHeader(b []byte, h ws.Header) {
	b[0] = byte(h.OpCode)
	if h.Fin {
		b[0] |= 0x80
	}
	var mask byte
	if h.Masked {
		mask = 0x80
	}
	n := 2
	switch {
	case h.Length < 126:
		b[1] = mask | byte(h.Length)
	case h.Length <= 0xffff:
		b[1] = mask | 126
		binary.BigEndian.PutUint16(b[2:], uint16(h.Length))
		n = 4
	default:
		b[1] = mask | 127
		binary.BigEndian.PutUint64(b[2:], uint64(h.Length))
		n = 10
	}
	if h.Masked {
		copy(b[n:], h.Mask[:])
	}
}

// Dial connects to a ws:// URL the way noVNC does (subprotocol "binary" offered, masked
// frames), from laddr when it is not nil, and returns the client stream and the connection
// (which the caller closes).
func Dial(ctx context.Context, url string, laddr *net.TCPAddr) (*Stream, net.Conn, error) {
	nd := net.Dialer{LocalAddr: laddr}
	d := ws.Dialer{
		Protocols: []string{"binary"},
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nd.DialContext(ctx, network, addr)
		},
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("wsstream: dial %s: %w", url, err)
	}
	var r io.Reader = conn
	if br != nil {
		// The server spoke first (RFB does) and the upgrade read past the 101: keep those bytes.
		r = io.MultiReader(br, conn)
	}
	return NewClient(r, conn), conn, nil
}
