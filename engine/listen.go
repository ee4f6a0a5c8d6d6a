package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// The engine accepts connections itself and enrolls them on gnet's loops,
// rather than letting gnet listen: gnet treats any accept error but a few
// (EMFILE, ENFILE, ENOBUFS, ...) as fatal and stops the whole engine, which
// drops every live session. Here an accept error is logged, counted and
// waited out with a backoff, and every connection passes admission (the
// descriptor budget and the handshake limits) before it costs the loops
// anything.

// acceptMark is the gnet context of an accepted socket until its OnOpen
// gives it an httpConn.
type acceptMark struct {
	peer netip.Addr // the address its handshake is counted against; invalid when none
	tls  bool       // from the --tls-listen listener
}

// listenSocket is one listening socket (a WebSocket port or the admin
// port) that can be handed over to a successor: handOver takes every
// connection queued on it, takes it out of the kernel's SO_REUSEPORT group
// and closes it; Accept then returns the connections taken, and after
// them net.ErrClosed. It is a net.Listener, so net/http serves the admin
// port from it.
type listenSocket struct {
	ln    *net.TCPListener
	addr  string // as configured, for logs
	ident sockIdent

	handing atomic.Bool
	handed  chan struct{} // closed once handOver has taken the queue
	mu      sync.Mutex
	queue   []*net.TCPConn // taken by handOver, not yet returned by Accept
}

// maxHandoverAccepts bounds the connections one handover takes from a
// queue (the kernel's own bound is net.core.somaxconn).
const maxHandoverAccepts = 1 << 16

func newListenSocket(addr string, takeover bool) (*listenSocket, error) {
	ln, err := bindTCP(addr, takeover)
	if err != nil {
		return nil, err
	}
	id, err := identOf(ln)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &listenSocket{ln: ln, addr: addr, ident: id, handed: make(chan struct{})}, nil
}

// AcceptTCP waits for the next connection.
func (l *listenSocket) AcceptTCP() (*net.TCPConn, error) {
	if !l.handing.Load() {
		c, err := l.ln.AcceptTCP()
		if err == nil || !l.handing.Load() {
			return c, err
		}
		// The handover shut the socket down under this Accept.
	}
	<-l.handed
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) == 0 {
		return nil, net.ErrClosed
	}
	c := l.queue[0]
	l.queue[0], l.queue = nil, l.queue[1:]
	return c, nil
}

// Accept is AcceptTCP for net/http.
func (l *listenSocket) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the socket; a connection still in its queue is reset.
func (l *listenSocket) Close() error { return l.ln.Close() }

// Addr is the bound address.
func (l *listenSocket) Addr() net.Addr { return l.ln.Addr() }

// siblings counts the other listeners on this socket's address (a
// predecessor's or a successor's).
func (l *listenSocket) siblings() (int, error) { return siblings(l.ident) }

// handOver takes the queued connections, leaves the address to the other
// listeners on it and closes the socket; it returns how many it took.
// Accept returns them before it reports the socket closed. A second call
// waits for the first.
func (l *listenSocket) handOver() (int, error) {
	if !l.handing.CompareAndSwap(false, true) {
		<-l.handed
		return 0, nil
	}
	var fds []int
	var derr error
	rc, err := l.ln.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) { fds, derr = drainAccept(int(fd), maxHandoverAccepts) })
	}
	conns := make([]*net.TCPConn, 0, len(fds))
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "accepted")
		c, ferr := net.FileConn(f) // a copy of the descriptor; ours is closed below
		_ = f.Close()
		if ferr != nil {
			derr = errors.Join(derr, ferr)
			continue
		}
		conns = append(conns, c.(*net.TCPConn))
	}
	l.mu.Lock()
	l.queue = conns
	l.mu.Unlock()
	_ = l.ln.Close() // wakes an Accept still waiting in the poller
	close(l.handed)
	return len(conns), errors.Join(err, derr)
}

// listener is a WebSocket listening socket and its accept goroutine.
type listener struct {
	srv  *Server
	sock *listenSocket
	tls  bool
}

// Accept backoff after a resource error: long enough that a process out
// of descriptors does not spin, short enough to notice they came back.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = 500 * time.Millisecond
)

