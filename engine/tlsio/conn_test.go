package tlsio

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

const testHost = "vnc.example.test"

// testServerConfig returns a Store-made server config for testHost and the CA that signed it.
func testServerConfig(t testing.TB) (*testCA, *tls.Config) {
	t.Helper()
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Certs = []CertPair{ca.writePair(t, dir, "srv", certSpec{cn: testHost, dns: []string{testHost}})}
	st, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ca, st.ServerConfig()
}

func clientConfig(ca *testCA, version uint16) *tls.Config {
	return &tls.Config{
		RootCAs:    ca.pool,
		ServerName: testHost,
		MinVersion: version,
		MaxVersion: version,
		NextProtos: []string{"h2", "http/1.1"},
	}
}

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.2", tls.VersionTLS12}, {"TLS1.3", tls.VersionTLS13}}

// roundTrip sends msgs from a crypto/tls client through the echoing server and checks what
// comes back.
func roundTrip(t *testing.T, c *tls.Conn, msgs [][]byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if _, err := c.Write(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, m := range msgs {
		got := make([]byte, len(m))
		c.SetReadDeadline(time.Now().Add(testWait))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, m) {
			t.Fatalf("message %d: echo differs", i)
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func testMessages(sizes ...int) [][]byte {
	var msgs [][]byte
	for _, n := range sizes {
		m := make([]byte, n)
		rand.Read(m)
		msgs = append(msgs, m)
	}
	return msgs
}

// TestEcho runs real crypto/tls clients against a Conn, over loopback TCP and over memory with
// reads cut at random, in TLS 1.2 and 1.3, and checks ALPN and the echoed bytes.
func TestEcho(t *testing.T) {
	ca, scfg := testServerConfig(t)
	msgs := testMessages(1, 200, 5000, 16384, 16385, 70000, 300000, 3)
	for _, v := range versions {
		t.Run(v.name+"/tcp", func(t *testing.T) {
			ln := listen(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				raw, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				c := tls.Client(raw, clientConfig(ca, v.v))
				defer c.Close()
				if err := clientHandshake(t, c); err != nil {
					t.Error(err)
					return
				}
				checkState(t, c.ConnectionState(), v.v)
				roundTrip(t, c, msgs)
			}()
			l := tcpServer(t, testPool(), scfg, ln)
			l.app = echo
			if err := l.handshake(); err != nil {
				t.Fatal(err)
			}
			<-done
		})
		t.Run(v.name+"/memory", func(t *testing.T) {
			l, m := memServer(t, testPool(), scfg)
			l.app = echo
			l.randomPieces(uint64(time.Now().UnixNano()))
			c := tls.Client(m, clientConfig(ca, v.v))
			if err := clientHandshake(t, c); err != nil {
				t.Fatal(err)
			}
			if err := l.handshake(); err != nil {
				t.Fatal(err)
			}
			checkState(t, c.ConnectionState(), v.v)
			var state tls.ConnectionState
			l.do(func() { state = l.c.ConnectionState() })
			if state.NegotiatedProtocol != "http/1.1" || state.ServerName != testHost || state.Version != v.v {
				t.Errorf("server state: ALPN %q, SNI %q, version %x", state.NegotiatedProtocol, state.ServerName, state.Version)
			}
			roundTrip(t, c, msgs)
		})
	}
}

func checkState(t *testing.T, cs tls.ConnectionState, v uint16) {
	t.Helper()
	if cs.Version != v {
		t.Errorf("version %x, want %x", cs.Version, v)
	}
	if cs.NegotiatedProtocol != "http/1.1" {
		t.Errorf("ALPN %q, want http/1.1", cs.NegotiatedProtocol)
	}
}

// TestRecordSplitAtEveryOffset cuts one application record at every offset into two reads and
// checks that nothing comes out before the record is whole and everything after.
func TestRecordSplitAtEveryOffset(t *testing.T) {
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			m := newMemConn()
			l := newTestLoop(t, nil) // driven by hand below, on this goroutine
			c := NewServer(testPool(), scfg, m.sink(), l.notify)
			defer c.Close()
			l.c = c
			cl := tls.Client(m, clientConfig(ca, v.v))
			hs := make(chan error, 1)
			go func() { hs <- cl.Handshake() }()
			handshakeByHand(t, c, m, l, hs)

			msg := bytes.Repeat([]byte("0123456789abcdef"), 20) // 320 bytes
			for k := 0; ; k++ {
				go cl.Write(msg)
				rec := <-m.toLoop // one record per Write
				if k >= len(rec) {
					break
				}
				used, err := c.Input(rec[:k])
				if err != nil || c.Buffered() != 0 {
					t.Fatalf("offset %d: first part gave %d plaintext bytes, err %v", k, c.Buffered(), err)
				}
				rest := append(rec[used:k:k], rec[k:]...)
				used2, err := c.Input(rest)
				if err != nil {
					t.Fatalf("offset %d: %v", k, err)
				}
				if used+used2 != len(rec) {
					t.Fatalf("offset %d: used %d+%d of %d", k, used, used2, len(rec))
				}
				if !bytes.Equal(c.Peek(), msg) {
					t.Fatalf("offset %d: got %d bytes", k, c.Buffered())
				}
				c.Discard(c.Buffered())
			}
		})
	}
}

