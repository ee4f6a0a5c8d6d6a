package recorder

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The writer goroutine of one recording: it creates the files, writes what the loop queues,
// syncs now and then, and closes. One goroutine per recording, rather than a shared pool, so
// that one recording's slow write never delays another's and a recording's order is simply the
// order of one goroutine's writes; Config.MaxWriters bounds how many of them sit in a system
// call at once. A parked goroutine costs a few KiB, against the 4 MiB a queue may hold. A second
// goroutine per recording, started at its first periodic sync, runs the fsyncs.

// batchDelay is how long an idle writer waits after being woken before it takes what is
// queued: a desktop sends many small updates, and a few milliseconds turn hundreds of writes a
// second into a few, at no cost to what a crash keeps worth mentioning.
const batchDelay = 2 * time.Millisecond

// output is one open file of a recording.
type output struct {
	f    File
	path string
	off  int64 // bytes written, all of them whole blocks or lines
	err  error
}

// write writes one segment. A write that fails half-way is cut back to the last whole block
// when the file can be truncated, so the file still ends at a block boundary.
func (r *Recording) write(o *output, p []byte) error {
	r.rec.acquire()
	n, err := o.f.Write(p)
	r.rec.release()
	if n > 0 {
		r.rec.stats.BytesWritten.Add(n)
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		if t, ok := o.f.(interface{ Truncate(int64) error }); ok && n > 0 {
			r.rec.acquire()
			_ = t.Truncate(o.off)
			r.rec.release()
		}
		o.err = fmt.Errorf("recorder: write %s: %w", o.path, err)
		return o.err
	}
	o.off += int64(n)
	return nil
}

func (r *Recording) sync(o *output) error {
	if o == nil || o.err != nil {
		return nil
	}
	r.rec.acquire()
	err := o.f.Sync()
	r.rec.release()
	if err != nil {
		o.err = fmt.Errorf("recorder: sync %s: %w", o.path, err)
	}
	return o.err
}

func (r *Recording) run() {
	// Done comes last, so whoever waited for it finds the recording gone from the Recorder.
	defer close(r.done)
	defer r.rec.forget(r)
	fbs, input, err := r.open()
	if err != nil {
		r.failWriter(err)
		var b batch
		r.take(&b)
		r.finish(nil, nil, b)
		return
	}
	r.rec.log.Debug("recording started", r.attrs(slog.String("file", fbs.path))...)
	w := writer{r: r, fbs: fbs, input: input, interval: r.rec.cfg.SyncInterval, lastSync: time.Now()}
	w.loop()
	w.stop()
	var b batch
	r.take(&b) // the final flags, and any segments a failure left (finish releases them)
	r.finish(fbs, input, b)
}

// writer is the state of one recording's writer goroutine between opening and closing.
type writer struct {
	r          *Recording
	fbs, input *output
	interval   time.Duration
	timer      *time.Timer
	timerC     <-chan time.Time
	dirty      bool // written since the last sync began
	lastSync   time.Time
	// The syncer goroutine, started at the first periodic sync: fsync waits for the disk, and
	// on its own goroutine it does not hold up the writes behind it (which would fill the
	// queue and cut the recording on a busy disk).
	syncReq  chan struct{}
	syncDone chan error
	syncing  bool
}

