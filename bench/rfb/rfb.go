// Package rfb holds the RFB 3.8 (RFC 6143) wire format shared by the simulated VM and the
// benchmark client: message numbers, the pixel format, ServerInit and VNC authentication.
package rfb

import (
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ProtocolVersion is the only version the simulated VM speaks (RFC 6143 7.1.1).
const ProtocolVersion = "RFB 003.008\n"

// Security types (RFC 6143 7.1.2).
const (
	SecNone    = 1
	SecVNCAuth = 2
)

// Client-to-server message types (RFC 6143 7.5 and the IANA registry it points to).
const (
	MsgSetPixelFormat           = 0
	MsgSetEncodings             = 2
	MsgFramebufferUpdateRequest = 3
	MsgKeyEvent                 = 4
	MsgPointerEvent             = 5
	MsgClientCutText            = 6
	MsgEnableContinuousUpdates  = 150
	MsgClientFence              = 248
	MsgXvp                      = 250
	MsgSetDesktopSize           = 251
	MsgQEMU                     = 255
)

// Server-to-client message types (RFC 6143 7.6).
const (
	MsgFramebufferUpdate   = 0
	MsgSetColourMapEntries = 1
	MsgBell                = 2
	MsgServerCutText       = 3
)

// EncodingRaw is the only rectangle encoding the simulated VM sends (RFC 6143 7.7.1).
const EncodingRaw = 0

// PixelFormat is the 16-byte PIXEL_FORMAT structure (RFC 6143 7.4).
type PixelFormat struct {
	BPP, Depth                      uint8
	BigEndian, TrueColour           bool
	RedMax, GreenMax, BlueMax       uint16
	RedShift, GreenShift, BlueShift uint8
}

// Default32 is the format the simulated VM announces: 32 bpp, depth 24, little-endian
// 0x00RRGGBB, which is also what noVNC asks for.
func Default32() PixelFormat {
	return PixelFormat{BPP: 32, Depth: 24, TrueColour: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 16, GreenShift: 8, BlueShift: 0}
}

// RGB565 is a 16 bpp true-colour format, handy for tests of the 16 bpp path.
func RGB565() PixelFormat {
	return PixelFormat{BPP: 16, Depth: 16, TrueColour: true,
		RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5, BlueShift: 0}
}

// PixelFormatLen is the wire size of a PixelFormat.
const PixelFormatLen = 16

// Marshal writes the wire form of pf into b, which must hold PixelFormatLen bytes.
func (pf PixelFormat) Marshal(b []byte) {
	_ = b[PixelFormatLen-1]
	b[0], b[1] = pf.BPP, pf.Depth
	b[2], b[3] = boolByte(pf.BigEndian), boolByte(pf.TrueColour)
	binary.BigEndian.PutUint16(b[4:], pf.RedMax)
	binary.BigEndian.PutUint16(b[6:], pf.GreenMax)
	binary.BigEndian.PutUint16(b[8:], pf.BlueMax)
	b[10], b[11], b[12] = pf.RedShift, pf.GreenShift, pf.BlueShift
	b[13], b[14], b[15] = 0, 0, 0
}

// UnmarshalPixelFormat decodes the wire form in b (at least PixelFormatLen bytes).
func UnmarshalPixelFormat(b []byte) PixelFormat {
	_ = b[PixelFormatLen-1]
	return PixelFormat{
		BPP: b[0], Depth: b[1], BigEndian: b[2] != 0, TrueColour: b[3] != 0,
		RedMax:   binary.BigEndian.Uint16(b[4:]),
		GreenMax: binary.BigEndian.Uint16(b[6:]),
		BlueMax:  binary.BigEndian.Uint16(b[8:]),
		RedShift: b[10], GreenShift: b[11], BlueShift: b[12],
	}
}

// BytesPerPixel is BPP/8; RFC 6143 allows 8, 16 and 32.
func (pf PixelFormat) BytesPerPixel() int { return int(pf.BPP) / 8 }

// Validate reports whether the simulated VM can encode pixels in pf.
func (pf PixelFormat) Validate() error {
	switch pf.BPP {
	case 8, 16, 32:
	default:
		return fmt.Errorf("rfb: bits-per-pixel %d not in {8,16,32}", pf.BPP)
	}
	if !pf.TrueColour {
		return errors.New("rfb: colour-map pixel formats are not supported")
	}
	return nil
}

// Pixel encodes an 8-bit-per-channel colour in pf into dst (BytesPerPixel bytes).
func (pf PixelFormat) Pixel(dst []byte, r, g, b uint8) {
	v := scale(r, pf.RedMax)<<pf.RedShift | scale(g, pf.GreenMax)<<pf.GreenShift | scale(b, pf.BlueMax)<<pf.BlueShift
	switch pf.BPP {
	case 8:
		dst[0] = byte(v)
	case 16:
		if pf.BigEndian {
			binary.BigEndian.PutUint16(dst, uint16(v))
		} else {
			binary.LittleEndian.PutUint16(dst, uint16(v))
		}
	case 32:
		if pf.BigEndian {
			binary.BigEndian.PutUint32(dst, v)
		} else {
			binary.LittleEndian.PutUint32(dst, v)
		}
	}
}

func scale(c uint8, max uint16) uint32 { return uint32(c) * uint32(max) / 255 }

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// ServerInit is the server's last handshake message (RFC 6143 7.3.2).
type ServerInit struct {
	Width, Height uint16
	Format        PixelFormat
	Name          string
}

// Append appends the wire form of si to b.
func (si ServerInit) Append(b []byte) []byte {
	var hdr [4 + PixelFormatLen + 4]byte
	binary.BigEndian.PutUint16(hdr[0:], si.Width)
	binary.BigEndian.PutUint16(hdr[2:], si.Height)
	si.Format.Marshal(hdr[4:])
	binary.BigEndian.PutUint32(hdr[20:], uint32(len(si.Name)))
	return append(append(b, hdr[:]...), si.Name...)
}

// MaxNameLen bounds the desktop name a client accepts, so a hostile server cannot make it
// allocate gigabytes.
const MaxNameLen = 1 << 16

// ReadServerInit reads a ServerInit from r.
func ReadServerInit(r io.Reader) (ServerInit, error) {
	var hdr [4 + PixelFormatLen + 4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return ServerInit{}, fmt.Errorf("rfb: read ServerInit: %w", err)
	}
	si := ServerInit{
		Width:  binary.BigEndian.Uint16(hdr[0:]),
		Height: binary.BigEndian.Uint16(hdr[2:]),
		Format: UnmarshalPixelFormat(hdr[4:]),
	}
	n := binary.BigEndian.Uint32(hdr[20:])
	if n > MaxNameLen {
		return si, fmt.Errorf("rfb: ServerInit name length %d over %d", n, MaxNameLen)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return si, fmt.Errorf("rfb: read ServerInit name: %w", err)
	}
	si.Name = string(name)
	return si, nil
}

// ChallengeLen is the size of the VNC authentication challenge and response.
const ChallengeLen = 16

// VNCAuthResponse returns the DES encryption of challenge under password, as RFC 6143
// 7.2.2 and every VNC implementation do it: the password is cut or zero-padded to 8 bytes
// and each key byte has its bits reversed (the historical quirk the RFC errata describes).
func VNCAuthResponse(password string, challenge [ChallengeLen]byte) [ChallengeLen]byte {
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		key[i] = reverseBits(b)
	}
	c, err := des.NewCipher(key[:])
	if err != nil {
		// des.NewCipher fails only for a key that is not 8 bytes long.
		panic(err)
	}
	var out [ChallengeLen]byte
	c.Encrypt(out[:8], challenge[:8])
	c.Encrypt(out[8:], challenge[8:])
	return out
}

func reverseBits(b byte) byte {
	b = b>>4 | b<<4
	b = (b&0xcc)>>2 | (b&0x33)<<2
	b = (b&0xaa)>>1 | (b&0x55)<<1
	return b
}
