package tlsio

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBusy means a complete ClientHello (or a client handshake) found every worker busy and the
// queue full. The engine closes the connection and counts it: the process is at its handshake
// capacity, which is the point of the bound.
var ErrBusy = errors.New("tlsio: handshake capacity reached")

// bufSize is the size of every pooled buffer: one record's plaintext with room to spare, so a
// read into an empty buffer always takes a whole record and one Write of a full buffer makes
// one full record.
const bufSize = MaxPlaintext + 1024

// corkSize is the capacity of a cork buffer (wire.cork): the records of one Writev gathered
// for one socket write, eight records' worth; a call that makes more flushes as it goes.
const corkSize = 8 * (MaxPlaintext + 256)

// Pool is what the connections of one process share: the bounded handshake workers and the
// buffers lent to connections while they hold bytes. It is safe for concurrent use. Every Conn
// needs one; the engine makes one at start.
type Pool struct {
	workers  int
	queueMax int
	timeout  time.Duration
	maxHello int
	maxInput int

	mu      sync.Mutex
	running int
	queue   []*Conn // waiting handshakes, oldest at head
	head    int

	started  atomic.Uint64
	rejected atomic.Uint64

	bufs  sync.Pool // *[]byte of cap bufSize
	corks sync.Pool // *[]byte of cap corkSize
}

// PoolStats is a snapshot of the handshake workers, for metrics.
type PoolStats struct {
	Running  int    // handshakes on a worker now
	Queued   int    // complete ClientHellos waiting for a worker
	Started  uint64 // handshakes given to a worker since start
	Rejected uint64 // handshakes refused with ErrBusy since start
}

// NewPool returns a pool with the bounds of cfg, which must have passed Validate.
func NewPool(cfg Config) *Pool {
	return &Pool{
		workers:  cfg.HandshakeWorkers,
		queueMax: cfg.HandshakeQueue,
		timeout:  cfg.HandshakeTimeout,
		maxHello: cfg.MaxClientHello,
		maxInput: cfg.MaxHandshakeInput,
		bufs:     sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }},
		corks:    sync.Pool{New: func() any { b := make([]byte, 0, corkSize); return &b }},
	}
}

// Stats returns the current numbers.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	s := PoolStats{Running: p.running, Queued: len(p.queue) - p.head}
	p.mu.Unlock()
	s.Started = p.started.Load()
	s.Rejected = p.rejected.Load()
	return s
}

// submit runs c's handshake on a worker, now or when one frees up, or refuses with ErrBusy.
// Workers are goroutines started on demand that exit when the queue is empty, so an idle
// process holds none.
func (p *Pool) submit(c *Conn) error {
	p.mu.Lock()
	if p.running < p.workers {
		p.running++
		p.mu.Unlock()
		p.started.Add(1)
		go p.work(c)
		return nil
	}
	if len(p.queue)-p.head >= p.queueMax {
		p.mu.Unlock()
		p.rejected.Add(1)
		return ErrBusy
	}
	if p.head > 0 && len(p.queue) == cap(p.queue) {
		// Slide the live part down instead of letting append grow the array forever.
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	return nil
}

// work runs handshakes until none is waiting.
func (p *Pool) work(c *Conn) {
	for c != nil {
		c.runHandshake(p.timeout)
		p.mu.Lock()
		c = nil
		if p.head < len(p.queue) {
			c = p.queue[p.head]
			p.queue[p.head] = nil
			p.head++
			p.started.Add(1)
			if p.head == len(p.queue) {
				p.queue, p.head = p.queue[:0], 0
			}
		} else {
			p.running--
		}
		p.mu.Unlock()
	}
}

// getBuf lends an empty buffer of capacity bufSize. Buffers travel as pointers so that
// lending and returning them allocates nothing.
func (p *Pool) getBuf() *[]byte {
	b := p.bufs.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// putBuf takes a buffer back. One that append grew past bufSize is left to the collector, so
// the pool never fills with large arrays after a rare large handshake.
func (p *Pool) putBuf(b *[]byte) {
	if b == nil || cap(*b) != bufSize {
		return
	}
	*b = (*b)[:0]
	p.bufs.Put(b)
}

// getCork lends an empty cork buffer; putCork takes it back. Only a Writev in progress holds
// one, so an idle connection holds none.
func (p *Pool) getCork() *[]byte {
	b := p.corks.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

func (p *Pool) putCork(b *[]byte) {
	*b = (*b)[:0]
	p.corks.Put(b)
}
