package tlsio

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Errors of a Conn's life. Handshake and record errors from crypto/tls are returned as they are
// (remote alerts are *net.OpError values, for instance).
var (
	// ErrTruncated means the socket ended without the peer's close_notify: the stream may have
	// been cut by an attacker or a crash. It matches errors.Is(err, io.ErrUnexpectedEOF).
	ErrTruncated = fmt.Errorf("tlsio: connection ended without close_notify: %w", io.ErrUnexpectedEOF)
	// ErrNotEstablished is returned by the calls that need a finished handshake.
	ErrNotEstablished = errors.New("tlsio: handshake not finished")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("tlsio: connection closed")
)

// state is the loop's view of a Conn.
type state uint8

const (
	stHello     state = iota // server: waiting for a complete ClientHello
	stHandshake              // a worker runs the handshake
	stOpen                   // established: records are read and written on the loop
	stFailed                 // the handshake or the record layer failed; err says why
	stClosed                 // Close was called
)

// Conn is one TLS connection driven by an event loop: a crypto/tls.Conn over a wire that the
// loop feeds. See the package documentation for who calls what, and when.
type Conn struct {
	p  *Pool
	w  wire
	tc *tls.Conn

	state state
	err   error // why the Conn stopped (stFailed), or the sticky end of its input in stOpen

	// Written by the worker under w.mu, read by the loop under w.mu.
	hsDone bool
	hsErr  error

	// Loop only, once established.
	plain     *[]byte // decrypted bytes not yet taken by the caller; nil when there are none
	poff      int     // start of the untaken part of plain
	consumed  int64   // lower bound of the records crypto/tls has consumed
	drained   bool    // crypto/tls holds no decrypted bytes that Read has not returned
	probe     bool    // crypto/tls may hold records we cannot account for (read ahead in the handshake)
	peerClose bool    // the peer's close_notify was read
	wasOpen   bool    // the handshake succeeded (no worker can hold crypto/tls's locks any more)
}

func newConn(p *Pool, sink io.Writer, notify func()) *Conn {
	c := &Conn{p: p, drained: true}
	c.w.init(p, sink, notify)
	return c
}

// NewServer returns the server side of a TLS connection whose socket was just accepted. sink
// takes every byte to send (the engine passes the gnet.Conn: its Write is called on the loop
// only); notify is called on a worker goroutine when the handshake has output for the loop or
// has ended, and must only schedule Progress on the loop (the engine uses EventLoop.Execute).
// No goroutine runs until Input has seen a complete ClientHello.
func NewServer(p *Pool, cfg *tls.Config, sink io.Writer, notify func()) *Conn {
	c := newConn(p, sink, notify)
	c.tc = tls.Server(&c.w, cfg)
	return c
}

// NewClient starts the client side of a TLS connection on a worker, for a socket that already
// runs on a loop (VeNCrypt: the TLS handshake begins after some plaintext RFB messages). sink
// and notify are as for NewServer; the ClientHello comes out through notify and Progress. It
// fails with ErrBusy when the handshake workers and their queue are full.
func NewClient(p *Pool, cfg *tls.Config, sink io.Writer, notify func()) (*Conn, error) {
	c := newConn(p, sink, notify)
	c.tc = tls.Client(&c.w, cfg)
	c.state = stHandshake
	if err := p.submit(c); err != nil {
		c.state, c.err = stFailed, err
		return nil, err
	}
	return c, nil
}

// Client runs a client handshake over nc, a socket the engine dialled off the loop, blocking
// until it ends or ctx is done. On failure nc has been closed. On success the Conn no longer touches nc,
// which the engine hands to the loop (gnet's Enroll dups and closes it); then SetSink gives it
// the enrolled gnet.Conn, and Input(nil) returns what the server sent right after its Finished:
// crypto/tls may already have read it from nc, and it stays inside the Conn until then.
func Client(ctx context.Context, p *Pool, nc net.Conn, cfg *tls.Config) (*Conn, error) {
	c := newConn(p, nil, nil)
	c.w.mode, c.w.nc = modeDirect, nc
	c.tc = tls.Client(&c.w, cfg)
	if err := c.tc.HandshakeContext(ctx); err != nil {
		c.w.Close()
		return nil, err
	}
	c.w.mu.Lock()
	c.w.mode, c.w.nc = modeLoop, nil
	c.w.mu.Unlock()
	c.state, c.probe, c.wasOpen = stOpen, true, true
	return c, nil
}

