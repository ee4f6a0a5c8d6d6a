package engine

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"vncedge/routing"
	"vncedge/wsframe"
)

// fakeConn stands in for a gnet connection in relay benchmarks: inbound
// bytes come from a slice, outbound bytes are counted and dropped. The
// embedded nil Conn makes any method the relay should not call panic.
type fakeConn struct {
	gnet.Conn
	in      []byte
	written int
}

func (f *fakeConn) Peek(n int) ([]byte, error) {
	if n <= 0 || n > len(f.in) {
		return f.in, nil
	}
	return f.in[:n], nil
}

func (f *fakeConn) Discard(n int) (int, error) {
	if n < 0 || n > len(f.in) {
		n = len(f.in)
	}
	f.in = f.in[n:]
	return n, nil
}

func (f *fakeConn) InboundBuffered() int          { return len(f.in) }
func (f *fakeConn) OutboundBuffered() int         { return 0 }
func (f *fakeConn) Write(p []byte) (int, error)   { f.written += len(p); return len(p), nil }
func (f *fakeConn) Wake(gnet.AsyncCallback) error { return nil }
func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	f.written += n
	return n, nil
}

func benchSession(b testing.TB, mode wireMode) (*session, *fakeConn, *fakeConn) {
	b.Helper()
	r, err := routing.New(routing.Config{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Router = r
	cfg.Logger = discardLogger()
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.logq.close)
	browser, vm := &fakeConn{}, &fakeConn{}
	s := &session{srv: srv, state: stRelaying, browser: browserConn{c: browser}, vm: vm, mode: mode,
		browserPark: park{fd: -1}, vmPark: park{fd: -1}, tracking: tracking{slot: -1}}
	s.ls = newLoopState(srv, nil)
	return s, browser, vm
}

// BenchmarkRelayBrowserToVM measures one masked frame parsed, unmasked in
// place and forwarded: the per-message work on the browser->VM hot path.
func BenchmarkRelayBrowserToVM(b *testing.B) {
	for _, size := range []int{16, 1 << 10, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			s, client, up := benchSession(b, modeBinary)
			frame := wsframe.AppendMaskedFrame(nil, true, ws.OpBinary, [4]byte{1, 2, 3, 4}, make([]byte, size))
			buf := make([]byte, len(frame))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, frame) // the relay unmasks in place
				client.in = buf
				s.relayFromBrowser(client)
			}
			if up.written == 0 || s.state != stRelaying {
				b.Fatal("nothing relayed")
			}
		})
	}
}

// BenchmarkRelayVMToBrowser measures wrapping VM bytes into one binary
// frame: header plus payload in one writev, no copy.
func BenchmarkRelayVMToBrowser(b *testing.B) {
	for _, size := range []int{16, 1 << 10, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			s, client, up := benchSession(b, modeBinary)
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				up.in = payload
				s.relayFromVM(up)
			}
			if client.written == 0 {
				b.Fatal("nothing relayed")
			}
		})
	}
}

// BenchmarkRelayBase64 covers the legacy base64 subprotocol both ways; its
// scratch buffers come from bytebufferpool, so steady state is allocation-free.
func BenchmarkRelayBase64(b *testing.B) {
	const size = 4 << 10
	b.Run("browser_to_vm", func(b *testing.B) {
		s, client, _ := benchSession(b, modeBase64)
		enc := wsframe.AppendBase64(nil, make([]byte, size))
		frame := wsframe.AppendMaskedFrame(nil, true, ws.OpText, [4]byte{1, 2, 3, 4}, enc)
		buf := make([]byte, len(frame))
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			copy(buf, frame)
			client.in = buf
			s.relayFromBrowser(client)
		}
		if s.state != stRelaying {
			b.Fatal("session ended")
		}
	})
	b.Run("vm_to_browser", func(b *testing.B) {
		s, _, up := benchSession(b, modeBase64)
		payload := make([]byte, size)
		b.SetBytes(size)
		b.ReportAllocs()
		for b.Loop() {
			up.in = payload
			s.relayFromVM(up)
		}
	})
}

