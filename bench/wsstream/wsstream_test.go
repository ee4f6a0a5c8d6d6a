package wsstream

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// frame builds one wire frame as a peer would send it.
func frame(t testing.TB, op ws.OpCode, fin, masked bool, payload []byte) []byte {
	t.Helper()
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	if masked {
		f = ws.MaskFrameInPlace(f)
	}
	b, err := ws.CompileFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientToServerRoundTrip(t *testing.T) {
	var wire bytes.Buffer
	c := NewClient(bytes.NewReader(nil), &wire)
	big := bytes.Repeat([]byte("x0123456789"), 10000) // over one client chunk
	for _, p := range [][]byte{[]byte("hello"), big} {
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	var out bytes.Buffer
	s := NewServer(&wire, &out)
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("hello"), big...); !bytes.Equal(got, want) {
		t.Fatalf("server read %d bytes, want %d", len(got), len(want))
	}
	if out.Len() != 0 {
		t.Fatalf("server wrote %d bytes without a control frame", out.Len())
	}
}

func TestServerToClientRoundTrip(t *testing.T) {
	var wire bytes.Buffer
	s := NewServer(bytes.NewReader(nil), &wire)
	big := bytes.Repeat([]byte{7}, 100000) // the writev path
	for _, p := range [][]byte{[]byte("hi"), big} {
		if _, err := s.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SendClose(ws.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c := NewClient(&wire, &out)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("hi"), big...); !bytes.Equal(got, want) {
		t.Fatalf("client read %d bytes, want %d", len(got), len(want))
	}
	// The client answered the close, masked, with the same code.
	h, err := ws.ReadHeader(&out)
	if err != nil || h.OpCode != ws.OpClose || !h.Masked {
		t.Fatalf("client answer: %+v, %v", h, err)
	}
}

func TestPingAnsweredMidMessage(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(t, ws.OpBinary, false, true, []byte("ab")))
	in.Write(frame(t, ws.OpPing, true, true, []byte("p1")))
	in.Write(frame(t, ws.OpContinuation, true, true, []byte("cd")))
	in.Write(frame(t, ws.OpPong, true, true, nil))
	in.Write(frame(t, ws.OpBinary, true, true, nil))
	in.Write(frame(t, ws.OpClose, true, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "")))
	var out bytes.Buffer
	s := NewServer(&in, &out)
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "abcd" {
		t.Fatalf("read %q, want abcd", got)
	}
	pong, err := ws.ReadFrame(&out)
	if err != nil || pong.Header.OpCode != ws.OpPong || string(pong.Payload) != "p1" || pong.Header.Masked {
		t.Fatalf("pong: %+v %q, %v", pong.Header, pong.Payload, err)
	}
	cl, err := ws.ReadFrame(&out)
	if err != nil || cl.Header.OpCode != ws.OpClose {
		t.Fatalf("close echo: %+v, %v", cl.Header, err)
	}
	if code, _ := ws.ParseCloseFrameData(cl.Payload); code != ws.StatusGoingAway {
		t.Fatalf("close echo code %d, want %d", code, ws.StatusGoingAway)
	}
}

func TestProtocolErrors(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{
			name: "unmasked frame to a server",
			wire: frame(t, ws.OpBinary, true, false, []byte("x")),
		},
		{
			name: "text frame",
			wire: frame(t, ws.OpText, true, true, []byte("x")),
		},
		{
			name: "fragmented ping",
			wire: frame(t, ws.OpPing, false, true, []byte("x")),
		},
		{
			name: "reserved bit",
			wire: func() []byte { b := frame(t, ws.OpBinary, true, true, []byte("x")); b[0] |= 0x40; return b }(),
		},
	}
	for _, tc := range tests {
		_, err := io.ReadAll(NewServer(bytes.NewReader(tc.wire), io.Discard))
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", tc.name, err)
		}
	}
}

func TestTruncatedPayload(t *testing.T) {
	b := frame(t, ws.OpBinary, true, true, []byte("hello"))
	_, err := io.ReadAll(NewServer(bytes.NewReader(b[:len(b)-2]), io.Discard))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want ErrUnexpectedEOF", err)
	}
}

// FuzzServerRead feeds arbitrary bytes to a server-side stream: no panic, and it never
// returns more payload than the input held.
func FuzzServerRead(f *testing.F) {
	f.Add(frame(f, ws.OpBinary, true, true, []byte("hello")))
	f.Add(append(frame(f, ws.OpPing, true, true, []byte("p")), frame(f, ws.OpClose, true, true, nil)...))
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
	f.Add([]byte{0x82, 0xfe, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, _ := io.ReadAll(NewServer(bytes.NewReader(data), io.Discard))
		if len(got) > len(data) {
			t.Fatalf("read %d payload bytes from %d input bytes", len(got), len(data))
		}
	})
}
