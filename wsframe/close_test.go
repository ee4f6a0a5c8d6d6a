package wsframe

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestAppendFrame(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 65535, 65536} {
		for _, op := range []ws.OpCode{ws.OpContinuation, ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong} {
			payload := bytes.Repeat([]byte{0xa5}, size)
			prefix := []byte("prefix")
			out := AppendFrame(bytes.Clone(prefix), size%2 == 0, op, payload)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("size %d op %d: prefix lost", size, op)
			}
			frame := out[len(prefix):]
			var want bytes.Buffer
			err := ws.WriteFrame(&want, ws.NewFrame(op, size%2 == 0, payload))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(frame, want.Bytes()) {
				t.Fatalf("size %d op %d: AppendFrame differs from ws.WriteFrame", size, op)
			}
		}
	}
}

func TestAppendMaskedFrame(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 65535, 65536} {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		orig := bytes.Clone(payload)
		frame := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, payload)
		if !bytes.Equal(payload, orig) {
			t.Fatalf("size %d: payload modified", size)
		}
		h, n, err := ParseHeader(frame)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if err := CheckClient(h, false); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if h.Mask != testMask || h.Length != int64(size) || len(frame)-n != size {
			t.Fatalf("size %d: header %+v, n %d, frame %d bytes", size, h, n, len(frame))
		}
		body := frame[n:]
		if size > 0 && bytes.Equal(body, payload) && testMask != [4]byte{} {
			t.Fatalf("size %d: payload not masked", size)
		}
		Unmask(body, h.Mask, 0)
		if !bytes.Equal(body, payload) {
			t.Fatalf("size %d: unmasked payload differs", size)
		}
		// gobwas/ws reads the same frame.
		f, err := ws.ReadFrame(bytes.NewReader(AppendMaskedFrame(nil, true, ws.OpBinary, testMask, payload)))
		if err != nil {
			t.Fatal(err)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if !bytes.Equal(f.Payload, payload) {
			t.Fatalf("size %d: ws.ReadFrame disagrees", size)
		}
	}
}

// wireValid is RFC 6455 7.4 as the brief states it, written independently of validWireCode.
func wireValid(code int) bool {
	invalid := code < 1000 || (code >= 1004 && code <= 1006) || code == 1015 ||
		(code >= 1016 && code <= 2999) || code >= 5000
	return !invalid
}

func TestParseClose(t *testing.T) {
	code, reason, err := ParseClose(nil)
	if code != ws.StatusNoStatusRcvd || reason != nil || err != nil {
		t.Fatalf("empty: %d %q %v", code, reason, err)
	}
	_, _, err = ParseClose([]byte{0x03})
	if !errors.Is(err, ErrCloseLength) || CloseCodeFor(err) != ws.StatusProtocolError {
		t.Fatalf("1 byte: %v", err)
	}

	for c := range 1 << 16 {
		p := []byte{byte(c >> 8), byte(c), 'o', 'k'}
		code, reason, err := ParseClose(p)
		if wireValid(c) {
			if err != nil || int(code) != c || string(reason) != "ok" {
				t.Fatalf("code %d: %d %q %v", c, code, reason, err)
			}
			if &reason[0] != &p[2] {
				t.Fatalf("code %d: reason does not alias p", c)
			}
			continue
		}
		var pe ws.ProtocolError
		if err == nil || !errors.As(err, &pe) || CloseCodeFor(err) != ws.StatusProtocolError {
			t.Fatalf("code %d: err %v, want a protocol error", c, err)
		}
	}

	cases := []struct {
		name     string
		p        []byte
		wantCode ws.StatusCode
		wantErr  ws.StatusCode // close code for the error, 0 for none
	}{
		{
			name:     "code only",
			p:        []byte{0x03, 0xe8},
			wantCode: 1000,
		},
		{
			name:     "utf-8 reason",
			p:        append([]byte{0x03, 0xe9}, "au revoir, été"...),
			wantCode: 1001,
		},
		{
			name:    "invalid utf-8",
			p:       []byte{0x03, 0xe8, 0xff},
			wantErr: ws.StatusInvalidFramePayloadData,
		},
		{
			name:    "truncated rune",
			p:       []byte{0x03, 0xe8, 0xc3},
			wantErr: ws.StatusInvalidFramePayloadData,
		},
		{
			name:    "surrogate",
			p:       []byte{0x03, 0xe8, 0xed, 0xa0, 0x80},
			wantErr: ws.StatusInvalidFramePayloadData,
		},
		{
			name:    "1005 on the wire",
			p:       []byte{0x03, 0xed},
			wantErr: ws.StatusProtocolError,
		},
		{
			name:    "1015 with invalid utf-8",
			p:       []byte{0x03, 0xf7, 0xff},
			wantErr: ws.StatusProtocolError,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, reason, err := ParseClose(c.p)
			if c.wantErr != 0 {
				if err == nil || CloseCodeFor(err) != c.wantErr {
					t.Fatalf("got %d %q %v, want an error mapping to %d", code, reason, err, c.wantErr)
				}
				return
			}
			if err != nil || code != c.wantCode || !bytes.Equal(reason, c.p[2:]) {
				t.Fatalf("got %d %q %v", code, reason, err)
			}
		})
	}
}

