package recorder_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"vncedge/bench/rfbclient"
	"vncedge/bench/vncsim"
	"vncedge/engine/recorder"
	"vncedge/rfb"
)

// teeConn hands every byte read from the VM after the handshake to a recording, as the engine's
// loop does with what it relays, in the pieces the socket returns.
type teeConn struct {
	net.Conn
	rec *recorder.Recording
}

func (c *teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.rec != nil {
		c.rec.FromVM(p[:n], time.Now())
	}
	return n, err
}

// updates reads n framebuffer updates of bpp bytes per pixel and returns, per update, its
// rectangles' headers and pixels, and how many distinct pixel values they hold.
func updates(t *testing.T, r io.Reader, bpp, n int) (out []byte, colours int) {
	t.Helper()
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		_, _, err := rfbclient.ReadUpdate(r, bpp, func(rc rfbclient.Rect, px []byte) {
			out = fmt.Appendf(out, "update %d rect %+v\n", i, rc)
			out = append(out, px...)
			for j := 0; j+bpp <= len(px); j += bpp {
				seen[string(px[j:j+bpp])] = true
			}
		})
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	return out, len(seen)
}

// TestReplayThroughVncsim records a live session with a simulated VM (VNC authentication,
// the client switching to 16-bit pixels), then serves the recording with vncsim's replay mode
// to a fresh client: it sees the client's pixel format in ServerInit and exactly the framebuffer
// bytes the live client saw.
func TestReplayThroughVncsim(t *testing.T) {
	vm, err := vncsim.Listen("127.0.0.1:0", vncsim.Config{Width: 64, Height: 80, Name: "live vm", Password: "pw", FrameInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	r, err := recorder.New(recorder.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(t.Context())

	nc, err := net.DialTimeout("tcp", vm.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	// The proxy's own handshake with the VM; the recording starts at ServerInit.
	h := rfb.NewVMHandshake(rfb.VMConfig{Password: []byte("pw")})
	var buf [64]byte
	for !h.Done() {
		n := min(h.Need(), len(buf))
		if _, err := io.ReadFull(nc, buf[:n]); err != nil {
			t.Fatal(err)
		}
		_, herr := h.Feed(buf[:n])
		if out := h.AppendOutput(nil); len(out) > 0 {
			if _, err := nc.Write(out); err != nil {
				t.Fatal(err)
			}
		}
		if herr != nil {
			t.Fatal(herr)
		}
	}
	rec, err := r.Start(recorder.Session{ID: "live", Target: vm.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	tee := &teeConn{Conn: nc, rec: rec}
	br := bufio.NewReaderSize(tee, 4096)
	if _, err := nc.Write(rfb.AppendClientInit(nil, true)); err != nil {
		t.Fatal(err)
	}
	si, err := rfbclient.ReadServerInit(br)
	if err != nil {
		t.Fatal(err)
	}
	pf := rfb.RGB565()
	if err := rfbclient.SetPixelFormat(nc, pf); err != nil {
		t.Fatal(err)
	}
	rec.SetPixelFormat(pf, time.Now())
	if err := rfbclient.SetEncodings(nc, rfb.EncodingRaw); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := 0; i < n; i++ {
		if err := rfbclient.RequestUpdate(nc, i > 0, 0, 0, si.Width, si.Height); err != nil {
			t.Fatal(err)
		}
	}
	live, colours := updates(t, br, pf.BytesPerPixel(), n)
	if colours < 2 {
		t.Fatalf("the live framebuffer has %d colours: comparing it proves little", colours)
	}
	if br.Buffered() != 0 {
		t.Fatalf("%d bytes after the last update", br.Buffered())
	}
	rec.End("browser closed", time.Now())
	select {
	case <-rec.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("recording not written within 10s")
	}
	if rec.Failed() {
		t.Fatal(rec.Err())
	}
	fbs, _ := rec.Paths()

	replay, err := vncsim.Listen("127.0.0.1:0", vncsim.Config{Mode: vncsim.ModeReplay, ReplayFile: fbs, ReplayFast: true})
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	c, err := net.DialTimeout("tcp", replay.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	rbr := bufio.NewReader(c)
	rsi, err := rfbclient.Handshake(struct {
		io.Reader
		io.Writer
	}{rbr, c}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := si
	want.Format = pf
	if rsi != want {
		t.Fatalf("replayed ServerInit %+v, want %+v", rsi, want)
	}
	replayed, _ := updates(t, rbr, pf.BytesPerPixel(), n)
	if !bytes.Equal(replayed, live) {
		t.Fatalf("the replay shows %d bytes that differ from the %d the live client saw", len(replayed), len(live))
	}
}
