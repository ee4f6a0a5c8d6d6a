package vncsim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/gobwas/ws"

	"vncedge/rfb"
)

// recording is an FBS file ModeReplay serves: its handshake is read once when the listener
// starts; every session then streams the file from disk.
type recording struct {
	path string
	si   rfb.ServerInit
	// hsLen is the length of the recorded handshake in the server stream: what a session skips.
	hsLen int
}

// maxRecordedHandshake bounds how far into a recording its handshake may end.
const maxRecordedHandshake = 1 << 20

func openRecording(path string) (*recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("vncsim: replay: %w", err)
	}
	defer f.Close()
	fr := newFBSReader(f)
	var stream []byte
	for {
		blk, err := fr.next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("the recording ends inside its handshake")
			}
			return nil, fmt.Errorf("vncsim: replay %s: %w", path, err)
		}
		stream = append(stream, blk.Data...)
		_, si, n, err := rfb.ParseRecordingStart(stream)
		switch {
		case err == nil:
			return &recording{path: path, si: si, hsLen: n}, nil
		case err != rfb.ErrShort:
			return nil, fmt.Errorf("vncsim: replay %s: %w", path, err)
		case len(stream) > maxRecordedHandshake:
			return nil, fmt.Errorf("vncsim: replay %s: no complete handshake in the first %d bytes", path, maxRecordedHandshake)
		}
	}
}

// fbsReader reads FBS blocks from a file through rfb.FBSDecoder, holding one block at a time.
type fbsReader struct {
	r   *bufio.Reader
	d   rfb.FBSDecoder
	buf []byte
}

func newFBSReader(r io.Reader) *fbsReader {
	return &fbsReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next block, valid until the following call; io.EOF at a clean end.
func (fr *fbsReader) next() (rfb.FBSBlock, error) {
	fr.buf = fr.buf[:0]
	for {
		blk, n, err := fr.d.Next(fr.buf)
		if err == nil {
			return blk, nil
		}
		if err != rfb.ErrShort {
			return blk, err
		}
		have := len(fr.buf)
		if cap(fr.buf) < n {
			fr.buf = append(make([]byte, 0, n), fr.buf...)
		}
		fr.buf = fr.buf[:n]
		if k, err := io.ReadFull(fr.r, fr.buf[have:]); err != nil {
			if err == io.EOF && have == 0 {
				return blk, io.EOF
			}
			return blk, fmt.Errorf("recording cut short after %d of %d bytes: %w", have+k, n, io.ErrUnexpectedEOF)
		}
	}
}

// replay sends the recording after the session's own handshake: the recorded handshake is
// skipped, then, once the client asks for its first update (or after askWait), each block goes
// out at its recorded time (relative to the block that ends the handshake) or at once with
// ReplayFast. Afterwards the session stays open, showing the last
// frame, until the client leaves. Client messages are followed with rfb.Scanner all along, so
// input is counted and a broken client ends the session.
func (sess *session) replay() error {
	_ = sess.conn.SetDeadline(time.Time{})
	in := &inputReader{done: make(chan struct{}), asked: make(chan struct{})}
	go func() {
		defer close(in.done)
		in.err = sess.scanInput(in.asked)
	}()
	err := sess.playRecording(in.asked, in.done)
	if err == nil {
		<-in.done // the last frame stays up until the client leaves
		err = in.err
	} else if isClientGone(err) {
		err = in.err
	}
	if sess.ws != nil {
		code, reason := ws.StatusNormalClosure, ""
		if errors.Is(err, errProtocol) {
			code, reason = ws.StatusProtocolError, "RFB protocol error"
		}
		_ = sess.ws.SendClose(code, reason)
	}
	// Closing ends the input reader if it is still running.
	_ = sess.conn.Close()
	<-in.done
	return err
}

// inputReader is the goroutine reading a replay session's client; err is set before done closes.
type inputReader struct {
	done  chan struct{}
	asked chan struct{} // closed at the client's first FramebufferUpdateRequest
	err   error
}

// askWait is how long a replay waits for the client's first FramebufferUpdateRequest. A VNC
// server sends updates only when asked, and noVNC depends on it: it reads nothing that came in
// the same message as ServerInit until another message arrives, so a replay sent straight
// after ServerInit (ReplayFast) can leave its screen blank. A client that never asks (a script)
// gets the replay after this wait anyway.
const askWait = 500 * time.Millisecond

var errClientGone = errors.New("vncsim: client left during the replay")

func isClientGone(err error) bool { return err == errClientGone }

func (sess *session) playRecording(asked, clientDone <-chan struct{}) error {
	wait := time.NewTimer(askWait)
	select {
	case <-asked:
	case <-wait.C:
	case <-clientDone:
		wait.Stop()
		return errClientGone
	case <-sess.srv.done:
		wait.Stop()
		return errors.New("vncsim: server closed")
	}
	wait.Stop()
	rec := sess.srv.rec
	f, err := os.Open(rec.path)
	if err != nil {
		return fmt.Errorf("vncsim: replay: %w", err)
	}
	defer f.Close()
	fr := newFBSReader(f)
	skip := rec.hsLen
	var start time.Time
	var base uint32
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		blk, err := fr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("vncsim: replay %s: %w", rec.path, err)
		}
		data := blk.Data
		if skip > 0 {
			k := min(skip, len(data))
			data, skip = data[k:], skip-k
			if skip == 0 {
				start, base = time.Now(), blk.Time
			}
		}
		if len(data) == 0 {
			continue
		}
		if !sess.srv.cfg.ReplayFast {
			if wait := time.Until(start.Add(time.Duration(blk.Time-base) * time.Millisecond)); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-clientDone:
					return errClientGone
				case <-sess.srv.done:
					return errors.New("vncsim: server closed")
				}
			}
		}
		if _, err := sess.w.Write(data); err != nil {
			return fmt.Errorf("vncsim: replay write: %w", err)
		}
	}
}

// scanInput reads the client's messages until it leaves, counting keys and pointer events, and
// closes asked at the first FramebufferUpdateRequest.
func (sess *session) scanInput(asked chan<- struct{}) error {
	var sc rfb.Scanner
	st := &sess.srv.st
	count := func(m rfb.Message) {
		switch m.Kind {
		case rfb.KindFramebufferUpdateRequest:
			if asked != nil {
				close(asked)
				asked = nil
			}
		case rfb.KindKeyEvent, rfb.KindQEMUKeyEvent:
			st.keys.Add(1)
		case rfb.KindPointerEvent:
			st.pointers.Add(1)
		}
	}
	buf := make([]byte, 16<<10)
	for {
		n, err := sess.r.Read(buf)
		if serr := sc.Scan(buf[:n], count); serr != nil {
			return fmt.Errorf("%w: %w", errProtocol, serr)
		}
		if err != nil {
			if err == io.EOF || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}
