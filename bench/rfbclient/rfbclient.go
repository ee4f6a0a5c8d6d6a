// Package rfbclient is the client half of RFB 3.8 (RFC 6143) that the load generator and
// tests need: the handshake (None or VNC authentication), the few client messages a viewer
// sends, and reading Raw framebuffer updates. It is not a viewer.
package rfbclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"vncedge/bench/rfb"
)

// ErrAuth is returned when the server refuses the password.
var ErrAuth = errors.New("rfbclient: authentication failed")

// maxReason bounds a failure reason string from the server.
const maxReason = 4096

// Handshake runs the client side of the RFB 3.8 handshake on rw: version, security (None, or
// VNC authentication with password when the server offers only that), ClientInit (shared)
// and ServerInit.
func Handshake(rw io.ReadWriter, password string) (rfb.ServerInit, error) {
	var ver [12]byte
	if _, err := io.ReadFull(rw, ver[:]); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: read server version: %w", err)
	}
	if string(ver[:4]) != "RFB " {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: not an RFB server: %q", ver[:])
	}
	if _, err := io.WriteString(rw, rfb.ProtocolVersion); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: send version: %w", err)
	}
	var n [1]byte
	if _, err := io.ReadFull(rw, n[:]); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: read security types: %w", err)
	}
	if n[0] == 0 {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: server refused: %s", readReason(rw))
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(rw, types); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: read security types: %w", err)
	}
	var choice byte
	for _, t := range types {
		if t == rfb.SecNone {
			choice = t
			break
		}
		if t == rfb.SecVNCAuth && password != "" {
			choice = t
		}
	}
	if choice == 0 {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: no usable security type in %v", types)
	}
	if _, err := rw.Write([]byte{choice}); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: send security type: %w", err)
	}
	if choice == rfb.SecVNCAuth {
		var challenge [rfb.ChallengeLen]byte
		if _, err := io.ReadFull(rw, challenge[:]); err != nil {
			return rfb.ServerInit{}, fmt.Errorf("rfbclient: read challenge: %w", err)
		}
		resp := rfb.VNCAuthResponse(password, challenge)
		if _, err := rw.Write(resp[:]); err != nil {
			return rfb.ServerInit{}, fmt.Errorf("rfbclient: send challenge response: %w", err)
		}
	}
	var result [4]byte
	if _, err := io.ReadFull(rw, result[:]); err != nil {
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: read security result: %w", err)
	}
	if binary.BigEndian.Uint32(result[:]) != 0 {
		return rfb.ServerInit{}, fmt.Errorf("%w: %s", ErrAuth, readReason(rw))
	}
	if _, err := rw.Write([]byte{1}); err != nil { // ClientInit: shared
		return rfb.ServerInit{}, fmt.Errorf("rfbclient: send ClientInit: %w", err)
	}
	si, err := rfb.ReadServerInit(rw)
	if err != nil {
		return si, fmt.Errorf("rfbclient: %w", err)
	}
	return si, nil
}

func readReason(r io.Reader) string {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "(no reason)"
	}
	l := min(binary.BigEndian.Uint32(n[:]), maxReason)
	b := make([]byte, l)
	k, _ := io.ReadFull(r, b)
	return string(b[:k])
}

// SetPixelFormat asks the server to send pixels in pf.
func SetPixelFormat(w io.Writer, pf rfb.PixelFormat) error {
	var b [4 + rfb.PixelFormatLen]byte
	b[0] = rfb.MsgSetPixelFormat
	pf.Marshal(b[4:])
	return write(w, b[:], "SetPixelFormat")
}

// SetEncodings announces the encodings the client accepts.
func SetEncodings(w io.Writer, encodings ...int32) error {
	b := make([]byte, 4, 4+4*len(encodings))
	b[0] = rfb.MsgSetEncodings
	binary.BigEndian.PutUint16(b[2:], uint16(len(encodings)))
	for _, e := range encodings {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	return write(w, b, "SetEncodings")
}

// RequestUpdate sends a FramebufferUpdateRequest.
func RequestUpdate(w io.Writer, incremental bool, x, y, width, height uint16) error {
	var b [10]byte
	b[0] = rfb.MsgFramebufferUpdateRequest
	if incremental {
		b[1] = 1
	}
	binary.BigEndian.PutUint16(b[2:], x)
	binary.BigEndian.PutUint16(b[4:], y)
	binary.BigEndian.PutUint16(b[6:], width)
	binary.BigEndian.PutUint16(b[8:], height)
	return write(w, b[:], "FramebufferUpdateRequest")
}

// KeyEvent sends a key press or release of an X11 keysym.
func KeyEvent(w io.Writer, down bool, keysym uint32) error {
	var b [8]byte
	b[0] = rfb.MsgKeyEvent
	if down {
		b[1] = 1
	}
	binary.BigEndian.PutUint32(b[4:], keysym)
	return write(w, b[:], "KeyEvent")
}

// PointerEvent sends the pointer position and button mask.
func PointerEvent(w io.Writer, buttons uint8, x, y uint16) error {
	var b [6]byte
	b[0] = rfb.MsgPointerEvent
	b[1] = buttons
	binary.BigEndian.PutUint16(b[2:], x)
	binary.BigEndian.PutUint16(b[4:], y)
	return write(w, b[:], "PointerEvent")
}

// ClientCutText sends clipboard text (Latin-1 per the RFC; the bytes are sent as given).
func ClientCutText(w io.Writer, text []byte) error {
	b := make([]byte, 8, 8+len(text))
	b[0] = rfb.MsgClientCutText
	binary.BigEndian.PutUint32(b[4:], uint32(len(text)))
	return write(w, append(b, text...), "ClientCutText")
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
