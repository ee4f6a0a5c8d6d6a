package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"vncedge/rfb"
)

// Defaults of Config.
const (
	// DefaultQueueBytes is one recording's queue budget: a second of a busy desktop at about
	// 30 Mbit/s, so a disk that stalls for a moment does not cut recordings.
	DefaultQueueBytes = 4 << 20
	// DefaultSyncInterval bounds what a power cut loses of a recording: the file is synced at
	// most this long after data was written.
	DefaultSyncInterval = time.Second
	// DefaultMaxWriters is how many file system calls (write, fsync, create, rename) the
	// writers of one Recorder run at once.
	DefaultMaxWriters = 8
	// MinQueueBytes is the smallest queue budget: two segments, one being written while the
	// loop fills the other.
	MinQueueBytes = 2 * segSize
)

// Config is how a Recorder records.
type Config struct {
	// Dir receives the recordings (--record DIR). It must exist.
	Dir string
	// QueueBytes is one recording's queue budget (0: DefaultQueueBytes; at least
	// MinQueueBytes). A recording whose queue would grow past it is cut.
	QueueBytes int
	// TotalQueueBytes bounds the queues of all recordings together (0: no bound beyond
	// QueueBytes per recording); a recording that would cross it is cut.
	TotalQueueBytes int64
	// SyncInterval is how long written data may wait for fsync (0: DefaultSyncInterval;
	// negative: only when the recording closes).
	SyncInterval time.Duration
	// MaxWriters bounds the file system calls in flight (0: DefaultMaxWriters). Every
	// recording has its own writer goroutine, but a goroutine blocked in a system call holds an
	// OS thread; with thousands of recordings on a stalled disk this bound keeps the thread
	// count small (Go aborts the process at 10000 threads) while their queues fill and cut.
	MaxWriters int
	// Logger receives one line per recording when it opens and when it closes, and a warning
	// when it is cut (nil: no logs). The lines carry the session id and target, never tokens.
	Logger *slog.Logger
	// Stats receives the counters (nil: NewStats(nil), private to this Recorder).
	Stats *Stats
	// Create opens a new file for writing; nil means CreateFile. Tests inject slow or failing
	// files here.
	Create func(path string) (File, error)
}

// File is what a recording writes to: an *os.File, or a test's stand-in. When it also has a
// Truncate(size int64) error method, a recording whose write failed half-way is cut back to its
// last whole block.
type File interface {
	Write(p []byte) (int, error)
	Sync() error
	Close() error
}