// handshakeByHand plays the loop's part of a handshake on the test goroutine: it feeds every
// chunk the client writes and answers each notify with Progress.
func handshakeByHand(t *testing.T, c *Conn, m *memConn, l *testLoop, clientDone chan error) {
	t.Helper()
	var in []byte
	deadline := time.After(testWait)
	serverDone := false
	for !serverDone {
		select {
		case b := <-m.toLoop:
			in = append(in, b...)
			used, err := c.Input(in)
			if err != nil {
				t.Fatal(err)
			}
			in = in[used:]
		case <-l.wake:
			done, err := c.Progress()
			if err != nil {
				t.Fatal(err)
			}
			serverDone = done
		case <-deadline:
			t.Fatal("handshake did not end")
		}
	}
	if len(in) > 0 {
		if _, err := c.Input(in); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-clientDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-deadline:
		t.Fatal("client handshake did not end")
	}
}

// TestWritev: the pieces arrive concatenated, and small pieces share records: a frame header
// and a 200-byte payload make one record, a header and 64 KiB the minimum of five; and every
// call's records reach the sink in one write.
func TestWritev(t *testing.T) {
	ca, scfg := testServerConfig(t)
	h := newHandPair(t, scfg, clientConfig(ca, tls.VersionTLS13))
	sink := &countSink{}
	h.sw.w = &teeSink{a: h.m.sink(), b: sink}
	read := func(n int) []byte {
		t.Helper()
		buf := make([]byte, n)
		if _, err := io.ReadFull(h.cl, buf); err != nil {
			t.Fatal(err)
		}
		return buf
	}
	for range 10 { // past crypto/tls's small first records
		h.c.Write(make([]byte, 64<<10))
	}
	read(10 * 64 << 10)
	hdr := []byte{0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0}
	cases := []struct {
		sizes   []int
		records int
	}{
		{[]int{2, 200}, 1},
		{[]int{len(hdr), 64 << 10}, 5},
		{[]int{64 << 10}, 4},
		{[]int{1, 1, 1, 0, 1}, 1},
		{[]int{MaxPlaintext - 1, 1, 1}, 2},
		{[]int{3 * MaxPlaintext, 5}, 4},
		{[]int{40000, 5}, 3},
	}
	for i, c := range cases {
		var bs [][]byte
		var want []byte
		for _, n := range c.sizes {
			b := testMessages(n)[0]
			bs = append(bs, b)
			want = append(want, b...)
		}
		sink.writes, sink.records = 0, 0
		n, err := h.c.Writev(bs)
		if err != nil || n != len(want) {
			t.Fatalf("case %d: wrote %d of %d, %v", i, n, len(want), err)
		}
		if sink.records != c.records {
			t.Errorf("case %d %v: %d records, want %d", i, c.sizes, sink.records, c.records)
		}
		if sink.writes != 1 { // the records of one call go out in one socket write
			t.Errorf("case %d %v: %d sink writes, want 1", i, c.sizes, sink.writes)
		}
		if got := read(len(want)); !bytes.Equal(got, want) {
			t.Fatalf("case %d: the client read other bytes", i)
		}
	}
}

type teeSink struct{ a, b io.Writer }

func (t *teeSink) Write(p []byte) (int, error) {
	t.b.Write(p)
	return t.a.Write(p)
}

// TestSetSinkParks: with no sink (a parked socket) output waits in the Conn, in order, and
// goes out when a sink is set again.
func TestSetSinkParks(t *testing.T) {
	ca, scfg := testServerConfig(t)
	h := newHandPair(t, scfg, clientConfig(ca, tls.VersionTLS13))
	h.c.SetSink(nil)
	h.c.Write([]byte("while "))
	h.c.Writev([][]byte{[]byte("parked"), []byte("; ")})
	h.c.SetSink(h.m.sink())
	h.c.Write([]byte("back"))
	got := make([]byte, len("while parked; back"))
	if _, err := io.ReadFull(h.cl, got); err != nil || string(got) != "while parked; back" {
		t.Fatalf("client read %q, %v", got, err)
	}
}

// reenterSink fails its write and, as gnet does for a socket that failed,
// calls back into the Conn from inside Write (the engine's OnClose runs
// SetSink(nil) and Close there).
type reenterSink struct{ c *Conn }

func (r *reenterSink) Write([]byte) (int, error) {
	_ = r.c.SetSink(nil)
	_ = r.c.Close()
	return 0, io.ErrClosedPipe
}

// TestSinkMayReenter: a sink that calls back into the Conn during a write
// (gnet closes a failed socket synchronously, inside Write, and the
// engine's OnClose handler releases the Conn) must not deadlock: the wire
// writes with its lock released. Found by the engine's TLS tests.
func TestSinkMayReenter(t *testing.T) {
	ca, scfg := testServerConfig(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h := newHandPair(t, scfg, clientConfig(ca, tls.VersionTLS13))
		h.sw.w = &reenterSink{c: h.c}
		_, _ = h.c.Write([]byte("into a failed socket"))
		h2 := newHandPair(t, scfg, clientConfig(ca, tls.VersionTLS13))
		_ = h2.c.SetSink(nil)
		_, _ = h2.c.Write([]byte("queued while parked"))
		_ = h2.c.SetSink(&reenterSink{c: h2.c}) // the queued output fails as it goes out
	}()
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatal("a sink that called back into the Conn deadlocked it")
	}
}
