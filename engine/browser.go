package engine

import (
	"errors"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"vncedge/engine/tlsio"
)

// browserConn is the browser side of a connection, as the HTTP code, the
// relay and the close path see it: the seam between them and the
// transport. Plain (tls == nil), each method is exactly the zero-copy call
// on the gnet socket it stands for (writes go to the socket at once, gnet
// copies only what it refuses; input is read in place in gnet's buffer).
// With TLS (--tls-listen), input is what engine/tlsio decrypted from
// gnet's buffer, and writes are encrypted on the loop into records that go
// to the same socket.
type browserConn struct {
	c       gnet.Conn   // nil once closed, or while parked
	tls     *tlsio.Conn // nil for plain connections
	tlsErr  error       // the TLS layer's end (io.EOF for close_notify), once its plaintext is read
	closeBy int64       // when a graceful close gives up (coarse clock); 0 while open
}

// inbound is how many input bytes are ready to be read with peek.
func (b *browserConn) inbound() int {
	if b.tls == nil {
		return b.c.InboundBuffered()
	}
	if b.tls.Buffered() == 0 && b.tlsErr == nil {
		b.decrypt()
	}
	return b.tls.Buffered()
}

// peek returns up to n ready input bytes (all of them for n <= 0); the
// caller may change them in place (unmasking) and must discard them before
// the callback ends.
func (b *browserConn) peek(n int) []byte {
	if b.tls == nil {
		p, _ := b.c.Peek(n)
		return p
	}
	p := b.tls.Peek()
	if n > 0 && n < len(p) {
		p = p[:n]
	}
	return p
}

// discard takes n bytes of input; never 0 on a plain socket: gnet's
// Discard(0) drops everything.
func (b *browserConn) discard(n int) {
	if n <= 0 {
		return
	}
	if b.tls == nil {
		_, _ = b.c.Discard(n)
		return
	}
	b.tls.Discard(n)
}

// held is every input byte the proxy holds for this browser, read or not
// (for the caps on unread input).
func (b *browserConn) held() int {
	n := b.c.InboundBuffered()
	if b.tls != nil {
		n += b.tls.Buffered()
	}
	return n
}

// unreadRaw is what gnet holds that this side has not taken: a park (which
// closes gnet's copy of the socket) would drop it.
func (b *browserConn) unreadRaw() int { return b.c.InboundBuffered() }

func (b *browserConn) write(p []byte) {
	if b.tls != nil {
		_, _ = b.tls.Write(p)
		return
	}
	_, _ = b.c.Write(p)
}

// writev sends a frame header and its payload in one system call (plain)
// or one record (TLS); payload is never copied by us and not kept after.
// iov is the loop's scratch (loopState.iov): a local array would escape
// into the interface call and cost an allocation per frame.
func (b *browserConn) writev(iov *[2][]byte, hdr, payload []byte) {
	*iov = [2][]byte{hdr, payload}
	if b.tls != nil {
		_, _ = b.tls.Writev(iov[:])
	} else {
		_, _ = b.c.Writev(iov[:])
	}
	*iov = [2][]byte{} // do not keep gnet's buffer reachable
}

// writeRaw writes bytes that are not the connection's payload stream: a
// plain-text answer to a client that spoke HTTP to the TLS port.
func (b *browserConn) writeRaw(p []byte) { _, _ = b.c.Write(p) }

// decrypt moves ciphertext from gnet's buffer into the TLS layer.
func (b *browserConn) decrypt() {
	in, _ := b.c.Peek(-1)
	used, err := b.tls.Input(in)
	if used > 0 {
		_, _ = b.c.Discard(used)
	}
	if err != nil {
		b.tlsErr = err
	}
}

// tlsResult is what tlsIn found.
type tlsResult uint8

const (
	tlsReady     tlsResult = iota // plaintext may be read (or nothing is there yet)
	tlsWaiting                    // the handshake runs; nothing to read
	tlsFailed                     // close the socket
	tlsPlainHTTP                  // an HTTP request on the TLS port: answer in plain text, then close
)

// tlsIn runs the TLS layer over what gnet read: the handshake while it
// lasts (on a worker, announced through Wake), then decryption on the loop.
func (b *browserConn) tlsIn() tlsResult {
	t := b.tls
	if !t.Established() {
		in, _ := b.c.Peek(-1)
		used, err := t.Input(in)
		if used > 0 {
			_, _ = b.c.Discard(used)
		}
		if err == nil {
			var done bool
			if done, err = t.Progress(); err == nil && !done {
				return tlsWaiting
			}
		}
		if err != nil {
			if errors.Is(err, tlsio.ErrPlainHTTP) {
				return tlsPlainHTTP
			}
			b.tlsErr = err
			return tlsFailed
		}
	}
	if b.tlsErr == nil {
		b.decrypt()
	}
	return tlsReady
}

// tlsEnded reports whether the TLS layer has ended (the browser's
// close_notify, or a record failure) and everything it decrypted before has
// been read: the connection is over.
func (b *browserConn) tlsEnded() bool {
	return b.tls != nil && b.tlsErr != nil && b.tls.Buffered() == 0
}

// park and resume move the TLS layer's output with the socket.
func (b *browserConn) parked() {
	if b.tls != nil {
		_ = b.tls.SetSink(nil)
	}
}

func (b *browserConn) resumed(c gnet.Conn) {
	b.c = c
	if b.tls != nil {
		_ = b.tls.SetSink(c)
	}
}

// release frees the TLS layer's buffers once the socket is gone.
func (b *browserConn) release() {
	if b.tls != nil {
		_ = b.tls.SetSink(nil)
		_ = b.tls.Close()
	}
}

// startClose begins a graceful close that must be over by deadline (coarse
// clock) and reports whether the caller must poll it (pollClose) until the
// queued bytes are written.
func (b *browserConn) startClose(now, deadline int64, grace time.Duration) (wait bool) {
	b.closeBy = deadline
	if b.tls != nil && b.tls.Established() {
		_ = b.tls.CloseWrite() // close_notify, after everything queued
	}
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
