// Package rfbclient is the client half of RFB (RFC 6143) that the load generator and tests
// need: the handshake (None or VNC authentication, RFB 3.3 to 3.8), the few client messages a
// viewer sends, and reading Raw framebuffer updates. It is not a viewer. The wire format comes
// from vncedge/rfb; this package adds the io.Reader-based flow a test tool can afford.
package rfbclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"vncedge/rfb"
)

// ErrAuth is returned (wrapped) when the server refuses the password.
var ErrAuth = rfb.ErrAuthFailed

// Handshake runs the client side of the RFB handshake on rw with rfb.VMHandshake: version,
// security (None, or VNC authentication with password), then ClientInit (shared) and
// ServerInit. It reads only as far as the handshake goes, so rw may be the caller's buffered
// reader for what follows.
func Handshake(rw io.ReadWriter, password string) (rfb.ServerInit, error) {
	h := rfb.NewVMHandshake(rfb.VMConfig{Password: []byte(password)})
	var buf [64]byte
	for !h.Done() {
		n := min(h.Need(), len(buf))
		if _, err := io.ReadFull(rw, buf[:n]); err != nil {
			return rfb.ServerInit{}, fmt.Errorf("rfbclient: read handshake: %w", err)
		}
		_, herr := h.Feed(buf[:n])
		if out := h.AppendOutput(nil); len(out) > 0 {
			if _, err := rw.Write(out); err != nil {
				return rfb.ServerInit{}, fmt.Errorf("rfbclient: send handshake: %w", err)
			}
		}
		if herr != nil {
			return rfb.ServerInit{}, fmt.Errorf("rfbclient: %w", herr)
		}
	}
	if _, err := rw.Write(rfb.AppendClientInit(nil, true)); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: send ClientInit: %w", err)
	}
	return ReadServerInit(rw)
}

// ReadServerInit reads a ServerInit from r, with rfb.ParseServerInit's bound on the name.
func ReadServerInit(r io.Reader) (rfb.ServerInit, error) {
	b := make([]byte, 24)
	if _, err := io.ReadFull(r, b); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: read ServerInit: %w", err)
	}
	si, n, err := rfb.ParseServerInit(b)
	if err == rfb.ErrShort {
		b = append(b, make([]byte, n-len(b))...)
		if _, err := io.ReadFull(r, b[24:]); err != nil {
			return rfb.ServerInit{}, fmt.Errorf("rfbclient: read ServerInit name: %w", err)
		}
		si, _, err = rfb.ParseServerInit(b)
	}
	if err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: %w", err)
	}
	return si, nil
}

// SetPixelFormat asks the server to send pixels in pf.
func SetPixelFormat(w io.Writer, pf rfb.PixelFormat) error {
	return write(w, rfb.AppendSetPixelFormat(nil, pf), "SetPixelFormat")
}

// SetEncodings announces the encodings the client accepts.
func SetEncodings(w io.Writer, encodings ...int32) error {
	return write(w, rfb.AppendSetEncodings(nil, encodings...), "SetEncodings")
}

// RequestUpdate sends a FramebufferUpdateRequest.
func RequestUpdate(w io.Writer, incremental bool, x, y, width, height uint16) error {
	return write(w, rfb.AppendFramebufferUpdateRequest(nil, incremental, x, y, width, height), "FramebufferUpdateRequest")
}

// KeyEvent sends a key press or release of an X11 keysym.
func KeyEvent(w io.Writer, down bool, keysym uint32) error {
	return write(w, rfb.AppendKeyEvent(nil, down, keysym), "KeyEvent")
}

// PointerEvent sends the pointer position and button mask.
func PointerEvent(w io.Writer, buttons uint8, x, y uint16) error {
	return write(w, rfb.AppendPointerEvent(nil, buttons, x, y), "PointerEvent")
}

// ClientCutText sends clipboard text (Latin-1 per the RFC; the bytes are sent as given).
func ClientCutText(w io.Writer, text []byte) error {
	return write(w, rfb.AppendClientCutText(nil, text), "ClientCutText")
}