// loop writes what the loop queues until the recording ends or is cut.
func (w *writer) loop() {
	r := w.r
	var b batch
	logged := 0
	for {
		r.take(&b)
		if b.changes > logged {
			if logged == 0 {
				r.rec.log.Warn("recording: the client changed its pixel format mid-session; players show what follows in the recording's first format",
					r.attrs(slog.Int64("t_ms", int64(b.changeMS)), slog.Int("bpp", int(b.lastPF.BPP)), slog.Int("depth", int(b.lastPF.Depth)))...)
			}
			logged = b.changes
		}
		if b.empty() {
			if b.ended || b.stop != nil {
				return
			}
			if w.dirty && w.interval > 0 && w.timerC == nil && !w.syncing {
				d := max(w.interval-time.Since(w.lastSync), time.Millisecond)
				if w.timer == nil {
					w.timer = time.NewTimer(d)
				} else {
					w.timer.Reset(d)
				}
				w.timerC = w.timer.C
			}
			select {
			case <-r.wake:
				// Let a burst of small chunks gather into one write instead of one system
				// call each; the loop goes on queueing meanwhile.
				time.Sleep(batchDelay)
			case <-w.timerC:
				w.timerC = nil
				if w.dirty && !w.syncing {
					w.startSync()
				}
			case err := <-w.syncDone:
				if !w.synced(err) {
					return
				}
			}
			continue
		}
		err := r.writeAll(w.fbs, b.fbs)
		if err == nil {
			err = r.writeAll(w.input, b.input)
		}
		r.release(b.fbs)
		r.release(b.input)
		if err != nil {
			r.failWriter(err)
			return
		}
		w.dirty = true
		if w.syncing {
			select {
			case err := <-w.syncDone:
				if !w.synced(err) {
					return
				}
			default:
			}
		}
		if !w.syncing && w.interval > 0 && time.Since(w.lastSync) >= w.interval {
			w.startSync()
		}
	}
}

func (w *writer) startSync() {
	if w.syncReq == nil {
		w.syncReq, w.syncDone = make(chan struct{}, 1), make(chan error, 1)
		go w.r.syncLoop(w.fbs, w.input, w.syncReq, w.syncDone)
	}
	w.syncReq <- struct{}{}
	w.syncing, w.dirty, w.lastSync = true, false, time.Now()
}

// synced takes a sync's result and reports whether the recording goes on.
func (w *writer) synced(err error) bool {
	w.syncing = false
	if err != nil {
		w.r.failWriter(err)
		return false
	}
	return true
}

// stop waits for a sync in flight and ends the syncer and the timer.
func (w *writer) stop() {
	if w.syncing {
		w.synced(<-w.syncDone)
	}
	if w.syncReq != nil {
		close(w.syncReq)
	}
	if w.timer != nil {
		w.timer.Stop()
	}
}

// syncLoop syncs both files on every request. It reads only what open set, so it may run
// beside the writes (an *os.File allows that).
func (r *Recording) syncLoop(fbs, input *output, req <-chan struct{}, done chan<- error) {
	for range req {
		var err error
		for _, o := range [2]*output{fbs, input} {
			if o == nil {
				continue
			}
			r.rec.acquire()
			e := o.f.Sync()
			r.rec.release()
			if e != nil && err == nil {
				err = fmt.Errorf("recorder: sync %s: %w", o.path, e)
			}
		}
		done <- err
	}
}

func (r *Recording) writeAll(o *output, segs []*segment) error {
	for _, s := range segs {
		if o == nil {
			break // input events without an input file cannot happen; drop them if they do
		}
		if err := r.write(o, s.b); err != nil {
			return err
		}
	}
	return nil
}

// failWriter stops the recording for a file system error: nothing more is queued, and what is
// queued is dropped (the file may not take it).
func (r *Recording) failWriter(err error) {
	q := &r.q
	q.mu.Lock()
	if q.stop == nil {
		q.stop, q.stopMS = err, msSince(time.Now(), r.sess.Begin)
		r.rec.stats.Failed.Inc()
	}
	r.failed.Store(true)
	fbs, input := q.fbs.segs, q.input.segs
	q.fbs.segs, q.input.segs = nil, nil
	q.mu.Unlock()
	r.release(fbs)
	r.release(input)
}

// open creates the recording's files under the first free name.
func (r *Recording) open() (fbs, input *output, err error) {
	dir := r.rec.cfg.Dir
	for attempt := 0; attempt < maxAttempts; attempt++ {
		base := baseName(r.sess.Begin, r.sess.ID, r.sess.Target, attempt)
		fbs = &output{path: filepath.Join(dir, base+fbsSuffix)}
		if fbs.f, err = r.create(fbs.path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return nil, nil, fmt.Errorf("recorder: %w", err)
		}
		if r.sess.Input {
			input = &output{path: filepath.Join(dir, base+inputSuffix)}
			if input.f, err = r.create(input.path); err != nil {
				r.discard(fbs)
				if errors.Is(err, fs.ErrExist) {
					continue
				}
				return nil, nil, fmt.Errorf("recorder: %w", err)
			}
		}
		r.q.mu.Lock()
		r.q.fbsPath = fbs.path
		if input != nil {
			r.q.inputPath = input.path
		}
		r.q.mu.Unlock()
		return fbs, input, nil
	}
	return nil, nil, fmt.Errorf("recorder: %d names taken for session %q in %s", maxAttempts, r.sess.ID, dir)
}