func TestAppendClose(t *testing.T) {
	long := strings.Repeat("x", 200)
	cases := []struct {
		name       string
		code       ws.StatusCode
		reason     string
		wantCode   ws.StatusCode
		wantReason string
	}{
		{
			name:       "normal",
			code:       1000,
			reason:     "bye",
			wantCode:   1000,
			wantReason: "bye",
		},
		{
			name:       "no reason",
			code:       1011,
			wantCode:   1011,
			wantReason: "",
		},
		{
			name:       "123 bytes fit",
			code:       4000,
			reason:     long[:123],
			wantCode:   4000,
			wantReason: long[:123],
		},
		{
			name:       "124 bytes cut",
			code:       4000,
			reason:     long[:124],
			wantCode:   4000,
			wantReason: long[:123],
		},
		{
			name:       "2-byte rune across 123",
			code:       1001,
			reason:     long[:122] + "é",
			wantCode:   1001,
			wantReason: long[:122],
		},
		{
			name:       "2-byte rune ending at 123",
			code:       1001,
			reason:     long[:121] + "é" + "z",
			wantCode:   1001,
			wantReason: long[:121] + "é",
		},
		{
			name:       "3-byte rune across 123",
			code:       1001,
			reason:     long[:121] + "€",
			wantCode:   1001,
			wantReason: long[:121],
		},
		{
			name:       "4-byte rune across 123",
			code:       1001,
			reason:     long[:120] + "🖥",
			wantCode:   1001,
			wantReason: long[:120],
		},
		{
			name:       "4-byte rune ending at 123",
			code:       1001,
			reason:     long[:119] + "🖥" + "z",
			wantCode:   1001,
			wantReason: long[:119] + "🖥",
		},
		{
			name:       "invalid utf-8 replaced",
			code:       1008,
			reason:     "a\xffb",
			wantCode:   1008,
			wantReason: "a\uFFFDb",
		},
		{
			name:     "1005 is never sent",
			code:     ws.StatusNoStatusRcvd,
			reason:   "x",
			wantCode: ws.StatusNoStatusRcvd,
		},
		{
			name:     "1006 is never sent",
			code:     ws.StatusAbnormalClosure,
			reason:   "x",
			wantCode: ws.StatusNoStatusRcvd,
		},
		{
			name:     "1015 is never sent",
			code:     ws.StatusTLSHandshake,
			reason:   "x",
			wantCode: ws.StatusNoStatusRcvd,
		},
		{
			name:     "0 is never sent",
			code:     0,
			reason:   "x",
			wantCode: ws.StatusNoStatusRcvd,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prefix := []byte{0xde, 0xad}
			out := AppendClose(bytes.Clone(prefix), c.code, c.reason)
			if !bytes.Equal(out[:2], prefix) {
				t.Fatal("prefix lost")
			}
			code, reason := parseServerClose(t, out[2:])
			if code != c.wantCode || string(reason) != c.wantReason {
				t.Fatalf("got %d %q, want %d %q", code, reason, c.wantCode, c.wantReason)
			}
		})
	}
}

