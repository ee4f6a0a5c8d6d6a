package rfb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// PixelFormat is the 16-byte PIXEL_FORMAT structure (RFC 6143 7.4).
type PixelFormat struct {
	BPP, Depth                      uint8
	BigEndian, TrueColour           bool
	RedMax, GreenMax, BlueMax       uint16
	RedShift, GreenShift, BlueShift uint8
}

// PixelFormatLen is the wire size of a PixelFormat.
const PixelFormatLen = 16

// Default32 is 32 bpp, depth 24, little-endian 0x00RRGGBB, what most servers announce.
func Default32() PixelFormat {
	return PixelFormat{BPP: 32, Depth: 24, TrueColour: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 16, GreenShift: 8, BlueShift: 0}
}

// NoVNC32 is the format noVNC asks for with SetPixelFormat at depth 24: 32 bpp little-endian
// with red in the lowest byte (the byte order of a canvas ImageData).
func NoVNC32() PixelFormat {
	return PixelFormat{BPP: 32, Depth: 24, TrueColour: true,
		RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 0, GreenShift: 8, BlueShift: 16}
}

// RGB565 is a 16 bpp true-colour format.
func RGB565() PixelFormat {
	return PixelFormat{BPP: 16, Depth: 16, TrueColour: true,
		RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5, BlueShift: 0}
}

// Put writes the wire form of pf into b, which must hold PixelFormatLen bytes; the padding is
// zeroed.
func (pf PixelFormat) Put(b []byte) {
	_ = b[PixelFormatLen-1]
	b[0], b[1] = pf.BPP, pf.Depth
	b[2], b[3] = boolByte(pf.BigEndian), boolByte(pf.TrueColour)
	binary.BigEndian.PutUint16(b[4:], pf.RedMax)
	binary.BigEndian.PutUint16(b[6:], pf.GreenMax)
	binary.BigEndian.PutUint16(b[8:], pf.BlueMax)
	b[10], b[11], b[12] = pf.RedShift, pf.GreenShift, pf.BlueShift
	b[13], b[14], b[15] = 0, 0, 0
}

// Append appends the wire form of pf to dst.
func (pf PixelFormat) Append(dst []byte) []byte {
	var b [PixelFormatLen]byte
	pf.Put(b[:])
	return append(dst, b[:]...)
}

// GetPixelFormat decodes the wire form at the start of b (at least PixelFormatLen bytes). Flags
// other than zero count as true, as servers read them.
func GetPixelFormat(b []byte) PixelFormat {
	_ = b[PixelFormatLen-1]
	return PixelFormat{
		BPP: b[0], Depth: b[1], BigEndian: b[2] != 0, TrueColour: b[3] != 0,
		RedMax:   binary.BigEndian.Uint16(b[4:]),
		GreenMax: binary.BigEndian.Uint16(b[6:]),
		BlueMax:  binary.BigEndian.Uint16(b[8:]),
		RedShift: b[10], GreenShift: b[11], BlueShift: b[12],
	}
}

// BytesPerPixel is BPP/8; RFC 6143 allows 8, 16 and 32 bits per pixel.
func (pf PixelFormat) BytesPerPixel() int { return int(pf.BPP) / 8 }

