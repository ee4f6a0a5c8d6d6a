package recorder

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vncedge/rfb"
)

// maxCall bounds one loop-side call in the tests. Timing on a shared machine is noisy, so it is
// loose; what matters is that no call waits for the disk at all, which would show as seconds.
const maxCall = 50 * time.Millisecond

func timed(t *testing.T, what string, f func()) {
	t.Helper()
	t0 := time.Now()
	f()
	if d := time.Since(t0); d > maxCall {
		t.Fatalf("%s took %v: the loop side blocked", what, d)
	}
}

// TestQueueFullCuts: with the disk stalled, the queue fills, the recording is cut and marked,
// and no loop-side call waits. Once the disk is back, what was queued before the cut is written
// and decodes; nothing after it is.
func TestQueueFullCuts(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	logs := &logBuffer{}
	r := newRecorder(t, Config{QueueBytes: MinQueueBytes, Logger: logs.logger(),
		Create: func(path string) (File, error) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			return &gateFile{File: f, gate: gate}, nil
		}})
	rec := start(t, r, Session{ID: "slow", Target: "vm", Input: true})
	timed(t, "FromVM(ServerInit)", func() { rec.FromVM(serverSI.Append(nil), time.Now()) })
	timed(t, "SetPixelFormat", func() { rec.SetPixelFormat(rfb.NoVNC32(), time.Now()) })
	var sent []byte
	for i := 0; i < 1000 && !rec.Failed(); i++ {
		chunk := bytes.Repeat([]byte{byte(i)}, 64<<10)
		timed(t, "FromVM", func() { rec.FromVM(chunk, time.Now()) })
		if !rec.Failed() {
			sent = append(sent, chunk...)
		}
		timed(t, "Key", func() { rec.Key(true, 65, time.Now()) })
	}
	if !rec.Failed() || !errors.Is(rec.Err(), ErrQueueFull) {
		t.Fatalf("after 1000 chunks on a stalled disk: failed %v, err %v", rec.Failed(), rec.Err())
	}
	if q := r.QueuedBytes(); q > MinQueueBytes {
		t.Fatalf("%d bytes queued, over the budget of %d", q, MinQueueBytes)
	}
	for range 100 { // cut: every call returns at once and queues nothing
		timed(t, "FromVM after the cut", func() { rec.FromVM(make([]byte, 64<<10), time.Now()) })
	}
	if q := r.QueuedBytes(); q > MinQueueBytes {
		t.Fatalf("%d bytes queued after the cut", q)
	}
	timed(t, "End", func() { rec.End("browser closed", time.Now()) })
	select {
	case <-rec.Done():
		t.Fatal("the writer finished while its disk was stalled")
	case <-time.After(20 * time.Millisecond):
	}
	open()
	waitDone(t, rec)

	fbs, input := rec.Paths()
	if !strings.HasSuffix(fbs, "_slow_vm.truncated.fbs") || !strings.HasSuffix(input, "_slow_vm.truncated.input.jsonl") {
		t.Fatalf("paths %q %q, want them marked truncated", fbs, input)
	}
	for _, old := range []string{strings.Replace(fbs, ".truncated", "", 1), strings.Replace(input, ".truncated", "", 1)} {
		if _, err := os.Stat(old); !os.IsNotExist(err) {
			t.Fatalf("%s still exists: %v", old, err)
		}
	}
	d := decodeFBS(t, readFile(t, fbs))
	if d.err != nil || d.si.Format != rfb.NoVNC32() || !bytes.Equal(d.stream, sent) {
		t.Fatalf("decoded %d bytes of the %d queued before the cut, %v", len(d.stream), len(sent), d.err)
	}
	lines := readLines(t, input)
	if last := lines[len(lines)-1]; last.Type != "truncated" || !strings.Contains(last.Reason, "queue full") {
		t.Fatalf("last input line %+v", last)
	}
	st := r.Stats()
	if st.Truncated.Get() != 1 || st.Failed.Get() != 0 || st.Completed.Get() != 0 || st.QueuedBytes() != 0 {
		t.Fatalf("truncated %d failed %d completed %d queued %d", st.Truncated.Get(), st.Failed.Get(), st.Completed.Get(), st.QueuedBytes())
	}
	if st.QueueHighWater() != MinQueueBytes {
		t.Fatalf("high water %d, want the budget %d", st.QueueHighWater(), MinQueueBytes)
	}
	if !strings.Contains(logs.String(), "recording truncated") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestTotalQueueBytes: recordings together never hold more than TotalQueueBytes; the one that
