package routing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTokenFile(t *testing.T) {
	data := strings.Join([]string{
		"# websockify token file",      // 1 comment
		"",                             // 2 blank
		"vm1: 192.168.100.3:5901",      // 3
		"  vm2:   vm2.lan:5902  ",      // 4 whitespace around line and target
		"\t# indented comment",         // 5
		"vm3 : 10.0.0.3:5901",          // 6 space before ':' (token stripped)
		"v6a: fd00::1:5901",            // 7 unbracketed IPv6, split at last ':'
		"v6b: [fd00::2]:5902",          // 8 bracketed IPv6
		"mapped: ::ffff:10.0.0.9:5901", // 9
		"zone: fe80::1%eth0:5901",      // 10
		"vm1: 192.168.100.4:5901",      // 11 duplicate: last wins
		"nocolon 10.0.0.1:5901",        // 12 bad
		"nospace:10.0.0.1:5901",        // 13 bad: websockify needs ": "
		"two: seps: 10.0.0.1:5901",     // 14 bad: ": " twice
		"noport: 10.0.0.1",             // 15 bad
		"badport: 10.0.0.1:vnc",        // 16 bad
		"zero: 10.0.0.1:0",             // 17 bad
		"big: 10.0.0.1:65536",          // 18 bad
		": 10.0.0.1:5901",              // 19 bad: empty token
		"emptyhost: :5901",             // 20 bad
		"badhost: bad host:5901",       // 21 bad
		"brackets: [10.0.0.1]:5901",    // 22 bad
		"v6noport: fd00::1",            // 23 bad host "fd00:"
		"lead0: 10.0.0.1:05901",        // 24 port normalised
		"vm4: 10.0.0.4:5901 # note",    // 25 bad: websockify keeps no inline comments
		"last: 10.0.0.5:5901",          // 26 no trailing newline
	}, "\n")
	m, errs := ParseTokenFile([]byte(data))
	want := map[string]string{
		"vm1":    "192.168.100.4:5901",
		"vm2":    "vm2.lan:5902",
		"vm3":    "10.0.0.3:5901",
		"v6a":    "[fd00::1]:5901",
		"v6b":    "[fd00::2]:5902",
		"mapped": "[::ffff:10.0.0.9]:5901",
		"zone":   "[fe80::1%eth0]:5901",
		"lead0":  "10.0.0.1:5901",
		"last":   "10.0.0.5:5901",
	}
	if len(m) != len(want) {
		t.Errorf("got %d entries %v, want %d", len(m), m, len(want))
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("token %q = %q, want %q", k, m[k], v)
		}
	}
	wantLines := []int{12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 25}
	if len(errs) != len(wantLines) {
		t.Fatalf("got %d errors %v, want lines %v", len(errs), errs, wantLines)
	}
	for i, err := range errs {
		var le *LineError
		if !errors.As(err, &le) || le.Line != wantLines[i] || le.Reason == "" {
			t.Errorf("error %d = %v, want line %d", i, err, wantLines[i])
		}
		// Errors name the line, never its text (which holds a token).
		if strings.Contains(err.Error(), "nocolon") || strings.Contains(err.Error(), "badport") {
			t.Errorf("error leaks the line text: %v", err)
		}
	}
}