func (r *Recording) create(path string) (File, error) {
	r.rec.acquire()
	defer r.rec.release()
	return r.rec.cfg.Create(path)
}

// discard closes and removes a file created for nothing (its twin's name was taken).
func (r *Recording) discard(o *output) {
	r.rec.acquire()
	defer r.rec.release()
	_ = o.f.Close()
	_ = os.Remove(o.path)
}

// finish closes the files: the input file gets its last line, both are synced, and a recording
// cut early is renamed to carry ".truncated". Then it counts and logs the outcome.
func (r *Recording) finish(fbs, input *output, b batch) {
	r.release(b.fbs)
	r.release(b.input)
	if input != nil && input.err == nil {
		line := lastLine(b.endMS, "end", b.reason)
		if b.stop != nil {
			line = lastLine(b.stopMS, "truncated", b.stop.Error())
		}
		_ = r.write(input, line)
	}
	var closeErr error
	for _, o := range []*output{fbs, input} {
		if o == nil {
			continue
		}
		if err := r.sync(o); err != nil && closeErr == nil {
			closeErr = err
		}
		r.rec.acquire()
		if err := o.f.Close(); err != nil && closeErr == nil && o.err == nil {
			closeErr = fmt.Errorf("recorder: close %s: %w", o.path, err)
		}
		r.rec.release()
	}
	stop := b.stop
	if stop == nil && closeErr != nil {
		// Everything was queued and written, but the disk may not hold it.
		r.failWriter(closeErr)
		stop = closeErr
	}
	if stop != nil {
		for _, o := range []*output{fbs, input} {
			if o != nil {
				r.markTruncated(o)
			}
		}
		r.q.mu.Lock()
		if fbs != nil {
			r.q.fbsPath = fbs.path
		}
		if input != nil {
			r.q.inputPath = input.path
		}
		r.q.mu.Unlock()
	} else {
		r.rec.stats.Completed.Inc()
	}
	r.rec.stats.active.Add(-1)

	attrs := r.attrs()
	if fbs != nil {
		attrs = append(attrs, slog.String("file", fbs.path), slog.Int64("bytes", fbs.off))
	}
	if input != nil {
		attrs = append(attrs, slog.String("input_file", input.path))
	}
	if b.changes > 0 {
		attrs = append(attrs, slog.Int("pixel_format_changes", b.changes))
	}
	switch {
	case stop == nil:
		r.rec.log.Info("recording closed", append(attrs, slog.String("reason", b.reason))...)
	case stop == ErrQueueFull:
		r.rec.log.Warn("recording truncated: the disk did not keep up", append(attrs, slog.Int64("t_ms", int64(b.stopMS)))...)
	default:
		r.rec.log.Error("recording failed", append(attrs, slog.Int64("t_ms", int64(b.stopMS)), slog.String("error", stop.Error()))...)
	}
}

// markTruncated renames a cut recording's file to carry ".truncated" before its suffix. It
// links the new name and then removes the old, because a rename would silently replace a file
// of that name.
func (r *Recording) markTruncated(o *output) {
	suffix := fbsSuffix
	if strings.HasSuffix(o.path, inputSuffix) {
		suffix = inputSuffix
	}
	np := strings.TrimSuffix(o.path, suffix) + truncatedMark + suffix
	r.rec.acquire()
	defer r.rec.release()
	if err := os.Link(o.path, np); err != nil {
		r.rec.log.Warn("recording: cannot mark a cut recording as truncated", r.attrs(slog.String("file", o.path), slog.String("error", err.Error()))...)
		return
	}
	if err := os.Remove(o.path); err != nil {
		r.rec.log.Warn("recording: the cut recording keeps its old name too", r.attrs(slog.String("file", o.path), slog.String("error", err.Error()))...)
	}
	o.path = np
}

func (r *Recording) attrs(more ...any) []any {
	return append([]any{slog.String("session", r.sess.ID), slog.String("target", r.sess.Target)}, more...)
}