// would cross it is cut.
func TestTotalQueueBytes(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	total := int64(3 * segSize)
	r := newRecorder(t, Config{QueueBytes: MinQueueBytes, TotalQueueBytes: total,
		Create: func(path string) (File, error) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			return &gateFile{File: f, gate: gate}, nil
		}})
	a := start(t, r, Session{ID: "a", Target: "vm"})
	b := start(t, r, Session{ID: "b", Target: "vm"})
	for _, rec := range []*Recording{a, b} {
		rec.FromVM(serverSI.Append(nil), time.Now())
	}
	for i := 0; i < 10; i++ {
		for _, rec := range []*Recording{a, b} {
			rec.FromVM(make([]byte, 64<<10), time.Now())
			if q := r.QueuedBytes(); q > total {
				t.Fatalf("%d bytes queued, over the total budget %d", q, total)
			}
		}
	}
	if !errors.Is(a.Err(), ErrQueueFull) && !errors.Is(b.Err(), ErrQueueFull) {
		t.Fatalf("neither recording was cut: %v, %v", a.Err(), b.Err())
	}
	a.End("done", time.Now())
	b.End("done", time.Now())
}

// TestWriteErrorFails: a disk that fills up fails the recording; the file is cut back to its
// last whole block, so it decodes to the end, and is marked truncated.
func TestWriteErrorFails(t *testing.T) {
	for _, truncates := range []bool{true, false} {
		t.Run(map[bool]string{true: "truncates", false: "cannot truncate"}[truncates], func(t *testing.T) {
			logs := &logBuffer{}
			r := newRecorder(t, Config{Logger: logs.logger(), Create: func(path string) (File, error) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return nil, err
				}
				ff := &failFile{File: f, limit: 50 << 10}
				if !truncates {
					return noTruncFile{ff}, nil
				}
				return ff, nil
			}})
			rec := start(t, r, Session{ID: "full", Target: "vm"})
			rec.FromVM(serverSI.Append(nil), time.Now())
			var sent []byte
			for i := 0; i < 100 && !rec.Failed(); i++ {
				chunk := bytes.Repeat([]byte{byte(i)}, 3000+i)
				timed(t, "FromVM", func() { rec.FromVM(chunk, time.Now()) })
				sent = append(sent, chunk...)
				drain(rec) // one write per chunk, so the failing one is in the middle of the file
			}
			if !rec.Failed() || !errors.Is(rec.Err(), errDiskFull) {
				t.Fatalf("failed %v, err %v", rec.Failed(), rec.Err())
			}
			rec.End("done", time.Now())
			waitDone(t, rec)
			fbs, _ := rec.Paths()
			if !strings.HasSuffix(fbs, ".truncated.fbs") {
				t.Fatalf("path %q", fbs)
			}
			file := readFile(t, fbs)
			d := decodeFBS(t, file)
			if truncates && (d.err != nil || d.used != len(file)) {
				t.Fatalf("decoded %d of %d bytes: %v", d.used, len(file), d.err)
			}
			if !truncates && (d.err != rfb.ErrShort || d.used >= len(file)) {
				t.Fatalf("decoded %d of %d bytes: %v, want a cut last block", d.used, len(file), d.err)
			}
			if len(d.stream) == 0 || !bytes.HasPrefix(sent, d.stream) {
				t.Fatalf("decoded %d bytes, not a prefix of the %d sent", len(d.stream), len(sent))
			}
			if st := r.Stats(); st.Failed.Get() != 1 || st.Truncated.Get() != 0 || st.Completed.Get() != 0 || st.QueuedBytes() != 0 {
				t.Fatalf("failed %d truncated %d completed %d queued %d", st.Failed.Get(), st.Truncated.Get(), st.Completed.Get(), st.QueuedBytes())
			}
			if !strings.Contains(logs.String(), "recording failed") || !strings.Contains(logs.String(), "no space left") {
				t.Fatalf("log:\n%s", logs.String())
			}
		})
	}
}

// TestCreateFails: a directory that went away fails the recording at once, without files.
func TestCreateFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	r := newRecorder(t, Config{Dir: dir})
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	rec := start(t, r, Session{ID: "x", Target: "vm", Input: true})
	waitDone(t, rec) // the writer gives up without waiting for End
	if !rec.Failed() || !errors.Is(rec.Err(), os.ErrNotExist) {
		t.Fatalf("failed %v, err %v", rec.Failed(), rec.Err())
	}
	if fbs, input := rec.Paths(); fbs != "" || input != "" {
		t.Fatalf("paths %q %q", fbs, input)
	}
	rec.FromVM(serverSI.Append(nil), time.Now())
	rec.End("done", time.Now())
	if st := r.Stats(); st.Failed.Get() != 1 || st.Active() != 0 || st.QueuedBytes() != 0 {
		t.Fatalf("failed %d active %d queued %d", st.Failed.Get(), st.Active(), st.QueuedBytes())
	}
}

