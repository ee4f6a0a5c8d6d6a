package rfbclient

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"vncedge/rfb"
)

// v38 is the version message of RFB 3.8.
const v38 = "RFB 003.008\n"

// script is a server transcript for Handshake: reads come from srv, writes land in sent.
type script struct {
	srv  *bytes.Reader
	sent bytes.Buffer
}

func (s *script) Read(p []byte) (int, error)  { return s.srv.Read(p) }
func (s *script) Write(p []byte) (int, error) { return s.sent.Write(p) }

func TestHandshakeNone(t *testing.T) {
	si := rfb.ServerInit{Width: 10, Height: 20, Format: rfb.Default32(), Name: "n"}
	srv := append([]byte(v38+"\x02\x02\x01\x00\x00\x00\x00"), si.Append(nil)...)
	s := &script{srv: bytes.NewReader(srv)}
	got, err := Handshake(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if got != si {
		t.Fatalf("got %+v, want %+v", got, si)
	}
	// Version, then security type None (preferred over VNC auth), then ClientInit shared.
	if want := v38 + "\x01\x01"; s.sent.String() != want {
		t.Fatalf("client sent %q, want %q", s.sent.String(), want)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	refusal := binary.BigEndian.AppendUint32([]byte(v38+"\x00"), 3)
	refusal = append(refusal, "why"...)
	authFail := binary.BigEndian.AppendUint32([]byte(v38+"\x01\x01\x00\x00\x00\x01"), 3)
	authFail = append(authFail, "bad"...)
	for name, srv := range map[string][]byte{
		"no types":               refusal,
		"failed":                 authFail,
		"not rfb":                []byte("HTTP/1.1 400"),
		"auth only, no password": []byte(v38 + "\x01\x02"),
	} {
		_, err := Handshake(&script{srv: bytes.NewReader(srv)}, "")
		if err == nil {
			t.Errorf("%s: handshake succeeded", name)
		}
		if name == "failed" && !errors.Is(err, ErrAuth) {
			t.Errorf("failed: err = %v, want ErrAuth", err)
		}
	}
}

// TestHandshakeOlderServers: the client follows a 3.3 or 3.7 server down to its version, with
// the shorter handshakes those versions have, and reads nothing past ServerInit.
func TestHandshakeOlderServers(t *testing.T) {
	si := rfb.ServerInit{Width: 3, Height: 4, Format: rfb.RGB565(), Name: "old"}
	var challenge [rfb.ChallengeLen]byte
	resp := rfb.VNCAuthResponse([]byte("pw"), challenge)
	for _, tc := range []struct {
		name, password, srv, sent string
	}{
		{"3.3 None", "", "RFB 003.003\n\x00\x00\x00\x01", "RFB 003.003\n\x01"},
		{"3.7 None", "", "RFB 003.007\n\x01\x01", "RFB 003.007\n\x01\x01"},
		{"3.3 VNC auth", "pw", "RFB 003.003\n\x00\x00\x00\x02" + string(challenge[:]) + "\x00\x00\x00\x00",
			"RFB 003.003\n" + string(resp[:]) + "\x01"},
	} {
		s := &script{srv: bytes.NewReader(append(append([]byte(tc.srv), si.Append(nil)...), "next"...))}
		got, err := Handshake(s, tc.password)
		if err != nil || got != si {
			t.Fatalf("%s: %+v %v", tc.name, got, err)
		}
		if s.sent.String() != tc.sent {
			t.Fatalf("%s: sent %q, want %q", tc.name, s.sent.String(), tc.sent)
		}
		if rest, _ := io.ReadAll(s.srv); string(rest) != "next" {
			t.Fatalf("%s: read past ServerInit, left %q", tc.name, rest)
		}
	}
}

func TestReadServerInitBounds(t *testing.T) {
	b := rfb.ServerInit{Name: "x"}.Append(nil)
	binary.BigEndian.PutUint32(b[20:], rfb.MaxNameLen+1)
	if _, err := ReadServerInit(bytes.NewReader(b)); err == nil {
		t.Fatal("huge name accepted")
	}
	if _, err := ReadServerInit(bytes.NewReader(b[:10])); err == nil {
		t.Fatal("short ServerInit accepted")
	}
}

func update(rects ...Rect) []byte {
	b := []byte{rfb.MsgBell, rfb.MsgFramebufferUpdate, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(rects)))
	for _, r := range rects {
		b = binary.BigEndian.AppendUint16(b, r.X)
		b = binary.BigEndian.AppendUint16(b, r.Y)
		b = binary.BigEndian.AppendUint16(b, r.W)
		b = binary.BigEndian.AppendUint16(b, r.H)
		b = binary.BigEndian.AppendUint32(b, uint32(r.Encoding))
		b = append(b, make([]byte, int(r.W)*int(r.H)*2)...)
	}
	return b
}

func TestReadUpdate(t *testing.T) {
	msg := update(Rect{X: 1, Y: 2, W: 3, H: 4}, Rect{W: 5, H: 1})
	var seen []Rect
	rects, n, err := ReadUpdate(bytes.NewReader(msg), 2, func(r Rect, p []byte) {
		if len(p) != int(r.W)*int(r.H)*2 {
			t.Errorf("rect %+v got %d pixel bytes", r, len(p))
		}
		seen = append(seen, r)
	})
	if err != nil || rects != 2 || n != (12+5)*2 || len(seen) != 2 {
		t.Fatalf("ReadUpdate = %d rects, %d bytes, %v; seen %v", rects, n, err, seen)
	}
	if _, _, err := ReadUpdate(bytes.NewReader(update(Rect{W: 1, H: 1, Encoding: 7})), 2, nil); err == nil {
		t.Fatal("non-Raw rectangle accepted")
	}
}

func TestMessages(t *testing.T) {
	var b bytes.Buffer
	_ = SetPixelFormat(&b, rfb.RGB565())
	_ = SetEncodings(&b, 0, -223)
	_ = RequestUpdate(&b, true, 1, 2, 3, 4)
	_ = KeyEvent(&b, true, 0xff0d)
	_ = PointerEvent(&b, 1, 5, 6)
	_ = ClientCutText(&b, []byte("hi"))
	want := [][]byte{
		append([]byte{0, 0, 0, 0}, rfb.RGB565().Append(nil)...),
		{2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21},
		{3, 1, 0, 1, 0, 2, 0, 3, 0, 4},
		{4, 1, 0, 0, 0, 0, 0xff, 0x0d},
		{5, 1, 0, 5, 0, 6},
		{6, 0, 0, 0, 0, 0, 0, 2, 'h', 'i'},
	}
	if got := b.Bytes(); !bytes.Equal(got, bytes.Join(want, nil)) {
		t.Fatalf("messages\n got %x\nwant %x", got, bytes.Join(want, nil))
	}
}

// FuzzReadUpdate: arbitrary server bytes never panic, and the pixel bytes reported never
// exceed the input.
func FuzzReadUpdate(f *testing.F) {
	f.Add(update(Rect{W: 2, H: 2}))
	f.Add([]byte{rfb.MsgServerCutText, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe, 'a', 'b', 0, 0, 0, 0})
	f.Add([]byte{rfb.MsgSetColourMapEntries, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, n, _ := ReadUpdate(bytes.NewReader(data), 4, nil)
		if n > len(data) {
			t.Fatalf("%d pixel bytes from %d input bytes", n, len(data))
		}
		_, _ = Handshake(&script{srv: bytes.NewReader(data)}, "pw")
	})
}
