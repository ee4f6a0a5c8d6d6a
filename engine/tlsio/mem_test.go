package tlsio

import (
	"crypto/tls"
	"io"
	"runtime"
	"testing"
)

// idleServer makes one established server Conn that has exchanged a message each way and is
// now idle, with the client side gone: what a quiet session keeps. Its sink is shared, so the
// figure holds the Conn and crypto/tls only (the engine's sink is the gnet.Conn, which exists
// anyway).
func idleServer(t testing.TB, p *Pool, scfg, ccfg *tls.Config, sink io.Writer, wake chan struct{}, notify func(), msgSize int) *Conn {
	m := newMemConn()
	sw := &switchSink{w: m.sink()}
	c := NewServer(p, scfg, sw, notify)
	cl := tls.Client(m, ccfg)
	hs := make(chan error, 1)
	go func() { hs <- cl.Handshake() }()
	var in []byte
	for done := false; !done; {
		select {
		case b := <-m.toLoop:
			in = append(in, b...)
			used, err := c.Input(in)
			if err != nil {
				t.Fatal(err)
			}
			in = in[used:]
		case <-wake:
			var err error
			if done, err = c.Progress(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	go cl.Write(make([]byte, msgSize))
	for got := 0; got < msgSize; {
		if len(in) == 0 || c.Buffered() == 0 {
			in = append(in, <-m.toLoop...)
		}
		used, err := c.Input(in)
		if err != nil {
			t.Fatal(err)
		}
		in = in[used:]
		got += c.Buffered()
		c.Discard(c.Buffered())
	}
	if _, err := c.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	sw.w = sink
	m.Close()
	return c
}

// idleBytes returns the live heap per idle session over n sessions, each of which received one
// message of msgSize bytes before going quiet.
func idleBytes(t testing.TB, n int, scfg, ccfg *tls.Config, msgSize int) float64 {
	p := testPool()
	wake := make(chan struct{}, 1)
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	sink := &countSink{}
	// One session first, so that pools and lazily built state of crypto/tls are not counted.
	first := idleServer(t, p, scfg, ccfg, sink, wake, notify, msgSize)
	before := liveHeap()
	conns := make([]*Conn, n)
	for i := range conns {
		conns[i] = idleServer(t, p, scfg, ccfg, sink, wake, notify, msgSize)
	}
	after := liveHeap()
	for _, c := range conns {
		if c.plain != nil || c.w.in != nil || c.w.out != nil {
			t.Fatal("an idle Conn holds a pooled buffer")
		}
	}
	runtime.KeepAlive(conns)
	runtime.KeepAlive(first)
	for _, c := range conns {
		c.Close()
	}
	return float64(after-before) / float64(n)
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestIdleSessionMemory measures what an idle TLS session keeps once its buffers went back to
// the pool, and bounds it loosely (the figure is logged; BenchmarkIdleSession reports it). After
// a large message the figure grows by crypto/tls's input buffer, which keeps the size of the
// largest record received and which nothing outside crypto/tls can shrink.
func TestIdleSessionMemory(t *testing.T) {
	n := 2000
	if testing.Short() || raceEnabled {
		n = 200
	}
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		for _, m := range []struct {
			size  int
			bound float64
		}{{100, 16 << 10}, {64 << 10, 48 << 10}} {
			count := n
			if m.size > MaxPlaintext {
				count = n / 4 // the large message makes each session slower to set up
			}
			per := idleBytes(t, count, scfg, clientConfig(ca, v.v), m.size)
			t.Logf("%s, after a %d-byte message: %.0f bytes per idle session", v.name, m.size, per)
			if per > m.bound {
				t.Errorf("%s, after a %d-byte message: %.0f bytes per idle session, bound %.0f", v.name, m.size, per, m.bound)
			}
		}
	}
}
