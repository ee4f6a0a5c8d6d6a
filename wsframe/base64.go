package wsframe

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

// The legacy `base64` subprotocol (websockify) sends binary data as text frames holding base64.
// Each message is standard base64 with padding, encoded on its own.

// Base64EncodedLen is the length of the base64 text message that carries n bytes.
func Base64EncodedLen(n int) int {
	return base64.StdEncoding.EncodedLen(n)
}

// AppendBase64 appends src as one complete base64 message (with padding) to dst. It allocates
// nothing when dst has room for Base64EncodedLen(len(src)) more bytes.
func AppendBase64(dst, src []byte) []byte {
	return base64.StdEncoding.AppendEncode(dst, src)
}

// Base64Decoder decodes one base64 text message that arrives in arbitrary chunks: a frame's
// payload is streamed as it arrives, and a message can span continuation frames. It carries at
// most 3 bytes between calls; the zero value is ready. An error spoils the rest of the message:
// Decode keeps failing and End reports it, then the decoder is ready for the next message.
type Base64Decoder struct {
	carry  [4]byte // start of a quantum not yet complete
	n      int     // bytes used in carry, 0..3 between calls
	padded bool    // a padded quantum was seen: the message must end here
	failed bool    // Decode returned an error for this message
}

// Decode appends the bytes decodable so far to dst. It accepts standard base64 with padding only
// at the end of the message, and ignores nothing: whitespace, CR and LF included, is an error
// (unlike encoding/base64, which skips CR and LF). Errors wrap ErrBase64.
// It allocates nothing when dst has room for len(src)/4*3+3 more bytes.
func (d *Base64Decoder) Decode(dst, src []byte) ([]byte, error) {
	out, err := d.decode(dst, src)
	if err != nil {
		d.failed = true
		return dst, err
	}
	return out, nil
}

func (d *Base64Decoder) decode(dst, src []byte) ([]byte, error) {
	if d.failed {
		return dst, fmt.Errorf("%w: message failed earlier", ErrBase64)
	}
	if len(src) == 0 {
		return dst, nil
	}
	if d.padded {
		return dst, fmt.Errorf("%w: data after padding", ErrBase64)
	}
	// encoding/base64 skips CR and LF anywhere, which would also shift our quantum boundaries.
	if bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
		return dst, fmt.Errorf("%w: line break", ErrBase64)
	}
	var err error
	if d.n > 0 {
		k := copy(d.carry[d.n:], src)
		d.n += k
		src = src[k:]
		if d.n < 4 {
			return dst, nil
		}
		d.n = 0
		dst, err = d.decodeQuanta(dst, d.carry[:])
		if err != nil {
			return dst, err
		}
		if len(src) > 0 && d.padded {
			return dst, fmt.Errorf("%w: data after padding", ErrBase64)
		}
	}
	whole := len(src) &^ 3
	if whole > 0 {
		dst, err = d.decodeQuanta(dst, src[:whole])
		if err != nil {
			return dst, err
		}
	}
	d.n = copy(d.carry[:], src[whole:])
	if d.n > 0 && d.padded {
		return dst, fmt.Errorf("%w: data after padding", ErrBase64)
	}
	return dst, nil
}

// decodeQuanta decodes src, a whole number of 4-byte quanta free of CR and LF, with the standard
// library, which rejects padding anywhere but in the last quantum.
func (d *Base64Decoder) decodeQuanta(dst, src []byte) ([]byte, error) {
	out, err := base64.StdEncoding.AppendDecode(dst, src)
	if err != nil {
		return dst, fmt.Errorf("%w: %w", ErrBase64, err)
	}
	d.padded = src[len(src)-1] == '='
	return out, nil
}

// End finishes the message: it reports an error if a partial quantum is left, and resets the
// decoder for the next message.
func (d *Base64Decoder) End() error {
	n, failed := d.n, d.failed
	*d = Base64Decoder{}
	switch {
	case failed:
		return fmt.Errorf("%w: message failed earlier", ErrBase64)
	case n != 0:
		return fmt.Errorf("%w: message ends with %d bytes of an incomplete quantum", ErrBase64, n)
	}
	return nil
}
