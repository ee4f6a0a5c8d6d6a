package tlsio

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// corkConn holds a server's writes back until it reads or flush is called, so that the last
// handshake flight and the first application data leave in one TCP write: the client then
// reads both at once and crypto/tls keeps the data past its handshake.
type corkConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *corkConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *corkConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// vmServer is a TLS VM on loopback: it greets with the RFB banner as soon as its handshake is
// over (in the same write as its last flight), then echoes.
func vmServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln := listen(t)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		defer raw.Close()
		ck := &corkConn{Conn: raw}
		s := tls.Server(ck, cfg)
		if err := s.Handshake(); err != nil {
			return
		}
		s.Write([]byte("RFB 003.008\n"))
		ck.flush()
		io.Copy(s, s)
	}()
	return ln.Addr().String()
}

// TestClientKeepsBytesReadPastHandshake: the VM's first bytes came in the same read as its
// Finished; after the switch to loop mode they come out of Input(nil), with no byte fed.
func TestClientKeepsBytesReadPastHandshake(t *testing.T) {
	ca := newCA(t, "VM CA")
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			vm := ca.tlsCert(t, certSpec{cn: "vm", ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
			addr := vmServer(t, &tls.Config{Certificates: []tls.Certificate{vm}, MinVersion: v.v, MaxVersion: v.v})
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			c, err := Client(ctx, testPool(), nc, &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.pool, MinVersion: v.v})
			if err != nil {
				t.Fatal(err)
			}
			// TLS 1.2 ends with the server's Finished, so the banner travels with it; in TLS 1.3
			// the server speaks only after the client's Finished, so it may or may not be there.
			used, err := c.Input(nil)
			if used != 0 || err != nil {
				t.Fatalf("Input(nil): %d, %v", used, err)
			}
			early := string(c.Peek())
			c.Discard(c.Buffered())
			if v.v == tls.VersionTLS12 && early != "RFB 003.008\n" {
				t.Fatalf("bytes read past the handshake: %q, want the banner", early)
			}
			t.Logf("read past the handshake: %q", early)

			// Now the socket belongs to the loop.
			l := socketLoop(t, nc)
			l.start(c)
			l.do(func() {
				if err := c.SetSink(nc); err != nil {
					t.Error(err)
				}
				if _, err := c.Write([]byte("ping")); err != nil {
					t.Error(err)
				}
			})
			want := strings.TrimPrefix("RFB 003.008\nping", early)
			if got := l.waitPlain(len(want)); string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

// TestClientVerifiesVM: the upstream config checks the VM's chain and name, and a VM that never
// answers is bounded by the context.
func TestClientVerifiesVM(t *testing.T) {
	ca := newCA(t, "VM CA")
	other := newCA(t, "other CA")
	dir := t.TempDir()
	vm := ca.tlsCert(t, certSpec{cn: "vm", dns: []string{"vm1.internal"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	scfg := &tls.Config{Certificates: []tls.Certificate{vm}}

	store := func(t *testing.T, caFile string, insecure bool) *Store {
		cfg := DefaultConfig()
		cfg.UpstreamCA = caFile
		cfg.UpstreamInsecureSkipVerify = insecure
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		st, err := NewStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	good := store(t, ca.writeCA(t, dir, "vm-ca.pem"), false)
	cases := []struct {
		name   string
		st     *Store
		server string
		ok     bool
		errHas string
	}{
		{"IP SAN", good, "127.0.0.1", true, ""},
		{"DNS SAN", good, "vm1.internal", true, ""},
		{"wrong name", good, "vm2.internal", false, "certificate is valid for"},
		{"wrong CA", store(t, other.writeCA(t, dir, "other.pem"), false), "127.0.0.1", false, "unknown authority"},
		{"system roots", store(t, "", false), "127.0.0.1", false, "unknown authority"},
		{"insecure", store(t, "", true), "127.0.0.1", true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := vmServer(t, scfg)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), testWait)
			defer cancel()
			conn, err := Client(ctx, testPool(), nc, c.st.UpstreamConfig(c.server))
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				conn.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("got %v, want an error with %q", err, c.errHas)
			}
			if _, werr := nc.Write([]byte("x")); !errors.Is(werr, net.ErrClosed) {
				t.Fatalf("socket not closed after a failed handshake: %v", werr)
			}
		})
	}

	t.Run("silent VM", func(t *testing.T) {
		ln := listen(t)
		go func() {
			raw, err := ln.Accept()
			if err == nil {
				defer raw.Close()
				io.Copy(io.Discard, raw)
			}
		}()
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = Client(ctx, testPool(), nc, good.UpstreamConfig("127.0.0.1"))
		if err == nil || time.Since(start) > testWait/2 {
			t.Fatalf("silent VM: %v after %v", err, time.Since(start))
		}
		t.Logf("silent VM: %v after %v", err, time.Since(start).Round(time.Millisecond))
	})
}

// TestClientOnFedWire is VeNCrypt's case: plaintext RFB first on the loop's socket, then the
// TLS client handshake on a worker over the fed wire, then records on the loop.
func TestClientOnFedWire(t *testing.T) {
	ca := newCA(t, "VM CA")
	vm := ca.tlsCert(t, certSpec{cn: "vm", ips: []net.IP{net.IPv4(127, 0, 0, 1)}})
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			ln := listen(t)
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					return
				}
				defer raw.Close()
				raw.Write([]byte("RFB 003.008\n"))
				buf := make([]byte, 12)
				if _, err := io.ReadFull(raw, buf); err != nil {
					return
				}
				s := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{vm}, MinVersion: v.v, MaxVersion: v.v})
				io.Copy(s, s)
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			banner := make([]byte, 12)
			raw.SetReadDeadline(time.Now().Add(testWait))
			if _, err := io.ReadFull(raw, banner); err != nil {
				t.Fatal(err)
			}
			raw.SetReadDeadline(time.Time{})
			raw.Write(banner)

			l := socketLoop(t, raw)
			c, err := NewClient(testPool(), &tls.Config{ServerName: "127.0.0.1", RootCAs: ca.pool}, raw, l.notify)
			if err != nil {
				t.Fatal(err)
			}
			l.start(c)
			if err := l.handshake(); err != nil {
				t.Fatal(err)
			}
			msg := bytes.Repeat([]byte("fb"), 40000)
			l.do(func() {
				if _, err := c.Write(msg); err != nil {
					t.Error(err)
				}
			})
			if got := l.waitPlain(len(msg)); !bytes.Equal(got, msg) {
				t.Fatal("echo differs")
			}
		})
	}
	t.Run("busy", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.HandshakeWorkers, cfg.HandshakeQueue = 1, 0
		p := NewPool(cfg)
		first, err := NewClient(p, &tls.Config{ServerName: "x"}, &countSink{}, func() {})
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if _, err := NewClient(p, &tls.Config{ServerName: "x"}, &countSink{}, func() {}); !errors.Is(err, ErrBusy) {
			t.Fatalf("second client: %v, want ErrBusy", err)
		}
	})
}
