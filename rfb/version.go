package rfb

import "strconv"

// Version is an RFB protocol version as carried by the ProtocolVersion message (RFC 6143
// 7.1.1): the major number in the high 16 bits, the minor in the low 16, so versions compare
// with < and the well-known ones are constants.
type Version uint32

// The three versions RFC 6143 defines. Every other version a peer announces is mapped to one of
// them by NegotiateServer and NegotiateClient.
const (
	V33 Version = 3<<16 | 3
	V37 Version = 3<<16 | 7
	V38 Version = 3<<16 | 8
)

// MakeVersion is the version major.minor.
func MakeVersion(major, minor uint16) Version { return Version(major)<<16 | Version(minor) }

// Major is the major version number.
func (v Version) Major() uint16 { return uint16(v >> 16) }

// Minor is the minor version number.
func (v Version) Minor() uint16 { return uint16(v) }

// VersionLen is the length of a ProtocolVersion message: "RFB xxx.yyy\n".
const VersionLen = 12

// versionTemplate marks, per byte of a ProtocolVersion message, the literal byte expected there
// or 'd' for a decimal digit.
const versionTemplate = "RFB ddd.ddd\n"

// String gives "3.8".
func (v Version) String() string {
	return strconv.Itoa(int(v.Major())) + "." + strconv.Itoa(int(v.Minor()))
}

// AppendVersion appends the ProtocolVersion message of v ("RFB 003.008\n") to dst. Each number
// is written as three digits, modulo 1000.
func AppendVersion(dst []byte, v Version) []byte {
	maj, mnr := v.Major()%1000, v.Minor()%1000
	return append(dst, 'R', 'F', 'B', ' ',
		byte('0'+maj/100), byte('0'+maj/10%10), byte('0'+maj%10), '.',
		byte('0'+mnr/100), byte('0'+mnr/10%10), byte('0'+mnr%10), '\n')
}

// CheckVersionPrefix reports whether b could be the start of a ProtocolVersion message. It lets
// a handshake reject a peer that does not speak RFB at its first wrong byte, without waiting for
// twelve bytes that may never come. Only the first VersionLen bytes of b are looked at.
func CheckVersionPrefix(b []byte) bool {
	for i := 0; i < len(b) && i < VersionLen; i++ {
		if !versionByteOK(i, b[i]) {
			return false
		}
	}
	return true
}

func versionByteOK(i int, c byte) bool {
	if t := versionTemplate[i]; t != 'd' {
		return c == t
	}
	return c >= '0' && c <= '9'
}

// ParseVersion parses the ProtocolVersion message at the start of b. It returns the version and
// the bytes used (VersionLen). With fewer than VersionLen bytes that could still be one it
// returns ErrShort and n = VersionLen. Bytes that cannot be one give a *HandshakeError wrapping
// ErrNotRFB, as soon as the first wrong byte is seen. It does not judge the version itself: see
// NegotiateServer and NegotiateClient.
func ParseVersion(b []byte) (v Version, n int, err error) {
	if !CheckVersionPrefix(b) {
		return 0, 0, notRFB("", b)
	}
	if len(b) < VersionLen {
		return 0, VersionLen, ErrShort
	}
	return MakeVersion(digits3(b[4:7]), digits3(b[8:11])), VersionLen, nil
}

func digits3(b []byte) uint16 {
	return uint16(b[0]-'0')*100 + uint16(b[1]-'0')*10 + uint16(b[2]-'0')
}

func notRFB(peer string, b []byte) error {
	return &HandshakeError{Err: ErrNotRFB, Peer: peer, Got: append([]byte(nil), b[:min(len(b), VersionLen)]...)}
}

// NegotiateServer gives the version a client speaks to a server that announced server, or a
// *HandshakeError wrapping ErrUnsupportedVersion. The rules follow what TigerVNC and noVNC do
// with the versions seen in the field:
//   - 3.3 to 3.6 speak 3.3 (UltraVNC announces 3.4 or 3.6 and implements 3.3's handshake;
//     RFC 6143 7.1.1 says to treat unknown versions as 3.3);
//   - 3.7 speaks 3.7;
//   - 3.8 and above speak 3.8: Apple's 3.889 and RealVNC's and Intel AMT's 4.x and 5.x servers
//     accept a 3.8 client;
//   - below 3.3 (including 000.000, the UltraVNC repeater's greeting) is refused.
func NegotiateServer(server Version) (Version, error) {
	switch {
	case server.Major() > 3:
		return V38, nil
	case server.Major() < 3 || server.Minor() < 3:
		e := &HandshakeError{Err: ErrUnsupportedVersion, Peer: "server", Version: server}
		if server == 0 {
			e.Detail = "the greeting of an UltraVNC repeater, not of a VNC server"
		}
		return 0, e
	case server.Minor() >= 8:
		return V38, nil
	case server.Minor() == 7:
		return V37, nil
	}
	return V33, nil
}

// NegotiateClient gives the version a server that announced 3.8 speaks with a client that
// answered client, or a *HandshakeError wrapping ErrUnsupportedVersion. A client must answer
// with major version 3 (as TigerVNC's server requires); a minor version of 8 or more is 3.8, 7 is
// 3.7, anything else is 3.3 (RFC 6143 7.1.1).
func NegotiateClient(client Version) (Version, error) {
	switch {
	case client.Major() != 3:
		return 0, &HandshakeError{Err: ErrUnsupportedVersion, Peer: "client", Version: client}
	case client.Minor() >= 8:
		return V38, nil
	case client.Minor() == 7:
		return V37, nil
	}
	return V33, nil
}
