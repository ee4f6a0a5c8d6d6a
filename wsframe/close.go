package wsframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ErrCloseLength rejects a close payload of exactly one byte: a status code takes two (RFC 6455 5.5.1).
var ErrCloseLength error = ws.ProtocolError("wsframe: close payload of 1 byte")

// ErrBase64 is wrapped by every error of Base64Decoder. CloseCodeFor maps it to 1007: the
// message's data does not match what the base64 subprotocol says a message is.
var ErrBase64 = errors.New("wsframe: invalid base64 message")

// maxCloseReason is the room left for the reason in a close payload after the 2-byte code.
const maxCloseReason = MaxControlPayload - 2

// validWireCode reports whether code may appear in a close frame on the wire (RFC 6455 7.4,
// with 1012-1014 from the IANA registry): 1000-1003, 1007-1014 and 3000-4999.
func validWireCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CloseCodeFor maps an error from ParseHeader, CheckClient, ParseClose or Base64Decoder to the
// close status the server must send: invalid UTF-8 in a close reason and invalid base64 give 1007
// (ws.StatusInvalidFramePayloadData); protocol errors and anything else give 1002
// (ws.StatusProtocolError). A nil error gives 1000.
func CloseCodeFor(err error) ws.StatusCode {
	switch {
	case err == nil:
		return ws.StatusNormalClosure
	case errors.Is(err, ws.ErrProtocolInvalidUTF8), errors.Is(err, ErrBase64):
		return ws.StatusInvalidFramePayloadData
	default:
		return ws.StatusProtocolError
	}
}

// AppendClose appends a whole server close frame with code and reason to dst. The reason is
// truncated at a UTF-8 rune boundary so that the payload fits 125 bytes, and any byte of it that
// is not valid UTF-8 becomes U+FFFD, so the peer never fails the connection over our reason.
// A code that must not be sent on the wire (1005, 1006, 1015, and every other code ParseClose
// rejects) gives an empty payload, which the peer reads as 1005.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	start := len(dst)
	dst = slices.Grow(dst, 4+min(len(reason), maxCloseReason))
	dst = append(dst, finBit|byte(ws.OpClose), 0)
	if validWireCode(code) {
		dst = binary.BigEndian.AppendUint16(dst, uint16(code))
		used := 0
		for i := 0; i < len(reason); {
			r, size := utf8.DecodeRuneInString(reason[i:])
			piece := reason[i : i+size]
			if r == utf8.RuneError && size == 1 {
				piece = string(utf8.RuneError)
			}
			if used+len(piece) > maxCloseReason {
				break
			}
			dst = append(dst, piece...)
			used += len(piece)
			i += size
		}
	}
	dst[start+1] = byte(len(dst) - start - 2)
	return dst
}

// ParseClose parses a close frame payload (already unmasked). An empty payload gives
// (1005 ws.StatusNoStatusRcvd, nil, nil). A 1-byte payload and codes invalid on the wire
// (<1000, 1004-1006, 1015, 1016-2999, >=5000) are protocol errors; a reason that is not valid
// UTF-8 is an error that CloseCodeFor maps to 1007. reason aliases p.
func ParseClose(p []byte) (code ws.StatusCode, reason []byte, err error) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case 1:
		return 0, nil, ErrCloseLength
	}
	code = ws.StatusCode(binary.BigEndian.Uint16(p))
	if !validWireCode(code) {
		return 0, nil, fmt.Errorf("wsframe: close code %d: %w", code, closeCodeError(code))
	}
	reason = p[2:]
	if !utf8.Valid(reason) {
		return 0, nil, fmt.Errorf("wsframe: close code %d: %w", code, ws.ErrProtocolInvalidUTF8)
	}
	return code, reason, nil
}

// closeCodeError picks gobwas/ws's own error for an invalid close code, so logs name the reason.
func closeCodeError(code ws.StatusCode) error {
	switch {
	case code.IsNotUsed():
		return ws.ErrProtocolStatusCodeNotInUse
	case code.IsProtocolReserved():
		return ws.ErrProtocolStatusCodeApplicationLevel
	case code == ws.StatusNoMeaningYet:
		return ws.ErrProtocolStatusCodeNoMeaning
	default:
		return ws.ErrProtocolStatusCodeUnknown
	}
}
