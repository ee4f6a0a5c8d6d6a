package tlsio

import (
	"io"
	"net"
	"sync"
	"time"
)

// wireMode says who drives a wire and how its Read and Write behave.
type wireMode uint8

const (
	// modeWorker: a handshake runs on a worker goroutine. Read blocks until the loop feeds
	// bytes; Write queues the output and announces it with notify.
	modeWorker wireMode = iota
	// modeLoop: the event loop drives crypto/tls. Read hands over the bytes lent by Input and
	// says "would block" when they are used up; Write goes straight to the sink.
	modeLoop
	// modeDirect: a client handshake runs over the real socket on the dialling goroutine.
	modeDirect
)

// wouldBlock is the temporary net.Error the wire returns when the loop has no more bytes for
// crypto/tls. crypto/tls does not keep a temporary error (readRecordOrCCS in conn.go), so the
// next Read resumes where this one stopped; a partial record stays in its input buffer. It is
// an empty struct so that returning it does not allocate.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsio: no more input (would block)" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlock{}

// wire is the net.Conn that crypto/tls reads records from and writes records to. It has no
// socket of its own except in modeDirect: the loop feeds it and a sink takes its output.
type wire struct {
	p    *Pool
	mu   sync.Mutex
	cond sync.Cond // signalled when input arrives, the input side ends or the wire closes
	mode wireMode
	nc   net.Conn // modeDirect only

	in       *[]byte // fed bytes not handed to crypto/tls yet (modeWorker, and what is left after)
	inOff    int     // start of the unhanded part of in
	borrow   []byte  // modeLoop: the caller's bytes during Conn.Input, after in
	used     int     // bytes of borrow handed to crypto/tls
	handed   int64   // stream offset of the next byte crypto/tls gets
	rs       recordStream
	eof      bool // the peer's side of the socket ended
	eofOut   bool // Read has told crypto/tls so
	heldBack bool // the last feed could not take everything offered (MaxHandshakeInput)

	out      *[]byte   // output nobody could take yet (modeWorker, or no sink)
	cork     *[]byte   // modeLoop, during Conn.Writev: records gathered for one sink write
	sink     io.Writer // takes output in modeLoop
	notify   func()    // modeWorker: called, outside the lock, for output, for held-back input, at the end
	notified bool      // notify was called and the loop has not collected since

	closed    bool
	abandoned bool // the loop closed the Conn: nobody is listening for notify
}

func (w *wire) init(p *Pool, sink io.Writer, notify func()) {
	w.p = p
	w.sink = sink
	w.notify = notify
	w.cond.L = &w.mu
}

// inLen is the number of fed bytes crypto/tls has not been given yet; w.mu held.
func (w *wire) inLen() int {
	if w.in == nil {
		return 0
	}
	return len(*w.in) - w.inOff
}

// feed copies b, or as much of it as MaxHandshakeInput allows, into the wire's own buffer for a
// worker to read, and returns how much it took; w.mu held. What it leaves stays with the caller
// (in gnet's buffer): when the worker has read everything it was given, it asks for more with
// notify.
func (w *wire) feed(b []byte) int {
	b = b[:min(len(b), max(w.p.maxInput-w.inLen(), 0))]
	if len(b) == 0 {
		return 0
	}
	if w.in == nil {
		w.in = w.p.getBuf()
	} else if w.inOff > 0 {
		n := copy(*w.in, (*w.in)[w.inOff:])
		*w.in, w.inOff = (*w.in)[:n], 0
	}
	*w.in = append(*w.in, b...)
	w.rs.scan(b)
	w.cond.Signal()
	return len(b)
}

// lend makes in (the loop's read buffer, whose first byte is the first one crypto/tls has not
// been given) available to Read until unlend, and scans what it had not seen; w.mu held.
func (w *wire) lend(in []byte) {
	base := w.handed + int64(w.inLen()) // stream offset of in[0]
	if seen := w.rs.pos - base; seen < int64(len(in)) {
		w.rs.scan(in[max(seen, 0):])
	}
	w.borrow, w.used = in, 0
}

