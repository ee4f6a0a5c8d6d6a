package wsframe

import (
	"slices"

	"github.com/gobwas/ws"
)

// AppendFrame appends a whole unmasked server frame (header + payload) to dst. It is for control
// frames (pong, close) and tests: data frames go out as PutHeader + Writev so that the payload is
// never copied.
func AppendFrame(dst []byte, fin bool, op ws.OpCode, payload []byte) []byte {
	var hdr [10]byte
	n := PutHeader(hdr[:], fin, op, len(payload))
	dst = slices.Grow(dst, n+len(payload))
	dst = append(dst, hdr[:n]...)
	return append(dst, payload...)
}

// AppendMaskedFrame appends a whole client frame masked with mask to dst, as a browser would send
// it. It is for tests and the load generator; payload itself is left unchanged.
func AppendMaskedFrame(dst []byte, fin bool, op ws.OpCode, mask [4]byte, payload []byte) []byte {
	var hdr [10]byte
	n := PutHeader(hdr[:], fin, op, len(payload))
	hdr[1] |= maskBit
	dst = slices.Grow(dst, n+4+len(payload))
	dst = append(dst, hdr[:n]...)
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
