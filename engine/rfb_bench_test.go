package engine

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"vncedge/engine/recorder"
	"vncedge/rfb"
	"vncedge/routing"
	"vncedge/wsframe"
)

// The cost of the RFB layer (issue 12) on the relay's hot paths, against
// the plain relay in the same run. Every session but the plain one goes
// through the real handshakes (startRFB, the proxy's VNC client towards a
// scripted VM, its VNC server towards a scripted browser, ClientInit,
// ServerInit, the browser's SetPixelFormat and SetEncodings), so what is
// measured is the state the engine itself leaves for relaying, not a copy
// of it made by hand.

// rfbMode is one kind of session compared.
type rfbMode struct {
	name     string
	password bool // the proxy answers the VM's VNC Authentication
	viewOnly bool
	record   bool
	input    bool // --record-input
}

func (m rfbMode) rfb() bool { return m.password || m.viewOnly || m.record }

// rfbModes are the sessions BenchmarkRelayRFB compares: plain first, the
// baseline of every ratio.
func rfbModes() []rfbMode {
	return []rfbMode{
		{name: "plain"},
		{name: "credentials", password: true}, // after ClientInit: the plain relay again
		{name: "view-only", viewOnly: true},
		{name: "record", record: true},
		{name: "record+input", record: true, input: true},
		{name: "view-only+record", viewOnly: true, record: true},
	}
}

// discardRecFile is a recording file at memory speed, so that a benchmark
// shows what recording costs the event loop and not how fast this
// machine's disk is (the disk is written by the recording's own goroutine,
// off the loop).
type discardRecFile struct{ n int64 }

func (f *discardRecFile) Write(p []byte) (int, error) { f.n += int64(len(p)); return len(p), nil }
func (f *discardRecFile) Sync() error                 { return nil }
func (f *discardRecFile) Close() error                { return nil }