// SetSink sets where the Conn's output goes (for a Conn from Client: the enrolled gnet.Conn)
// and writes anything queued while there was none. SetSink(nil) when the engine parks the
// socket (its gnet.Conn is closed and must not be written): output is then queued in the Conn
// until SetSink gives it the re-enrolled gnet.Conn. Loop only.
func (c *Conn) SetSink(sink io.Writer) error {
	w := &c.w
	w.mu.Lock()
	w.sink = sink
	if w.mode != modeLoop {
		w.mu.Unlock()
		return nil
	}
	to, out := w.takeOutLocked()
	w.mu.Unlock()
	return w.writeOut(to, out) // unlocked: see wire.Write
}

// runHandshake is the worker's job.
func (c *Conn) runHandshake(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := c.tc.HandshakeContext(ctx)
	cancel()
	w := &c.w
	w.mu.Lock()
	c.hsDone, c.hsErr = true, err
	if err == nil {
		w.mode = modeLoop
	}
	call := !w.notified && w.notify != nil && !w.abandoned
	w.notified = w.notified || call
	w.mu.Unlock()
	if call {
		w.notify()
	}
}

// sync collects what the worker left for the loop: queued output goes to the sink, and a
// finished handshake moves the Conn on. It reports whether the handshake is over.
func (c *Conn) sync() bool {
	if c.state != stHandshake {
		return c.state != stHello
	}
	w := &c.w
	w.mu.Lock()
	w.notified = false
	to, out := w.takeOutLocked()
	w.mu.Unlock()
	// Written unlocked (see wire.Write); the worker may queue more meanwhile,
	// after this output, and the next sync writes that.
	err := w.writeOut(to, out)
	if c.state != stHandshake {
		return true // closed from within that write (the socket failed)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !c.hsDone {
		if err != nil {
			// The socket refused the handshake's output: nothing the worker writes can arrive.
			c.state, c.err = stFailed, err
			w.closed = true
			w.cond.Broadcast()
			return true
		}
		return false
	}
	switch {
	case c.hsErr != nil:
		c.state, c.err = stFailed, c.hsErr
	case err != nil:
		c.state, c.err = stFailed, err
	default:
		c.state, c.probe, c.wasOpen = stOpen, true, true
	}
	w.releaseIn() // the worker may have read everything: an idle session keeps no buffer
	return true
}

// Progress is the loop's answer to notify: it writes the handshake output the worker queued to
// the sink and reports whether the handshake is over. done with a nil error means established
// (call Input next, with gnet's buffered bytes or nil: the client's Finished may have come with
// application data that is already inside); done with an error means failed (crypto/tls has
// queued its alert, which this call wrote: close the socket). Calling it when nothing happened
// is harmless.
func (c *Conn) Progress() (done bool, err error) {
	switch c.state {
	case stHello:
		return false, nil
	case stClosed:
		return true, ErrClosed
	}
	if !c.sync() {
		return false, nil
	}
	switch c.state {
	case stFailed:
		return true, c.err
	case stClosed:
		return true, ErrClosed
	}
	return true, nil
}

// Established reports whether the handshake has finished successfully (as of the last Input or
// Progress).
func (c *Conn) Established() bool { return c.state == stOpen }

// Input is called on the loop with the bytes the peer has sent that Input has not used yet
// (gnet's Peek(-1)): it returns how many of them it used, which the caller Discards (only when
// more than 0: gnet's Discard(0) drops everything it holds); the others must be offered again,
// followed by newer ones, next time. in is only read during the call.
//
// Before the handshake it waits (uses nothing) until in starts with a complete ClientHello, then
// takes everything and starts the handshake on a worker; ErrPlainHTTP, ErrNotTLS and the other
// ScanClientHello errors refuse a peer that is not speaking TLS, and ErrBusy one that found no
// worker. During the handshake it copies in for the worker. Once established it decrypts whole
// records into the Conn's plaintext buffer (see Peek) until the buffer is full or no complete
// record is left; a partial record stays in in, unused.
//
// An error is final. It may come with plaintext that arrived before it (process Peek first):
// io.EOF means the peer sent close_notify; anything else is a handshake or record failure
// (crypto/tls has queued an alert for the peer, already handed to the sink).
func (c *Conn) Input(in []byte) (int, error) {
	switch c.state {
	case stHello:
		_, err := ScanClientHello(in, c.p.maxHello)
		if err == ErrShort {
			return 0, nil
		}
		if err != nil {
			c.state, c.err = stFailed, err
			return 0, err
		}
		c.w.mu.Lock()
		used := c.w.feed(in)
		c.w.heldBack = used < len(in)
		c.w.mu.Unlock()
		c.state = stHandshake
		if err := c.p.submit(c); err != nil {
			c.state, c.err = stFailed, err
			return used, err
		}
		return used, nil
	case stHandshake:
		if !c.sync() {
			c.w.mu.Lock()
			used := c.w.feed(in)
			c.w.heldBack = used < len(in)
			c.w.mu.Unlock()
			return used, nil
		}
		if c.state != stOpen {
			return 0, c.err
		}
		return c.decrypt(in)
	case stOpen:
		return c.decrypt(in)
	case stClosed:
		return 0, ErrClosed
	}
	return 0, c.err
}