// Validate reports whether pf is a true-colour format a server can encode: 8, 16 or 32 bits per
// pixel and colour channels that fit the pixel. The depth is not checked: servers ignore it.
func (pf PixelFormat) Validate() error {
	switch pf.BPP {
	case 8, 16, 32:
	default:
		return fmt.Errorf("rfb: bits-per-pixel %d not in {8,16,32}", pf.BPP)
	}
	if !pf.TrueColour {
		return errors.New("rfb: colour-map pixel formats are not supported")
	}
	for _, c := range [...]struct {
		max   uint16
		shift uint8
	}{{pf.RedMax, pf.RedShift}, {pf.GreenMax, pf.GreenShift}, {pf.BlueMax, pf.BlueShift}} {
		if c.max == 0 || uint64(c.max)<<c.shift >= 1<<pf.BPP {
			return fmt.Errorf("rfb: channel max %d shifted by %d does not fit %d bits", c.max, c.shift, pf.BPP)
		}
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

// SetPixelFormatLen is the length of the SetPixelFormat client message.
const SetPixelFormatLen = 4 + PixelFormatLen

// ParseSetPixelFormat parses a SetPixelFormat message at the start of b: the format the client
// wants pixels in from then on (a recorder needs it: the recorded pixels are in it). A message of
// another type is an error wrapping ErrProtocol.
func ParseSetPixelFormat(b []byte) (pf PixelFormat, n int, err error) {
	if len(b) >= 1 && b[0] != MsgSetPixelFormat {
		return pf, 0, &HandshakeError{Err: ErrProtocol, Peer: "client",
			Detail: "message type " + strconv.Itoa(int(b[0])) + " is not SetPixelFormat"}
	}
	if len(b) < SetPixelFormatLen {
		return pf, SetPixelFormatLen, ErrShort
	}
	return GetPixelFormat(b[4:]), SetPixelFormatLen, nil
}

// ClientInitLen is the length of ClientInit: one byte, the shared flag.
const ClientInitLen = 1

// ParseClientInit parses ClientInit (RFC 6143 7.3.1). shared is true for any non-zero flag.
func ParseClientInit(b []byte) (shared bool, n int, err error) {
	if len(b) < 1 {
		return false, 1, ErrShort
	}
	return b[0] != 0, 1, nil
}

// AppendClientInit appends ClientInit.
func AppendClientInit(dst []byte, shared bool) []byte {
	return append(dst, boolByte(shared))
}

// ForceShared sets the shared flag of the ClientInit at the start of p, in place, and reports
// whether it changed it. A client asking for exclusive access (flag 0) would make the server
// disconnect everybody else, the person working on the VM included; a proxy that lets watchers in
// rewrites the flag before forwarding. An empty p is left alone.
func ForceShared(p []byte) bool {
	if len(p) == 0 || p[0] != 0 {
		return false
	}
	p[0] = 1
	return true
}

// ServerInit is the server's last handshake message (RFC 6143 7.3.2).
type ServerInit struct {
	Width, Height uint16
	Format        PixelFormat
	Name          string
}

// serverInitFixed is the part of ServerInit before the name.
const serverInitFixed = 4 + PixelFormatLen + 4

// MaxNameLen bounds the desktop name ParseServerInit accepts, so a hostile server cannot make a
// client hold gigabytes.
const MaxNameLen = 64 << 10

// Append appends the wire form of si to dst.
func (si ServerInit) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, si.Width)
	dst = binary.BigEndian.AppendUint16(dst, si.Height)
	dst = si.Format.Append(dst)
	return AppendReason(dst, si.Name) // a length-prefixed string, as a reason is
}

// ParseServerInit parses a ServerInit at the start of b. With too few bytes it returns ErrShort
// and the number needed (24 until the name length is known). A name over MaxNameLen is an error
// wrapping ErrProtocol. It allocates the name string.
func ParseServerInit(b []byte) (si ServerInit, n int, err error) {
	if len(b) < serverInitFixed {
		return si, serverInitFixed, ErrShort
	}
	l := binary.BigEndian.Uint32(b[20:])
	if l > MaxNameLen {
		return si, 0, &HandshakeError{Err: ErrProtocol, Peer: "server",
			Detail: "ServerInit name of " + strconv.FormatUint(uint64(l), 10) + " bytes"}
	}
	n = serverInitFixed + int(l)
	if len(b) < n {
		return si, n, ErrShort
	}
	si.Width = binary.BigEndian.Uint16(b)
	si.Height = binary.BigEndian.Uint16(b[2:])
	si.Format = GetPixelFormat(b[4:])
	si.Name = string(b[serverInitFixed:n])
	return si, n, nil
}
