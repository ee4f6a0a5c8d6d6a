package tlsio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the test's bound passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPartialClientHelloStartsNoWorker: a hello one byte short costs only its bytes (left to
// the caller's buffer) and no goroutine; the last byte starts the handshake.
func TestPartialClientHelloStartsNoWorker(t *testing.T) {
	_, scfg := testServerConfig(t)
	hello := captureHello(t, &tls.Config{ServerName: testHost})
	p := testPool()
	sink := &countSink{}
	c := NewServer(p, scfg, sink, func() {})
	defer c.Close()
	before := runtime.NumGoroutine()
	for k := 1; k < len(hello); k++ {
		used, err := c.Input(hello[:k])
		if used != 0 || err != nil {
			t.Fatalf("prefix %d: used %d, %v", k, used, err)
		}
	}
	if s := p.Stats(); s.Started != 0 || s.Running != 0 || s.Queued != 0 {
		t.Fatalf("partial hello: %+v", s)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("goroutines %d -> %d for a partial hello", before, n)
	}
	if c.Buffered() != 0 || c.w.in != nil || sink.bytes != 0 {
		t.Fatal("a partial hello made the Conn hold or send bytes")
	}
	// The engine's handshake deadline closes it; an EOF ends it as truncated.
	if err := c.EOF(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("EOF on a partial hello: %v", err)
	}

	c2 := NewServer(p, scfg, sink, func() {})
	defer c2.Close()
	if used, err := c2.Input(hello); used != len(hello) || err != nil {
		t.Fatalf("whole hello: used %d, %v", used, err)
	}
	if s := p.Stats(); s.Started != 1 {
		t.Fatalf("whole hello: %+v", s)
	}
}

// TestFragmentedClientHello: a hello spread over many small records, its message header cut
// in two, still makes a handshake (crypto/tls reassembles; the scanner must agree).
func TestFragmentedClientHello(t *testing.T) {
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			m := newMemConn()
			from := make(chan []byte, 16)
			go func() {
				first := true
				for b := range m.toLoop {
					if first {
						b = refragment(t, b, 1, 2, 3, 64)
						first = false
					}
					from <- b
				}
				close(from)
			}()
			l := newTestLoop(t, from)
			l.randomPieces(uint64(v.v))
			l.start(NewServer(testPool(), scfg, m.sink(), l.notify))
			l.app = echo
			c := tls.Client(m, clientConfig(ca, v.v))
			defer c.Close()
			if err := clientHandshake(t, c); err != nil {
				t.Fatal(err)
			}
			if err := l.handshake(); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, testMessages(100))
		})
	}
}

// TestNotTLS: garbage and plain HTTP are refused from their first bytes, before any worker.
func TestNotTLS(t *testing.T) {
	_, scfg := testServerConfig(t)
	p := testPool()
	cases := []struct {
		in   string
		want error
	}{
		{"GET /websockify HTTP/1.1\r\nHost: vnc\r\n\r\n", ErrPlainHTTP},
		{"G", ErrPlainHTTP},
		{"\x00\x00\x00\x00", ErrNotTLS},
		{"RFB 003.008\n", ErrNotTLS},
		{"\x80\x2e\x01\x03\x01", ErrSSLv2},
	}
	for _, c := range cases {
		conn := NewServer(p, scfg, &countSink{}, func() {})
		used, err := conn.Input([]byte(c.in))
		if !errors.Is(err, c.want) || used != 0 {
			t.Errorf("%q: used %d, %v; want %v", c.in, used, err, c.want)
		}
		if _, err2 := conn.Input([]byte(c.in)); err2 != err {
			t.Errorf("%q: error not sticky: %v then %v", c.in, err, err2)
		}
		conn.Close()
	}
	if s := p.Stats(); s.Started != 0 {
		t.Fatalf("garbage started a worker: %+v", s)
	}

	// Over a socket, as the engine sees it: an HTTP client on the TLS port.
	ln := listen(t)
	go func() {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer raw.Close()
		raw.Write([]byte("GET / HTTP/1.1\r\nHost: vnc.example.test\r\n\r\n"))
		io.Copy(io.Discard, raw)
	}()
	l := tcpServer(t, p, scfg, ln)
	if err := l.ending(); !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("plain HTTP over TCP: %v", err)
	}
}

