package recorder

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"vncedge/rfb"
)

// Recording is one session's recording. Its feeding methods (FromVM, SetPixelFormat, Key,
// Pointer, Observe, End) belong to the session's event loop: they are called from one goroutine at a
// time, in the order of the session, and return at once; they copy what they need, so the
// caller's slices may be reused as soon as they return. Failed, Err, Done and Paths may be
// called from anywhere.
type Recording struct {
	rec    *Recorder
	sess   Session
	wake   chan struct{}
	done   chan struct{}
	failed atomic.Bool
	q      queue

	// The loop's own state, touched only by the feeding methods.
	phase     phase
	siBuf     []byte // a ServerInit arriving in pieces
	siNeed    int    // bytes of ServerInit known to be needed
	si        rfb.ServerInit
	siMS      uint32
	pendingPF rfb.PixelFormat // a SetPixelFormat before ServerInit was complete
	havePF    bool
	curPF     rfb.PixelFormat
	lastMS    uint32
}

type phase uint8

const (
	// phaseInit: the VM's ServerInit is not complete yet.
	phaseInit phase = iota
	// phaseHeld: ServerInit is held until the pixel format of the recorded pixels is known.
	phaseHeld
	// phaseRecording: the recording start is queued; VM bytes become blocks.
	phaseRecording
	// phaseDone: End was called, or ServerInit was malformed.
	phaseDone
)

// FromVM records VM-to-browser bytes relayed at now: every byte after the security handshake,
// beginning with the VM's ServerInit, in pieces of any size (a piece may end inside ServerInit
// or hold ServerInit and what follows). ServerInit is held until the pixel format is known: the
// first SetPixelFormat, or the first bytes after ServerInit (the client kept the server's format).
func (r *Recording) FromVM(p []byte, now time.Time) {
	if len(p) == 0 || r.phase == phaseDone || r.failed.Load() {
		return
	}
	if r.phase == phaseInit {
		var ok bool
		if p, ok = r.serverInit(p, now); !ok || len(p) == 0 {
			return
		}
	}
	if r.phase == phaseHeld {
		r.start(r.si.Format)
	}
	ms := r.ms(now)
	q := &r.q
	q.mu.Lock()
	if q.stop == nil && !q.ended {
		if err := r.appendBlocks(p, ms); err != nil {
			r.cutLocked(err, ms)
		}
		r.wakeLocked()
	}
	q.mu.Unlock()
}

// serverInit collects the VM's ServerInit from p and returns what follows it in p, with ok
// false while ServerInit is incomplete or when it is malformed (the recording is then cut).
func (r *Recording) serverInit(p []byte, now time.Time) (rest []byte, ok bool) {
	var (
		si  rfb.ServerInit
		n   int
		err error
	)
	if len(r.siBuf) == 0 {
		if si, n, err = rfb.ParseServerInit(p); err == rfb.ErrShort {
			r.siNeed = n
			r.siBuf = append(make([]byte, 0, n), p...)
			return nil, false
		}
		rest = p[min(n, len(p)):]
	} else {
		for {
			k := min(r.siNeed-len(r.siBuf), len(p))
			r.siBuf, p = append(r.siBuf, p[:k]...), p[k:]
			if si, n, err = rfb.ParseServerInit(r.siBuf); err != rfb.ErrShort {
				break
			}
			r.siNeed = n
			if len(p) == 0 {
				return nil, false
			}
		}
		rest = p
	}
	ms := r.ms(now)
	r.siBuf = nil
	if err != nil {
		r.phase = phaseDone
		r.cut(fmt.Errorf("recorder: the VM's ServerInit: %w", err), ms)
		return nil, false
	}
	r.si, r.siMS, r.phase = si, ms, phaseHeld
	if r.havePF {
		r.start(r.pendingPF)
	}
	return rest, true
}

// start queues the recording start: a None-auth handshake and ServerInit carrying pf, the
// format of the pixels that follow, stamped when ServerInit arrived.
func (r *Recording) start(pf rfb.PixelFormat) {
	si := r.si
	si.Format = pf
	r.curPF, r.phase = pf, phaseRecording
	data := rfb.AppendRecordingStart(make([]byte, 0, 64+len(si.Name)), r.sess.Version, si)
	q := &r.q
	q.mu.Lock()
	q.lastPF = pf
	if q.stop == nil && !q.ended {
		if err := r.appendBlocks(data, r.siMS); err != nil {
			r.cutLocked(err, r.siMS)
		}
		r.wakeLocked()
	}
	q.mu.Unlock()
}

// SetPixelFormat records that the browser asked for pf (a SetPixelFormat message).
//
// The first one before any VM bytes after ServerInit sets the format of the recording start.
// A later one that changes the format is counted (Stats.FormatChanges) and logged, and the
// recording goes on unchanged: the pixels after it are in the new format while the file
// announces the old one, so a player shows wrong colours from there on. Cutting a second file
// instead would need a clean message boundary in the VM's stream and the point where the VM
// switched formats, and neither is visible without decoding every server message.
func (r *Recording) SetPixelFormat(pf rfb.PixelFormat, now time.Time) {
	switch r.phase {
	case phaseInit:
		r.pendingPF, r.havePF = pf, true // the VM applies it once ServerInit is out
	case phaseHeld:
		r.start(pf)
	case phaseRecording:
		if pf == r.curPF || r.failed.Load() {
			return
		}
		r.curPF = pf
		r.rec.stats.FormatChanges.Inc()
		ms := r.ms(now)
		r.q.mu.Lock()
		r.q.changes++
		r.q.lastPF, r.q.changeMS = pf, ms
		r.q.mu.Unlock()
	}
}

// Key records a KeyEvent from the browser (with Session.Input).
func (r *Recording) Key(down bool, keysym uint32, now time.Time) {
	r.input(inputEvent{down: down, keysym: keysym}, now)
}

