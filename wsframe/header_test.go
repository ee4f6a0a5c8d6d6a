package wsframe

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

func TestHeaderLen(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		want int
	}{
		{name: "empty", b: nil, want: 0},
		{name: "one byte", b: []byte{0x82}, want: 0},
		{name: "7-bit", b: []byte{0x82, 125}, want: 2},
		{name: "7-bit masked", b: []byte{0x82, 0x80 | 125}, want: 6},
		{name: "16-bit", b: []byte{0x82, 126}, want: 4},
		{name: "16-bit masked", b: []byte{0x82, 0x80 | 126}, want: 8},
		{name: "64-bit", b: []byte{0x82, 127}, want: 10},
		{name: "64-bit masked", b: []byte{0x82, 0x80 | 127}, want: 14},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := HeaderLen(c.b); got != c.want {
				t.Fatalf("HeaderLen(% x) = %d, want %d", c.b, got, c.want)
			}
		})
	}
}

func TestParseHeaderLengths(t *testing.T) {
	for _, length := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 32, 1<<63 - 1} {
		for _, masked := range []bool{false, true} {
			h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(length), Masked: masked}
			if masked {
				h.Mask = testMask
			}
			var buf bytes.Buffer
			if err := ws.WriteHeader(&buf, h); err != nil {
				t.Fatal(err)
			}
			b := buf.Bytes()
			got, n, err := ParseHeader(b)
			if err != nil || n != len(b) || got != h {
				t.Fatalf("length %d masked %v: ParseHeader = %+v, %d, %v; want %+v, %d, nil",
					length, masked, got, n, err, h, len(b))
			}
			if HeaderLen(b) != len(b) {
				t.Fatalf("length %d masked %v: HeaderLen = %d, want %d", length, masked, HeaderLen(b), len(b))
			}
			// Every strict prefix is short and asks for the right number of bytes.
			for i := range len(b) {
				want := 2
				if i >= 2 {
					want = len(b)
				}
				_, n, err := ParseHeader(b[:i])
				if err != ErrShort || n != want {
					t.Fatalf("length %d masked %v prefix %d: got n=%d err=%v, want n=%d ErrShort",
						length, masked, i, n, err, want)
				}
			}
		}
	}
}

func TestParseHeaderFields(t *testing.T) {
	ops := []ws.OpCode{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	for _, op := range ops {
		for rsv := byte(0); rsv < 8; rsv++ {
			for _, fin := range []bool{false, true} {
				h := ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Masked: true, Mask: testMask, Length: 3}
				var buf bytes.Buffer
				if err := ws.WriteHeader(&buf, h); err != nil {
					t.Fatal(err)
				}
				got, n, err := ParseHeader(append(buf.Bytes(), 1, 2, 3))
				if err != nil || n != 6 || got != h {
					t.Fatalf("op %d rsv %d fin %v: got %+v %d %v", op, rsv, fin, got, n, err)
				}
			}
		}
	}
}

func TestParseHeaderLengthMSB(t *testing.T) {
	b := []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}
	h, n, err := ParseHeader(b)
	if !errors.Is(err, ErrLengthMSB) || n != 0 || h != (ws.Header{}) {
		t.Fatalf("got %+v, %d, %v; want zero, 0, ErrLengthMSB", h, n, err)
	}
	var pe ws.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("%v is not a ws.ProtocolError", err)
	}
	if CloseCodeFor(err) != ws.StatusProtocolError {
		t.Fatalf("CloseCodeFor = %d", CloseCodeFor(err))
	}
	if _, err := ws.ReadHeader(bytes.NewReader(b)); err == nil {
		t.Fatal("ws.ReadHeader accepts it; the cross-check would be meaningless")
	}
}

// TestParseHeaderMatchesReadHeader cross-checks against gobwas/ws on random headers, drawn so
// that every length encoding comes up often.
func TestParseHeaderMatchesReadHeader(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		b := make([]byte, MaxHeaderSize)
		for j := range b {
			b[j] = byte(r.UintN(256))
		}
		if i%2 == 0 {
			b[1] = b[1]&0x80 | byte(126+r.UintN(2))
		}
		compareWithReadHeader(t, b)
		compareWithReadHeader(t, b[:r.IntN(len(b))])
	}
}