// TestHandshakeFlood: complete ClientHellos from peers that then stall hold at most
// HandshakeWorkers goroutines; HandshakeQueue more wait; the rest get ErrBusy at once. Closing
// the connections frees everything.
func TestHandshakeFlood(t *testing.T) {
	_, scfg := testServerConfig(t)
	cfg := DefaultConfig()
	cfg.HandshakeWorkers, cfg.HandshakeQueue = 4, 8
	p := NewPool(cfg)
	hello := captureHello(t, &tls.Config{ServerName: testHost})
	before := runtime.NumGoroutine()
	var conns []*Conn
	busy := 0
	for range 100 {
		c := NewServer(p, scfg, &countSink{}, func() {})
		conns = append(conns, c)
		if _, err := c.Input(hello); errors.Is(err, ErrBusy) {
			busy++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// The workers answer the hellos and then wait for the peers' next flight, which never comes.
	waitFor(t, "4 running, 8 queued", func() bool {
		s := p.Stats()
		return s.Running == 4 && s.Queued == 8
	})
	if s := p.Stats(); busy != 88 || s.Rejected != 88 || s.Started != 4 {
		t.Fatalf("busy %d, stats %+v", busy, s)
	}
	if n := runtime.NumGoroutine(); n > before+4+2 {
		t.Fatalf("goroutines %d -> %d under a flood bounded at 4 workers", before, n)
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "workers to exit", func() bool { s := p.Stats(); return s.Running == 0 && s.Queued == 0 })
	waitFor(t, "goroutines back", func() bool { return runtime.NumGoroutine() <= before })
}

// TestHandshakeTimeout: a peer that stalls after its hello is dropped by the worker's own
// bound even if the engine never closes it, and the loop hears about it.
func TestHandshakeTimeout(t *testing.T) {
	_, scfg := testServerConfig(t)
	cfg := DefaultConfig()
	cfg.HandshakeTimeout = 100 * time.Millisecond
	p := NewPool(cfg)
	hello := captureHello(t, &tls.Config{ServerName: testHost})
	woke := make(chan struct{}, 4)
	sink := &countSink{}
	c := NewServer(p, scfg, sink, func() { woke <- struct{}{} })
	defer c.Close()
	start := time.Now()
	if _, err := c.Input(hello); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-woke:
		case <-time.After(testWait):
			t.Fatal("no notify")
		}
		done, err := c.Progress()
		if !done {
			continue
		}
		if err == nil {
			t.Fatal("handshake with a silent peer succeeded")
		}
		t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
		break
	}
	if sink.bytes == 0 {
		t.Error("the server's flight never reached the sink")
	}
	waitFor(t, "worker to exit", func() bool { return p.Stats().Running == 0 })
}

// TestHandshakeInputBound: bytes a worker has not read yet are bounded. A handshake waiting in
// the queue reads nothing, so Input takes what its peer sends up to MaxHandshakeInput and leaves
// the rest with the caller.
func TestHandshakeInputBound(t *testing.T) {
	_, scfg := testServerConfig(t)
	cfg := DefaultConfig()
	cfg.HandshakeWorkers, cfg.MaxHandshakeInput = 1, MaxRecord
	p := NewPool(cfg)
	hello := captureHello(t, &tls.Config{ServerName: testHost})
	stalled := NewServer(p, scfg, &countSink{}, func() {}) // takes the only worker
	defer stalled.Close()
	if _, err := stalled.Input(hello); err != nil {
		t.Fatal(err)
	}
	c := NewServer(p, scfg, &countSink{}, func() {})
	defer c.Close()
	in := append(bytes.Clone(hello), make([]byte, 3*MaxRecord)...)
	used, err := c.Input(in)
	if err != nil || used != MaxRecord {
		t.Fatalf("Input took %d of %d, %v; want %d", used, len(in), err, MaxRecord)
	}
	if s := p.Stats(); s.Running != 1 || s.Queued != 1 {
		t.Fatalf("stats %+v, want one running and one queued", s)
	}
	if used, err := c.Input(in[used:]); used != 0 || err != nil {
		t.Fatalf("full buffer took %d, %v", used, err)
	}
}