// Pointer records a PointerEvent from the browser (with Session.Input): the button mask (up to
// 9 buttons in noVNC's extended form) and position.
func (r *Recording) Pointer(mask, x, y uint16, now time.Time) {
	r.input(inputEvent{pointer: true, mask: mask, x: x, y: y}, now)
}

// Observe records what a client message the engine's rfb.Scanner reported means for the
// recording: a SetPixelFormat (see SetPixelFormat), and with Session.Input a KeyEvent, a QEMU
// extended key event (with its scan code) or a PointerEvent. Other messages are ignored. An
// input event the proxy dropped (m.Dropped, a view-only session) is recorded marked
// "dropped", so the audit shows what the browser tried.
func (r *Recording) Observe(m rfb.Message, now time.Time) {
	switch m.Kind {
	case rfb.KindSetPixelFormat:
		if !m.Dropped {
			r.SetPixelFormat(m.PixelFormat(), now)
		}
	case rfb.KindKeyEvent, rfb.KindQEMUKeyEvent:
		down, keysym := m.Key()
		r.input(inputEvent{down: down, keysym: keysym, keycode: m.KeyCode(), dropped: m.Dropped}, now)
	case rfb.KindPointerEvent:
		mask, x, y := m.Pointer()
		r.input(inputEvent{pointer: true, mask: mask, x: x, y: y, dropped: m.Dropped}, now)
	}
}

func (r *Recording) input(ev inputEvent, now time.Time) {
	if !r.sess.Input || r.phase == phaseDone || r.failed.Load() {
		return
	}
	ms := r.ms(now)
	q := &r.q
	q.mu.Lock()
	if q.stop == nil && !q.ended {
		if s, err := r.room(&q.input, lineRoom); err != nil {
			r.cutLocked(err, ms)
		} else {
			s.b = ev.appendLine(s.b, ms)
		}
		r.wakeLocked()
	}
	q.mu.Unlock()
}

// End ends the recording with the session (reason is why the session ended, for the log and the
// input file's last line). It returns at once; the writer writes what is queued and closes the
// files (Done). Calls after the first are ignored. A ServerInit still held is written with the
// server's format.
func (r *Recording) End(reason string, now time.Time) {
	if r.phase == phaseDone {
		return
	}
	if r.phase == phaseHeld && !r.failed.Load() {
		r.start(r.si.Format)
	}
	r.phase = phaseDone
	ms := r.ms(now)
	q := &r.q
	q.mu.Lock()
	if !q.ended {
		q.ended, q.reason, q.endMS = true, reason, ms
	}
	r.wakeLocked()
	q.mu.Unlock()
}

// abort ends the recording from outside its loop (Shutdown). Only the queue is touched; the
// loop's later calls find the queue ended and return.
func (r *Recording) abort(reason string) {
	ms := msSince(time.Now(), r.sess.Begin)
	q := &r.q
	q.mu.Lock()
	if !q.ended {
		q.ended, q.reason, q.endMS = true, reason, ms
	}
	q.idle = true // wake the writer whatever it was doing
	r.wakeLocked()
	q.mu.Unlock()
}

// cut stops queueing (err: ErrQueueFull or what went wrong); the writer then writes what is
// queued, closes the files and marks them truncated.
func (r *Recording) cut(err error, ms uint32) {
	r.q.mu.Lock()
	r.cutLocked(err, ms)
	r.q.mu.Unlock()
}

// cutLocked is cut with q.mu held. The first cause is the one counted.
func (r *Recording) cutLocked(err error, ms uint32) {
	q := &r.q
	if q.stop != nil {
		return
	}
	q.stop, q.stopMS = err, ms
	r.failed.Store(true)
	if err == ErrQueueFull {
		r.rec.stats.Truncated.Inc()
	} else {
		r.rec.stats.Failed.Inc()
	}
	q.idle = true // wake the writer whatever it was doing
	r.wakeLocked()
}

// Failed reports whether the recording stopped before its session ended: its queue was full,
// its files could not be created or written, or the VM's ServerInit was malformed. The
// recording is then cut (what was queued before is still written, and the files are renamed
// to mark them truncated). With --record-required the engine closes the session: it may check
// after every call into the Recording (an atomic load) and on its sweep, since a file that
// cannot be created fails asynchronously.
func (r *Recording) Failed() bool { return r.failed.Load() }

// Err is why the recording stopped early (ErrQueueFull, or an error from the file system or
// the ServerInit), or nil.
func (r *Recording) Err() error {
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	return r.q.stop
}

// Done is closed when the writer has finished: the files are closed and renamed if cut.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Paths returns the recording's files: the FBS file, and the input file ("" without
// Session.Input). Before Done they may be "" (not created yet) or change (marked truncated);
// after Done they are final, and both "" when the files could not be created.
func (r *Recording) Paths() (fbs, input string) {
	r.q.mu.Lock()
	defer r.q.mu.Unlock()
	return r.q.fbsPath, r.q.inputPath
}

// ms is the time of an event in milliseconds since the session began, never less than the
// time of the event before it: a decoder refuses timestamps that go back.
func (r *Recording) ms(now time.Time) uint32 {
	ms := max(msSince(now, r.sess.Begin), r.lastMS)
	r.lastMS = ms
	return ms
}

// msSince is now - begin in milliseconds, clamped to what a block's timestamp holds (a session
// longer than 49 days keeps its last timestamp).
func msSince(now, begin time.Time) uint32 {
	d := now.Sub(begin)
	switch {
	case d <= 0:
		return 0
	case d >= math.MaxUint32*time.Millisecond:
		return math.MaxUint32
	}
	return uint32(d / time.Millisecond)
}
