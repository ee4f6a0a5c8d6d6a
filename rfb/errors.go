package rfb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrShort means the input does not hold a whole message yet: the caller must wait for more
// bytes. Parsers that return it also return how many bytes they need in all.
var ErrShort = errors.New("rfb: need more bytes")

// Sentinels for the ways a handshake fails. Every handshake error wraps exactly one of them, so
// errors.Is tells the engine what to say and count; errors.As with *HandshakeError gives the
// details (the peer's reason, the offered types, the bytes that were not RFB).
var (
	// ErrNotRFB: the peer's first bytes are not an RFB ProtocolVersion message (an HTTP, TLS or
	// SSH server on the VM's port, or a browser that is not a VNC client).
	ErrNotRFB = errors.New("rfb: peer does not speak RFB")
	// ErrUnsupportedVersion: an RFB version this package cannot speak (e.g. 000.000 of an
	// UltraVNC repeater, or a major version other than 3 from a client).
	ErrUnsupportedVersion = errors.New("rfb: unsupported protocol version")
	// ErrRefused: the server sent no security types (or security type 0 in 3.3) with a reason:
	// it refuses the connection before any authentication (too many clients, blacklisted...).
	ErrRefused = errors.New("rfb: server refused the connection")
	// ErrNoUsableType: no security type offered by the peer can be used with what we have (no
	// password for VNC Authentication, only TLS sub-types without a TLS adapter...).
	ErrNoUsableType = errors.New("rfb: no usable security type")
	// ErrAuthFailed: the server answered SecurityResult failed, for a VM most likely a wrong
	// password. HandshakeError.Reason holds the server's reason (RFB 3.8 only).
	ErrAuthFailed = errors.New("rfb: authentication failed")
	// ErrVeNCrypt: the VeNCrypt sub-negotiation failed (unsupported VeNCrypt version, a refused
	// version or sub-type).
	ErrVeNCrypt = errors.New("rfb: VeNCrypt negotiation failed")
	// ErrProtocol: the peer broke the handshake in some other way (a security type it was not
	// offered, a reason string over MaxReasonLen...).
	ErrProtocol = errors.New("rfb: protocol violation")
)

// HandshakeError is the error of a failed handshake. Err is one of the sentinels above and is
// what Unwrap returns.
type HandshakeError struct {
	Err error
	// Peer is "server" or "client": who sent what went wrong.
	Peer string
	// Reason is the reason string the peer sent, if any, cut to MaxKeptReason bytes.
	Reason string
	// Got holds the first bytes received when they were not RFB.
	Got []byte
	// Version is the version involved in ErrUnsupportedVersion.
	Version Version
	// Offered lists the security types the server offered (ErrNoUsableType).
	Offered []SecurityType
	// OfferedSubtypes lists the VeNCrypt sub-types the server offered (ErrNoUsableType), at most
	// maxKeptSubtypes of them.
	OfferedSubtypes []uint32
	// Detail says more in words.
	Detail string
}

func (e *HandshakeError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	switch e.Err {
	case ErrNotRFB:
		fmt.Fprintf(&b, ": %s sent %q", e.peer(), e.Got)
		if g := guessProtocol(e.Got); g != "" {
			b.WriteString(" (looks like " + g + ")")
		}
	case ErrUnsupportedVersion:
		fmt.Fprintf(&b, ": %s version %d.%d", e.peer(), e.Version.Major(), e.Version.Minor())
	case ErrNoUsableType:
		b.WriteString(": offered ")
		for i, t := range e.Offered {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(t.String())
		}
		if len(e.Offered) == 0 {
			b.WriteString("nothing")
		}
		if len(e.OfferedSubtypes) > 0 {
			b.WriteString("; VeNCrypt sub-types ")
			for i, t := range e.OfferedSubtypes {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(VeNCryptSubtypeName(t))
			}
		}
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Reason != "" {
		b.WriteString(": " + strconv.Quote(e.Reason))
	}
	return b.String()
}

func (e *HandshakeError) Unwrap() error { return e.Err }

func (e *HandshakeError) peer() string {
	if e.Peer == "" {
		return "peer"
	}
	return e.Peer
}

// guessProtocol names what a peer that does not speak RFB seems to speak, from its first bytes,
// so a log line says "looks like TLS" rather than only showing binary.
func guessProtocol(b []byte) string {
	s := string(b)
	switch {
	case strings.HasPrefix(s, "HTTP/"):
		return "an HTTP response"
	case strings.HasPrefix(s, "GET ") || strings.HasPrefix(s, "POST ") || strings.HasPrefix(s, "HEAD ") ||
		strings.HasPrefix(s, "PUT ") || strings.HasPrefix(s, "OPTIONS ") || strings.HasPrefix(s, "CONNECT "):
		return "an HTTP request"
	case len(b) >= 2 && (b[0] == 0x16 || b[0] == 0x15) && b[1] == 0x03:
		return "TLS"
	case strings.HasPrefix(s, "SSH-"):
		return "an SSH banner"
	case strings.HasPrefix(s, "220"):
		return "an SMTP or FTP banner"
	case strings.HasPrefix(s, "+OK") || strings.HasPrefix(s, "* OK"):
		return "a mail server banner"
	case strings.HasPrefix(s, "FBS "):
		return "an FBS recording"
	}
	return ""
}

// MessageError is the error of the client-message Scanner: a message whose length cannot be
// known. It wraps ErrUnknownMessage.
type MessageError struct {
	Type    uint8
	SubType int // -1 when the type has no sub-type
	Op      int // -1 unless a QEMU audio operation was the problem
	// Offset is the message's position in the stream (bytes scanned before it).
	Offset int64
}

// ErrUnknownMessage: a client message type (or sub-type) whose length is unknown. The stream
// cannot be followed past it, so a scanned session must end.
var ErrUnknownMessage = errors.New("rfb: unknown client message")

func (e *MessageError) Error() string {
	s := fmt.Sprintf("rfb: unknown client message type %d", e.Type)
	if e.SubType >= 0 {
		s += fmt.Sprintf(" sub-type %d", e.SubType)
	}
	if e.Op >= 0 {
		s += fmt.Sprintf(" operation %d", e.Op)
	}
	return s + fmt.Sprintf(" at stream offset %d", e.Offset)
}

func (e *MessageError) Unwrap() error { return ErrUnknownMessage }
