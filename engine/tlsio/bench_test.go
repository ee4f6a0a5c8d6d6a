package tlsio

import (
	"crypto/tls"
	"net"
	"runtime"
	"testing"
)

var benchSizes = []struct {
	name string
	n    int
}{{"200B", 200}, {"64KiB", 64 << 10}}

// BenchmarkWrite: encryption on the loop, records handed to a sink that keeps nothing (gnet's
// Write when the socket takes everything).
func BenchmarkWrite(b *testing.B) {
	ca, scfg := testServerConfig(b)
	for _, v := range versions {
		for _, s := range benchSizes {
			b.Run(v.name+"/"+s.name, func(b *testing.B) {
				h := newHandPair(b, scfg, clientConfig(ca, v.v))
				h.sw.w = &countSink{}
				msg := make([]byte, s.n)
				for range 10 { // past crypto/tls's slow start of record sizes
					h.c.Write(make([]byte, 64<<10))
				}
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := h.c.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWritev: a WebSocket frame header and its payload, gathered into shared records.
func BenchmarkWritev(b *testing.B) {
	ca, scfg := testServerConfig(b)
	for _, s := range benchSizes {
		b.Run("TLS1.3/"+s.name, func(b *testing.B) {
			h := newHandPair(b, scfg, clientConfig(ca, tls.VersionTLS13))
			sink := &countSink{}
			h.sw.w = sink
			bs := [][]byte{{0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0}, make([]byte, s.n)}
			for range 10 {
				h.c.Write(make([]byte, 64<<10))
			}
			sink.writes, sink.records = 0, 0
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.c.Writev(bs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(sink.records)/float64(b.N), "records/op")
			b.ReportMetric(float64(sink.writes)/float64(b.N), "writes/op")
		})
	}
}

// BenchmarkRead: decryption on the loop: each message's ciphertext arrives as one read (one
// OnTraffic) and is taken whole by the application. The ciphertext is made by a crypto/tls
// client in batches, outside the timer.
func BenchmarkRead(b *testing.B) {
	ca, scfg := testServerConfig(b)
	const batch = 64
	for _, v := range versions {
		for _, s := range benchSizes {
			b.Run(v.name+"/"+s.name, func(b *testing.B) {
				h := newHandPair(b, scfg, clientConfig(ca, v.v))
				h.sw.w = &countSink{}
				msg := make([]byte, s.n)
				for range 10 { // the client's record sizes too
					feedAll(b, h.c, h.stream(b, make([]byte, 64<<10)))
				}
				var streams [][]byte
				next := batch
				b.SetBytes(int64(s.n))
				b.ReportAllocs()
				for b.Loop() {
					if next == batch {
						b.StopTimer()
						streams = streams[:0]
						for range batch {
							streams = append(streams, h.stream(b, msg))
						}
						next = 0
						b.StartTimer()
					}
					if got := feedAll(b, h.c, streams[next]); got != s.n {
						b.Fatalf("got %d bytes, want %d", got, s.n)
					}
					next++
				}
			})
		}
	}
}

// feedAll offers in to c until all of it is used, taking the plaintext as it comes, and
// returns how much there was.
func feedAll(tb testing.TB, c *Conn, in []byte) int {
	got := 0
	for {
		used, err := c.Input(in)
		if err != nil {
			tb.Fatal(err)
		}
		in = in[used:]
		n := c.Buffered()
		got += n
		c.Discard(n)
		if used == 0 && n == 0 {
			return got
		}
	}
}

// BenchmarkHandshake: one full handshake of a crypto/tls client with a Conn server, both in
// this process (the figure is the two sides' work together, plus the worker hop).
func BenchmarkHandshake(b *testing.B) {
	ca := newCA(b, "bench CA")
	for _, key := range []struct {
		name string
		rsa  bool
	}{{"ECDSA-P256", false}, {"RSA-2048", true}} {
		cert := ca.tlsCert(b, certSpec{cn: testHost, dns: []string{testHost}, rsa: key.rsa})
		scfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, SessionTicketsDisabled: true}
		for _, v := range versions {
			b.Run(key.name+"/"+v.name, func(b *testing.B) {
				ccfg := clientConfig(ca, v.v)
				b.ReportAllocs()
				for b.Loop() {
					h := newHandPair(b, scfg, ccfg)
					h.c.Close()
				}
			})
		}
	}
}

// BenchmarkIdleSession reports the live heap an idle session keeps (B/session), for a Conn and,
// as the floor, for a bare crypto/tls server connection over net.Pipe.
func BenchmarkIdleSession(b *testing.B) {
	ca, scfg := testServerConfig(b)
	for _, v := range versions {
		b.Run("tlsio/"+v.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = idleBytes(b, 500, scfg, clientConfig(ca, v.v), 100)
			}
			b.ReportMetric(per, "B/session")
		})
		b.Run("crypto-tls/"+v.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = bareIdleBytes(b, 500, scfg, clientConfig(ca, v.v))
			}
			b.ReportMetric(per, "B/session")
		})
	}
}

// bareIdleBytes is idleBytes for crypto/tls alone: server connections over net.Pipe, after a
// handshake and a message each way.
func bareIdleBytes(b *testing.B, n int, scfg, ccfg *tls.Config) float64 {
	mk := func() *tls.Conn {
		a, z := net.Pipe()
		s := tls.Server(a, scfg)
		c := tls.Client(z, ccfg)
		done := make(chan error, 1)
		go func() {
			if err := c.Handshake(); err != nil {
				done <- err
				return
			}
			c.Write(make([]byte, 100))
			_, err := c.Read(make([]byte, 100))
			done <- err
		}()
		buf := make([]byte, 100)
		if _, err := s.Read(buf); err != nil {
			b.Fatal(err)
		}
		s.Write(buf)
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		return s
	}
	first := mk()
	before := liveHeap()
	conns := make([]*tls.Conn, n)
	for i := range conns {
		conns[i] = mk()
	}
	after := liveHeap()
	runtime.KeepAlive(first)
	runtime.KeepAlive(conns)
	return float64(after-before) / float64(n)
}