// decrypt runs crypto/tls's record layer over in.
func (c *Conn) decrypt(in []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	w := &c.w
	w.mu.Lock()
	w.lend(in)
	w.mu.Unlock()
	for c.err == nil && c.mayRead() {
		if c.plain == nil {
			c.plain = c.p.getBuf()
		} else if c.poff > 0 {
			n := copy(*c.plain, (*c.plain)[c.poff:])
			*c.plain, c.poff = (*c.plain)[:n], 0
		}
		buf := *c.plain
		space := buf[len(buf):cap(buf)]
		if len(space) == 0 {
			break
		}
		n, err := c.tc.Read(space)
		*c.plain = buf[:len(buf)+n]
		if n > 0 {
			if c.drained {
				// crypto/tls had nothing decrypted, so this read consumed at least one record.
				c.consumed++
			}
			c.drained = n < len(space)
		}
		if err == errWouldBlock {
			// crypto/tls asks for bytes only once it has consumed every whole record it was
			// given. If that is every complete record seen, the count is exact; if some were
			// seen but not offered this time, the lower bound stays (raising it to the count
			// would strand records inside crypto/tls once they are offered again).
			w.mu.Lock()
			if w.handed >= w.rs.end {
				c.consumed, c.probe = w.rs.complete, false
			}
			w.mu.Unlock()
			c.drained = true
			break
		}
		if err != nil {
			c.endInput(err)
		}
	}
	w.mu.Lock()
	used := w.unlend()
	w.mu.Unlock()
	if c.plain != nil && len(*c.plain) == c.poff {
		c.releasePlain()
	}
	return used, c.err
}

// mayRead reports whether a crypto/tls Read can make progress. Calling it when it cannot costs
// an allocation inside crypto/tls (readFromUntil's reader escapes), so the loop only calls it
// when a record may be waiting or the end of the input has to be reported.
func (c *Conn) mayRead() bool {
	if c.probe || !c.drained {
		return true
	}
	w := &c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.handed < w.rs.end || w.rs.complete > c.consumed || (w.eof && !w.eofOut)
}

// endInput turns crypto/tls's read error into the Conn's final input error.
func (c *Conn) endInput(err error) {
	w := &c.w
	w.mu.Lock()
	truncated := w.eofOut
	w.mu.Unlock()
	switch {
	case err == io.EOF && !truncated:
		c.peerClose = true
		c.err = io.EOF
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		c.err = ErrTruncated
	default:
		c.err = err
	}
}

// Peek returns the decrypted bytes not taken yet. The slice is valid until the next Input,
// Discard or Close; the caller may modify it in place (unmasking, for instance).
func (c *Conn) Peek() []byte {
	if c.plain == nil {
		return nil
	}
	return (*c.plain)[c.poff:]
}

// Buffered returns len(Peek()).
func (c *Conn) Buffered() int {
	if c.plain == nil {
		return 0
	}
	return len(*c.plain) - c.poff
}

// Discard takes n decrypted bytes. When none are left the buffer goes back to the pool, so an
// idle session holds no plaintext buffer.
func (c *Conn) Discard(n int) {
	if c.plain == nil || n <= 0 {
		return
	}
	c.poff = min(c.poff+n, len(*c.plain))
	if c.poff == len(*c.plain) {
		c.releasePlain()
	}
}

func (c *Conn) releasePlain() {
	c.p.putBuf(c.plain)
	c.plain, c.poff = nil, 0
}

// Write encrypts p and hands the records to the sink, one Write each, before it returns; the
// sink must take them at once (gnet's Write copies whatever the socket refused). Loop only, once
// established.
func (c *Conn) Write(p []byte) (int, error) {
	if c.state != stOpen {
		return 0, c.notOpen()
	}
	return c.tc.Write(p)
}

