package engine

import (
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// browserConn is the browser side of a connection, as the HTTP code, the
// relay and the close path see it. This is the seam where the TLS
// transport goes: today it is the plain gnet socket, and each method is
// exactly the zero-copy call that used to be made on the socket directly
// (writes go to the socket at once, gnet copies only what it refuses).
type browserConn struct {
	c       gnet.Conn // nil once closed, or while parked
	closeBy int64     // when a graceful close gives up (coarse clock); 0 while open
	iov     [2][]byte
}

func (b *browserConn) write(p []byte) { _, _ = b.c.Write(p) }

// writev sends a frame header and its payload in one system call; payload
// is never copied by us and is not kept after the call.
func (b *browserConn) writev(hdr, payload []byte) {
	b.iov = [2][]byte{hdr, payload}
	_, _ = b.c.Writev(b.iov[:])
	b.iov = [2][]byte{} // do not keep gnet's buffer reachable
}

// startClose begins a graceful close that must be over by deadline (coarse
// clock) and reports whether the caller must poll it (pollClose) until the
// queued bytes are written.
func (b *browserConn) startClose(now, deadline int64, grace time.Duration) (wait bool) {
	b.closeBy = deadline
	return b.shutdownWhenDrained(now, grace)
}

// shutdownWhenDrained ends the browser socket gracefully: once gnet has
// written everything queued for it (gnet's own close drops what the socket
// refuses), it shuts down the sending side, so the browser reads our last
// bytes and then EOF, and keeps reading (and discarding) until the browser
// closes too or grace passes. Closing at once with unread input would make
// the kernel send a reset, which can destroy the close frame or HTTP error
// in flight, and noVNC would show 1006 instead of our reason.
func (b *browserConn) shutdownWhenDrained(now int64, grace time.Duration) (wait bool) {
	if b.c.OutboundBuffered() > 0 {
		return true
	}
	if err := syscall.Shutdown(b.c.Fd(), syscall.SHUT_WR); err != nil {
		_ = b.c.Close()
		return false
	}
	if g := now + int64(grace); g < b.closeBy {
		b.closeBy = g // the sweep closes it then, if the browser does not
	}
	return false
}

// pollClose continues a graceful close from the poll list and reports
// whether it must still wait for the socket to drain.
func (b *browserConn) pollClose(now int64, grace time.Duration) bool {
	if now > b.closeBy {
		_ = b.c.Close()
		return false
	}
	return b.shutdownWhenDrained(now, grace)
}

// expireClose closes the socket once a graceful close is past its deadline.
func (b *browserConn) expireClose(now int64) {
	if b.c != nil && b.closeBy > 0 && now > b.closeBy {
		_ = b.c.Close()
	}
}
