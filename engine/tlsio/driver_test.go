package tlsio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// This file is the test stand-in for a gnet event loop: one goroutine that owns a Conn, gets
// the peer's bytes in chunks (cut again into pieces, to mimic reads of any size), keeps what
// Input did not use the way gnet keeps unconsumed bytes, runs notify's wake-ups like Execute,
// and hands decrypted bytes to an application callback.

const testWait = 10 * time.Second // bound of every wait in these tests

// testLoop drives one Conn.
type testLoop struct {
	t    testing.TB
	c    *Conn
	from <-chan []byte // the peer's bytes; closed at the peer's EOF
	wake chan struct{} // notify's wake-ups, like Execute
	exec chan func()
	quit chan struct{}
	gone chan struct{}

	piece func(n int) int // how much of n arrived bytes the next read delivers
	in    []byte          // delivered, not yet used by Input (gnet's inbound buffer)
	app   func(l *testLoop, p []byte) int

	hs     chan error // the handshake's outcome, once
	hsSeen bool
	end    chan error // the first error of Input or EOF, once
	ended  bool

	mu    sync.Mutex
	cond  sync.Cond
	plain bytes.Buffer // what the default app collected
}

// newTestLoop makes a loop; call start with its Conn.
func newTestLoop(t testing.TB, from <-chan []byte) *testLoop {
	l := &testLoop{
		t:     t,
		from:  from,
		wake:  make(chan struct{}, 1),
		exec:  make(chan func()),
		quit:  make(chan struct{}),
		gone:  make(chan struct{}),
		piece: func(n int) int { return n },
		hs:    make(chan error, 1),
		end:   make(chan error, 1),
	}
	l.cond.L = &l.mu
	l.app = collect
	return l
}

// notify is the Conn's notify: it only schedules, like EventLoop.Execute.
func (l *testLoop) notify() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// randomPieces makes every read deliver a random number of bytes, at least one.
func (l *testLoop) randomPieces(seed uint64) {
	l.t.Logf("random split seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	l.piece = func(n int) int { return 1 + r.IntN(n) }
}

func (l *testLoop) start(c *Conn) {
	l.c = c
	go l.run()
	l.t.Cleanup(l.stop)
}

func (l *testLoop) stop() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.gone
}

func (l *testLoop) run() {
	defer close(l.gone)
	defer l.c.Close()
	from := l.from
	for {
		select {
		case b, ok := <-from:
			if !ok {
				from = nil
				l.eof()
				continue
			}
			for len(b) > 0 {
				k := l.piece(len(b))
				l.in = append(l.in, b[:k]...)
				b = b[k:]
				l.input()
			}
		case <-l.wake:
			l.progress()
		case f := <-l.exec:
			f()
		case <-l.quit:
			return
		}
	}
}

// do runs f on the loop and waits for it.
func (l *testLoop) do(f func()) {
	l.t.Helper()
	done := make(chan struct{})
	select {
	case l.exec <- func() { f(); close(done) }:
	case <-time.After(testWait):
		l.t.Fatal("loop does not run tasks")
	}
	<-done
}

func (l *testLoop) input() {
	if l.ended {
		return
	}
	for {
		used, err := l.c.Input(l.in)
		l.in = append(l.in[:0], l.in[used:]...)
		progressed := used > 0
		if p := l.c.Peek(); len(p) > 0 {
			n := l.app(l, p)
			l.c.Discard(n)
			progressed = progressed || n > 0
		}
		if err != nil {
			l.finish(err)
			return
		}
		if !progressed {
			return
		}
	}
}

// progress is what the engine does on a wake-up: Progress, then offer the buffered bytes
// again (the worker may have asked for the ones Input left, or the handshake may be over).
func (l *testLoop) progress() {
	done, err := l.c.Progress()
	if done && !l.hsSeen {
		l.hsSeen = true
		l.hs <- err
	}
	if err != nil {
		l.finish(err)
		return
	}
	l.input()
}

func (l *testLoop) eof() {
	if l.ended {
		return
	}
	err := l.c.EOF()
	if p := l.c.Peek(); len(p) > 0 {
		l.c.Discard(l.app(l, p))
	}
	if err == nil {
		err = io.ErrNoProgress // the test asked for more than the buffer holds
	}
	l.finish(err)
}

func (l *testLoop) finish(err error) {
	if l.ended {
		return
	}
	l.ended = true
	l.end <- err
}

// handshake waits for the handshake's outcome.
func (l *testLoop) handshake() error {
	l.t.Helper()
	select {
	case err := <-l.hs:
		return err
	case <-time.After(testWait):
		l.t.Fatal("handshake did not end")
		return nil
	}
}

// ending waits for the first error of Input or EOF.
func (l *testLoop) ending() error {
	l.t.Helper()
	select {
	case err := <-l.end:
		return err
	case <-time.After(testWait):
		l.t.Fatal("connection did not end")
		return nil
	}
}

