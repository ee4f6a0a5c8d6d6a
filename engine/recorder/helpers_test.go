package recorder

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"vncedge/rfb"
)

// serverSI is the VM's ServerInit in the synthetic sessions: the server's own format.
var serverSI = rfb.ServerInit{Width: 64, Height: 48, Format: rfb.Default32(), Name: "test desktop"}

// rawUpdate is a FramebufferUpdate with one w x h Raw rectangle whose pixel bytes are all v.
func rawUpdate(w, h uint16, bpp int, v byte) []byte {
	b := []byte{rfb.MsgFramebufferUpdate, 0, 0, 1, 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h)
	b = binary.BigEndian.AppendUint32(b, uint32(rfb.EncodingRaw))
	return append(b, bytes.Repeat([]byte{v}, int(w)*int(h)*bpp)...)
}

// decoded is a recording read back with rfb.FBSDecoder and rfb.ParseRecordingStart.
type decoded struct {
	version rfb.Version
	si      rfb.ServerInit
	stream  []byte   // the server messages after the recorded handshake
	times   []uint32 // every block's timestamp
	sizes   []int    // every block's data length
	used    int      // file bytes the decoder consumed (whole blocks)
	err     error    // what ended decoding: nil at a clean end, rfb.ErrShort for a cut block
}

// decodeFBS decodes an FBS file's bytes as a player would.
func decodeFBS(t *testing.T, file []byte) decoded {
	t.Helper()
	var d rfb.FBSDecoder
	var out decoded
	var all []byte
	b := file
	for len(b) > 0 {
		blk, n, err := d.Next(b)
		if err != nil {
			out.err = err
			break
		}
		all = append(all, blk.Data...)
		out.times = append(out.times, blk.Time)
		out.sizes = append(out.sizes, len(blk.Data))
		out.used += n
		b = b[n:]
	}
	if len(file) > 0 && out.used == 0 && out.err == nil {
		out.err = errors.New("no blocks")
	}
	v, si, n, err := rfb.ParseRecordingStart(all)
	if err != nil {
		if out.err == nil {
			out.err = err
		}
		return out
	}
	out.version, out.si, out.stream = v, si, all[n:]
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newRecorder returns a Recorder on a fresh directory with cfg's other fields.
func newRecorder(t *testing.T, cfg Config) *Recorder {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Not t.Context(): it is cancelled before cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return r
}

func start(t *testing.T, r *Recorder, s Session) *Recording {
	t.Helper()
	rec, err := r.Start(s)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// waitDone waits (bounded) for the recording's writer to finish.
func waitDone(t *testing.T, rec *Recording) {
	t.Helper()
	select {
	case <-rec.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the recording's writer did not finish within 10s")
	}
}

// drain waits until the writer has written everything queued: the steady state a loop sees
// when the disk keeps up. It allocates nothing, so allocation tests may call it.
func drain(rec *Recording) {
	for {
		rec.q.mu.Lock()
		held := rec.q.held
		rec.q.mu.Unlock()
		if held == 0 {
			return
		}
		runtime.Gosched()
	}
}

// discardFile is a File at memory speed: it counts what it is given.
type discardFile struct {
	mu     sync.Mutex
	n      int64
	closed bool
}

func (f *discardFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	f.n += int64(len(p))
	f.mu.Unlock()
	return len(p), nil
}
func (f *discardFile) Sync() error { return nil }
func (f *discardFile) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// gateFile is a real file whose writes wait for the gate to open: a disk that stalls.
type gateFile struct {
	*os.File
	gate <-chan struct{}
}

func (f *gateFile) Write(p []byte) (int, error) {
	<-f.gate
	return f.File.Write(p)
}

// failFile is a real file that takes limit bytes and then fails, after writing half of the
// failing write (what a disk that fills up does).
type failFile struct {
	*os.File
	limit int
}

var errDiskFull = errors.New("test: no space left on device")

func (f *failFile) Write(p []byte) (int, error) {
	if len(p) <= f.limit {
		f.limit -= len(p)
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:len(p)/2])
	f.limit = 0
	return n, errDiskFull
}

// noTruncFile hides the Truncate method of a failFile.
type noTruncFile struct{ f *failFile }

func (f noTruncFile) Write(p []byte) (int, error) { return f.f.Write(p) }
func (f noTruncFile) Sync() error                 { return f.f.Sync() }
func (f noTruncFile) Close() error                { return f.f.Close() }

// logBuffer is a slog handler target tests read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var _ io.Writer = (*logBuffer)(nil)
