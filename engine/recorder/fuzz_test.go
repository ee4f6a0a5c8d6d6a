package recorder

import (
	"bytes"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vncedge/rfb"
)

// FuzzSanitize: whatever a session id or target holds, its part of a file name is short, made
// of safe bytes only, never climbs out of the directory and is stable when sanitised again.
func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "10.0.0.5:5901", "unix:/run/vnc/vm1.sock", "../../etc/passwd", "..",
		"[fe80::1%eth0]:5901", "a\x00b", "é", strings.Repeat("x.", 300), "._._", "-rf", "a..b__c"} {
		f.Add(s, uint8(96))
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, s string, m uint8) {
		max := int(m)%200 + 1
		out := sanitize(s, max)
		if len(out) == 0 || len(out) > max {
			t.Fatalf("sanitize(%q, %d) = %q: length out of 1..%d", s, max, out, max)
		}
		for i := 0; i < len(out); i++ {
			c := out[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				t.Fatalf("sanitize(%q) = %q holds %q", s, out, c)
			}
		}
		if strings.Contains(out, "..") || strings.ContainsAny(out[:1]+out[len(out)-1:], "._") {
			t.Fatalf("sanitize(%q) = %q: a dot run or an edge dot or underscore", s, out)
		}
		if again := sanitize(out, max); again != out {
			t.Fatalf("sanitize(%q) = %q, but sanitize(%q) = %q", s, out, out, again)
		}
		name := baseName(time.Unix(1e9, 0), s, s, maxAttempts-1) + truncatedMark + inputSuffix
		if filepath.Base(name) != name || filepath.Clean(name) != name || len(name) > 255 {
			t.Fatalf("file name %q is not one plain name of at most 255 bytes", name)
		}
	})
}

// memFiles is a file system in memory for the fuzz target.
type memFiles struct {
	mu    sync.Mutex
	files map[string]*memFile
}

type memFile struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (f *memFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.Write(p)
}
func (f *memFile) Sync() error  { return nil }
func (f *memFile) Close() error { return nil }

func (m *memFiles) create(path string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := &memFile{}
	m.files[path] = f
	return f, nil
}

func (m *memFiles) bytes(path string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.files[path]
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.buf.Bytes())
}

// FuzzFeed hands the recorder an arbitrary VM stream in arbitrary pieces, with a
// SetPixelFormat somewhere: it never panics, and when the stream starts with a valid ServerInit
// the file decodes to exactly the rest of it, in the format the client asked for.
func FuzzFeed(f *testing.F) {
	si := serverSI.Append(nil)
	f.Add(append(si, rawUpdate(2, 2, 4, 1)...), []byte{3, 30, 1}, uint16(2))
	f.Add(si, []byte{}, uint16(0))
	f.Add(si[:10], []byte{1, 1, 1}, uint16(1))
	f.Add(append(si[:20:20], 0x7f, 0, 0, 0), []byte{5}, uint16(9))
	f.Add(append(si, bytes.Repeat([]byte{9}, 2*segSize)...), []byte{200, 0, 255}, uint16(1000))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data, cuts []byte, pfAt uint16) {
		mem := &memFiles{files: map[string]*memFile{}}
		r, err := New(Config{Dir: dir, Create: mem.create})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.Start(Session{ID: "f", Target: "vm"})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		pf := rfb.RGB565()
		rest, fed, sentPF, fedAtPF := data, 0, false, 0
		for i := 0; len(rest) > 0; i++ {
			if !sentPF && fed >= int(pfAt) {
				rec.SetPixelFormat(pf, now)
				sentPF, fedAtPF = true, fed
			}
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i])+1)
			}
			rec.FromVM(rest[:n], now)
			rest, fed = rest[n:], fed+n
		}
		rec.End("done", now)
		select {
		case <-rec.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the writer did not finish")
		}
		if err := r.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		fbs, _ := rec.Paths()
		file := mem.bytes(fbs)
		want, n, perr := rfb.ParseServerInit(data)
		switch {
		case perr == nil:
			d := decodeFBS(t, file)
			if d.err != nil || rec.Failed() {
				t.Fatalf("decode: %v (failed %v)", d.err, rec.Failed())
			}
			// The format is the client's if it asked before any byte after ServerInit.
			if sentPF && fedAtPF <= n {
				want.Format = pf
			}
			if d.si != want || !bytes.Equal(d.stream, data[n:]) {
				t.Fatalf("decoded %+v and %d bytes, want %+v and %d", d.si, len(d.stream), want, len(data)-n)
			}
		case perr == rfb.ErrShort:
			if string(file) != rfb.FBSHeader || rec.Failed() {
				t.Fatalf("incomplete ServerInit: file %q, failed %v", file, rec.Failed())
			}
		default:
			if !rec.Failed() {
				t.Fatalf("malformed ServerInit (%v) not failed", perr)
			}
		}
	})
}