// collect is the default app: it keeps everything.
func collect(l *testLoop, p []byte) int {
	l.mu.Lock()
	l.plain.Write(p)
	l.cond.Broadcast()
	l.mu.Unlock()
	return len(p)
}

// echo writes every decrypted byte back, on the loop.
func echo(l *testLoop, p []byte) int {
	if _, err := l.c.Write(p); err != nil {
		l.t.Errorf("echo write: %v", err)
	}
	return len(p)
}

// waitPlain waits until the default app has collected n bytes, and returns them.
func (l *testLoop) waitPlain(n int) []byte {
	l.t.Helper()
	deadline := time.Now().Add(testWait)
	stop := time.AfterFunc(testWait, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer stop.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.plain.Len() < n {
		if time.Now().After(deadline) {
			l.t.Fatalf("got %d plaintext bytes, want %d", l.plain.Len(), n)
		}
		l.cond.Wait()
	}
	return bytes.Clone(l.plain.Bytes()[:n])
}

// memConn is the peer's end of an in-memory connection: its writes reach the loop as one chunk
// each, and it reads what the loop's sink wrote. It lets a crypto/tls peer talk to a Conn with
// no socket, with full control over how bytes are cut.
type memConn struct {
	toLoop chan []byte
	mu     sync.Mutex
	cond   sync.Cond
	rbuf   []byte
	rEOF   bool // the loop side shut its writing down
	closed bool
	once   sync.Once
}

func newMemConn() *memConn {
	m := &memConn{toLoop: make(chan []byte, 4096)}
	m.cond.L = &m.mu
	return m
}

func (m *memConn) Read(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.rbuf) == 0 && !m.rEOF && !m.closed {
		m.cond.Wait()
	}
	if m.closed {
		return 0, net.ErrClosed
	}
	if len(m.rbuf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, m.rbuf)
	m.rbuf = m.rbuf[n:]
	return n, nil
}

func (m *memConn) Write(p []byte) (int, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	m.toLoop <- bytes.Clone(p)
	return len(p), nil
}

// Close ends the peer's writing side: the loop sees EOF.
func (m *memConn) Close() error {
	m.once.Do(func() { close(m.toLoop) })
	m.mu.Lock()
	m.closed = true
	m.cond.Broadcast()
	m.mu.Unlock()
	return nil
}

func (m *memConn) LocalAddr() net.Addr                { return wireAddr{} }
func (m *memConn) RemoteAddr() net.Addr               { return wireAddr{} }
func (m *memConn) SetDeadline(t time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(t time.Time) error { return nil }

// sink is the loop's writer towards this memConn.
func (m *memConn) sink() io.Writer { return memSink{m} }

type memSink struct{ m *memConn }

func (s memSink) Write(p []byte) (int, error) {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.m.closed {
		return 0, net.ErrClosed
	}
	s.m.rbuf = append(s.m.rbuf, p...)
	s.m.cond.Broadcast()
	return len(p), nil
}

// shutWrite is the loop side's SHUT_WR: the peer reads EOF after what was written.
func (m *memConn) shutWrite() {
	m.mu.Lock()
	m.rEOF = true
	m.cond.Broadcast()
	m.mu.Unlock()
}

// memServer runs a Conn server on a test loop over a memConn and returns both.
func memServer(t testing.TB, p *Pool, cfg *tls.Config) (*testLoop, *memConn) {
	t.Helper()
	m := newMemConn()
	l := newTestLoop(t, m.toLoop)
	l.start(NewServer(p, cfg, m.sink(), l.notify))
	t.Cleanup(func() { m.Close() })
	return l, m
}

// tcpServer accepts one loopback connection and runs a Conn server on a test loop over it.
func tcpServer(t testing.TB, p *Pool, cfg *tls.Config, ln net.Listener) *testLoop {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(testWait))
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	l := socketLoop(t, raw)
	l.start(NewServer(p, cfg, raw, l.notify))
	return l
}

// socketLoop returns a loop (not started) fed from a socket by a reader goroutine, which stands
// for the kernel and gnet's reads; the socket itself is the Conn's sink.
func socketLoop(t testing.TB, raw net.Conn) *testLoop {
	from := make(chan []byte, 64)
	go func() {
		defer close(from)
		for {
			b := make([]byte, 32<<10)
			n, err := raw.Read(b)
			if n > 0 {
				from <- b[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	return newTestLoop(t, from)
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// testPool returns a pool with the default bounds.
func testPool() *Pool {
	return NewPool(DefaultConfig())
}

// clientHandshake runs a crypto/tls client's handshake with a bound.
func clientHandshake(t testing.TB, c *tls.Conn) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Handshake() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(testWait):
		c.Close()
		t.Fatal("client handshake did not end")
		return nil
	}
}

// isClosedErr reports the errors a peer sees when the other side went away.
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}
