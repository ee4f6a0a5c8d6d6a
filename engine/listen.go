package engine

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
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

// listener is one listening socket and its accept goroutine.
type listener struct {
	srv *Server
	ln  *net.TCPListener
	tls bool
}

func (srv *Server) listen(addr string) (*listener, error) {
	// No TCP keepalive on browser sockets: the engine's own ping and pong
	// deadline find dead browsers, and Go's default (15 s) costs four
	// setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &listener{srv: srv, ln: ln.(*net.TCPListener)}, nil
}

// Accept backoff after a resource error: long enough that a process out
// of descriptors does not spin, short enough to notice they came back.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = 500 * time.Millisecond
)

// run accepts until the listener is closed.
func (l *listener) run() {
	srv := l.srv
	defer srv.listenersDone.Done()
	backoff := time.Duration(0)
	for {
		c, err := l.ln.AcceptTCP()
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

// admit applies the accept-time limits to c and hands it to a loop. Two
// descriptors are counted until gnet has made its own copy of the socket
// and closed ours.
func (srv *Server) admit(c *net.TCPConn, tls bool) {
	var peer netip.Addr
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		peer = ap.Addr().Unmap()
	}
	why := shedNone
	mark := acceptMark{tls: tls}
	switch {
	case !srv.fds.take(2):
		why = shedDescriptors
	case !srv.acquireHandshake():
		srv.fds.give(2)
		why = shedHandshakes
	default:
		if !srv.proxies.contains(peer) {
			mark.peer = peer
		}
		if !srv.clients.acquireHandshake(mark.peer) {
			srv.releaseHandshake()
			srv.fds.give(2)
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
// descriptor ceiling, say) is counted and its admission undone; a success
// gives back the descriptor gnet closed after making its copy.
func (srv *Server) enrollAccepted(cli *gnet.Client) {
	for p := range srv.enrolls {
		if _, err := cli.EnrollContext(p.c, p.mark); err != nil {
			srv.enrollFailed(p.mark, err)
			continue
		}
		srv.fds.give(1)
	}
}

func (srv *Server) enrollFailed(mark *acceptMark, err error) {
	srv.fds.give(2)
	srv.releaseHandshake()
	srv.clients.releaseHandshake(mark.peer)
	srv.met.enrollErrors.Inc()
	srv.logSampled(&srv.acceptLog, slog.LevelWarn, "enroll of an accepted connection failed", slog.String("error", err.Error()))
}

func (srv *Server) acquireHandshake() bool {
	n := srv.handshakes.Add(1)
	if m := srv.maxHandshakes; m > 0 && n > int64(m) {
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
