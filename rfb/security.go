package rfb

import (
	"encoding/binary"
	"strconv"
)

// SecurityType is an RFB security type number (RFC 6143 7.1.2 and the IANA registry).
type SecurityType uint8

// Security types. The proxy uses None, VNCAuth and VeNCrypt; the others are named so that logs
// and errors can say what a server offered.
const (
	SecInvalid    SecurityType = 0
	SecNone       SecurityType = 1
	SecVNCAuth    SecurityType = 2
	SecRA2        SecurityType = 5
	SecRA2ne      SecurityType = 6
	SecTight      SecurityType = 16
	SecUltra      SecurityType = 17
	SecTLS        SecurityType = 18
	SecVeNCrypt   SecurityType = 19
	SecSASL       SecurityType = 20
	SecMD5        SecurityType = 21
	SecXVP        SecurityType = 22
	SecARD        SecurityType = 30
	SecMSLogonII  SecurityType = 113
	SecRA2_256    SecurityType = 129
	SecRA2ne_256  SecurityType = 130
	SecUltraMSLgn SecurityType = 0xfa
)

// String gives the type's name and number, e.g. "VNC Authentication (2)".
func (t SecurityType) String() string {
	if n := t.name(); n != "" {
		return n + " (" + strconv.Itoa(int(t)) + ")"
	}
	return "type " + strconv.Itoa(int(t))
}

func (t SecurityType) name() string {
	switch t {
	case SecInvalid:
		return "Invalid"
	case SecNone:
		return "None"
	case SecVNCAuth:
		return "VNC Authentication"
	case SecRA2:
		return "RA2"
	case SecRA2ne:
		return "RA2ne"
	case SecTight:
		return "Tight"
	case SecUltra:
		return "Ultra"
	case SecTLS:
		return "TLS"
	case SecVeNCrypt:
		return "VeNCrypt"
	case SecSASL:
		return "SASL"
	case SecMD5:
		return "MD5 hash"
	case SecXVP:
		return "xvp"
	case SecARD:
		return "Apple Remote Desktop"
	case SecMSLogonII:
		return "MS Logon II"
	case SecRA2_256:
		return "RA2_256"
	case SecRA2ne_256:
		return "RA2ne_256"
	case SecUltraMSLgn:
		return "UltraVNC MS Logon"
	}
	return ""
}

// MaxReasonLen bounds the reason strings this package parses whole (ParseReason). RFC 6143 sets
// no limit; real servers send a sentence.
const MaxReasonLen = 64 << 10

// MaxKeptReason is how much of a peer's reason string the handshake machines keep for their
// error. They read no further, so a hostile peer cannot make them buffer more.
const MaxKeptReason = 128

// Result codes of the SecurityResult message (RFC 6143 7.1.3). Some servers use 2 for "too many
// attempts"; anything but ResultOK is a failure.
const (
	ResultOK      uint32 = 0
	ResultFailed  uint32 = 1
	ResultTooMany uint32 = 2
)

// ParseSecurityTypes parses the server's security type list of RFB 3.7 and 3.8 at the start of
// b: a count and that many types. types aliases b. A count of zero means the server refuses the
// connection and a reason string follows (ParseReason): types is then empty and n is 1. With too
// few bytes it returns ErrShort and the bytes needed.
func ParseSecurityTypes(b []byte) (types []byte, n int, err error) {
	if len(b) < 1 {
		return nil, 1, ErrShort
	}
	n = 1 + int(b[0])
	if len(b) < n {
		return nil, n, ErrShort
	}
	return b[1:n], n, nil
}

// AppendSecurityTypes appends a 3.7/3.8 security type list. More than 255 types are cut to 255;
// no types is the refusal form, which must be followed by a reason (AppendSecurityFailure does
// both).
func AppendSecurityTypes(dst []byte, types ...SecurityType) []byte {
	types = types[:min(len(types), 255)]
	dst = append(dst, byte(len(types)))
	for _, t := range types {
		dst = append(dst, byte(t))
	}
	return dst
}