// unlend ends a loan and says how many of its bytes crypto/tls took; w.mu held.
func (w *wire) unlend() int {
	n := w.used
	w.borrow, w.used = nil, 0
	return n
}

// releaseIn returns the input buffer once it is empty; w.mu held.
func (w *wire) releaseIn() {
	if w.in != nil && w.inLen() == 0 {
		w.p.putBuf(w.in)
		w.in, w.inOff = nil, 0
	}
}

// Read gives crypto/tls the next bytes of the stream.
func (w *wire) Read(p []byte) (int, error) {
	w.mu.Lock()
	if w.mode == modeDirect {
		nc := w.nc
		w.mu.Unlock()
		n, err := nc.Read(p)
		w.mu.Lock()
		w.rs.scan(p[:n])
		w.handed += int64(n)
		w.mu.Unlock()
		return n, err
	}
	defer w.mu.Unlock()
	for w.mode == modeWorker && w.inLen() == 0 && !w.closed && !w.eof {
		if w.heldBack && !w.notified && w.notify != nil {
			// The loop kept bytes back because our buffer was full: ask it to offer them again.
			w.heldBack, w.notified = false, true
			w.mu.Unlock()
			w.notify()
			w.mu.Lock()
			continue
		}
		w.cond.Wait()
	}
	if w.closed {
		return 0, net.ErrClosed
	}
	avail := w.inLen() + len(w.borrow) - w.used
	limit := avail
	if w.mode == modeLoop && !w.eof {
		// Whole records only: a record crypto/tls cannot finish stays with the caller (in
		// gnet's buffer), not in crypto/tls's input buffer, which never shrinks.
		limit = int(min(int64(avail), max(w.rs.end-w.handed, 0)))
	}
	if limit == 0 {
		if w.eof && avail == 0 {
			w.eofOut = true
			return 0, io.EOF
		}
		return 0, errWouldBlock
	}
	p = p[:min(len(p), limit)]
	n := 0
	if w.inLen() > 0 {
		n = copy(p, (*w.in)[w.inOff:])
		w.inOff += n
		if w.mode == modeLoop {
			w.releaseIn()
		}
	}
	if n < len(p) && w.borrow != nil {
		k := copy(p[n:], w.borrow[w.used:])
		w.used += k
		n += k
	}
	w.handed += int64(n)
	return n, nil
}

// Write takes one record (or, during a handshake, one flight) from crypto/tls.
func (w *wire) Write(b []byte) (int, error) {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return 0, net.ErrClosed
	case w.mode == modeDirect:
		nc := w.nc
		w.mu.Unlock()
		return nc.Write(b)
	case w.mode == modeLoop && w.sink != nil && w.cork != nil && len(*w.cork)+len(b) <= cap(*w.cork):
		*w.cork = append(*w.cork, b...) // crypto/tls reuses b for its next record: copy
		w.mu.Unlock()
		return len(b), nil
	case w.mode == modeLoop && w.sink != nil:
		// The sink is written with the lock released: gnet's Write closes
		// a socket that failed synchronously, and the engine's OnClose
		// then calls back into this Conn (SetSink, Close) on this goroutine.
		if w.cork != nil && len(*w.cork) > 0 {
			// The cork is full: what it holds goes first, and b starts it again.
			sink, cork := w.sink, w.cork
			w.mu.Unlock()
			_, err := sink.Write(*cork)
			w.mu.Lock()
			if w.cork == cork { // not flushed or dropped meanwhile (a close under us)
				*cork = append((*cork)[:0], b...)
			}
			w.mu.Unlock()
			if err != nil {
				return 0, err
			}
			return len(b), nil
		}
		sink, out := w.takeOutLocked()
		w.mu.Unlock()
		if err := w.writeOut(sink, out); err != nil {
			return 0, err
		}
		return sink.Write(b)
	}
	if w.out == nil {
		w.out = w.p.getBuf()
	}
	*w.out = append(*w.out, b...)
	call := w.mode == modeWorker && !w.notified && w.notify != nil
	w.notified = w.notified || call
	w.mu.Unlock()
	if call {
		w.notify()
	}
	return len(b), nil
}

