package recorder

import (
	"errors"
	"sync"

	"vncedge/rfb"
)

// The queue between an event loop and a recording's writer goroutine.
//
// The loop appends whole FBS blocks (and whole JSON lines) into fixed-size segments; the writer
// takes every pending segment at once and writes each with one Write call. A block never spans
// two segments (a chunk larger than a segment is split into several blocks with the same time,
// which a player cannot tell from one), so every write ends at a block boundary and a process
// that dies leaves a file that ends with a whole block.
//
// Memory is counted in segments, the memory actually held, not in bytes of data: a budget of
// 4 MiB is 4 MiB of buffers whatever the chunk sizes. The lock is held only to append into a
// segment or to swap slices of segment pointers, never across I/O, so the loop waits at most for
// one such swap.

// segSize is the capacity of a segment: one 64 KiB chunk (what gnet reads at once) plus room for
// the small blocks around it.
const segSize = 72 << 10

// maxBlockData is the most data one block holds so that it fills a segment exactly.
const maxBlockData = segSize - 8

// ErrQueueFull is why a recording is cut when the disk does not keep up: its queue reached its
// budget (Config.QueueBytes) or all recordings together reached Config.TotalQueueBytes.
var ErrQueueFull = errors.New("recorder: recording queue full (the disk is not keeping up)")

type segment struct{ b []byte }

// segPool is a free list of segments shared by a Recorder's recordings. It is a plain stack,
// not a sync.Pool, so that steady-state reuse is deterministic (sync.Pool drops entries at every
// GC and at random under the race detector) and the memory it keeps idle is bounded.
type segPool struct {
	mu   sync.Mutex
	free []*segment
	// keep is how many idle segments the pool holds at most; grown with the recordings live.
	keep int
}

func (p *segPool) get() *segment {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		s := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return s
	}
	p.mu.Unlock()
	return &segment{b: make([]byte, 0, segSize)}
}

func (p *segPool) put(s *segment) {
	s.b = s.b[:0]
	p.mu.Lock()
	if len(p.free) < p.keep {
		p.free = append(p.free, s)
	}
	p.mu.Unlock()
}

// resize sets how many idle segments the pool keeps, dropping any beyond it.
func (p *segPool) resize(keep int) {
	p.mu.Lock()
	p.keep = keep
	for len(p.free) > keep {
		p.free[len(p.free)-1] = nil
		p.free = p.free[:len(p.free)-1]
	}
	p.mu.Unlock()
}

// stream is the pending segments of one file, oldest first; the last one is still appended to.
type stream struct{ segs []*segment }

// queue is the state a loop and a writer share, under mu.
type queue struct {
	mu     sync.Mutex
	fbs    stream
	input  stream
	held   int // segments held: pending plus being written
	max    int // the budget in segments
	idle   bool
	ended  bool
	reason string // why the session ended
	endMS  uint32
	// stop is why queueing stopped early (ErrQueueFull or a writer's error); nil while
	// recording. Set once, at stopMS.
	stop   error
	stopMS uint32
	// changes counts pixel format changes noted on the loop (the last at changeMS, to lastPF),
	// for the writer to log.
	changes  int
	changeMS uint32
	lastPF   rfb.PixelFormat
	// The files' paths, set by the writer.
	fbsPath, inputPath string
}

// errStopped is returned by the append functions when nothing more may be queued.
var errStopped = errors.New("recorder: recording stopped")

// room returns a segment of st with at least n free bytes, taking a new one from the pool when
// the last is too full; the caller holds q.mu. A new segment over the budget is refused.
func (r *Recording) room(st *stream, n int) (*segment, error) {
	q := &r.q
	if k := len(st.segs); k > 0 {
		if s := st.segs[k-1]; cap(s.b)-len(s.b) >= n {
			return s, nil
		}
	}
	if q.held >= q.max || !r.rec.reserve() {
		return nil, ErrQueueFull
	}
	s := r.rec.pool.get()
	q.held++
	st.segs = append(st.segs, s)
	held := int64(q.held) * segSize
	r.rec.stats.noteQueue(held)
	return s, nil
}

// appendBlocks queues data as FBS blocks stamped ms; the caller holds q.mu.
func (r *Recording) appendBlocks(data []byte, ms uint32) error {
	for len(data) > 0 {
		k := min(len(data), maxBlockData)
		s, err := r.room(&r.q.fbs, rfb.FBSBlockLen(k))
		if err != nil {
			return err
		}
		s.b = rfb.AppendFBSBlock(s.b, data[:k], ms)
		data = data[k:]
	}
	return nil
}

// appendRaw queues b at the end of the FBS stream as it is (the file header); the caller holds
// q.mu.
func (r *Recording) appendRaw(b []byte) error {
	s, err := r.room(&r.q.fbs, len(b))
	if err != nil {
		return err
	}
	s.b = append(s.b, b...)
	return nil
}

// batch is what the writer takes from the queue in one go.
type batch struct {
	fbs, input []*segment
	ended      bool
	reason     string
	endMS      uint32
	stop       error
	stopMS     uint32
	changes    int
	changeMS   uint32
	lastPF     rfb.PixelFormat
}

func (b *batch) empty() bool { return len(b.fbs) == 0 && len(b.input) == 0 }

// take moves every pending segment into b (whose slices it reuses) and copies the flags; with
// nothing to do it marks the writer idle, so the next append wakes it.
func (r *Recording) take(b *batch) {
	q := &r.q
	q.mu.Lock()
	b.fbs, q.fbs.segs = q.fbs.segs, b.fbs[:0]
	b.input, q.input.segs = q.input.segs, b.input[:0]
	b.ended, b.reason, b.endMS, b.stop, b.stopMS = q.ended, q.reason, q.endMS, q.stop, q.stopMS
	b.changes, b.changeMS, b.lastPF = q.changes, q.changeMS, q.lastPF
	q.idle = b.empty() && !q.ended && q.stop == nil
	q.mu.Unlock()
}

// release gives the segments of a written batch back to the pool.
func (r *Recording) release(segs []*segment) {
	if len(segs) == 0 {
		return
	}
	for i, s := range segs {
		r.rec.pool.put(s)
		segs[i] = nil
	}
	r.q.mu.Lock()
	r.q.held -= len(segs)
	r.q.mu.Unlock()
	r.rec.unreserve(len(segs))
}

// wakeLocked wakes the writer if it waits for work; the caller holds q.mu.
func (r *Recording) wakeLocked() {
	if r.q.idle {
		r.q.idle = false
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}