// TestHandshakeInputRefill: when a handshake needs more than MaxHandshakeInput (a client
// certificate chain of 100 KB here) and the loop kept the rest back, the worker asks for it
// through notify, and the handshake completes without new bytes arriving.
func TestHandshakeInputRefill(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Certs = []CertPair{ca.writePair(t, dir, "srv", certSpec{cn: testHost, dns: []string{testHost}})}
	cfg.ClientCA = ca.writeCA(t, dir, "ca.pem")
	cfg.MaxHandshakeInput = MaxRecord
	st, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A client chain of five 20 KB certificates: the Certificate message is one 100 KB write.
	var chain [][]byte
	for i := range 5 {
		c := ca.tlsCert(t, certSpec{cn: strings.Repeat("x", 20000) + string(rune('a'+i)), client: true})
		chain = append(chain, c.Certificate[0])
	}
	leaf := ca.tlsCert(t, certSpec{cn: "alice", client: true})
	leaf.Certificate = append(leaf.Certificate, chain...)

	m := newMemConn()
	l := newTestLoop(t, m.toLoop)
	l.start(NewServer(NewPool(cfg), st.ServerConfig(), m.sink(), l.notify))
	ccfg := clientConfig(ca, tls.VersionTLS13)
	ccfg.Certificates = []tls.Certificate{leaf}
	c := tls.Client(m, ccfg)
	defer c.Close()
	if err := clientHandshake(t, c); err != nil {
		t.Fatal(err)
	}
	if err := l.handshake(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ok"))
	if got := l.waitPlain(2); string(got) != "ok" {
		t.Fatalf("got %q", got)
	}
}

// TestCloseNotify: close_notify both ways, and a clean end told apart from a truncation.
func TestCloseNotify(t *testing.T) {
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name+"/server closes", func(t *testing.T) {
			l, m := memServer(t, testPool(), scfg)
			c := tls.Client(m, clientConfig(ca, v.v))
			if err := clientHandshake(t, c); err != nil {
				t.Fatal(err)
			}
			if err := l.handshake(); err != nil {
				t.Fatal(err)
			}
			l.do(func() {
				if _, err := l.c.Write([]byte("bye")); err != nil {
					t.Error(err)
				}
				if err := l.c.CloseWrite(); err != nil {
					t.Error(err)
				}
				if _, err := l.c.Write([]byte("more")); err == nil {
					t.Error("Write after CloseWrite succeeded")
				}
			})
			m.shutWrite() // the engine's SHUT_WR after close_notify
			got, err := io.ReadAll(c)
			if string(got) != "bye" || err != nil {
				t.Fatalf("client read %q, %v; want \"bye\" and a clean EOF", got, err)
			}
			// The server can still read after its CloseWrite.
			c.Write([]byte("late"))
			if got := l.waitPlain(4); string(got) != "late" {
				t.Fatalf("server read %q after CloseWrite", got)
			}
		})
		t.Run(v.name+"/client closes", func(t *testing.T) {
			l, m := memServer(t, testPool(), scfg)
			c := tls.Client(m, clientConfig(ca, v.v))
			if err := clientHandshake(t, c); err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("last words"))
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if err := l.ending(); err != io.EOF {
				t.Fatalf("server saw %v, want io.EOF", err)
			}
			if got := l.waitPlain(10); string(got) != "last words" {
				t.Fatalf("server read %q", got)
			}
			l.do(func() {
				if !l.c.PeerClosed() {
					t.Error("PeerClosed false after close_notify")
				}
				// Half-closed: the server may still answer.
				if _, err := l.c.Write([]byte("ack")); err != nil {
					t.Error(err)
				}
				if err := l.c.EOF(); err != io.EOF {
					t.Errorf("EOF after close_notify: %v", err)
				}
			})
			buf := make([]byte, 3)
			c.SetReadDeadline(time.Now().Add(testWait))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ack" {
				t.Fatalf("client read %q, %v", buf, err)
			}
		})
	}
}

// TestTruncation: a socket that ends without close_notify is reported as truncated, at a
// record boundary and inside a record.
func TestTruncation(t *testing.T) {
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name+"/boundary", func(t *testing.T) {
			l, m := memServer(t, testPool(), scfg)
			c := tls.Client(m, clientConfig(ca, v.v))
			if err := clientHandshake(t, c); err != nil {
				t.Fatal(err)
			}
			c.Write([]byte("hello"))
			l.waitPlain(5)
			m.Close() // the socket ends, no close_notify
			if err := l.ending(); !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("got %v, want ErrTruncated", err)
			}
		})
		t.Run(v.name+"/mid-record", func(t *testing.T) {
			h := newHandPair(t, scfg, clientConfig(ca, v.v))
			rec := h.records(t, 1, []byte("cut short"))[0]
			if used, err := h.c.Input(rec[:len(rec)-3]); used != 0 || err != nil {
				t.Fatalf("partial record: %d, %v", used, err)
			}
			// gnet's OnClose: the partial record is still in its buffer, handed on at EOF.
			if err := h.c.EOF(); !errors.Is(err, ErrTruncated) {
				t.Fatalf("EOF mid-record: %v", err)
			}
		})
	}
	t.Run("tcp", func(t *testing.T) {
		ln := listen(t)
		go func() {
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return
			}
			c := tls.Client(raw, clientConfig(ca, tls.VersionTLS13))
			c.Handshake()
			raw.Close()
		}()
		l := tcpServer(t, testPool(), scfg, ln)
		if err := l.ending(); !errors.Is(err, ErrTruncated) {
			t.Fatalf("got %v, want ErrTruncated", err)
		}
	})
}

