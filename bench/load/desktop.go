package load

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"vncedge/bench/rfbclient"
	"vncedge/rfb"
)

// DesktopLoad shapes the realistic scenario: every session is a desktop streaming KBps
// kilobytes (1,024 bytes) of updates per second, asked for FPS times a second, while its
// user sends InputRate key and pointer events per second.
type DesktopLoad struct {
	KBps      float64 `json:"kbps,omitempty"`
	FPS       float64 `json:"fps,omitempty"`
	InputRate float64 `json:"input_rate,omitempty"`
}

const (
	desktopHeight = 768
	// bandBytesPerColumn is what one column of the simulated desktop's 32-row band costs at
	// 4 bytes per pixel: an incremental update is one band of the framebuffer's width.
	bandBytesPerColumn = 32 * 4
	maxDesktopWidth    = 8192
	// inputRectPixels is the probe that follows every input event: a one-pixel,
	// non-incremental update request the VM answers at once.
	inputProbeBytes = 4 + 12 + 4
)

// Width is the simulated desktop's width that makes one band-sized update per frame carry
// KBps at FPS.
func (d DesktopLoad) Width() (int, error) {
	if d.KBps <= 0 || d.FPS <= 0 {
		return 0, fmt.Errorf("desktop: want a positive rate and frame rate, have %g KB/s at %g fps", d.KBps, d.FPS)
	}
	w := int(math.Round(d.KBps * 1024 / d.FPS / bandBytesPerColumn))
	if w < 1 {
		return 0, fmt.Errorf("desktop: %g KB/s at %g fps is under one pixel column (%d bytes) per update: lower --fps", d.KBps, d.FPS, bandBytesPerColumn)
	}
	if w > maxDesktopWidth {
		return 0, fmt.Errorf("desktop: %g KB/s at %g fps needs updates wider than %d pixels: raise --fps (at most %.0f KB/s at this frame rate)",
			d.KBps, d.FPS, maxDesktopWidth, maxDesktopWidth*bandBytesPerColumn*d.FPS/1024)
	}
	return w, nil
}

// pending is an update request in flight, answered in order by the VM.
type pending struct {
	input bool
	sent  time.Time
}

// desktops runs every session as a noVNC desktop for Duration: a writer paces frame
// requests and input events, a reader matches each FramebufferUpdate to its request.
func (w *worker) desktops(sessions []*client, part *Part) {
	width, _ := w.job.Desktop.Width() // checked when the fleet started
	var before inputCount
	before.read(w)
	frameEvery := time.Duration(float64(time.Second) / w.job.Desktop.FPS)
	if frameEvery <= 0 {
		frameEvery = time.Millisecond
	}
	var inputEvery time.Duration
	if w.job.Desktop.InputRate > 0 {
		inputEvery = time.Duration(float64(time.Second) / w.job.Desktop.InputRate)
	}
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(w.job.Duration)
	rates := make([]float64, len(sessions))
	var pointers, keys, frames atomic.Int64
	var wg sync.WaitGroup
	for si, c := range sessions {
		if c == nil {
			continue
		}
		// The VM answers update requests in order, so the reader pairs each update with the
		// oldest request in flight; the writer queues a request before sending it.
		inflight := make(chan pending, 1024)
		var frameOut atomic.Bool
		wg.Add(2)
		// The writer: a frame request every frameEvery unless one is still unanswered (noVNC
		// keeps one in flight), an input event plus its probe every inputEvery.
		go func() {
			defer wg.Done()
			defer close(inflight)
			phase := time.Duration(int64(si) * int64(frameEvery) / int64(max(1, len(sessions))))
			nextFrame, nextInput := start.Add(phase), start.Add(phase/2)
			if inputEvery == 0 {
				nextInput = end
			}
			var k int
			buf := make([]byte, 0, 64)
			// A proxy that stops reading must end the run, not hang it.
			_ = c.conn.SetWriteDeadline(end.Add(w.job.Timeout))
			for {
				due := nextFrame
				if nextInput.Before(due) {
					due = nextInput
				}
				if !due.Before(end) {
					return
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				buf = buf[:0]
				var p pending
				if due.Equal(nextInput) {
					x, y := uint16(k*7%width), uint16(k*5%desktopHeight)
					if k%4 == 3 {
						// A key typed: press and release, as a browser sends them.
						buf = rfb.AppendKeyEvent(buf, true, 'a'+uint32(k%26))
						buf = rfb.AppendKeyEvent(buf, false, 'a'+uint32(k%26))
						keys.Add(2)
					} else {
						buf = rfb.AppendPointerEvent(buf, 0, x, y)
						pointers.Add(1)
					}
					buf = rfb.AppendFramebufferUpdateRequest(buf, false, x, y, 1, 1)
					// Timed from when it was due, so a stalled sender shows as latency.
					p = pending{input: true, sent: due}
					k++
					nextInput = nextInput.Add(inputEvery)
				} else {
					nextFrame = nextFrame.Add(frameEvery)
					if frameOut.Load() {
						continue
					}
					frameOut.Store(true)
					buf = rfb.AppendFramebufferUpdateRequest(buf, true, 0, 0, uint16(width), desktopHeight)
					p = pending{sent: time.Now()}
				}
				inflight <- p
				if _, err := c.st.Write(buf); err != nil {
					w.errs.Add(1)
					w.noteErr(fmt.Errorf("desktop send: %w", err))
					return
				}
				if p.input {
					w.sent.Add(1)
				}
			}
		}()
		// The reader: every update answers the oldest request in flight.
		go func() {
			defer wg.Done()
			var got int64
			defer func() { rates[si] = float64(got) / w.job.Duration.Seconds() }()
			_ = c.conn.SetReadDeadline(end.Add(w.job.Timeout))
			for p := range inflight {
				_, n, err := rfbclient.ReadUpdate(c.r, 4, nil)
				if err != nil {
					w.errs.Add(1)
					w.noteErr(fmt.Errorf("desktop update: %w", err))
					for range inflight { // let the writer finish
					}
					return
				}
				if p.input {
					w.rtt.Record(time.Since(p.sent))
					w.msgs.Add(1)
					continue
				}
				frameOut.Store(false)
				got += int64(n)
				w.bytes.Add(int64(n))
				frames.Add(1)
			}
		}()
	}
	wg.Wait()
	part.SessionRates = nil
	for i, c := range sessions {
		if c != nil {
			part.SessionRates = append(part.SessionRates, rates[i])
		}
	}
	part.Frames = frames.Load()
	part.InputSent = w.sent.Load()
	// Input the VMs have not counted yet is still on its way: a short grace, then lost.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var after inputCount
		after.read(w)
		lost := (pointers.Load() - (after.pointers - before.pointers)) + (keys.Load() - (after.keys - before.keys))
		if lost <= 0 || time.Now().After(deadline) {
			part.InputLost = max(lost, 0)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inputCount is the fleet's input counters at one moment.
type inputCount struct{ pointers, keys int64 }

func (v *inputCount) read(w *worker) {
	for _, s := range w.fleet {
		st := s.Stats()
		v.pointers += st.PointerEvents
		v.keys += st.KeyEvents
	}
}