// compareWithReadHeader fails t unless ParseHeader and ws.ReadHeader agree on b: the same header
// when both succeed, ErrShort exactly when ReadHeader runs out of input, ErrLengthMSB exactly when
// ReadHeader rejects the length.
func compareWithReadHeader(t testing.TB, b []byte) {
	t.Helper()
	h, n, err := ParseHeader(b)
	rd := bytes.NewReader(b)
	wh, werr := ws.ReadHeader(rd)
	switch {
	case err == nil:
		// Compare n with what ReadHeader consumed, not ws.HeaderSize: a length need not be
		// minimally encoded.
		if werr != nil || h != wh || n != len(b)-rd.Len() {
			t.Fatalf("% x: ParseHeader = %+v, %d; ReadHeader = %+v, %v", b, h, n, wh, werr)
		}
		if n != HeaderLen(b) {
			t.Fatalf("% x: n = %d, HeaderLen = %d", b, n, HeaderLen(b))
		}
	case err == ErrShort:
		if werr != io.EOF && werr != io.ErrUnexpectedEOF {
			t.Fatalf("% x: ParseHeader short (need %d), ReadHeader = %+v, %v", b, n, wh, werr)
		}
		if n <= len(b) || n > MaxHeaderSize {
			t.Fatalf("% x: short with n = %d", b, n)
		}
	case err == ErrLengthMSB:
		if werr != ws.ErrHeaderLengthMSB {
			t.Fatalf("% x: ParseHeader %v, ReadHeader = %+v, %v", b, err, wh, werr)
		}
	default:
		t.Fatalf("% x: unexpected error %v", b, err)
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x82})
	f.Add([]byte{0x82, 0x85, 1, 2, 3, 4})
	f.Add([]byte{0x81, 0xfe, 0x01, 0x00, 1, 2, 3, 4})
	f.Add([]byte{0x02, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xf8, 0x7e, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		compareWithReadHeader(t, b)
	})
}

func TestCheckClient(t *testing.T) {
	good := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: testMask, Length: 10}
	with := func(f func(*ws.Header)) ws.Header {
		h := good
		f(&h)
		return h
	}
	cases := []struct {
		name       string
		h          ws.Header
		fragmented bool
		want       error
	}{
		{
			name: "binary",
			h:    good,
			want: nil,
		},
		{
			name: "unmasked",
			h:    with(func(h *ws.Header) { h.Masked = false; h.Mask = [4]byte{} }),
			want: ws.ErrProtocolMaskRequired,
		},
		{
			name: "rsv1",
			h:    with(func(h *ws.Header) { h.Rsv = 4 }),
			want: ws.ErrProtocolNonZeroRsv,
		},
		{
			name: "rsv3",
			h:    with(func(h *ws.Header) { h.Rsv = 1 }),
			want: ws.ErrProtocolNonZeroRsv,
		},
		{
			name: "ping 125",
			h:    with(func(h *ws.Header) { h.OpCode = ws.OpPing; h.Length = 125 }),
			want: nil,
		},
		{
			name: "ping 126",
			h:    with(func(h *ws.Header) { h.OpCode = ws.OpPing; h.Length = 126 }),
			want: ws.ErrProtocolControlPayloadOverflow,
		},
		{
			name: "close 126",
			h:    with(func(h *ws.Header) { h.OpCode = ws.OpClose; h.Length = 126 }),
			want: ws.ErrProtocolControlPayloadOverflow,
		},
		{
			name: "fragmented pong",
			h:    with(func(h *ws.Header) { h.OpCode = ws.OpPong; h.Fin = false }),
			want: ws.ErrProtocolControlNotFinal,
		},
		{
			name:       "ping inside fragmented message",
			h:          with(func(h *ws.Header) { h.OpCode = ws.OpPing }),
			fragmented: true,
			want:       nil,
		},
		{
			name: "first fragment",
			h:    with(func(h *ws.Header) { h.Fin = false }),
			want: nil,
		},
		{
			name:       "continuation",
			h:          with(func(h *ws.Header) { h.OpCode = ws.OpContinuation; h.Fin = false }),
			fragmented: true,
			want:       nil,
		},
		{
			name:       "last continuation",
			h:          with(func(h *ws.Header) { h.OpCode = ws.OpContinuation }),
			fragmented: true,
			want:       nil,
		},
		{
			name: "continuation without a message",
			h:    with(func(h *ws.Header) { h.OpCode = ws.OpContinuation }),
			want: ws.ErrProtocolContinuationUnexpected,
		},
		{
			name:       "new message inside fragmented message",
			h:          with(func(h *ws.Header) { h.OpCode = ws.OpText }),
			fragmented: true,
			want:       ws.ErrProtocolContinuationExpected,
		},
	}
	for op := ws.OpCode(3); op <= 15; op++ {
		if op.IsReserved() {
			cases = append(cases, struct {
				name       string
				h          ws.Header
				fragmented bool
				want       error
			}{
				name: "reserved opcode " + string('0'+rune(op%10)),
				h:    with(func(h *ws.Header) { h.OpCode = op }),
				want: ws.ErrProtocolOpCodeReserved,
			})
		}
	}
	for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong} {
		cases = append(cases, struct {
			name       string
			h          ws.Header
			fragmented bool
			want       error
		}{
			name: "known opcode " + string('0'+rune(op%10)),
			h:    with(func(h *ws.Header) { h.OpCode = op }),
			want: nil,
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckClient(c.h, c.fragmented)
			if err != c.want {
				t.Fatalf("CheckClient(%+v, %v) = %v, want %v", c.h, c.fragmented, err, c.want)
			}
			if err != nil && CloseCodeFor(err) != ws.StatusProtocolError {
				t.Fatalf("CloseCodeFor(%v) = %d, want 1002", err, CloseCodeFor(err))
			}
		})
	}
}

