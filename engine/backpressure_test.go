package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
	"vncedge/wsframe"
)

// patternSource writes a counting pattern (8-byte big-endian offsets) up to
// total bytes, so the reader can check every byte's position.
func patternSource(total int64, written *atomic.Int64) func(net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for off := int64(0); off < total; {
			n := int64(len(buf))
			if total-off < n {
				n = total - off
			}
			fillPattern(buf[:n], off)
			m, err := c.Write(buf[:n])
			written.Add(int64(m))
			if err != nil {
				return
			}
			off += int64(m)
		}
	}
}

func fillPattern(b []byte, off int64) {
	var word [8]byte
	for i := 0; i < len(b); {
		pos := off + int64(i)
		binary.BigEndian.PutUint64(word[:], uint64(pos/8))
		i += copy(b[i:], word[pos%8:])
	}
}

// TestSlowReaderBoundedMemory points a fast VM at a browser that stops
// reading: the proxy must stop reading the VM (the VM's writes stall) and
// its heap must stay small; then the browser reads everything, byte-exact.
func TestSlowReaderBoundedMemory(t *testing.T) {
	const total = 128 << 20
	var written atomic.Int64
	vm := startEcho(t, "127.0.0.2:0", patternSource(total, &written))
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.PingInterval = 0 })

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	// Let the VM push as much as it can while nobody reads.
	checkStalled(t, ts, &written, &before, "VM wrote", "while the browser did not read")

	// Now read everything and check every byte.
	var off int64
	want := make([]byte, 64<<10)
	got := make([]byte, len(want))
	deadline := time.Now().Add(180 * time.Second)
	for off < total {
		h, err := readHeaderDeadline(c, time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d bytes: %v", off, err)
		}
		if h.OpCode != ws.OpBinary {
			t.Fatalf("after %d bytes: %v frame", off, h.OpCode)
		}
		for rem := h.Length; rem > 0; {
			n := min(rem, int64(len(want)))
			if _, err := io.ReadFull(c.br, got[:n]); err != nil {
				t.Fatalf("payload after %d bytes: %v", off, err)
			}
			fillPattern(want[:n], off)
			if string(got[:n]) != string(want[:n]) {
				t.Fatalf("bytes differ at offset %d", off)
			}
			off += n
			rem -= n
		}
	}
	if code, _ := c.expectClose(10 * time.Second); code != ws.StatusNormalClosure {
		t.Fatalf("close %d after the stream, want 1000", code)
	}
}

func readHeaderDeadline(c *wsClient, d time.Duration) (ws.Header, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return ws.ReadHeader(c.br)
}

// TestHardCapClosesSlowConsumer: with parking impossible (the VM does not
// read either, so bytes stay queued for it), --max-buffered still bounds
// what the proxy holds for the browser, and the session ends with a reason.
func TestHardCapClosesSlowConsumer(t *testing.T) {
	var written atomic.Int64
	vm := startEcho(t, "127.0.0.2:0", patternSource(1<<30, &written)) // never reads
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.MaxBuffered = 2 << 20
		c.PingInterval = 0
	})
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	// Fill the proxy's queue towards the VM so the VM socket cannot be parked.
	junk := make([]byte, 1<<20)
	go func() {
		for range 64 {
			frame := wsframeMasked(junk)
			if _, err := c.conn.Write(frame); err != nil {
				return
			}
		}
	}()
	waitUntil(t, 20*time.Second, "slow consumer close", func() bool {
		return strings.Contains(ts.metricsText(), `vncedge_sessions_closed_total{reason="slow_consumer"} 1`)
	})
}

// TestSlowVMBoundedMemory is the upload direction: a browser sends as fast
// as it can to a VM that stops reading. The proxy must stop reading the
// browser (its writes stall), keep its heap small, and then deliver every
// byte once the VM reads again.
func TestSlowVMBoundedMemory(t *testing.T) {
	const total = 128 << 20
	const chunk = 64 << 10
	release := make(chan struct{})
	received := make(chan error, 1)
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		<-release
		want := make([]byte, chunk)
		got := make([]byte, chunk)
		for off := int64(0); off < total; off += chunk {
			if _, err := io.ReadFull(c, got); err != nil {
				received <- err
				return
			}
			fillPattern(want, off)
			if string(got) != string(want) {
				received <- fmt.Errorf("bytes differ at offset %d", off)
				return
			}
		}
		received <- nil
		_, _ = io.Copy(io.Discard, c) // stay connected: the session goes on
	})
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.PingInterval = 0 })
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	var sent atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		var frame []byte
		for off := int64(0); off < total; off += chunk {
			fillPattern(buf, off)
			frame = wsframe.AppendMaskedFrame(frame[:0], true, ws.OpBinary, [4]byte{9, 8, 7, 6}, buf)
			if _, err := c.conn.Write(frame); err != nil {
				writeErr <- err
				return
			}
			sent.Add(chunk)
		}
		writeErr <- nil
	}()
	checkStalled(t, ts, &sent, &before, "browser sent", "while the VM did not read")
	close(release)
	select {
	case err := <-received:
		if err != nil {
			t.Fatalf("VM side: %v", err)
		}
	case <-time.After(120 * time.Second):
		t.Fatal("VM did not receive everything")
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("browser side: %v", err)
	}
	// The session still works both ways after all the parking.
	c.writeFrame(true, ws.OpPing, []byte("still there"))
	h, p, err := c.readFrame(10 * time.Second)
	if err != nil || h.OpCode != ws.OpPong || string(p) != "still there" {
		t.Fatalf("after the upload: %v %q %v", h.OpCode, p, err)
	}
}