// TestCorruptRecord: a record that fails authentication ends the connection with an error,
// and crypto/tls's alert reaches the peer.
func TestCorruptRecord(t *testing.T) {
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			h := newHandPair(t, scfg, clientConfig(ca, v.v))
			sink := &countSink{}
			h.sw.w = sink
			rec := h.records(t, 1, []byte("tampered with"))[0]
			rec[len(rec)-1] ^= 1
			_, err := h.c.Input(rec)
			if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
				t.Fatalf("corrupt record: %v", err)
			}
			if sink.writes != 1 {
				t.Fatalf("%d records sent, want one alert", sink.writes)
			}
			if _, err2 := h.c.Input(nil); err2 != err {
				t.Fatalf("error not sticky: %v", err2)
			}
			if _, err := h.c.Write([]byte("x")); err == nil {
				t.Fatal("Write after a fatal alert succeeded")
			}
		})
	}
}

// TestPlaintextBufferBound: a peer sending faster than the application takes is held back in
// the caller's buffer (gnet's), not decrypted into unbounded memory.
func TestPlaintextBufferBound(t *testing.T) {
	ca, scfg := testServerConfig(t)
	h := newHandPair(t, scfg, clientConfig(ca, tls.VersionTLS13))
	stream := h.stream(t, bytes.Repeat([]byte("z"), 200000))
	used, err := h.c.Input(stream)
	if err != nil {
		t.Fatal(err)
	}
	if h.c.Buffered() > bufSize || used >= len(stream) {
		t.Fatalf("took %d of %d bytes, holds %d plaintext", used, len(stream), h.c.Buffered())
	}
	total := 0
	for total < 200000 {
		total += h.c.Buffered()
		h.c.Discard(h.c.Buffered())
		stream = stream[used:]
		if used, err = h.c.Input(stream); err != nil {
			t.Fatal(err)
		}
		if h.c.Buffered() == 0 && used == 0 {
			break
		}
	}
	if total != 200000 || len(stream) != 0 {
		t.Fatalf("got %d plaintext bytes, %d ciphertext bytes left", total, len(stream))
	}
}

// TestInputOfferedLessThanBefore: the engine may call Input with fewer bytes than it offered
// before (Input(nil) after Progress, say) while records it showed earlier wait unused. Nothing
// may be stranded inside crypto/tls when they are offered again.
func TestInputOfferedLessThanBefore(t *testing.T) {
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			h := newHandPair(t, scfg, clientConfig(ca, v.v))
			var stream []byte
			for range 120 { // one small record each
				stream = append(stream, h.stream(t, bytes.Repeat([]byte("r"), 500))...)
			}
			total := 0
			take := func() { total += h.c.Buffered(); h.c.Discard(h.c.Buffered()) }
			used, err := h.c.Input(stream) // fills the plaintext buffer, leaves records unused
			if err != nil {
				t.Fatal(err)
			}
			stream = stream[used:]
			take()
			for range 3 {
				if _, err := h.c.Input(nil); err != nil {
					t.Fatal(err)
				}
				take()
			}
			for range 20 {
				used, err := h.c.Input(stream)
				if err != nil {
					t.Fatal(err)
				}
				stream = stream[used:]
				take()
			}
			if total != 60000 || len(stream) != 0 {
				t.Fatalf("got %d of 60000 plaintext bytes, %d ciphertext bytes unused", total, len(stream))
			}
			h.c.w.mu.Lock()
			defer h.c.w.mu.Unlock()
			if h.c.consumed > h.c.w.rs.complete {
				t.Fatalf("consumed %d records of %d: the lower bound overshot", h.c.consumed, h.c.w.rs.complete)
			}
		})
	}
}
