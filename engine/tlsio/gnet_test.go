package tlsio

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// gnetEcho is the smallest real use of this package on gnet, shaped like the engine's seam will
// be: OnOpen makes a server Conn whose sink is the gnet.Conn and whose notify is Execute;
// OnTraffic and every wake-up offer gnet's buffered bytes to Input and Discard what it used;
// plaintext is echoed; a plain HTTP request gets a 400; OnClose reports how the stream ended.
type gnetEcho struct {
	gnet.BuiltinEventEngine
	pool  *Pool
	cfg   *tls.Config
	eng   chan gnet.Engine
	mu    sync.Mutex
	ends  []error
	alpns []string
}

type gnetSession struct {
	c      *Conn
	gc     gnet.Conn
	closed bool
	wake   gnet.Runnable
}

func (s *gnetEcho) OnBoot(e gnet.Engine) gnet.Action {
	s.eng <- e
	return gnet.None
}

func (s *gnetEcho) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	se := &gnetSession{gc: gc}
	el := gc.EventLoop()
	se.wake = gnet.RunnableFunc(func(context.Context) error {
		if se.closed {
			return nil // notify may come once after the end
		}
		if done, err := se.c.Progress(); err != nil {
			gc.Close()
			return nil
		} else if done && se.c.Established() {
			s.mu.Lock()
			s.alpns = append(s.alpns, se.c.ConnectionState().NegotiatedProtocol)
			s.mu.Unlock()
		}
		if s.drive(se) != gnet.None {
			gc.Close()
		}
		return nil
	})
	se.c = NewServer(s.pool, s.cfg, gc, func() { _ = el.Execute(context.Background(), se.wake) })
	gc.SetContext(se)
	return nil, gnet.None
}

func (s *gnetEcho) OnTraffic(gc gnet.Conn) gnet.Action {
	return s.drive(gc.Context().(*gnetSession))
}

// drive is what the seam does per event: offer, discard what was used, take the plaintext.
func (s *gnetEcho) drive(se *gnetSession) gnet.Action {
	for {
		in, _ := se.gc.Peek(-1)
		used, err := se.c.Input(in)
		if used > 0 {
			se.gc.Discard(used) // never Discard(0): gnet then drops everything it holds
		}
		p := se.c.Peek()
		if len(p) > 0 {
			if _, werr := se.c.Write(p); werr != nil {
				return gnet.Close
			}
			se.c.Discard(len(p))
		}
		switch {
		case errors.Is(err, ErrPlainHTTP):
			se.gc.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			return gnet.Close
		case err == io.EOF:
			se.c.CloseWrite() // answer close_notify with ours
			return gnet.Close
		case err != nil:
			return gnet.Close
		}
		if used == 0 && len(p) == 0 {
			return gnet.None
		}
	}
}

func (s *gnetEcho) OnClose(gc gnet.Conn, _ error) gnet.Action {
	se := gc.Context().(*gnetSession)
	se.closed = true
	err := se.c.EOF()
	se.c.Close()
	s.mu.Lock()
	s.ends = append(s.ends, err)
	s.mu.Unlock()
	return gnet.None
}

// TestOnGnet runs the package on real gnet event loops: concurrent TLS 1.2 and 1.3 clients
// echo through two loops, a plain HTTP client gets its 400, and the ends are reported.
func TestOnGnet(t *testing.T) {
	ca, scfg := testServerConfig(t)
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // gnet binds it itself
	srv := &gnetEcho{pool: testPool(), cfg: scfg, eng: make(chan gnet.Engine, 1)}
	runErr := make(chan error, 1)
	go func() {
		runErr <- gnet.Run(srv, "tcp://"+addr, gnet.WithNumEventLoop(2), gnet.WithLogger(testLogger{t}))
	}()
	var eng gnet.Engine
	select {
	case eng = <-srv.eng:
	case err := <-runErr:
		t.Fatal(err)
	case <-time.After(testWait):
		t.Fatal("gnet did not start")
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		eng.Stop(ctx)
		<-runErr
	}()

	var wg sync.WaitGroup
	const clients = 8
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer raw.Close()
			c := tls.Client(raw, clientConfig(ca, versions[i%2].v))
			if err := c.Handshake(); err != nil {
				t.Error(err)
				return
			}
			msgs := testMessages(1, 100, 5000, 70000, 200000)
			go func() {
				for _, m := range msgs {
					c.Write(m)
				}
			}()
			for _, m := range msgs {
				got := make([]byte, len(m))
				c.SetReadDeadline(time.Now().Add(testWait))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != string(m) {
					t.Errorf("client %d: echo of %d bytes: %v", i, len(m), err)
					return
				}
			}
			c.CloseWrite()
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("client %d: after close_notify: %v, want the server's close_notify", i, err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer raw.Close()
		raw.Write([]byte("GET / HTTP/1.1\r\nHost: vnc\r\n\r\n"))
		raw.SetReadDeadline(time.Now().Add(testWait))
		line, err := bufio.NewReader(raw).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 400") {
			t.Errorf("plain HTTP got %q, %v", line, err)
		}
	}()
	wg.Wait()
	waitFor(t, "every connection to close", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.ends) == clients+1
	})
	srv.mu.Lock()
	defer srv.mu.Unlock()
	clean := 0
	for _, err := range srv.ends {
		if err == io.EOF {
			clean++
		}
	}
	if clean != clients {
		t.Errorf("ends %v: want %d clean (close_notify) ends", srv.ends, clients)
	}
	for _, p := range srv.alpns {
		if p != "http/1.1" {
			t.Errorf("ALPN %q", p)
		}
	}
	if len(srv.alpns) != clients {
		t.Errorf("%d handshakes seen, want %d", len(srv.alpns), clients)
	}
}

// testLogger sends gnet's warnings and errors to the test log and drops the rest.
type testLogger struct{ t testing.TB }

func (testLogger) Debugf(string, ...any)          {}
func (testLogger) Infof(string, ...any)           {}
func (l testLogger) Warnf(f string, args ...any)  { l.t.Logf("gnet: "+f, args...) }
func (l testLogger) Errorf(f string, args ...any) { l.t.Logf("gnet: "+f, args...) }
func (l testLogger) Fatalf(f string, args ...any) { l.t.Errorf("gnet: "+f, args...) }
