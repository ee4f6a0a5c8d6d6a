package rfb

import (
	"encoding/binary"
	"strconv"
)

// The VeNCrypt version this package speaks. 0.1 (u8 sub-types) is obsolete; noVNC and TigerVNC
// speak 0.2.
const (
	VeNCryptMajor = 0
	VeNCryptMinor = 2
)

// VeNCrypt sub-types (u32). A VeNCrypt server may also list the plain types None (1) and VNC
// Authentication (2) among them, which need no TLS.
const (
	VeNCryptNone      uint32 = 1
	VeNCryptVNCAuth   uint32 = 2
	VeNCryptPlain     uint32 = 256
	VeNCryptTLSNone   uint32 = 257
	VeNCryptTLSVnc    uint32 = 258
	VeNCryptTLSPlain  uint32 = 259
	VeNCryptX509None  uint32 = 260
	VeNCryptX509Vnc   uint32 = 261
	VeNCryptX509Plain uint32 = 262
	VeNCryptTLSSASL   uint32 = 263
	VeNCryptX509SASL  uint32 = 264
)

// MaxVeNCryptSubtypes is the most sub-types one list can hold (the count is a u8).
const MaxVeNCryptSubtypes = 255

// VeNCryptSubtypeName names a sub-type for logs and errors, e.g. "X509Vnc (261)".
func VeNCryptSubtypeName(t uint32) string {
	var n string
	switch t {
	case VeNCryptNone:
		n = "None"
	case VeNCryptVNCAuth:
		n = "VncAuth"
	case VeNCryptPlain:
		n = "Plain"
	case VeNCryptTLSNone:
		n = "TLSNone"
	case VeNCryptTLSVnc:
		n = "TLSVnc"
	case VeNCryptTLSPlain:
		n = "TLSPlain"
	case VeNCryptX509None:
		n = "X509None"
	case VeNCryptX509Vnc:
		n = "X509Vnc"
	case VeNCryptX509Plain:
		n = "X509Plain"
	case VeNCryptTLSSASL:
		n = "TLSSASL"
	case VeNCryptX509SASL:
		n = "X509SASL"
	default:
		return "sub-type " + strconv.FormatUint(uint64(t), 10)
	}
	return n + " (" + strconv.FormatUint(uint64(t), 10) + ")"
}

// VeNCryptSubtypeTLS reports whether sub-type t starts a TLS session after it is accepted.
// TLS* sub-types use anonymous Diffie-Hellman cipher suites, which Go's crypto/tls does not
// implement; X509* sub-types use certificates.
func VeNCryptSubtypeTLS(t uint32) bool {
	return t >= VeNCryptTLSNone && t <= VeNCryptX509SASL
}

// ParseVeNCryptVersion parses a VeNCrypt version (u8 major, u8 minor): the server's highest, or
// the client's choice. n is 2.
func ParseVeNCryptVersion(b []byte) (major, minor uint8, n int, err error) {
	if len(b) < 2 {
		return 0, 0, 2, ErrShort
	}
	return b[0], b[1], 2, nil
}

// AppendVeNCryptVersion appends a VeNCrypt version.
func AppendVeNCryptVersion(dst []byte, major, minor uint8) []byte {
	return append(dst, major, minor)
}

// ParseVeNCryptAck parses the server's u8 answer to the client's VeNCrypt version: 0 accepts it,
// anything else refuses it. n is 1.
func ParseVeNCryptAck(b []byte) (ok bool, n int, err error) {
	if len(b) < 1 {
		return false, 1, ErrShort
	}
	return b[0] == 0, 1, nil
}

// AppendVeNCryptAck appends the server's answer to the client's VeNCrypt version.
func AppendVeNCryptAck(dst []byte, ok bool) []byte {
	if ok {
		return append(dst, 0)
	}
	return append(dst, 1)
}

// VeNCryptSubtypes is a VeNCrypt sub-type list as it is on the wire (u32s), aliasing the
// parsed bytes.
type VeNCryptSubtypes []byte

// Len is the number of sub-types.
func (l VeNCryptSubtypes) Len() int { return len(l) / 4 }

// At is sub-type i.
func (l VeNCryptSubtypes) At(i int) uint32 { return binary.BigEndian.Uint32(l[4*i:]) }

// Has reports whether t is in the list.
func (l VeNCryptSubtypes) Has(t uint32) bool {
	for i := 0; i < l.Len(); i++ {
		if l.At(i) == t {
			return true
		}
	}
	return false
}

// ParseVeNCryptSubtypes parses the server's sub-type list: a u8 count, then that many u32s.
// An empty list is valid on the wire (the server has nothing to offer).
func ParseVeNCryptSubtypes(b []byte) (list VeNCryptSubtypes, n int, err error) {
	if len(b) < 1 {
		return nil, 1, ErrShort
	}
	n = 1 + 4*int(b[0])
	if len(b) < n {
		return nil, n, ErrShort
	}
	return VeNCryptSubtypes(b[1:n]), n, nil
}

// AppendVeNCryptSubtypes appends a sub-type list; more than MaxVeNCryptSubtypes are cut.
func AppendVeNCryptSubtypes(dst []byte, subtypes ...uint32) []byte {
	subtypes = subtypes[:min(len(subtypes), MaxVeNCryptSubtypes)]
	dst = append(dst, byte(len(subtypes)))
	for _, t := range subtypes {
		dst = binary.BigEndian.AppendUint32(dst, t)
	}
	return dst
}

// ParseVeNCryptChoice parses the client's chosen sub-type (u32). n is 4.
func ParseVeNCryptChoice(b []byte) (subtype uint32, n int, err error) {
	if len(b) < 4 {
		return 0, 4, ErrShort
	}
	return binary.BigEndian.Uint32(b), 4, nil
}

// AppendVeNCryptChoice appends the client's chosen sub-type.
func AppendVeNCryptChoice(dst []byte, subtype uint32) []byte {
	return binary.BigEndian.AppendUint32(dst, subtype)
}

// ParseVeNCryptTLSAck parses the server's u8 answer to a TLS sub-type choice: 1 means the TLS
// handshake follows, 0 that the server refuses. Plain sub-types (None, VncAuth, Plain) get no
// such answer: their own exchange follows at once, as TigerVNC and noVNC do it.
func ParseVeNCryptTLSAck(b []byte) (accepted bool, n int, err error) {
	if len(b) < 1 {
		return false, 1, ErrShort
	}
	return b[0] == 1, 1, nil
}

// AppendVeNCryptTLSAck appends the server's answer to a TLS sub-type choice.
func AppendVeNCryptTLSAck(dst []byte, accepted bool) []byte {
	if accepted {
		return append(dst, 1)
	}
	return append(dst, 0)
}