func TestParseTokenFileLineEndings(t *testing.T) {
	for name, data := range map[string]string{
		"lf":   "a: 10.0.0.1:5901\nb: 10.0.0.2:5901\n",
		"crlf": "a: 10.0.0.1:5901\r\nb: 10.0.0.2:5901\r\n",
		"cr":   "a: 10.0.0.1:5901\rb: 10.0.0.2:5901\r",
		"bom":  "\ufeffa: 10.0.0.1:5901\nb: 10.0.0.2:5901",
	} {
		m, errs := ParseTokenFile([]byte(data))
		if len(errs) != 0 || m["a"] != "10.0.0.1:5901" || m["b"] != "10.0.0.2:5901" || len(m) != 2 {
			t.Errorf("%s: %v %v", name, m, errs)
		}
	}
	// Line numbers count CRLF as one line break.
	_, errs := ParseTokenFile([]byte("a: 10.0.0.1:5901\r\n\r\nbad\r\n"))
	var le *LineError
	if len(errs) != 1 || !errors.As(errs[0], &le) || le.Line != 3 {
		t.Errorf("CRLF line numbering: %v", errs)
	}
	// Python's strip() also removes \x1c-\x1f; invalid UTF-8 is a bad line.
	m, errs := ParseTokenFile([]byte("\x1ca: 10.0.0.1:5901\x1f\nb\xff: 10.0.0.2:5901\n"))
	if m["a"] != "10.0.0.1:5901" || len(errs) != 1 {
		t.Errorf("python whitespace / utf-8: %v %v", m, errs)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tempTokenFile writes data to a fresh file and loads it, failing on any error.
func tempTokenFile(t testing.TB, data string) (*TokenFile, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, p, data)
	tf, err := NewTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return tf, p
}

func lookup(t *testing.T, tf *TokenFile, token string) string {
	t.Helper()
	hp, err := tf.Lookup(context.Background(), token)
	if err != nil {
		if !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("Lookup(%q): %v", token, err)
		}
		return ""
	}
	return hp
}

func TestTokenFileSingle(t *testing.T) {
	tf, p := tempTokenFile(t, "vm1: 10.0.0.1:5901\n")
	if got := lookup(t, tf, "vm1"); got != "10.0.0.1:5901" {
		t.Fatalf("vm1 = %q", got)
	}
	if got := lookup(t, tf, "nope"); got != "" {
		t.Fatalf("nope = %q", got)
	}
	if tf.Len() != 1 || !strings.Contains(tf.Name(), p) {
		t.Fatalf("Len %d Name %q", tf.Len(), tf.Name())
	}

	// Reload picks up changes, including removals.
	writeFile(t, p, "vm2: 10.0.0.2:5901\n")
	if err := tf.Reload(); err != nil {
		t.Fatal(err)
	}
	if lookup(t, tf, "vm1") != "" || lookup(t, tf, "vm2") != "10.0.0.2:5901" {
		t.Fatal("reload did not replace the snapshot")
	}

	// Bad lines: the good ones take effect, the bad ones are reported with the file name.
	writeFile(t, p, "vm3: 10.0.0.3:5901\nbroken\n")
	err := tf.Reload()
	if err == nil || !strings.Contains(err.Error(), p+":2:") {
		t.Fatalf("reload with a bad line: %v", err)
	}
	if lookup(t, tf, "vm3") != "10.0.0.3:5901" || lookup(t, tf, "vm2") != "" {
		t.Fatal("good lines of a file with a bad line were not applied")
	}

	// An unreadable source keeps the old snapshot.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := tf.Reload(); err == nil {
		t.Fatal("reload of a missing file succeeded")
	}
	if lookup(t, tf, "vm3") != "10.0.0.3:5901" {
		t.Fatal("failed reload dropped the old snapshot")
	}
}

func TestNewTokenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if tf, err := NewTokenFile(filepath.Join(dir, "missing")); err == nil || tf != nil {
		t.Fatalf("missing file: %v %v", tf, err)
	}
	p := filepath.Join(dir, "tokens")
	writeFile(t, p, "ok: 10.0.0.1:5901\nbad\n")
	tf, err := NewTokenFile(p)
	if err == nil || tf == nil {
		t.Fatalf("bad line: want a usable source and an error, got %v %v", tf, err)
	}
	if lookup(t, tf, "ok") != "10.0.0.1:5901" {
		t.Fatal("good line lost")
	}
	var many strings.Builder
	for range 100 {
		many.WriteString("bad\n")
	}
	writeFile(t, p, many.String())
	err = tf.Reload()
	if err == nil || strings.Count(err.Error(), "\n") > maxReportedLines+1 || !strings.Contains(err.Error(), "80 more") {
		t.Fatalf("bad-line report not bounded: %v", err)
	}
}

func TestTokenFileDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.conf"), "vm1: 10.0.0.1:5901\nshared: 10.0.0.10:5901\n")
	writeFile(t, filepath.Join(dir, "b.conf"), "vm2: 10.0.0.2:5901\nshared: 10.0.0.20:5901\n")
	writeFile(t, filepath.Join(dir, ".hidden"), "hidden: 10.0.0.3:5901\n")
	writeFile(t, filepath.Join(dir, "a.conf.swp~"), "swp: 10.0.0.4:5901\n")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub", "c.conf"), "nested: 10.0.0.5:5901\n")
	// Kubernetes ConfigMap volumes: files are symlinks through a dot-named directory.
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "..data", "k8s"), "k8s: 10.0.0.6:5901\n")
	if err := os.Symlink(filepath.Join(dir, "..data", "k8s"), filepath.Join(dir, "k8s")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}

	tf, err := NewTokenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"vm1": "10.0.0.1:5901", "vm2": "10.0.0.2:5901", "shared": "10.0.0.20:5901",
		"swp": "10.0.0.4:5901", "k8s": "10.0.0.6:5901",
		"hidden": "", "nested": "",
	}
	for tok, hp := range want {
		if got := lookup(t, tf, tok); got != hp {
			t.Errorf("%s = %q, want %q", tok, got, hp)
		}
	}
	if tf.Len() != 5 {
		t.Errorf("Len = %d, want 5", tf.Len())
	}
}

func TestTokenFileWatch(t *testing.T) {
	tf, p := tempTokenFile(t, "vm1: 10.0.0.1:5901\n")
	dir := filepath.Dir(p)
	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tf.Watch(ctx, 10*time.Millisecond, log)
	}()
	defer func() {
		cancel()
		<-done
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; !cond(); i++ {
			if time.Now().After(deadline) || i > 2000 {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logBuf.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// A change of size is seen even if the mtime granularity hides the write.
	writeFile(t, p, "vm1: 10.0.0.1:5901\nvm2: 10.0.0.2:5901\n")
	waitFor("vm2 to appear", func() bool { return lookup(t, tf, "vm2") == "10.0.0.2:5901" })

	// Replace by rename, as editors and config managers do.
	tmp := filepath.Join(dir, ".tokens.tmp")
	writeFile(t, tmp, "vm3: 10.0.0.3:5901\n")
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	waitFor("vm3 to replace the rest", func() bool {
		return lookup(t, tf, "vm3") == "10.0.0.3:5901" && lookup(t, tf, "vm1") == ""
	})

	// A vanished file is logged once and the snapshot stays.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	waitFor("the error to be logged", func() bool { return strings.Contains(logBuf.String(), "no such file") })
	if lookup(t, tf, "vm3") != "10.0.0.3:5901" {
		t.Fatal("snapshot lost when the file vanished")
	}
	writeFile(t, p, "vm4: 10.0.0.4:5901\n")
	waitFor("vm4 after the file came back", func() bool { return lookup(t, tf, "vm4") == "10.0.0.4:5901" })
	if n := strings.Count(logBuf.String(), "no such file"); n != 1 {
		t.Errorf("missing-file error logged %d times, want once:\n%s", n, logBuf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the watcher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTokenFileConcurrentLookupReload(t *testing.T) {
	tf, p := tempTokenFile(t, "a: 10.0.0.1:5901\nb: 10.0.0.2:5901\n")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				hp, err := tf.Lookup(context.Background(), "a")
				// "a" is in every version of the file, with one of two targets.
				if err != nil || (hp != "10.0.0.1:5901" && hp != "10.0.0.9:5901") {
					t.Errorf("Lookup during reload = %q, %v", hp, err)
					return
				}
				_ = tf.Len()
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			writeFile(t, p, "a: 10.0.0.9:5901\n")
		} else {
			writeFile(t, p, "a: 10.0.0.1:5901\nb: 10.0.0.2:5901\n")
		}
		if err := tf.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}