// Writev writes the concatenation of bs in as few records as crypto/tls allows. Pieces are
// gathered into a pooled record-sized buffer, so a frame header and its payload share a record
// instead of costing one each; whole records' worth of a large piece are encrypted straight
// from it, without the copy. The records of one call go to the sink in one write (a cork of
// corkSize, flushed as it fills), not one write per record: a 64 KiB frame was five socket
// writes. Loop only, once established.
func (c *Conn) Writev(bs [][]byte) (written int, err error) {
	if c.state != stOpen {
		return 0, c.notOpen()
	}
	var scratch *[]byte
	size := 0
	for _, b := range bs {
		size += len(b)
	}
	if size > MaxPlaintext {
		c.w.startCork() // more than one record: gather them for one socket write
	}
	defer func() {
		if scratch != nil {
			c.p.putBuf(scratch)
		}
		if ferr := c.w.flushCork(); err == nil {
			err = ferr
		}
	}()
	total := 0
	flush := func() error {
		if scratch == nil || len(*scratch) == 0 {
			return nil
		}
		n, err := c.tc.Write(*scratch)
		total += n
		*scratch = (*scratch)[:0]
		return err
	}
	for _, b := range bs {
		for len(b) > 0 {
			if (scratch == nil || len(*scratch) == 0) && len(b) >= MaxPlaintext {
				// Whole records straight from b; the tail is gathered with what follows.
				k := len(b) - len(b)%MaxPlaintext
				n, err := c.tc.Write(b[:k])
				total += n
				if err != nil {
					return total, err
				}
				b = b[k:]
				continue
			}
			if scratch == nil {
				scratch = c.p.getBuf()
			}
			k := min(len(b), MaxPlaintext-len(*scratch))
			*scratch = append(*scratch, b[:k]...)
			b = b[k:]
			if len(*scratch) == MaxPlaintext {
				if err := flush(); err != nil {
					return total, err
				}
			}
		}
	}
	return total, flush()
}

// CloseWrite sends close_notify (through the sink): after it the engine shuts down the socket's
// write side. The Conn can still read. Loop only, once established.
func (c *Conn) CloseWrite() error {
	if c.state != stOpen {
		return c.notOpen()
	}
	return c.tc.CloseWrite()
}

// EOF tells the Conn that the socket's read side has ended (the peer's FIN, or gnet's OnClose).
// It decrypts whatever whole records are left (see Peek) and returns io.EOF when the peer had
// sent close_notify, ErrTruncated when it had not, or the handshake's error if there was one.
func (c *Conn) EOF() error {
	w := &c.w
	w.mu.Lock()
	w.eof = true
	w.cond.Broadcast()
	w.mu.Unlock()
	switch c.state {
	case stHello:
		c.state, c.err = stFailed, ErrTruncated
		return c.err
	case stHandshake:
		if !c.sync() {
			return ErrTruncated // the worker's read now fails with io.EOF; it notifies as usual
		}
	case stClosed:
		return ErrClosed
	}
	if c.state != stOpen {
		return c.err
	}
	if c.err == nil {
		c.decrypt(nil)
	}
	if c.err == nil {
		// The plaintext buffer filled before crypto/tls reached the end.
		return nil
	}
	return c.err
}

// Close releases the Conn's buffers and stops its handshake if one runs (the worker's read
// fails at once). It sends nothing: call CloseWrite first for a clean end. notify may still be
// called once afterwards; Progress then reports ErrClosed. Idempotent.
func (c *Conn) Close() error {
	if c.state == stClosed {
		return nil
	}
	c.state = stClosed
	c.w.mu.Lock()
	c.w.abandoned = true
	c.w.mu.Unlock()
	c.w.Close()
	if c.plain != nil {
		c.releasePlain()
	}
	return nil
}

func (c *Conn) notOpen() error {
	switch c.state {
	case stClosed:
		return ErrClosed
	case stFailed:
		return c.err
	}
	return ErrNotEstablished
}

// ConnectionState returns crypto/tls's view of the connection: version, cipher suite, ALPN,
// server name, peer certificates. It copies, so call it once (at session open), not per message.
// Before the handshake has succeeded it returns the zero value: asking crypto/tls then would
// wait for the worker's lock, on the loop.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if !c.wasOpen {
		return tls.ConnectionState{}
	}
	return c.tc.ConnectionState()
}

// PeerClosed reports whether the peer's close_notify has been read.
func (c *Conn) PeerClosed() bool { return c.peerClose }
