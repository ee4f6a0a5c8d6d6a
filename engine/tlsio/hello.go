package tlsio

import "strings"

// ScanClientHello reports whether b starts with a complete ClientHello: the handshake message,
// possibly spread over several handshake records, and the whole record that holds its last byte.
// It returns the length of that prefix (end > 0, err == nil), or ErrShort when more bytes are
// needed, or an error that tells why b cannot become a ClientHello: ErrPlainHTTP, ErrSSLv2 or
// ErrNotTLS for a peer that does not speak TLS (decided from the first bytes), ErrRecordOverflow,
// ErrBadHello, or ErrHelloTooLarge when the message would be longer than maxHello bytes (its
// 4-byte header excluded; maxHello <= 0 means MaxPlaintext).
//
// It reads only record and handshake headers, never the hello's content (crypto/tls parses
// that), allocates nothing, and its cost is bounded by the number of records, not the bytes, so
// calling it again on every arrival of a slowly sent hello is cheap.
func ScanClientHello(b []byte, maxHello int) (end int, err error) {
	if maxHello <= 0 {
		maxHello = MaxPlaintext
	}
	if len(b) == 0 {
		return 0, ErrShort
	}
	if err := checkFirstBytes(b); err != nil {
		return 0, err
	}
	var (
		msgHdr  [handshakeHeaderLen]byte
		hdrN    int // bytes of msgHdr collected
		bodyLen = -1
		got     int // message body bytes seen
		off     int // start of the current record
	)
	for records := 0; ; records++ {
		if records == maxHelloRecords {
			return 0, ErrHelloTooLarge
		}
		h, err := ParseRecordHeader(b[off:])
		if err == ErrShort {
			return 0, ErrShort
		}
		if err != nil {
			if off == 0 && err == ErrNotTLS {
				return 0, err
			}
			if err == ErrNotTLS {
				return 0, ErrBadHello
			}
			return 0, err
		}
		if h.Type != TypeHandshake {
			if off == 0 {
				return 0, ErrNotTLS
			}
			return 0, ErrBadHello
		}
		if h.Length == 0 {
			return 0, ErrBadHello // crypto/tls refuses empty handshake records too
		}
		if h.Length > MaxPlaintext {
			return 0, ErrRecordOverflow
		}
		recEnd := off + RecordHeaderLen + h.Length
		body := b[off+RecordHeaderLen : min(recEnd, len(b))]
		for hdrN < handshakeHeaderLen && len(body) > 0 {
			msgHdr[hdrN] = body[0]
			hdrN++
			body = body[1:]
			if hdrN == handshakeHeaderLen {
				if msgHdr[0] != typeClientHello {
					return 0, ErrBadHello
				}
				bodyLen = int(msgHdr[1])<<16 | int(msgHdr[2])<<8 | int(msgHdr[3])
				if bodyLen > maxHello {
					return 0, ErrHelloTooLarge
				}
			}
		}
		if bodyLen >= 0 {
			got += len(body)
			if got >= bodyLen {
				// The message ends in this record; crypto/tls needs the record whole.
				if recEnd > len(b) {
					return 0, ErrShort
				}
				return recEnd, nil
			}
		}
		if recEnd >= len(b) {
			return 0, ErrShort
		}
		off = recEnd
	}
}

// checkFirstBytes decides from the first one to three bytes whether the peer can be speaking
// TLS at all, so garbage is refused before a single record has arrived.
func checkFirstBytes(b []byte) error {
	if b[0] == TypeHandshake {
		if len(b) >= 2 && b[1] != 3 {
			return ErrNotTLS
		}
		return nil
	}
	if LooksLikeHTTP(b) {
		return ErrPlainHTTP
	}
	// An SSLv2-compatible hello starts with a 2-byte length with the top bit set, then
	// msg_type 1 (client_hello).
	if b[0]&0x80 != 0 && (len(b) < 3 || b[2] == typeClientHello) {
		return ErrSSLv2
	}
	return ErrNotTLS
}

// httpMethods are the request methods whose start LooksLikeHTTP recognises, each followed by
// the space that ends it on a request line; "PRI" is the HTTP/2 connection preface of a client
// that assumes h2c.
const httpMethods = "GET HEAD POST PUT DELETE OPTIONS CONNECT PATCH TRACE PRI "

// LooksLikeHTTP reports whether b, the first bytes a client sent, can be the start of an HTTP/1
// request line: a known method followed by a space, or a prefix of one. One byte is enough to
// say yes ("G"); the engine can then answer a plain-text 400 instead of dropping the connection.
func LooksLikeHTTP(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for ms := httpMethods; ms != ""; {
		sp := strings.IndexByte(ms, ' ')
		m := ms[:sp+1] // the method and its space
		ms = ms[sp+1:]
		n := min(len(b), len(m))
		if string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}