// rfbBenchSession returns a session relaying in mode m, set up by the
// engine's own handshake code. With m.record the recordings go to dir
// through a real Recorder; create (nil: real files) opens them.
func rfbBenchSession(tb testing.TB, m rfbMode, dir string, create func(string) (recorder.File, error)) (*session, *fakeConn, *fakeConn) {
	tb.Helper()
	s, browser, vm := benchSession(tb, modeBinary)
	if !m.rfb() {
		return s, browser, vm
	}
	srv := s.srv
	srv.cfg.RecordInput = m.input
	if m.record {
		rec, err := recorder.New(recorder.Config{Dir: dir, Create: create})
		if err != nil {
			tb.Fatal(err)
		}
		srv.recorder = rec
		tb.Cleanup(func() {
			if s.rfb != nil && s.rfb.rec != nil {
				s.rfb.rec.End("benchmark over", time.Now())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := rec.Shutdown(ctx); err != nil {
				tb.Error(err)
			}
		})
	}
	s.id, s.targetName = "bench", "127.0.0.2:5901"
	s.state = stDialing // as onEnrolled finds it, the VM socket on the loop
	s.setup = &sessionSetup{target: routing.Target{Name: s.targetName,
		Grant: routing.Grant{ViewOnly: m.viewOnly, Record: m.record}}}
	if m.password {
		s.setup.target.Password = "s3cret"
	}
	if !s.wantsRFB() {
		tb.Fatalf("%s: the session does not ask for the RFB layer", m.name)
	}
	s.startRFB()

	// The VM: RFB 3.8, one security type, SecurityResult OK.
	fromVM := func(p []byte) {
		vm.in = p
		s.onVMTraffic(vm)
		if len(vm.in) != 0 || s.state != stRFB {
			tb.Fatalf("%s: VM handshake stuck in %v with %d bytes left", m.name, s.state, len(vm.in))
		}
	}
	fromVM([]byte("RFB 003.008\n"))
	if m.password {
		fromVM([]byte{1, byte(rfb.SecVNCAuth)})
		fromVM(make([]byte, 16)) // the challenge; the scripted VM takes any answer
	} else {
		fromVM([]byte{1, byte(rfb.SecNone)})
	}
	vm.in = []byte{0, 0, 0, 0}
	s.onVMTraffic(vm)
	if s.hs == nil || !s.hs.browserUp {
		tb.Fatalf("%s: the browser handshake did not start (state %v)", m.name, s.state)
	}

	// The browser: version, security type None, ClientInit.
	mask := [4]byte{9, 8, 7, 6}
	fromBrowser := func(p []byte) {
		browser.in = wsframe.AppendMaskedFrame(nil, true, ws.OpBinary, mask, p)
		s.onBrowserTraffic(browser)
		if len(browser.in) != 0 {
			tb.Fatalf("%s: %d browser bytes left in %v", m.name, len(browser.in), s.state)
		}
	}
	fromBrowser([]byte("RFB 003.008\n"))
	fromBrowser([]byte{byte(rfb.SecNone)})
	if s.state != stRelaying {
		tb.Fatalf("%s: state %v after the handshakes, want relaying", m.name, s.state)
	}
	fromBrowser(rfb.AppendClientInit(nil, false))
	si := rfb.ServerInit{Width: 1280, Height: 800, Format: rfb.NoVNC32(), Name: "bench-vm"}
	vm.in = si.Append(nil)
	s.relayFromVM(vm)
	fromBrowser(rfb.AppendSetPixelFormat(nil, rfb.NoVNC32()))
	fromBrowser(rfb.AppendSetEncodings(nil, 7, 16, 5, 1, 0, -223, -224, -239, -258, -308, -312, -313))

	scanning := m.viewOnly || m.record
	switch {
	case s.state != stRelaying:
		tb.Fatalf("%s: state %v after setup", m.name, s.state)
	case (s.rfb != nil) != scanning:
		tb.Fatalf("%s: RFB layer present %v, want %v", m.name, s.rfb != nil, scanning)
	case m.record && s.rfb.rec == nil:
		tb.Fatalf("%s: no recording", m.name)
	case m.record && s.rfb.rec.Failed():
		tb.Fatalf("%s: recording failed: %v", m.name, s.rfb.rec.Err())
	}
	browser.written, vm.written = 0, 0
	return s, browser, vm
}

// noVNCInput is 32 client messages as noVNC sends them while someone works:
// mostly pointer movement, a click, some typing, and the update request
// that follows every FramebufferUpdate. Each goes in its own WebSocket
// message (noVNC flushes after each), so in its own masked frame, and
// usually in its own read. fwd is how many payload bytes a view-only
// session still forwards (the update requests).
func noVNCInput() (frames [][]byte, payload, fwd int) {
	var msgs [][]byte
	x, y := uint16(400), uint16(300)
	keys := "hi!"
	for i := range 32 {
		var m []byte
		switch i {
		case 4, 9, 14, 19, 24, 29: // one FramebufferUpdate answered each
			m = rfb.AppendFramebufferUpdateRequest(nil, true, 0, 0, 1280, 800)
			fwd += len(m)
		case 20, 22, 25: // three keys typed: down...
			m = rfb.AppendKeyEvent(nil, true, uint32(keys[0]))
		case 21, 23, 26: // ...and up
			m = rfb.AppendKeyEvent(nil, false, uint32(keys[0]))
			keys = keys[1:]
		case 10, 11: // a click
			m = rfb.AppendPointerEvent(nil, uint8(11-i), x, y)
		default: // 18 moves
			x, y = x+3, y+1
			m = rfb.AppendPointerEvent(nil, 0, x, y)
		}
		msgs = append(msgs, m)
		payload += len(m)
	}
	for i, m := range msgs {
		frames = append(frames, wsframe.AppendMaskedFrame(nil, true, ws.OpBinary, [4]byte{byte(i), 0x5a, 0xa5, byte(i * 7)}, m))
	}
	return frames, payload, fwd
}

// fbUpdate is a FramebufferUpdate of size bytes: one raw rectangle of
// 32-bit pixels (w*h*4 = size-16).
func fbUpdate(size int, w, h uint16) []byte {
	if int(w)*int(h)*4+16 != size {
		panic("fbUpdate: rectangle does not fill the message")
	}
	p := make([]byte, 4, size)
	p[0], p[3] = 0, 1 // FramebufferUpdate, one rectangle
	p = binary.BigEndian.AppendUint16(p, 10)
	p = binary.BigEndian.AppendUint16(p, 20)
	p = binary.BigEndian.AppendUint16(p, w)
	p = binary.BigEndian.AppendUint16(p, h)
	p = binary.BigEndian.AppendUint32(p, 0) // raw
	for i := 16; i < size; i++ {
		p = append(p, byte(i*31))
	}
	return p
}

// vmUpdates are the VM->browser sizes measured: a small incremental update
// (a cursor blink, a typed character) and a full 64 KiB read of a busy
// screen.
func vmUpdates() []struct {
	name string
	msg  []byte
} {
	return []struct {
		name string
		msg  []byte
	}{
		{"1KiB", fbUpdate(1<<10, 21, 12)},
		{"64KiB", fbUpdate(64<<10, 130, 126)},
	}
}

// waitRecorder waits until the recordings' writers have taken and written
// everything queued: the steady state of a disk that keeps up. It
// allocates nothing, so it may run inside testing.AllocsPerRun.
func waitRecorder(tb testing.TB, r *recorder.Recorder) {
	if r == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.QueuedBytes() > 0 {
		if time.Now().After(deadline) {
			tb.Fatalf("recorder still holds %d bytes after 10 s", r.QueuedBytes())
		}
		runtime.Gosched()
	}
}

// BenchmarkRelayRFB compares the relay of a plain session with the RFB
// layer's modes, both ways, in one run: divide a mode's ns/op by plain's
// for its cost.
//
// browser_to_vm: one op is the 32 messages of noVNCInput, each its own
// frame handed to the relay as its own read (msgs/op, ns/msg). A view-only
// session forwards only the update requests, so its VM sees fewer bytes.
// vm_to_browser: one op is one read from the VM framed for the browser.
//
// Under fake/ the relay writes into a counter (fakeConn), so the figure is
// the relay's own work and a ratio shows the layer at its most expensive;
// under socket/ every write the relay makes is a real write(2) or
// writev(2) into a loopback TCP socket that a goroutine drains, as on the
// loop, so the ratio is what the layer adds to the work a loop does anyway
// (the reads from gnet's buffer stay in memory both times).
//
// Recording: the writer goroutine writes to a file at memory speed, and the
// timer stops every 2 MiB (every 256 ops browser->VM) until it has caught
// up, like engine/recorder's own BenchmarkFromVM: the figure is the loop's
// share (copying into the queue, waking the writer), the one that limits a
// loop's sessions; the writer's write(2) runs beside it on another core.
// With a socket every mode pauses at the same points (settle), recording
// or not, since a pause lets the socket's reader catch up too.
func BenchmarkRelayRFB(b *testing.B) {
	for _, sink := range []string{"fake", "socket"} {
		b.Run(sink, func(b *testing.B) { benchRelayRFB(b, sink == "socket") })
	}
}

func benchRelayRFB(b *testing.B, sock bool) {
	frames, payload, _ := noVNCInput()
	for _, m := range rfbModes() {
		b.Run("browser_to_vm/mix/"+m.name, func(b *testing.B) {
			s, client, up := rfbBenchSession(b, m, b.TempDir(), discardRecCreate)
			var out *int = &up.written
			var sc *sockConn
			if sock {
				sc = newSockConn(b)
				s.vm, out = sc, &sc.written
			}
			bufs := make([][]byte, len(frames))
			for i, f := range frames {
				bufs[i] = make([]byte, len(f))
			}
			round := func() {
				for k, f := range frames {
					copy(bufs[k], f) // the relay unmasks in place
					client.in = bufs[k]
					s.relayFromBrowser(client)
				}
			}
			for range 512 { // warm up: the recorder's free list
				round()
			}
			settle(b, s, sc)
			pause := sc != nil || s.srv.recorder != nil // something to settle
			b.SetBytes(int64(payload))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				round()
				if pause && i%256 == 255 { // about 400 KiB of input lines with --record-input
					b.StopTimer()
					settle(b, s, sc)
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(len(frames)), "msgs/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/msg")
			checkRelayed(b, s, m, *out)
		})
	}
	for _, u := range vmUpdates() {
		for _, m := range rfbModes() {
			if m.password || m.input {
				continue // the same VM->browser path as plain and record
			}
			b.Run("vm_to_browser/"+u.name+"/"+m.name, func(b *testing.B) {
				s, client, up := rfbBenchSession(b, m, b.TempDir(), discardRecCreate)
				var out *int = &client.written
				var sc *sockConn
				if sock {
					sc = newSockConn(b)
					s.browser.c, out = sc, &sc.written
				}
				every := max(1, (2<<20)/len(u.msg))
				for range 2 { // warm up: the recorder's free list
					for range every {
						up.in = u.msg
						s.relayFromVM(up)
					}
					settle(b, s, sc)
				}
				pause := sc != nil || s.srv.recorder != nil
				b.SetBytes(int64(len(u.msg)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					up.in = u.msg
					s.relayFromVM(up)
					if pause && i%every == every-1 {
						b.StopTimer()
						settle(b, s, sc)
						b.StartTimer()
					}
				}
				b.StopTimer()
				checkRelayed(b, s, m, *out)
			})
		}
	}
}

// settle waits, timer stopped, until the recorder's writer and the socket's
// reader (when there are) have taken everything: every mode pauses at the
// same points, so a pause that lets a reader catch up favours none.
func settle(tb testing.TB, s *session, sc *sockConn) {
	waitRecorder(tb, s.srv.recorder)
	if sc == nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for sc.read.Load() < int64(sc.written) {
		if time.Now().After(deadline) {
			tb.Fatalf("the socket's reader took %d of %d bytes in 10 s", sc.read.Load(), sc.written)
		}
		runtime.Gosched()
	}
}

// sockConn is a fakeConn whose writes are real system calls on a loopback
// TCP socket (blocking: the peer goroutine drains it), standing in for the
// socket a relay writes to.
type sockConn struct {
	fakeConn
	f    *os.File // keeps fd open
	fd   uintptr
	read atomic.Int64 // bytes the peer has read
}

func newSockConn(tb testing.TB) *sockConn {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	peer, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	sc := &sockConn{}
	go func() {
		buf := make([]byte, 256<<10)
		for {
			n, err := peer.Read(buf)
			sc.read.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	f, err := c.(*net.TCPConn).File() // a blocking descriptor of its own
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.Close()
	tb.Cleanup(func() { _ = f.Close(); _ = peer.Close() })
	sc.f, sc.fd = f, f.Fd()
	return sc
}

func (c *sockConn) Write(p []byte) (int, error) {
	n, err := syscall.Write(int(c.fd), p)
	if n > 0 {
		c.written += n
	}
	return n, err
}

// Writev is one writev(2) for up to 4 pieces: the relay's header and
// payload, no allocation.
func (c *sockConn) Writev(bs [][]byte) (int, error) {
	var iov [4]syscall.Iovec
	if len(bs) > len(iov) {
		panic("sockConn: too many pieces")
	}
	k := 0
	for _, b := range bs {
		if len(b) > 0 {
			iov[k].Base = &b[0]
			iov[k].SetLen(len(b))
			k++
		}
	}
	n, _, e := syscall.Syscall(syscall.SYS_WRITEV, c.fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	if e != 0 {
		return 0, e
	}
	c.written += int(n)
	return int(n), nil
}

func discardRecCreate(string) (recorder.File, error) { return &discardRecFile{}, nil }

// checkRelayed fails a benchmark whose session ended or whose recording was
// cut: it would have measured a shortcut.
func checkRelayed(tb testing.TB, s *session, m rfbMode, written int) {
	tb.Helper()
	switch {
	case s.state != stRelaying:
		tb.Fatalf("%s: the session ended (%v: %s)", m.name, s.why, s.reason)
	case written == 0:
		tb.Fatalf("%s: nothing relayed", m.name)
	case m.record && s.rfb.rec.Failed():
		tb.Fatalf("%s: the recording was cut (an overloaded machine?): %v", m.name, s.rfb.rec.Err())
	}
}

// TestRFBRelayZeroAllocs holds the RFB layer's relay paths to zero
// allocations per message in steady state, with a real Recorder writing
// real files into a temporary directory (AllocsPerRun counts every
// goroutine's allocations, so its writer's too); each message waits for the
// writer, the steady state of a disk that keeps up. It also checks that
// the paths did their job: view-only forwards only the update requests,
// and the recording holds what was relayed.
func TestRFBRelayZeroAllocs(t *testing.T) {
	frames, payload, fwd := noVNCInput()
	updates := vmUpdates()
	for _, m := range rfbModes() {
		t.Run(m.name, func(t *testing.T) {
			dir := t.TempDir()
			s, client, up := rfbBenchSession(t, m, dir, nil)
			bufs := make([][]byte, len(frames))
			for i, f := range frames {
				bufs[i] = make([]byte, len(f))
			}
			toVM := func() {
				for k, f := range frames {
					copy(bufs[k], f)
					client.in = bufs[k]
					s.relayFromBrowser(client)
				}
				waitRecorder(t, s.srv.recorder)
			}
			const runs = 50
			for range 5 { // warm up: the recorder's free list, the queue's slices
				toVM()
			}
			up.written = 0
			if n := testing.AllocsPerRun(runs, toVM); n != 0 {
				t.Errorf("browser->VM: %v allocations per %d messages", n, len(frames))
			}
			want := payload
			if m.viewOnly {
				want = fwd
			}
			if got := up.written / (runs + 1); got != want || up.written%(runs+1) != 0 {
				t.Errorf("browser->VM: the VM got %d bytes over %d rounds, want %d a round", up.written, runs+1, want)
			}
			var sent int
			for _, u := range updates {
				toBrowser := func() {
					up.in = u.msg
					s.relayFromVM(up)
					waitRecorder(t, s.srv.recorder)
				}
				for range 5 {
					toBrowser()
				}
				if n := testing.AllocsPerRun(runs, toBrowser); n != 0 {
					t.Errorf("VM->browser %s: %v allocations per update", u.name, n)
				}
				sent += (runs + 6) * len(u.msg)
			}
			if client.written < sent {
				t.Errorf("VM->browser: %d bytes framed, want at least %d", client.written, sent)
			}
			if s.state != stRelaying {
				t.Fatalf("the session ended: %v %s", s.why, s.reason)
			}
			if !m.record {
				return
			}
			rec := s.rfb.rec
			if rec.Failed() {
				t.Fatalf("the recording was cut: %v", rec.Err())
			}
			rec.End("test over", time.Now())
			select {
			case <-rec.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the recording's writer did not finish")
			}
			s.rfb.rec = nil
			checkRecordingFiles(t, dir, m, sent)
		})
	}
}

// checkRecordingFiles checks the files a recording left in dir: an FBS
// file holding at least the VM bytes relayed, mode 0600, and with
// --record-input an input file holding the browser's events.
func checkRecordingFiles(t *testing.T, dir string, m rfbMode, vmBytes int) {
	t.Helper()
	fbs, err := filepath.Glob(filepath.Join(dir, "*.fbs"))
	if err != nil || len(fbs) != 1 {
		t.Fatalf("recordings %v (%v), want one .fbs file", fbs, err)
	}
	fi, err := os.Stat(fbs[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < int64(vmBytes) || fi.Mode().Perm() != 0o600 || strings.Contains(fbs[0], "truncated") {
		t.Errorf("%s: %d bytes, mode %v; want at least %d bytes, 0600, not truncated", fbs[0], fi.Size(), fi.Mode().Perm(), vmBytes)
	}
	in, _ := filepath.Glob(filepath.Join(dir, "*.input.jsonl"))
	if !m.input {
		if len(in) != 0 {
			t.Errorf("input recorded without --record-input: %v", in)
		}
		return
	}
	if len(in) != 1 {
		t.Fatalf("input files %v, want one", in)
	}
	b, err := os.ReadFile(in[0])
	if err != nil {
		t.Fatal(err)
	}
	// 26 key and pointer events a round, 56 rounds (warm-up, AllocsPerRun's
	// extra run), and the input file's last line.
	if lines := strings.Count(string(b), "\n"); lines < 26*56 {
		t.Errorf("%s: %d lines, want at least %d", in[0], lines, 26*56)
	}
}
