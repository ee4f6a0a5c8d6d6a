package vncsim

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"vncedge/rfb"
)

// errProtocol marks a client message the simulated VM cannot parse: the session ends.
var errProtocol = errors.New("vncsim: protocol error")

// desktop is the framebuffer of one ModeDesktop session. The picture is split into bands of
// bandRows rows, each with its own generation; an incremental request advances the next band
// and sends only it, so a client that applies every update always holds exactly what a full
// update would show.
type desktop struct {
	width, height int
	pf            rfb.PixelFormat
	gens          []uint32
	next          int
	interval      time.Duration
	last          time.Time
	st            *counters
	done          <-chan struct{}
	buf           []byte
}

func newDesktop(cfg Config, st *counters, done <-chan struct{}) *desktop {
	return &desktop{
		width: cfg.Width, height: cfg.Height, pf: rfb.Default32(),
		gens:     make([]uint32, (cfg.Height+bandRows-1)/bandRows),
		interval: cfg.FrameInterval, st: st, done: done,
	}
}

// run handles client messages until the client goes away (nil) or breaks the protocol.
func (d *desktop) run(r *bufio.Reader, w io.Writer) error {
	for {
		err := d.handle(r, w)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// handle reads one client message (RFC 6143 7.5) and acts on it. io.EOF means the client
// closed cleanly between messages.
func (d *desktop) handle(r *bufio.Reader, w io.Writer) error {
	t, err := r.ReadByte()
	if err != nil {
		return err
	}
	var b [24]byte
	read := func(n int) ([]byte, error) {
		if _, err := io.ReadFull(r, b[:n]); err != nil {
			return nil, fmt.Errorf("vncsim: read message %d: %w", t, noEOF(err))
		}
		return b[:n], nil
	}
	skip := func(n int) error {
		if _, err := r.Discard(n); err != nil {
			return fmt.Errorf("vncsim: skip message %d body: %w", t, noEOF(err))
		}
		return nil
	}
	switch t {
	case rfb.MsgSetPixelFormat:
		m, err := read(3 + rfb.PixelFormatLen)
		if err != nil {
			return err
		}
		pf := rfb.GetPixelFormat(m[3:])
		if err := pf.Validate(); err != nil {
			return fmt.Errorf("%w: SetPixelFormat: %w", errProtocol, err)
		}
		d.pf = pf
	case rfb.MsgSetEncodings:
		m, err := read(3)
		if err != nil {
			return err
		}
		// Every client accepts Raw, the only encoding sent, so the list does not matter.
		return skip(4 * int(binary.BigEndian.Uint16(m[1:])))
	case rfb.MsgFramebufferUpdateRequest:
		m, err := read(9)
		if err != nil {
			return err
		}
		return d.update(w, m[0] != 0,
			int(binary.BigEndian.Uint16(m[1:])), int(binary.BigEndian.Uint16(m[3:])),
			int(binary.BigEndian.Uint16(m[5:])), int(binary.BigEndian.Uint16(m[7:])))
	case rfb.MsgKeyEvent:
		if _, err := read(7); err != nil {
			return err
		}
		d.st.keys.Add(1)
	case rfb.MsgPointerEvent:
		if _, err := read(5); err != nil {
			return err
		}
		d.st.pointers.Add(1)
	case rfb.MsgClientCutText:
		m, err := read(7)
		if err != nil {
			return err
		}
		// A negative length is the extended clipboard form; its body is |length| bytes.
		n := int64(int32(binary.BigEndian.Uint32(m[3:])))
		if n < 0 {
			n = -n
		}
		if n > maxCutText {
			return fmt.Errorf("%w: ClientCutText of %d bytes", errProtocol, n)
		}
		return skip(int(n))
	case rfb.MsgEnableContinuousUpdates:
		_, err := read(9)
		return err
	case rfb.MsgClientFence:
		m, err := read(8)
		if err != nil {
			return err
		}
		if m[7] > 64 {
			return fmt.Errorf("%w: ClientFence payload of %d bytes", errProtocol, m[7])
		}
		return skip(int(m[7]))
	case rfb.MsgXvp:
		_, err := read(3)
		return err
	case rfb.MsgSetDesktopSize:
		m, err := read(7)
		if err != nil {
			return err
		}
		return skip(16 * int(m[5]))
	case rfb.MsgQEMU:
		m, err := read(1)
		if err != nil {
			return err
		}
		if m[0] != 0 {
			return fmt.Errorf("%w: QEMU client message subtype %d", errProtocol, m[0])
		}
		// QEMU extended key event: down-flag u16, keysym u32, keycode u32.
		if _, err := read(10); err != nil {
			return err
		}
		d.st.keys.Add(1)
	default:
		return fmt.Errorf("%w: unknown client message type %d", errProtocol, t)
	}
	return nil
}

// noEOF turns an EOF inside a message into ErrUnexpectedEOF, so that only an EOF between
// messages counts as a clean close.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// update answers a FramebufferUpdateRequest with one Raw rectangle: the requested area for a
// full request, the next changed band within it for an incremental one.
func (d *desktop) update(w io.Writer, incremental bool, x, y, rw, rh int) error {
	x0, y0 := min(x, d.width), min(y, d.height)
	x1, y1 := min(x+rw, d.width), min(y+rh, d.height)
	if incremental {
		if err := d.pace(); err != nil {
			return err
		}
		y0, y1 = d.advanceBand(x0, x1, y0, y1)
	}
	nrects := 0
	if x1 > x0 && y1 > y0 {
		nrects = 1
	}
	bpp := d.pf.BytesPerPixel()
	size := 4 + nrects*(12+(x1-x0)*(y1-y0)*bpp)
	if cap(d.buf) < size {
		d.buf = make([]byte, size)
	}
	b := d.buf[:size]
	b[0], b[1] = rfb.MsgFramebufferUpdate, 0
	binary.BigEndian.PutUint16(b[2:], uint16(nrects))
	if nrects == 1 {
		binary.BigEndian.PutUint16(b[4:], uint16(x0))
		binary.BigEndian.PutUint16(b[6:], uint16(y0))
		binary.BigEndian.PutUint16(b[8:], uint16(x1-x0))
		binary.BigEndian.PutUint16(b[10:], uint16(y1-y0))
		binary.BigEndian.PutUint32(b[12:], uint32(rfb.EncodingRaw))
		p := b[16:]
		for py := y0; py < y1; py++ {
			gen := d.gens[py/bandRows]
			for px := x0; px < x1; px++ {
				r, g, bl := PatternColour(px, py, gen, d.height)
				d.pf.Pixel(p, r, g, bl)
				p = p[bpp:]
			}
		}
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("vncsim: send FramebufferUpdate: %w", err)
	}
	d.st.updates.Add(1)
	return nil
}

// advanceBand moves the next band that lies wholly inside the request one generation on and
// returns its rows. Only whole bands change, so a client that applies every update never
// misses a change outside the area it asked for; a request too small to hold a whole band
// gets an empty update ("nothing changed there"), which is what a real server would say.
func (d *desktop) advanceBand(x0, x1, y0, y1 int) (int, int) {
	if x0 != 0 || x1 != d.width {
		return y0, y0
	}
	for i := range d.gens {
		band := (d.next + i) % len(d.gens)
		b0, b1 := band*bandRows, min((band+1)*bandRows, d.height)
		if b0 >= y0 && b1 <= y1 {
			d.gens[band]++
			d.next = band + 1
			return b0, b1
		}
	}
	return y0, y0
}

// pace keeps incremental updates at least interval apart: a real server answers only when
// something changed, and noVNC asks again the moment an update arrives.
func (d *desktop) pace() error {
	if d.interval <= 0 {
		return nil
	}
	wait := time.Until(d.last.Add(d.interval))
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.done:
			t.Stop()
			return errors.New("vncsim: server closed")
		}
	}
	d.last = time.Now()
	return nil
}

// PatternColour is the test pattern's colour at (x, y) in a band of generation gen: a
// horizontal gradient that slides right as the generation grows, a vertical gradient, and
// a 32-pixel checkerboard that flips with each generation.
func PatternColour(x, y int, gen uint32, height int) (r, g, b uint8) {
	r = uint8(x + int(gen)*8)
	g = uint8(y * 255 / max(height-1, 1))
	if (x/32+y/32+int(gen))&1 == 0 {
		b = 0xc0
	}
	return r, g, b
}