// offsetFile records where each write ended.
type offsetFile struct {
	*os.File
	mu   sync.Mutex
	off  int64
	ends []int64
}

func (f *offsetFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.mu.Lock()
	f.off += int64(n)
	f.ends = append(f.ends, f.off)
	f.mu.Unlock()
	return n, err
}

// TestCrashPrefix: every write ends at a block boundary, and a file cut anywhere (a crash, a
// copy taken while recording) decodes to every whole block before the cut.
func TestCrashPrefix(t *testing.T) {
	var of *offsetFile
	r := newRecorder(t, Config{Create: func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		of = &offsetFile{File: f}
		return of, nil
	}})
	rec := start(t, r, Session{ID: "c", Target: "vm"})
	rec.FromVM(serverSI.Append(nil), time.Now())
	rec.SetPixelFormat(rfb.RGB565(), time.Now())
	for i := range 40 {
		rec.FromVM(bytes.Repeat([]byte{byte(i)}, 1+i*37%301), time.Now())
		if i%3 == 0 {
			drain(rec) // some writes of one block, some of several
		}
	}
	rec.End("done", time.Now())
	waitDone(t, rec)
	fbs, _ := rec.Paths()
	file := readFile(t, fbs)
	full := decodeFBS(t, file)
	if full.err != nil {
		t.Fatal(full.err)
	}
	// The offsets where blocks end (the header goes with the first).
	// A write of the header alone is a boundary too: a decoder then waits for the first block.
	ends := map[int]int{rfb.FBSHeaderLen: 0} // offset -> blocks complete there
	off := rfb.FBSHeaderLen
	for i, n := range full.sizes {
		off += rfb.FBSBlockLen(n)
		ends[off] = i + 1
	}
	if off != len(file) {
		t.Fatalf("blocks end at %d, file is %d bytes", off, len(file))
	}
	if len(of.ends) < 10 {
		t.Fatalf("only %d writes", len(of.ends))
	}
	for _, e := range of.ends {
		if _, ok := ends[int(e)]; !ok {
			t.Fatalf("a write ended at %d, inside a block", e)
		}
	}
	whole := 0
	for cut := 0; cut <= len(file); cut++ {
		if n, ok := ends[cut]; ok {
			whole = n
		}
		var dec rfb.FBSDecoder
		b := file[:cut]
		got := 0
		var data []byte
		for {
			blk, n, err := dec.Next(b)
			if err != nil {
				if err != rfb.ErrShort {
					t.Fatalf("cut at %d: %v", cut, err)
				}
				break
			}
			data = append(data, blk.Data...)
			got++
			b = b[n:]
			if len(b) == 0 {
				break
			}
		}
		if got != whole {
			t.Fatalf("cut at %d: %d blocks decoded, %d whole before the cut", cut, got, whole)
		}
		var wantLen int
		for _, n := range full.sizes[:whole] {
			wantLen += n
		}
		if len(data) != wantLen {
			t.Fatalf("cut at %d: %d data bytes, want %d", cut, len(data), wantLen)
		}
	}
}

// syncFile counts syncs and fails them once told to.
type syncFile struct {
	*os.File
	mu    sync.Mutex
	syncs int
	fail  bool
}

func (f *syncFile) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	if f.fail {
		return errors.New("test: I/O error")
	}
	return f.File.Sync()
}

func (f *syncFile) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

// TestPeriodicSync: written data is synced within SyncInterval while the session goes on, and
// a failing sync fails the recording.
func TestPeriodicSync(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "ok", true: "failing"}[fail], func(t *testing.T) {
			var sf *syncFile
			r := newRecorder(t, Config{SyncInterval: 5 * time.Millisecond, Create: func(path string) (File, error) {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return nil, err
				}
				sf = &syncFile{File: f, fail: fail}
				return sf, nil
			}})
			rec := start(t, r, Session{ID: "s", Target: "vm"})
			rec.FromVM(serverSI.Append(nil), time.Now())
			deadline := time.Now().Add(10 * time.Second)
			for !rec.Failed() && time.Now().Before(deadline) {
				rec.FromVM([]byte{rfb.MsgBell}, time.Now())
				drain(rec)
				if !fail && sf.count() >= 3 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if fail != rec.Failed() {
				t.Fatalf("failed %v (%v) after %d syncs", rec.Failed(), rec.Err(), sf.count())
			}
			if fail && !strings.Contains(rec.Err().Error(), "sync") {
				t.Fatalf("err %v", rec.Err())
			}
			rec.End("done", time.Now())
			waitDone(t, rec)
			if st := r.Stats(); (st.Failed.Get() == 1) != fail || (st.Completed.Get() == 1) == fail {
				t.Fatalf("failed %d completed %d", st.Failed.Get(), st.Completed.Get())
			}
		})
	}
}
