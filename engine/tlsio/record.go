package tlsio

import (
	"errors"
	"fmt"
)

// Record layer sizes (RFC 8446 5.1, RFC 5246 6.2).
const (
	// RecordHeaderLen is the length of a TLS record header: type, version, length.
	RecordHeaderLen = 5
	// MaxPlaintext is the largest payload of an unprotected record, which a ClientHello is.
	MaxPlaintext = 1 << 14
	// MaxCiphertext is the largest payload of a protected record in TLS 1.2 (TLS 1.3 allows
	// only MaxPlaintext+256); crypto/tls refuses anything longer with record_overflow.
	MaxCiphertext = MaxPlaintext + 2048
	// MaxRecord is the longest record on the wire, header included.
	MaxRecord = RecordHeaderLen + MaxCiphertext
)

// Record content types (RFC 8446 B.1).
const (
	TypeChangeCipherSpec uint8 = 20
	TypeAlert            uint8 = 21
	TypeHandshake        uint8 = 22
	TypeApplicationData  uint8 = 23
)

const (
	handshakeHeaderLen = 4 // msg_type and a 24-bit length (RFC 8446 4)
	typeClientHello    = 1
	// maxHelloRecords bounds how many records one ClientHello may be spread over. Real clients
	// use one record unless the hello is larger than 16 KiB; a few tools split it into a handful
	// to defeat middleboxes. Each record costs the scanner a step on every call, so the bound
	// keeps a slow client from making the loop walk thousands of 6-byte records per byte it sends.
	maxHelloRecords = 64
)

// Errors of the record-level checks. They are values, so returning them does not allocate, and
// every one that means "this is not TLS at all" matches errors.Is(err, ErrNotTLS).
var (
	// ErrShort means the bytes end before the thing asked for: wait for more input.
	ErrShort = errors.New("tlsio: need more bytes")
	// ErrNotTLS means the peer does not speak TLS: the first bytes are no TLS handshake record.
	ErrNotTLS = errors.New("tlsio: not a TLS handshake")
	// ErrPlainHTTP is ErrNotTLS for a connection that starts like an HTTP request: someone
	// typed http:// for an https:// port. The engine may answer 400 in plain text, then close.
	ErrPlainHTTP = fmt.Errorf("%w: plain HTTP request sent to the TLS port", ErrNotTLS)
	// ErrSSLv2 is ErrNotTLS for an SSL 2.0 style ClientHello, which crypto/tls never accepted.
	ErrSSLv2 = fmt.Errorf("%w: SSLv2 ClientHello", ErrNotTLS)
	// ErrRecordOverflow means a record header announces more than the protocol allows.
	ErrRecordOverflow = errors.New("tlsio: record too long")
	// ErrBadHello means the first handshake records do not carry a well-formed ClientHello
	// (another message type, an empty record, an alert or other record in the middle).
	ErrBadHello = errors.New("tlsio: first handshake message is not a ClientHello")
	// ErrHelloTooLarge means the ClientHello is longer than the configured limit, or spread
	// over more than 64 records.
	ErrHelloTooLarge = errors.New("tlsio: ClientHello too large")
)

// RecordHeader is the 5-byte header in front of every TLS record.
type RecordHeader struct {
	Type    uint8  // content type: TypeHandshake, TypeApplicationData, ...
	Version uint16 // legacy_record_version: 0x0301-0x0303 in practice
	Length  int    // payload bytes that follow the header
}

// ParseRecordHeader parses the record header at the start of b without copying or allocating.
// It returns ErrShort when b holds less than RecordHeaderLen bytes, ErrNotTLS (wrapped) when the
// content type is none of the four or the major version is not 3, and ErrRecordOverflow when the
// length is above MaxCiphertext. The header is returned in every case where it could be read.
func ParseRecordHeader(b []byte) (RecordHeader, error) {
	if len(b) < RecordHeaderLen {
		return RecordHeader{}, ErrShort
	}
	h := RecordHeader{
		Type:    b[0],
		Version: uint16(b[1])<<8 | uint16(b[2]),
		Length:  int(b[3])<<8 | int(b[4]),
	}
	if h.Type < TypeChangeCipherSpec || h.Type > TypeApplicationData || b[1] != 3 {
		return h, ErrNotTLS
	}
	if h.Length > MaxCiphertext {
		return h, ErrRecordOverflow
	}
	return h, nil
}

// recordStream follows record boundaries in a byte stream that is shown to it in pieces, each
// byte exactly once and in order. The wire uses it to hand crypto/tls whole records only (so
// crypto/tls's input buffer never keeps a partial record between events) and to know when
// crypto/tls cannot have a complete record left (so the loop does not call it in vain).
type recordStream struct {
	pos      int64                 // stream offset of the next byte to scan
	end      int64                 // stream offset just past the last complete record
	complete int64                 // records whose last byte has been scanned
	hdr      [RecordHeaderLen]byte // header bytes of the current record collected so far
	hdrN     int
	left     int  // payload bytes of the current record still to come
	broken   bool // a header was invalid: no boundaries from here on
}

// scan moves the stream past b.
func (s *recordStream) scan(b []byte) {
	s.pos += int64(len(b))
	if s.broken {
		// crypto/tls rejects an invalid header as soon as it has read it; counting everything
		// as complete hands it over at once instead of waiting for a body that means nothing.
		s.end = s.pos
		return
	}
	off := s.pos - int64(len(b)) // stream offset of b[0]
	for {
		if s.hdrN < RecordHeaderLen {
			if len(b) == 0 {
				return
			}
			k := copy(s.hdr[s.hdrN:], b)
			s.hdrN += k
			b = b[k:]
			off += int64(k)
			if s.hdrN < RecordHeaderLen {
				return
			}
			h, err := ParseRecordHeader(s.hdr[:])
			if err != nil {
				s.broken = true
				s.end = s.pos
				return
			}
			s.left = h.Length
		}
		k := min(s.left, len(b))
		s.left -= k
		b = b[k:]
		off += int64(k)
		if s.left > 0 {
			return
		}
		s.hdrN = 0
		s.complete++
		s.end = off
	}
}
