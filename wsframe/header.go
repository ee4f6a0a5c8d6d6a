package wsframe

import (
	"encoding/binary"
	"errors"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the longest frame header: 2 bytes, an 8-byte extended length and a 4-byte mask.
const MaxHeaderSize = 14

// MaxControlPayload is the largest payload a control frame (close, ping, pong) may carry.
const MaxControlPayload = 125

// ErrShort means b does not hold a whole header yet: the caller must wait for more input.
var ErrShort = errors.New("wsframe: need more bytes")

// ErrLengthMSB rejects a 64-bit payload length with its most significant bit set (RFC 6455 5.2).
// It is a ws.ProtocolError, so CloseCodeFor maps it to 1002. It is kept as an interface value so
// that returning it does not allocate.
var ErrLengthMSB error = ws.ProtocolError("wsframe: 64-bit payload length has its most significant bit set")

// Bits of the first two header bytes (RFC 6455 5.2).
const (
	finBit   = 0x80
	rsvBits  = 0x70
	opBits   = 0x0f
	maskBit  = 0x80
	len7Bits = 0x7f
	len16    = 126 // 7-bit length value announcing a 16-bit length
	len64    = 127 // 7-bit length value announcing a 64-bit length
)

// HeaderLen reports the full header length implied by the first two bytes of b (2, 4 or 10, plus 4
// when masked). It returns 0 when len(b) < 2.
func HeaderLen(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	n := 2
	switch b[1] & len7Bits {
	case len16:
		n = 4
	case len64:
		n = 10
	}
	if b[1]&maskBit != 0 {
		n += 4
	}
	return n
}

// ParseHeader parses the frame header at the start of b without copying or allocating.
// It returns the header and its length in bytes. When b holds less than a whole header it
// returns ErrShort and n = the number of bytes needed (2 when even the first two bytes are
// missing). It rejects a 64-bit length with the most significant bit set (RFC 6455 5.2) with
// ErrLengthMSB, a ws.ProtocolError; h and n are then zero.
//
// Like ws.ReadHeader it accepts lengths that are not minimally encoded: rejecting them protects
// nothing, and it keeps the two parsers in agreement.
func ParseHeader(b []byte) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return h, 2, ErrShort
	}
	n = HeaderLen(b)
	if len(b) < n {
		return h, n, ErrShort
	}
	h.Fin = b[0]&finBit != 0
	h.Rsv = (b[0] & rsvBits) >> 4
	h.OpCode = ws.OpCode(b[0] & opBits)
	h.Masked = b[1]&maskBit != 0
	i := 2
	switch l := b[1] & len7Bits; l {
	case len16:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		i = 4
	case len64:
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return ws.Header{}, 0, ErrLengthMSB
		}
		h.Length = int64(v)
		i = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], b[i:i+4])
	}
	return h, n, nil
}

// CheckClient validates a header received by a server: mask set, RSV bits zero (no extensions
// negotiated), known opcode, control frames FIN and <= 125 bytes, and continuation order given
// whether a fragmented message is in progress (fragmented=true: only continuation or control
// frames may follow; false: a continuation frame is an error).
// It returns nil or a ws.ProtocolError; CloseCodeFor(err) gives the close code to send.
func CheckClient(h ws.Header, fragmented bool) error {
	s := ws.StateServerSide
	if fragmented {
		s |= ws.StateFragmented
	}
	return ws.CheckHeader(h, s)
}

// PutHeader writes an unmasked server frame header into dst (len(dst) >= 10) and returns its
// length (2, 4 or 10). It uses the shortest length encoding, as RFC 6455 5.2 requires. op is
// truncated to its 4 bits so that it can never set RSV bits. A negative length is a programming
// error and panics.
func PutHeader(dst []byte, fin bool, op ws.OpCode, length int) int {
	b0 := byte(op) & opBits
	if fin {
		b0 |= finBit
	}
	switch {
	case length < 0:
		panic("wsframe: PutHeader with a negative length")
	case length <= MaxControlPayload:
		dst[0], dst[1] = b0, byte(length)
		return 2
	case length <= 0xffff:
		_ = dst[3]
		dst[0], dst[1] = b0, len16
		binary.BigEndian.PutUint16(dst[2:4], uint16(length))
		return 4
	default:
		_ = dst[9]
		dst[0], dst[1] = b0, len64
		binary.BigEndian.PutUint64(dst[2:10], uint64(length))
		return 10
	}
}

// Unmask XORs p in place with mask, starting at byte offset `offset` of the mask cycle (any int:
// only offset mod 4 matters, negative values included), and returns the offset for the next
// chunk, in 0..3. It lets the engine unmask a payload that arrives in pieces. It wraps ws.Cipher,
// which uses SIMD on amd64 and arm64.
func Unmask(p []byte, mask [4]byte, offset int) int {
	// &3 is offset mod 4 for negative ints too (two's complement), which ws.Cipher would turn
	// into a negative index.
	offset &= 3
	ws.Cipher(p, mask, offset)
	return (offset + len(p)&3) & 3
}