func TestPutHeader(t *testing.T) {
	cases := []struct {
		length int
		want   []byte
	}{
		{length: 0, want: []byte{0x82, 0}},
		{length: 125, want: []byte{0x82, 125}},
		{length: 126, want: []byte{0x82, 126, 0, 126}},
		{length: 65535, want: []byte{0x82, 126, 0xff, 0xff}},
		{length: 65536, want: []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{length: 1<<63 - 1, want: []byte{0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	}
	for _, c := range cases {
		var dst [10]byte
		n := PutHeader(dst[:], true, ws.OpBinary, c.length)
		if !bytes.Equal(dst[:n], c.want) {
			t.Fatalf("PutHeader(%d) = % x, want % x", c.length, dst[:n], c.want)
		}
	}
	var dst [10]byte
	if n := PutHeader(dst[:], false, ws.OpText, 3); n != 2 || dst[0] != 0x01 {
		t.Fatalf("non-final text: % x", dst[:n])
	}
	// An opcode with high bits must not leak into FIN or RSV.
	if n := PutHeader(dst[:], false, ws.OpCode(0xf2), 3); n != 2 || dst[0] != 0x02 {
		t.Fatalf("opcode 0xf2: % x", dst[:n])
	}
}

func TestPutHeaderNegativeLengthPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	var dst [10]byte
	PutHeader(dst[:], true, ws.OpBinary, -1)
}

// TestPutHeaderMatchesWriteHeader cross-checks against gobwas/ws on random headers.
func TestPutHeaderMatchesWriteHeader(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ops := []ws.OpCode{ws.OpContinuation, ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong}
	for range 20000 {
		var length int
		switch r.IntN(3) {
		case 0:
			length = r.IntN(126)
		case 1:
			length = 126 + r.IntN(65536-126)
		default:
			length = 65536 + int(r.Int64N(1<<63-65536))
		}
		h := ws.Header{Fin: r.IntN(2) == 0, OpCode: ops[r.IntN(len(ops))], Length: int64(length)}
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		var dst [10]byte
		n := PutHeader(dst[:], h.Fin, h.OpCode, length)
		if !bytes.Equal(dst[:n], want.Bytes()) {
			t.Fatalf("%+v: PutHeader = % x, WriteHeader = % x", h, dst[:n], want.Bytes())
		}
		got, m, err := ParseHeader(dst[:n])
		if err != nil || m != n || got != h {
			t.Fatalf("%+v: parsed back as %+v, %d, %v", h, got, m, err)
		}
	}
}

func TestUnmask(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, size := range []int{0, 1, 3, 4, 15, 16, 17, 63, 64, 65, 1000, 4096, 65537} {
		plain := make([]byte, size)
		for i := range plain {
			plain[i] = byte(r.UintN(256))
		}
		masked := make([]byte, size)
		for i := range plain {
			masked[i] = plain[i] ^ testMask[i%4]
		}

		// In one piece.
		p := bytes.Clone(masked)
		if next := Unmask(p, testMask, 0); next != size%4 || !bytes.Equal(p, plain) {
			t.Fatalf("size %d in one piece: next %d, equal %v", size, next, bytes.Equal(p, plain))
		}

		// In random pieces, threading the offset through.
		p = bytes.Clone(masked)
		off := 0
		for i := 0; i < size; {
			k := min(size-i, 1+r.IntN(100))
			off = Unmask(p[i:i+k], testMask, off)
			if off < 0 || off > 3 {
				t.Fatalf("offset %d out of range", off)
			}
			i += k
		}
		if !bytes.Equal(p, plain) {
			t.Fatalf("size %d in pieces: mismatch", size)
		}
	}
}

func TestUnmaskAnyOffset(t *testing.T) {
	for _, off := range []int{-9, -5, -4, -3, -1, 0, 1, 5, 7, 1 << 40, -(1 << 40) - 1} {
		want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}
		p := bytes.Clone(want)
		m := ((off % 4) + 4) % 4
		for i := range want {
			want[i] ^= testMask[(m+i)%4]
		}
		next := Unmask(p, testMask, off)
		if !bytes.Equal(p, want) || next != (m+len(p))%4 {
			t.Fatalf("offset %d: got % x next %d, want % x next %d", off, p, next, want, (m+len(p))%4)
		}
	}
}