func write(w io.Writer, b []byte, what string) error {
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("rfbclient: send %s: %w", what, err)
	}
	return nil
}

// Rect is one rectangle header of a FramebufferUpdate.
type Rect struct {
	X, Y, W, H uint16
	Encoding   int32
}

// maxSkip bounds the server messages ReadUpdate skips while waiting for an update.
const maxSkip = 1 << 16

// ReadUpdate reads server messages until a FramebufferUpdate and consumes it. Bell,
// ServerCutText and SetColourMapEntries before it are skipped. Only Raw rectangles are
// understood; bytesPerPixel must match the pixel format in force. When pixels is not nil it
// gets each rectangle and its pixel data (valid only during the call). It returns the number
// of rectangles and of pixel bytes.
func ReadUpdate(r io.Reader, bytesPerPixel int, pixels func(Rect, []byte)) (rects, n int, err error) {
	var b [16]byte
	for skipped := 0; ; skipped++ {
		if skipped > maxSkip {
			return 0, 0, errors.New("rfbclient: no FramebufferUpdate after many other messages")
		}
		if _, err := io.ReadFull(r, b[:1]); err != nil {
			return 0, 0, fmt.Errorf("rfbclient: read message type: %w", err)
		}
		if b[0] == rfb.MsgFramebufferUpdate {
			break
		}
		if err := skipServerMessage(r, b[0]); err != nil {
			return 0, 0, err
		}
	}
	if _, err := io.ReadFull(r, b[:3]); err != nil {
		return 0, 0, fmt.Errorf("rfbclient: read FramebufferUpdate: %w", err)
	}
	count := int(binary.BigEndian.Uint16(b[1:]))
	var buf []byte
	for i := 0; i < count; i++ {
		if _, err := io.ReadFull(r, b[:12]); err != nil {
			return rects, n, fmt.Errorf("rfbclient: read rectangle %d: %w", i, err)
		}
		rc := Rect{
			X: binary.BigEndian.Uint16(b[0:]), Y: binary.BigEndian.Uint16(b[2:]),
			W: binary.BigEndian.Uint16(b[4:]), H: binary.BigEndian.Uint16(b[6:]),
			Encoding: int32(binary.BigEndian.Uint32(b[8:])),
		}
		if rc.Encoding != rfb.EncodingRaw {
			return rects, n, fmt.Errorf("rfbclient: rectangle %d: encoding %d is not Raw", i, rc.Encoding)
		}
		size := int(rc.W) * int(rc.H) * bytesPerPixel
		if pixels == nil {
			k, err := io.CopyN(io.Discard, r, int64(size))
			n += int(k)
			if err != nil {
				return rects, n, fmt.Errorf("rfbclient: read rectangle %d pixels: %w", i, err)
			}
		} else {
			if cap(buf) < size {
				buf = make([]byte, size)
			}
			if _, err := io.ReadFull(r, buf[:size]); err != nil {
				return rects, n, fmt.Errorf("rfbclient: read rectangle %d pixels: %w", i, err)
			}
			n += size
			pixels(rc, buf[:size])
		}
		rects++
	}
	return rects, n, nil
}

func skipServerMessage(r io.Reader, t byte) error {
	var b [8]byte
	switch t {
	case rfb.MsgBell:
		return nil
	case rfb.MsgSetColourMapEntries:
		if _, err := io.ReadFull(r, b[:5]); err != nil {
			return fmt.Errorf("rfbclient: read SetColourMapEntries: %w", err)
		}
		_, err := io.CopyN(io.Discard, r, 6*int64(binary.BigEndian.Uint16(b[3:])))
		return err
	case rfb.MsgServerCutText:
		if _, err := io.ReadFull(r, b[:7]); err != nil {
			return fmt.Errorf("rfbclient: read ServerCutText: %w", err)
		}
		n := int64(int32(binary.BigEndian.Uint32(b[3:])))
		if n < 0 {
			n = -n
		}
		_, err := io.CopyN(io.Discard, r, n)
		return err
	default:
		return fmt.Errorf("rfbclient: unexpected server message type %d", t)
	}
}
