package vncsim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"vncedge/bench/rfbclient"
	"vncedge/bench/wsstream"
	"vncedge/rfb"
)

// testDeadline bounds every socket operation of a test, so a bug hangs nothing.
const testDeadline = 10 * time.Second

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(testDeadline))
	return c
}

// openSession dials and completes the handshake, returning a buffered reader over the conn.
func openSession(t *testing.T, s *Server, password string) (net.Conn, *bufio.Reader, rfb.ServerInit) {
	t.Helper()
	c := dial(t, s)
	br := bufio.NewReader(c)
	si, err := rfbclient.Handshake(struct {
		io.Reader
		io.Writer
	}{br, c}, password)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, si
}

func TestHandshakeServerInit(t *testing.T) {
	s := start(t, Config{Width: 320, Height: 200, Name: "vm-a"})
	_, _, si := openSession(t, s, "")
	want := rfb.ServerInit{Width: 320, Height: 200, Format: rfb.Default32(), Name: "vm-a"}
	if si != want {
		t.Fatalf("ServerInit = %+v, want %+v", si, want)
	}
}

func TestModeDesktopFullUpdate(t *testing.T) {
	s := start(t, Config{Width: 100, Height: 70})
	c, br, _ := openSession(t, s, "")
	if err := rfbclient.RequestUpdate(c, false, 0, 0, 100, 70); err != nil {
		t.Fatal(err)
	}
	rects, n, err := rfbclient.ReadUpdate(br, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rects != 1 || n != 100*70*4 {
		t.Fatalf("full update: %d rects, %d bytes; want 1, %d", rects, n, 100*70*4)
	}
}

func TestModeEcho(t *testing.T) {
	s := start(t, Config{Mode: ModeEcho})
	c, br, _ := openSession(t, s, "")
	msg := []byte("ping 12345")
	for i := 0; i < 3; i++ {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
}

func TestModeSink(t *testing.T) {
	s := start(t, Config{Mode: ModeSink})
	c, br, _ := openSession(t, s, "")
	before := s.Stats().BytesIn
	const n = 1 << 20
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	// Half-close: the sink sees EOF after our bytes, then closes, and we read its EOF.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Stats().SessionsOpen == 0 })
	if got := s.Stats().BytesIn - before; got != n {
		t.Fatalf("sink counted %d bytes, want %d", got, n)
	}
}

func TestModeSource(t *testing.T) {
	const n = 1<<20 + 17
	s := start(t, Config{Mode: ModeSource, SourceBytes: n})
	_, br, _ := openSession(t, s, "")
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	checkPattern(t, got, n)
}

func checkPattern(t *testing.T, got []byte, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("source sent %d bytes, want %d", len(got), n)
	}
	want := make([]byte, n)
	Pattern(0, want)
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("source byte %d = %d, want %d", i, got[i], want[i])
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestPatternOffset(t *testing.T) {
	whole := make([]byte, 1000)
	Pattern(0, whole)
	part := make([]byte, 300)
	Pattern(600, part)
	if !bytes.Equal(part, whole[600:900]) {
		t.Fatal("Pattern at an offset differs from the same bytes of the whole stream")
	}
}

func TestVNCAuth(t *testing.T) {
	s := start(t, Config{Password: "s3cret"})
	if _, _, si := openSession(t, s, "s3cret"); si.Name != "vncsim" {
		t.Fatalf("name %q", si.Name)
	}
	c := dial(t, s)
	_, err := rfbclient.Handshake(c, "wrong")
	if !errors.Is(err, rfbclient.ErrAuth) {
		t.Fatalf("wrong password: err = %v, want ErrAuth", err)
	}
	if got := s.Stats().AuthFailures; got != 1 {
		t.Fatalf("AuthFailures = %d, want 1", got)
	}
	// Without a password the client has no usable security type.
	if _, err := rfbclient.Handshake(dial(t, s), ""); err == nil {
		t.Fatal("handshake without password succeeded against a password-protected VM")
	}
}

func TestPixelFormats(t *testing.T) {
	const w, h = 40, 70
	formats := map[string]rfb.PixelFormat{
		"32le": rfb.Default32(),
		"32be": func() rfb.PixelFormat { pf := rfb.Default32(); pf.BigEndian = true; return pf }(),
		"16le": rfb.RGB565(),
		"16be": func() rfb.PixelFormat { pf := rfb.RGB565(); pf.BigEndian = true; return pf }(),
		// noVNC's own request: 32 bpp, depth 24, shifts 0/8/16.
		"novnc": {BPP: 32, Depth: 24, TrueColour: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 0, GreenShift: 8, BlueShift: 16},
	}
	s := start(t, Config{Width: w, Height: h})
	for name, pf := range formats {
		t.Run(name, func(t *testing.T) {
			c, br, _ := openSession(t, s, "")
			if err := rfbclient.SetPixelFormat(c, pf); err != nil {
				t.Fatal(err)
			}
			if err := rfbclient.SetEncodings(c, rfb.EncodingRaw, -223); err != nil {
				t.Fatal(err)
			}
			if err := rfbclient.RequestUpdate(c, false, 0, 0, w, h); err != nil {
				t.Fatal(err)
			}
			bpp := pf.BytesPerPixel()
			var checked int
			rects, n, err := rfbclient.ReadUpdate(br, bpp, func(rc rfbclient.Rect, pix []byte) {
				want := make([]byte, bpp)
				for y := 0; y < int(rc.H); y++ {
					for x := 0; x < int(rc.W); x++ {
						r, g, b := PatternColour(int(rc.X)+x, int(rc.Y)+y, 0, h)
						pf.Pixel(want, r, g, b)
						off := (y*int(rc.W) + x) * bpp
						if !bytes.Equal(pix[off:off+bpp], want) {
							t.Fatalf("pixel (%d,%d) = %x, want %x", x, y, pix[off:off+bpp], want)
						}
						checked++
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if rects != 1 || n != w*h*bpp || checked != w*h {
				t.Fatalf("%d rects, %d bytes, %d pixels checked; want 1, %d, %d", rects, n, checked, w*h*bpp, w*h)
			}
		})
	}
}

// A client that applies every incremental update must hold what a full update shows.
func TestIncrementalUpdates(t *testing.T) {
	const w, h = 50, 80 // bands of 32, 32, 16 rows
	s := start(t, Config{Width: w, Height: h, FrameInterval: -1})
	c, br, _ := openSession(t, s, "")
	fb := make([]byte, w*h*4)
	apply := func(rc rfbclient.Rect, pix []byte) {
		for y := 0; y < int(rc.H); y++ {
			off := ((int(rc.Y)+y)*w + int(rc.X)) * 4
			copy(fb[off:off+int(rc.W)*4], pix[y*int(rc.W)*4:])
		}
	}
	read := func(incremental bool, x, y, rw, rh uint16) (rects, n int) {
		t.Helper()
		if err := rfbclient.RequestUpdate(c, incremental, x, y, rw, rh); err != nil {
			t.Fatal(err)
		}
		rects, n, err := rfbclient.ReadUpdate(br, 4, apply)
		if err != nil {
			t.Fatal(err)
		}
		return rects, n
	}
	if _, n := read(false, 0, 0, w, h); n != w*h*4 {
		t.Fatalf("full update %d bytes, want %d", n, w*h*4)
	}
	wantBands := []int{32, 32, 16, 32}
	for i, rows := range wantBands {
		if rects, n := read(true, 0, 0, w, h); rects != 1 || n != w*rows*4 {
			t.Fatalf("incremental %d: %d rects, %d bytes; want 1, %d", i, rects, n, w*rows*4)
		}
	}
	// Rows 30..79 hold bands 1 and 2 whole: the next band, 1, changes.
	if rects, n := read(true, 0, 30, w, 50); rects != 1 || n != w*32*4 {
		t.Fatalf("incremental rows 30..79: %d rects, %d bytes; want 1, %d", rects, n, w*32*4)
	}
	// A request too small for a whole band is told nothing changed.
	if rects, n := read(true, 10, 40, 20, 10); rects != 0 || n != 0 {
		t.Fatalf("incremental sub-rectangle: %d rects, %d bytes; want 0, 0", rects, n)
	}
	held := append([]byte(nil), fb...)
	read(false, 0, 0, w, h)
	if i := firstDiff(held, fb); i >= 0 {
		t.Fatalf("client framebuffer differs from a full update at byte %d", i)
	}
	// A request outside the framebuffer gets an empty update, not an error.
	if rects, n := read(true, w, h, 10, 10); rects != 0 || n != 0 {
		t.Fatalf("request outside the framebuffer: %d rects, %d bytes", rects, n)
	}
}

func TestInputCounters(t *testing.T) {
	s := start(t, Config{Width: 8, Height: 8})
	c, br, _ := openSession(t, s, "")
	for i := 0; i < 3; i++ {
		if err := rfbclient.KeyEvent(c, i%2 == 0, 'a'); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if err := rfbclient.PointerEvent(c, 1, uint16(i), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := rfbclient.ClientCutText(c, []byte("clipboard")); err != nil {
		t.Fatal(err)
	}
	// Messages are handled in order, so once this update is back the events were counted.
	if err := rfbclient.RequestUpdate(c, false, 0, 0, 8, 8); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rfbclient.ReadUpdate(br, 4, nil); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.KeyEvents != 3 || st.PointerEvents != 5 {
		t.Fatalf("counted %d keys, %d pointer events; want 3, 5", st.KeyEvents, st.PointerEvents)
	}
}

func TestUnknownMessageEndsSession(t *testing.T) {
	s := start(t, Config{})
	c, br, _ := openSession(t, s, "")
	if _, err := c.Write([]byte{99, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("reading until the server closes: %v", err)
	}
	waitFor(t, func() bool { return s.Stats().SessionsOpen == 0 })
	if got := s.Stats().ProtocolErrors; got != 1 {
		t.Fatalf("ProtocolErrors = %d, want 1", got)
	}
}

func TestWrongVersionRefused(t *testing.T) {
	s := start(t, Config{})
	c := dial(t, s)
	var ver [12]byte
	if _, err := io.ReadFull(c, ver[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("RFB 003.003\n")); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) < 8 || rest[0]|rest[1]|rest[2]|rest[3] != 0 {
		t.Fatalf("want zero security types and a reason, got %q", rest)
	}
}

func TestCloseEndsLiveSessions(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Config{})
	if err != nil {
		t.Fatal(err)
	}
	c, br, _ := openSession(t, s, "")
	_ = c
	if got := s.Stats().SessionsOpen; got != 1 {
		t.Fatalf("SessionsOpen = %d, want 1", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("session still delivers data after Close")
	}
	if got := s.Stats().SessionsOpen; got != 0 {
		t.Fatalf("SessionsOpen after Close = %d", got)
	}
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepts after Close")
	}
}

func wsSession(t *testing.T, s *Server) (*wsstream.Stream, *bufio.Reader, rfb.ServerInit) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	st, conn, err := wsstream.Dial(ctx, fmt.Sprintf("ws://%s/vnc/anything", s.Addr()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(testDeadline))
	br := bufio.NewReader(st)
	si, err := rfbclient.Handshake(struct {
		io.Reader
		io.Writer
	}{br, st}, "")
	if err != nil {
		t.Fatal(err)
	}
	return st, br, si
}

func TestWebSocketDesktop(t *testing.T) {
	s := start(t, Config{WebSocket: true, Width: 64, Height: 48})
	st, br, si := wsSession(t, s)
	if si.Width != 64 || si.Height != 48 {
		t.Fatalf("ServerInit %+v", si)
	}
	if err := rfbclient.RequestUpdate(st, false, 0, 0, 64, 48); err != nil {
		t.Fatal(err)
	}
	if _, n, err := rfbclient.ReadUpdate(br, 4, nil); err != nil || n != 64*48*4 {
		t.Fatalf("update over WebSocket: %d bytes, %v", n, err)
	}
}

func TestWebSocketSource(t *testing.T) {
	const n = 1<<20 + 3
	s := start(t, Config{WebSocket: true, Mode: ModeSource, SourceBytes: n})
	_, br, _ := wsSession(t, s)
	got, err := io.ReadAll(br) // ends at the server's close frame
	if err != nil {
		t.Fatal(err)
	}
	checkPattern(t, got, n)
}

func TestWebSocketEcho(t *testing.T) {
	s := start(t, Config{WebSocket: true, Mode: ModeEcho})
	st, br, _ := wsSession(t, s)
	msg := bytes.Repeat([]byte("0123456789"), 1000)
	if _, err := st.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo over WebSocket differs")
	}
}

func TestParseMode(t *testing.T) {
	for m := ModeDesktop; m <= ModeSource; m++ {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Fatalf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("bogus"); err == nil {
		t.Fatal("ParseMode accepted bogus")
	}
}

// waitFor polls cond for a bounded time: server-side counters move after the client sees
// the effect.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("condition not reached in 5s")
}