// CreateFile creates path for writing, readable by its owner only, and fails if it exists
// (O_EXCL, which also refuses a symbolic link planted at path).
func CreateFile(path string) (File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// ErrClosed is returned by Start after Shutdown.
var ErrClosed = errors.New("recorder: shut down")

// Recorder records sessions into one directory. It is safe for concurrent use: every event loop
// calls Start for its own sessions.
type Recorder struct {
	cfg      Config
	log      *slog.Logger
	stats    *Stats
	pool     segPool
	slots    chan struct{} // file system calls in flight
	queued   atomic.Int64  // bytes of segments held by this Recorder's recordings
	maxTotal int64

	mu     sync.Mutex
	closed bool
	live   map[*Recording]struct{}
	wg     sync.WaitGroup
}

// poolPerRecording is how many idle segments the pool keeps per live recording: a recording
// whose writer keeps up cycles through about two.
const (
	poolPerRecording = 4
	poolMin          = 64
)

// New checks cfg and returns a Recorder. Dir must be an existing directory; New is the only
// call that touches the file system outside the writer goroutines.
func New(cfg Config) (*Recorder, error) {
	if cfg.Dir == "" {
		return nil, errors.New("recorder: no directory")
	}
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("recorder: %s is not a directory", cfg.Dir)
	}
	switch {
	case cfg.QueueBytes == 0:
		cfg.QueueBytes = DefaultQueueBytes
	case cfg.QueueBytes < MinQueueBytes:
		return nil, fmt.Errorf("recorder: queue budget of %d bytes is under the minimum of %d", cfg.QueueBytes, MinQueueBytes)
	}
	if cfg.TotalQueueBytes < 0 {
		return nil, fmt.Errorf("recorder: negative total queue budget %d", cfg.TotalQueueBytes)
	}
	if cfg.TotalQueueBytes > 0 && cfg.TotalQueueBytes < int64(cfg.QueueBytes) {
		return nil, fmt.Errorf("recorder: total queue budget %d is under one recording's %d", cfg.TotalQueueBytes, cfg.QueueBytes)
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	switch {
	case cfg.MaxWriters == 0:
		cfg.MaxWriters = DefaultMaxWriters
	case cfg.MaxWriters < 0:
		return nil, fmt.Errorf("recorder: negative writer count %d", cfg.MaxWriters)
	}
	if cfg.Create == nil {
		cfg.Create = CreateFile
	}
	r := &Recorder{cfg: cfg, log: cfg.Logger, stats: cfg.Stats, slots: make(chan struct{}, cfg.MaxWriters),
		maxTotal: cfg.TotalQueueBytes, live: map[*Recording]struct{}{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.stats == nil {
		r.stats = NewStats(nil)
	}
	r.pool.keep = poolMin
	return r, nil
}

// Stats returns the counters the Recorder updates.
func (r *Recorder) Stats() *Stats { return r.stats }

// Session describes the session a recording is of.
type Session struct {
	// ID is the engine's session id; with Begin and Target it names the files.
	ID string
	// Target is the VM as the session names it (host:port or unix:/path).
	Target string
	// Begin is when the session began: names carry it, and every timestamp in the recording
	// counts milliseconds from it. The zero value means now.
	Begin time.Time
	// Version is the RFB version of the synthesized handshake (0: 3.8).
	Version rfb.Version
	// Input also records the browser's key and pointer events as JSON lines
	// (--record-input).
	Input bool
}

// Start begins recording a session and returns at once: it does no I/O (its writer goroutine
// creates the files), so an event loop may call it. The caller then feeds the Recording and ends
// it with End.
func (r *Recorder) Start(s Session) (*Recording, error) {
	if s.Begin.IsZero() {
		s.Begin = time.Now()
	}
	if s.Version == 0 {
		s.Version = rfb.V38
	}
	if s.Version != rfb.V33 && s.Version != rfb.V37 && s.Version != rfb.V38 {
		return nil, fmt.Errorf("recorder: RFB version %v is not 3.3, 3.7 or 3.8", s.Version)
	}
	rec := &Recording{rec: r, sess: s, wake: make(chan struct{}, 1), done: make(chan struct{})}
	rec.q.max = r.cfg.QueueBytes / segSize
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	r.live[rec] = struct{}{}
	r.pool.resize(max(poolMin, poolPerRecording*len(r.live)))
	r.wg.Add(1)
	r.mu.Unlock()
	r.stats.Started.Inc()
	r.stats.active.Add(1)
	rec.q.mu.Lock()
	err := rec.appendRaw([]byte(rfb.FBSHeader))
	rec.q.mu.Unlock()
	if err != nil { // only with a total budget already spent by other recordings
		rec.cut(err, 0)
	}
	go rec.run()
	return rec, nil
}

// forget removes a finished recording.
func (r *Recorder) forget(rec *Recording) {
	r.mu.Lock()
	delete(r.live, rec)
	r.pool.resize(max(poolMin, poolPerRecording*len(r.live)))
	r.mu.Unlock()
	r.wg.Done()
}

// reserve counts one more segment against TotalQueueBytes, refusing it when that is spent.
func (r *Recorder) reserve() bool {
	n := r.queued.Add(segSize)
	if r.maxTotal > 0 && n > r.maxTotal {
		r.queued.Add(-segSize)
		return false
	}
	r.stats.queued.Add(segSize)
	return true
}

func (r *Recorder) unreserve(segs int) {
	r.queued.Add(-int64(segs) * segSize)
	r.stats.queued.Add(-int64(segs) * segSize)
}

// QueuedBytes is the memory this Recorder's queues hold now (the engine may count it in its
// memory budget).
func (r *Recorder) QueuedBytes() int64 { return r.queued.Load() }

// Shutdown refuses new recordings and waits until every live one has been ended (End) and
// written. When ctx ends first, the recordings still live are ended with the reason "vncedge
// shutting down" (their writers still write what is queued, and Done tells when) and Shutdown
// returns an error saying how many there were: a writer blocked on a stalled disk cannot be
// interrupted, and a process that exits then leaves files that end at a whole block.
func (r *Recorder) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	r.mu.Lock()
	left := make([]*Recording, 0, len(r.live))
	for rec := range r.live {
		left = append(left, rec)
	}
	r.mu.Unlock()
	if len(left) == 0 {
		return nil
	}
	for _, rec := range left {
		rec.abort("vncedge shutting down")
	}
	return fmt.Errorf("recorder: %d recordings still writing at shutdown were ended: %w", len(left), ctx.Err())
}

// acquire waits for a file system call slot; the writer holds it for one call.
func (r *Recorder) acquire() { r.slots <- struct{}{} }

func (r *Recorder) release() { <-r.slots }