// TestRelayZeroAllocs asserts what the benchmarks show, so a regression
// fails the test suite and not only a benchmark nobody reads.
func TestRelayZeroAllocs(t *testing.T) {
	s, client, up := benchSession(t, modeBinary)
	frame := wsframe.AppendMaskedFrame(nil, true, ws.OpBinary, [4]byte{1, 2, 3, 4}, make([]byte, 4096))
	buf := make([]byte, len(frame))
	payload := make([]byte, 4096)
	if n := testing.AllocsPerRun(200, func() {
		copy(buf, frame)
		client.in = buf
		s.relayFromBrowser(client)
	}); n != 0 {
		t.Errorf("browser->VM: %v allocs per message", n)
	}
	if n := testing.AllocsPerRun(200, func() {
		up.in = payload
		s.relayFromVM(up)
	}); n != 0 {
		t.Errorf("VM->browser: %v allocs per message", n)
	}
	if up.written == 0 || client.written == 0 {
		t.Fatal("nothing relayed")
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkThroughput streams from a VM to one client, through the proxy and
// directly over TCP, in one run: the ratio of the two is the proxy's cost.
func BenchmarkThroughput(b *testing.B) {
	const chunk = 1 << 20
	for _, path := range []string{"direct", "proxy"} {
		b.Run(path, func(b *testing.B) {
			// The VM streams until the client hangs up.
			ln, err := net.Listen("tcp", "127.0.0.2:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				buf := make([]byte, 256<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 256<<10)
			var next func() (int, error) // reads the next piece of payload
			if path == "direct" {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				next = func() (int, error) { return c.Read(buf) }
			} else {
				ts := startBenchServer(b)
				d := ws.Dialer{Protocols: []string{"binary"}}
				c, br, _, err := d.Dial(context.Background(), ts+"/vnc/"+ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				if br == nil {
					br = bufio.NewReaderSize(c, 256<<10)
				}
				fr := &frameReader{r: br}
				next = func() (int, error) { return fr.Read(buf) }
			}
			b.SetBytes(chunk)
			b.ResetTimer()
			for b.Loop() {
				for got := 0; got < chunk; {
					n, err := next()
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}

// frameReader yields the payload bytes of consecutive server frames.
type frameReader struct {
	r   io.Reader
	rem int64
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.rem == 0 {
		h, err := ws.ReadHeader(f.r)
		if err != nil {
			return 0, err
		}
		f.rem = h.Length
	}
	if int64(len(p)) > f.rem {
		p = p[:f.rem]
	}
	n, err := f.r.Read(p)
	f.rem -= int64(n)
	return n, err
}

func startBenchServer(b *testing.B) string {
	r, err := routing.New(routing.Config{Allow: []string{"127.0.0.0/8:1-65535"}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Listen, cfg.Admin, cfg.Router = "127.0.0.1:0", "", r
	cfg.Logger = discardLogger()
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	for !srv.booted.Load() {
		time.Sleep(time.Millisecond)
	}
	b.Cleanup(func() {
		srv.cfg.DrainTimeout = 0
		_ = srv.Shutdown(context.Background())
	})
	return "ws://" + srv.Addr()
}

// panicConn is a browser socket whose reads blow up, standing in for a bug.
type panicConn struct {
	fakeConn
	ref *connRef
}

func (p *panicConn) Context() any             { return p.ref }
func (p *panicConn) Peek(int) ([]byte, error) { panic("boom") }
func (p *panicConn) InboundBuffered() int     { return 1 }

// TestPanicDropsOnlyThatConnection: a panic while handling one socket's
// bytes is recovered, counted and logged, and that socket is closed.
func TestPanicDropsOnlyThatConnection(t *testing.T) {
	s, _, _ := benchSession(t, modeBinary)
	pc := &panicConn{ref: &s.browserRef}
	s.browser.c = pc
	s.browserRef = connRef{s: s}
	if act := (&handler{s.srv}).OnTraffic(pc); act != gnet.Close {
		t.Fatalf("action %v, want Close", act)
	}
	if n := s.srv.met.panics.Get(); n != 1 {
		t.Fatalf("vncedge_panics_total = %d, want 1", n)
	}
}