// parseServerClose checks that frame is exactly one valid unmasked close frame and parses it.
func parseServerClose(t testing.TB, frame []byte) (ws.StatusCode, []byte) {
	t.Helper()
	h, n, err := ParseHeader(frame)
	if err != nil {
		t.Fatalf("% x: %v", frame, err)
	}
	if err := ws.CheckHeader(h, ws.StateClientSide); err != nil {
		t.Fatalf("% x: %v", frame, err)
	}
	if h.OpCode != ws.OpClose || int64(len(frame)-n) != h.Length || h.Length > MaxControlPayload {
		t.Fatalf("% x: header %+v", frame, h)
	}
	code, reason, err := ParseClose(frame[n:])
	if err != nil {
		t.Fatalf("% x: %v", frame, err)
	}
	return code, reason
}

func TestCloseCodeFor(t *testing.T) {
	cases := []struct {
		err  error
		want ws.StatusCode
	}{
		{err: nil, want: 1000},
		{err: ws.ErrProtocolMaskRequired, want: 1002},
		{err: ErrLengthMSB, want: 1002},
		{err: ErrCloseLength, want: 1002},
		{err: fmt.Errorf("session 7: %w", ws.ErrProtocolNonZeroRsv), want: 1002},
		{err: ws.ErrProtocolInvalidUTF8, want: 1007},
		{err: fmt.Errorf("x: %w", ws.ErrProtocolInvalidUTF8), want: 1007},
		{err: fmt.Errorf("x: %w", ErrBase64), want: 1007},
		{err: errors.New("something else"), want: 1002},
	}
	for _, c := range cases {
		if got := CloseCodeFor(c.err); got != c.want {
			t.Fatalf("CloseCodeFor(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func FuzzParseClose(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x03})
	f.Add([]byte{0x03, 0xe8})
	f.Add([]byte{0x03, 0xe8, 'o', 'k'})
	f.Add([]byte{0x03, 0xed})
	f.Add([]byte{0x0f, 0xa0, 0xff})
	f.Add([]byte{0x13, 0x88})
	f.Fuzz(func(t *testing.T, p []byte) {
		code, reason, err := ParseClose(p)
		switch {
		case len(p) == 0:
			if code != ws.StatusNoStatusRcvd || err != nil {
				t.Fatalf("empty: %d %v", code, err)
			}
		case len(p) == 1:
			if !errors.Is(err, ErrCloseLength) {
				t.Fatalf("% x: %v", p, err)
			}
		case !wireValid(int(p[0])<<8 | int(p[1])):
			if err == nil || CloseCodeFor(err) != ws.StatusProtocolError {
				t.Fatalf("% x: %v", p, err)
			}
		case !utf8.Valid(p[2:]):
			if err == nil || CloseCodeFor(err) != ws.StatusInvalidFramePayloadData {
				t.Fatalf("% x: %v", p, err)
			}
		default:
			wc, wr := ws.ParseCloseFrameData(p)
			if err != nil || code != wc || string(reason) != wr {
				t.Fatalf("% x: %d %q %v; ws says %d %q", p, code, reason, err, wc, wr)
			}
			if ws.CheckCloseFrameData(code, string(reason)) != nil && code < 1012 {
				t.Fatalf("% x: gobwas/ws rejects %d", p, code)
			}
		}
	})
}

// FuzzAppendClose checks that whatever the engine passes, the peer gets a valid close frame that
// says what was asked, cut to fit.
func FuzzAppendClose(f *testing.F) {
	f.Add(uint16(1000), "")
	f.Add(uint16(1001), strings.Repeat("é", 70))
	f.Add(uint16(1005), "x")
	f.Add(uint16(4999), "a\xffb")
	f.Add(uint16(3000), "\xff\xfe"+strings.Repeat("z", 130))
	f.Fuzz(func(t *testing.T, c uint16, reason string) {
		code, got := parseServerClose(t, AppendClose(nil, ws.StatusCode(c), reason))
		if !wireValid(int(c)) {
			if code != ws.StatusNoStatusRcvd {
				t.Fatalf("code %d sent as %d", c, code)
			}
			return
		}
		if int(code) != int(c) {
			t.Fatalf("code %d sent as %d", c, code)
		}
		// Converting through []rune replaces each invalid byte with U+FFFD, as AppendClose does.
		valid := string([]rune(reason))
		if !strings.HasPrefix(valid, string(got)) {
			t.Fatalf("reason %q sent as %q", reason, got)
		}
		if len(got) < len(valid) {
			// Cut only when the next rune would not have fit.
			_, size := utf8.DecodeRuneInString(valid[len(got):])
			if len(got)+size <= 123 {
				t.Fatalf("reason %q cut early to %q", reason, got)
			}
		}
	})
}