// run accepts until the listener is closed or handed over.
func (l *listener) run() {
	srv := l.srv
	defer srv.listenersDone.Done()
	backoff := time.Duration(0)
	for {
		c, err := l.sock.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			srv.met.acceptErrors.Inc()
			srv.logSampled(&srv.acceptLog, slog.LevelWarn, "accept failed; backing off", slog.String("error", err.Error()),
				slog.Duration("backoff", max(backoff*2, acceptBackoffMin)))
			backoff = min(max(backoff*2, acceptBackoffMin), acceptBackoffMax)
			select {
			case <-time.After(backoff):
			case <-srv.stop:
				return
			}
			continue
		}
		backoff = 0
		srv.admit(c, l.tls)
	}
}

// shedResponse is what a connection refused at accept gets: a real HTTP
// answer, so a browser or a load balancer sees why, written without
// waiting (it fits any socket buffer).
var shedResponse = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nRetry-After: 1\r\nContent-Length: 17\r\n\r\nserver too busy.\n")

// admit applies the accept-time limits to c and hands it to a loop. Its
// descriptor is counted; the copy gnet makes while enrolling it is counted
// by enrollAccepted around the enroll alone.
func (srv *Server) admit(c *net.TCPConn, tls bool) {
	var peer netip.Addr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		peer = ap.Addr().Unmap()
	}
	why := shedNone
	mark := acceptMark{tls: tls}
	switch {
	case !srv.fds.take(1):
		why = shedDescriptors
	case !srv.acquireHandshake():
		srv.fds.give(1)
		why = shedHandshakes
	default:
		if !srv.proxies.contains(peer) {
			mark.peer = peer
		}
		if !srv.clients.acquireHandshake(mark.peer) {
			srv.releaseHandshake()
			srv.fds.give(1)
			why = shedClientHandshakes
		}
	}
	if why != shedNone {
		srv.met.connectionsShed[why].Inc()
		srv.logSampled(&srv.shedLog, slog.LevelWarn, "connection refused", slog.String("client", c.RemoteAddr().String()),
			slog.String("reason", why.String()))
		// A fresh socket's send buffer is empty, so this never waits; the
		// deadline only guards against the impossible.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(shedResponse)
		_ = c.Close()
		return
	}
	srv.enrolls <- pendingEnroll{c: c, mark: &mark}
}

// pendingEnroll is an accepted socket on its way to a loop.
type pendingEnroll struct {
	c    *net.TCPConn
	mark *acceptMark
}

// enrollWorkers is how many goroutines hand accepted sockets to the loops.
// gnet's EnrollContext waits until the loop has run the socket's OnOpen,
// so a few in parallel keep one busy loop from holding up the accepts.
const enrollWorkers = 8

// enrollAccepted hands accepted sockets to the least loaded loop and
// checks every result: a failure (gnet could not dup the socket at the
// descriptor ceiling, say) is counted and its admission undone. The copy
// gnet makes is counted for the enroll only (takeTransient): counted from
// accept on, as before, a ramp at the ceiling refused sessions that fit.
func (srv *Server) enrollAccepted(cli *gnet.Client) {
	for p := range srv.enrolls {
		if !srv.fds.takeTransient() {
			_ = p.c.Close()
			srv.enrollFailed(p.mark, errNoTransientFD)
			continue
		}
		_, err := cli.EnrollContext(p.c, p.mark)
		srv.fds.give(1) // gnet's copy replaced ours (or the enroll failed and closed it)
		if err != nil {
			srv.enrollFailed(p.mark, err)
		}
	}
}

// errNoTransientFD: the budget stayed full while a socket waited to be
// copied into a loop.
var errNoTransientFD = errors.New("descriptor budget spent: no room to hand the socket to a loop")

func (srv *Server) enrollFailed(mark *acceptMark, err error) {
	srv.fds.give(1)
	srv.releaseHandshake()
	srv.clients.releaseHandshake(mark.peer)
	srv.met.enrollErrors.Inc()
	srv.logSampled(&srv.acceptLog, slog.LevelWarn, "enroll of an accepted connection failed", slog.String("error", err.Error()))
}

func (srv *Server) acquireHandshake() bool {
	n := srv.handshakes.Add(1)
	if m := srv.maxHandshakes.Load(); m > 0 && n > m {
		srv.handshakes.Add(-1)
		return false
	}
	return true
}

func (srv *Server) releaseHandshake() { srv.handshakes.Add(-1) }

// isResourceError reports errors that mean the process or the system ran
// out of something (descriptors, buffers), rather than a peer's fault.
func isResourceError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