// startCork makes the records crypto/tls writes from now on gather in a cork buffer, so
// that one Conn.Writev costs one sink write (one syscall) instead of one per record.
func (w *wire) startCork() {
	w.mu.Lock()
	if w.mode == modeLoop && w.sink != nil && w.cork == nil {
		w.cork = w.p.getCork()
	}
	w.mu.Unlock()
}

// flushCork writes what the cork gathered to the sink, unlocked like Write, and gives the
// buffer back.
func (w *wire) flushCork() error {
	w.mu.Lock()
	cork, sink := w.cork, w.sink
	w.cork = nil
	w.mu.Unlock()
	if cork == nil {
		return nil
	}
	var err error
	if len(*cork) > 0 {
		if sink == nil { // the socket went away meanwhile: keep the output for the next sink
			w.mu.Lock()
			if w.out == nil {
				w.out = w.p.getBuf()
			}
			*w.out = append(*w.out, *cork...)
			w.mu.Unlock()
		} else {
			_, err = sink.Write(*cork)
		}
	}
	w.p.putCork(cork)
	return err
}

// takeOutLocked takes the queued output and the sink to write it to, for
// writeOut once w.mu is released (see Write); nothing when there is no sink.
func (w *wire) takeOutLocked() (io.Writer, *[]byte) {
	if w.sink == nil {
		return nil, nil
	}
	out := w.out
	w.out = nil
	return w.sink, out
}

// writeOut writes output taken by takeOutLocked, without w.mu held, and
// gives its buffer back.
func (w *wire) writeOut(sink io.Writer, out *[]byte) error {
	if out == nil {
		return nil
	}
	var err error
	if len(*out) > 0 {
		_, err = sink.Write(*out)
	}
	w.p.putBuf(out)
	return err
}

// Close ends the wire: a worker blocked in Read returns net.ErrClosed. crypto/tls calls it
// when a handshake's context expires; Conn.Close calls it too.
func (w *wire) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.cond.Broadcast()
	if w.mode == modeDirect && w.nc != nil {
		// The dialling goroutine is blocked in the socket: only closing it wakes that up.
		w.nc.Close()
	}
	if w.in != nil {
		w.p.putBuf(w.in)
		w.in, w.inOff = nil, 0
	}
	if w.out != nil {
		w.p.putBuf(w.out)
		w.out = nil
	}
	return nil
}

// wireAddr stands for the ends of a wire that has no socket: crypto/tls never looks at them,
// but a net.Conn must answer.
type wireAddr struct{}

func (wireAddr) Network() string { return "tlsio" }
func (wireAddr) String() string  { return "tlsio" }

func (w *wire) LocalAddr() net.Addr {
	if nc := w.directConn(); nc != nil {
		return nc.LocalAddr()
	}
	return wireAddr{}
}

func (w *wire) RemoteAddr() net.Addr {
	if nc := w.directConn(); nc != nil {
		return nc.RemoteAddr()
	}
	return wireAddr{}
}

// Deadlines matter only on a real socket. crypto/tls sets a write deadline around close_notify;
// a fed wire never blocks on writes, and a worker's reads end with the handshake's context.
func (w *wire) SetDeadline(t time.Time) error {
	if nc := w.directConn(); nc != nil {
		return nc.SetDeadline(t)
	}
	return nil
}

func (w *wire) SetReadDeadline(t time.Time) error {
	if nc := w.directConn(); nc != nil {
		return nc.SetReadDeadline(t)
	}
	return nil
}

func (w *wire) SetWriteDeadline(t time.Time) error {
	if nc := w.directConn(); nc != nil {
		return nc.SetWriteDeadline(t)
	}
	return nil
}

func (w *wire) directConn() net.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mode == modeDirect {
		return w.nc
	}
	return nil
}