// TestVMSpeaksWhileBrowserParked: the VM does not read the browser's upload
// (so the browser socket gets parked), then sends a reply and hangs up. The
// reply and the close must reach the browser, whichever state its socket is
// in when the VM's bytes and its EOF arrive.
func TestVMSpeaksWhileBrowserParked(t *testing.T) {
	// A large reply arrives over many reads; a small one arrives with its
	// EOF right behind it, usually before the browser socket is back.
	t.Run("large", func(t *testing.T) { testVMSpeaksWhileBrowserParked(t, bytes.Repeat([]byte("reply!"), 200000)) })
	t.Run("small", func(t *testing.T) { testVMSpeaksWhileBrowserParked(t, []byte("short reply")) })
}

func testVMSpeaksWhileBrowserParked(t *testing.T, reply []byte) {
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		time.Sleep(time.Second) // not reading: the upload fills everything up
		_, _ = c.Write(reply)
		// Hang up gracefully: FIN, then read what is left, so the kernel
		// sends no reset (which would discard the reply in flight).
		_ = c.(*net.TCPConn).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.PingInterval = 0 })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	go func() {
		frame := wsframeMasked(make([]byte, 64<<10))
		for range 2000 { // at most 128 MiB; stops when the session ends
			if _, err := c.conn.Write(frame); err != nil {
				return
			}
		}
	}()
	if got := c.readData(len(reply), 30*time.Second); !bytes.Equal(got, reply) {
		t.Fatal("reply differs")
	}
	if code, reason := c.expectClose(10 * time.Second); code != ws.StatusNormalClosure {
		t.Fatalf("close %d %q, want 1000", code, reason)
	}
	if !strings.Contains(ts.metricsText(), "vncedge_backpressure_pauses_total") {
		t.Fatal("no metrics")
	}
}

// TestCloseWhileBrowserParked: a session whose browser socket is parked
// (its upload outran the VM) still ends with a proper close frame, here
// from a server drain, instead of a reset.
func TestCloseWhileBrowserParked(t *testing.T) {
	done := make(chan struct{})
	vm := startEcho(t, "127.0.0.2:0", func(c net.Conn) {
		<-done // never reads while the test runs
	})
	t.Cleanup(func() { close(done) }) // runs before the VM server's cleanup
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.PingInterval = 0 })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr(), "binary")
	var sent atomic.Int64
	go func() {
		frame := wsframeMasked(make([]byte, 64<<10))
		for range 2000 {
			if _, err := c.conn.Write(frame); err != nil {
				return
			}
			sent.Add(int64(len(frame)))
		}
	}()
	// Wait for the upload to stall: the browser socket is parked by then.
	waitUntil(t, 20*time.Second, "upload to stall", func() bool {
		before := sent.Load()
		time.Sleep(300 * time.Millisecond)
		return before > 0 && sent.Load() == before
	})
	ts.cfg.DrainTimeout = 0
	stopped := make(chan error, 1)
	go func() { stopped <- ts.Shutdown(context.Background()) }()
	if code, reason := c.expectClose(10 * time.Second); code != ws.StatusGoingAway {
		t.Fatalf("close %d %q, want 1001", code, reason)
	}
	c.conn.Close()
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// checkStalled waits until the sender behind count has been stuck for a
// second after the proxy paused a socket (at most 30 s: the machine may be
// busy), then checks that the sender got at most 48 MiB into the session
// and that the test process's heap (the proxy's, with a static sender)
// grew at most 16 MiB (4 MiB high-water mark plus buffers) since before.
func checkStalled(t *testing.T, ts *testServer, count *atomic.Int64, before *runtime.MemStats, who, while string) {
	t.Helper()
	pauses := func() bool { return !strings.Contains(ts.metricsText(), "vncedge_backpressure_pauses_total 0") }
	var last int64 = -1
	stuckSince := time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if n := count.Load(); n != last {
			last, stuckSince = n, time.Now()
			continue
		}
		if time.Since(stuckSince) > time.Second && pauses() {
			break
		}
	}
	stalled := count.Load()
	runtime.GC() // count what is live (what the proxy holds), not garbage
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	heapGrowth := int64(during.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%s %.1f MiB %s; heap grew %.1f MiB", who, float64(stalled)/(1<<20), while, float64(heapGrowth)/(1<<20))
	if stalled > 48<<20 {
		t.Errorf("%s %d MiB %s: no backpressure", who, stalled>>20, while)
	}
	if heapGrowth > 16<<20 {
		t.Errorf("heap grew %d MiB for one stalled session", heapGrowth>>20)
	}
	if !pauses() {
		t.Error("no backpressure pause counted")
	}
}