// ParseSecurityType33 parses RFB 3.3's security message: the u32 type the server chose. Zero
// means the server refuses the connection and a reason string follows. n is 4.
func ParseSecurityType33(b []byte) (t uint32, n int, err error) {
	if len(b) < 4 {
		return 0, 4, ErrShort
	}
	return binary.BigEndian.Uint32(b), 4, nil
}

// AppendSecurityType33 appends RFB 3.3's security message choosing t.
func AppendSecurityType33(dst []byte, t SecurityType) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(t))
}

// ParseReason parses a reason string (u32 length, then the text) at the start of b; reason
// aliases b. A length over MaxReasonLen is a *HandshakeError wrapping ErrProtocol.
func ParseReason(b []byte) (reason []byte, n int, err error) {
	if len(b) < 4 {
		return nil, 4, ErrShort
	}
	l := binary.BigEndian.Uint32(b)
	if l > MaxReasonLen {
		return nil, 0, &HandshakeError{Err: ErrProtocol, Detail: "reason string of " + strconv.FormatUint(uint64(l), 10) + " bytes"}
	}
	n = 4 + int(l)
	if len(b) < n {
		return nil, n, ErrShort
	}
	return b[4:n], n, nil
}

// AppendReason appends a reason string: its u32 length and the text.
func AppendReason(dst []byte, reason string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(reason)))
	return append(dst, reason...)
}

// ParseSecurityResult parses a SecurityResult message at the start of b for version v: the u32
// result and, when it is not ResultOK and v is 3.8 or later, the reason that follows (before 3.8
// a failure has no reason). reason aliases b.
func ParseSecurityResult(b []byte, v Version) (result uint32, reason []byte, n int, err error) {
	if len(b) < 4 {
		return 0, nil, 4, ErrShort
	}
	result = binary.BigEndian.Uint32(b)
	if result == ResultOK || v < V38 {
		return result, nil, 4, nil
	}
	reason, rn, err := ParseReason(b[4:])
	if err == ErrShort {
		return result, nil, 4 + rn, err
	}
	if err != nil {
		return result, nil, 0, err
	}
	return result, reason, 4 + rn, nil
}

// AppendSecurityResultOK appends SecurityResult OK.
func AppendSecurityResultOK(dst []byte) []byte {
	return binary.BigEndian.AppendUint32(dst, ResultOK)
}

// AppendSecurityResultFailed appends a failed SecurityResult for version v: the reason is sent
// only from 3.8 on, as the RFC says.
func AppendSecurityResultFailed(dst []byte, v Version, reason string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, ResultFailed)
	if v < V38 {
		return dst
	}
	return AppendReason(dst, reason)
}

// AppendSecurityFailure appends what a server sends, right after the version exchange, to refuse
// a client with a reason it can show: for 3.7 and 3.8 an empty security type list (u8 0), for 3.3
// the security type 0 (u32), each followed by the reason. noVNC shows it as "New connection has
// been rejected with reason: ...".
func AppendSecurityFailure(dst []byte, v Version, reason string) []byte {
	if v < V37 {
		dst = binary.BigEndian.AppendUint32(dst, 0)
	} else {
		dst = append(dst, 0)
	}
	return AppendReason(dst, reason)
}

// typeSet is a set of security types, small enough to live in a handshake's state.
type typeSet [4]uint64

func (s *typeSet) add(t SecurityType)      { s[t>>6] |= 1 << (t & 63) }
func (s *typeSet) has(t SecurityType) bool { return s[t>>6]&(1<<(t&63)) != 0 }
func (s *typeSet) list() (l []SecurityType) {
	for i := 0; i < 256; i++ {
		if s.has(SecurityType(i)) {
			l = append(l, SecurityType(i))
		}
	}
	return l
}

func (s *typeSet) choose(havePassword, veNCrypt bool) SecurityType {
	switch {
	case s.has(SecNone):
		return SecNone
	case havePassword && s.has(SecVNCAuth):
		return SecVNCAuth
	case veNCrypt && s.has(SecVeNCrypt):
		return SecVeNCrypt
	}
	return SecInvalid
}
