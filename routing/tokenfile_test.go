package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// targets reduces parsed entries to token -> target.
func targets(m map[string]FileEntry) map[string]string {
	out := make(map[string]string, len(m))
	for k, e := range m {
		out[k] = e.Target
	}
	return out
}

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
		"badhost: bad host:5901",       // 21 bad: "host:5901" is no option
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
	got := targets(m)
	if len(got) != len(want) {
		t.Errorf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("token %q = %q, want %q", k, got[k], v)
		}
	}
	if m["vm1"].Line != 11 || m["last"].Line != 26 {
		t.Errorf("line numbers: vm1 %d last %d", m["vm1"].Line, m["last"].Line)
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

func TestParseTokenFileOptions(t *testing.T) {
	data := strings.Join([]string{
		"plain: 10.0.0.1:5901", // 1
		"all: 10.0.0.2:5901 view-only record tls password-file=a.pw", // 2
		"tabs: 10.0.0.3:5901\tview-only\t\trecord",                   // 3
		"sock: unix:/run/vnc/vm1.sock view-only",                     // 4
		"abs: 10.0.0.4:5901 password-file=/etc/vncedge/vm4.pw",       // 5
		"typo: 10.0.0.5:5901 viewonly",                               // 6 bad: unknown option
		"twice: 10.0.0.6:5901 record record",                         // 7 bad
		"value: 10.0.0.7:5901 tls=yes",                               // 8 bad
		"nopath: 10.0.0.8:5901 password-file=",                       // 9 bad
		"rel: unix:run/vm.sock",                                      // 10 bad: relative socket
		"dots: unix:/run/vnc/../docker.sock",                         // 11 bad: not clean
		"long: unix:/" + strings.Repeat("a", 120),                    // 12 bad: too long
		"secret: 10.0.0.9:5901 s3cr3tT0k3n=X",                        // 13 bad: not echoed
		"empty:  ",                                                   // 14 bad: no target
		"ven: 10.0.0.10:5901 vencrypt record",                        // 15
		"both: 10.0.0.11:5901 tls vencrypt",                          // 16 bad: exclusive
	}, "\n")
	m, errs := ParseTokenFile([]byte(data))
	wantGrants := map[string]FileEntry{
		"plain": {Grant: Grant{Target: "10.0.0.1:5901"}, Line: 1},
		"all":   {Grant: Grant{Target: "10.0.0.2:5901", ViewOnly: true, Record: true, TLS: true}, PasswordFile: "a.pw", Line: 2},
		"tabs":  {Grant: Grant{Target: "10.0.0.3:5901", ViewOnly: true, Record: true}, Line: 3},
		"sock":  {Grant: Grant{Target: "unix:/run/vnc/vm1.sock", ViewOnly: true}, Line: 4},
		"abs":   {Grant: Grant{Target: "10.0.0.4:5901"}, PasswordFile: "/etc/vncedge/vm4.pw", Line: 5},
		"ven":   {Grant: Grant{Target: "10.0.0.10:5901", VeNCrypt: true, Record: true}, Line: 15},
	}
	if len(m) != len(wantGrants) {
		t.Errorf("entries %v", m)
	}
	for tok, want := range wantGrants {
		if m[tok] != want {
			t.Errorf("%s = %+v, want %+v", tok, m[tok], want)
		}
	}
	var lines []int
	for _, err := range errs {
		var le *LineError
		if errors.As(err, &le) {
			lines = append(lines, le.Line)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error echoes a token-like option: %v", err)
		}
	}
	if !slices.Equal(lines, []int{6, 7, 8, 9, 10, 11, 12, 13, 14, 16}) {
		t.Errorf("bad lines %v: %v", lines, errs)
	}
	if !strings.Contains(errs[0].Error(), `"viewonly"`) {
		t.Errorf("a mistyped option should be named: %v", errs[0])
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
		got := targets(m)
		if len(errs) != 0 || got["a"] != "10.0.0.1:5901" || got["b"] != "10.0.0.2:5901" || len(got) != 2 {
			t.Errorf("%s: %v %v", name, got, errs)
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
	if m["a"].Target != "10.0.0.1:5901" || len(errs) != 1 {
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
	g, err := tf.Lookup(context.Background(), token)
	if err != nil {
		if !errors.Is(err, ErrUnknownToken) {
			t.Fatalf("Lookup(%q): %v", token, err)
		}
		return ""
	}
	return g.Target
}

func fileStatus(rep SourceReload, path string) FileStatus {
	for _, f := range rep.Files {
		if f.Path == path {
			return f.Status
		}
	}
	return 0
}

func TestTokenFileSingle(t *testing.T) {
	tf, p := tempTokenFile(t, "vm1: 10.0.0.1:5901\n")
	if got := lookup(t, tf, "vm1"); got != "10.0.0.1:5901" {
		t.Fatalf("vm1 = %q", got)
	}
	if got := lookup(t, tf, "nope"); got != "" {
		t.Fatalf("nope = %q", got)
	}
	if tf.Len() != 1 || tf.Path() != p || tf.Name() != "file" {
		t.Fatalf("Len %d Path %q Name %q", tf.Len(), tf.Path(), tf.Name())
	}

	// Reload picks up changes, including removals, and says which went.
	writeFile(t, p, "vm2: 10.0.0.2:5901\n")
	rep := tf.Reload()
	if rep.Failed() || rep.Added != 1 || rep.Removed != 1 || rep.Tokens != 1 ||
		!slices.Equal(rep.RemovedHashes, []string{TokenHash("vm1")}) {
		t.Fatalf("reload report %+v", rep)
	}
	if lookup(t, tf, "vm1") != "" || lookup(t, tf, "vm2") != "10.0.0.2:5901" {
		t.Fatal("reload did not replace the snapshot")
	}

	// Issue 10 item 13: a file with a bad line keeps its previous contents
	// whole, even the lines that changed beside the bad one, and says so.
	writeFile(t, p, "vm3: 10.0.0.3:5901\nbroken\n")
	rep = tf.Reload()
	err := rep.Error()
	if !rep.Failed() || err == nil || !strings.Contains(err.Error(), p+":2:") ||
		!strings.Contains(err.Error(), "kept its previous 1 token (1 bad line)") {
		t.Fatalf("reload with a bad line: %+v %v", rep, err)
	}
	if fileStatus(rep, p) != FileKept || rep.Removed != 0 || rep.Added != 0 {
		t.Fatalf("report %+v", rep)
	}
	if lookup(t, tf, "vm2") != "10.0.0.2:5901" || lookup(t, tf, "vm3") != "" {
		t.Fatal("a file with a bad line was applied in part")
	}

	// Garbage: same rule.
	writeFile(t, p, "\x00\x01\x02 garbage\n\xff\xfe\n")
	if rep = tf.Reload(); !rep.Failed() || lookup(t, tf, "vm2") != "10.0.0.2:5901" {
		t.Fatalf("garbage applied: %+v", rep)
	}

	// Truncated to empty: a warning, and the tokens stay.
	writeFile(t, p, "")
	rep = tf.Reload()
	if rep.Failed() || fileStatus(rep, p) != FileEmpty || len(rep.Warnings()) != 1 ||
		!strings.Contains(rep.Warnings()[0], "empty") || lookup(t, tf, "vm2") != "10.0.0.2:5901" {
		t.Fatalf("empty file: %+v %v", rep, rep.Warnings())
	}
	writeFile(t, p, " \n\t\r\n")
	if rep = tf.Reload(); fileStatus(rep, p) != FileEmpty || lookup(t, tf, "vm2") == "" {
		t.Fatalf("white-space file: %+v", rep)
	}
	// Only a comment: applied, every token removed.
	writeFile(t, p, "# no VMs today\n")
	rep = tf.Reload()
	if rep.Failed() || fileStatus(rep, p) != FileApplied || rep.Removed != 1 || tf.Len() != 0 {
		t.Fatalf("comment-only file: %+v", rep)
	}

	// An unreadable source keeps the old snapshot.
	writeFile(t, p, "vm5: 10.0.0.5:5901\n")
	tf.Reload()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if rep = tf.Reload(); rep.Err == nil || !rep.Failed() || !strings.Contains(rep.Error().Error(), "kept all its previous tokens") {
		t.Fatalf("reload of a missing file: %+v", rep)
	}
	if lookup(t, tf, "vm5") != "10.0.0.5:5901" {
		t.Fatal("failed reload dropped the old snapshot")
	}
	if last := tf.LastReload(); last.Err == nil {
		t.Fatalf("LastReload = %+v", last)
	}
}

func TestTokenFileChangedChange(t *testing.T) {
	tf, p := tempTokenFile(t, "vm1: 10.0.0.1:5901\n")
	if tf.Changed() {
		t.Fatal("Changed right after load")
	}
	// A change of size is seen even if the mtime granularity hides the write.
	writeFile(t, p, "vm1: 10.0.0.1:5901\nvm2: 10.0.0.2:5901\n")
	if !tf.Changed() {
		t.Fatal("size change not seen")
	}
	tf.Reload()
	if tf.Changed() {
		t.Fatal("Changed after reload")
	}
	// A broken file reports one change, not one per poll.
	writeFile(t, p, "broken\n")
	if !tf.Changed() {
		t.Fatal("change not seen")
	}
	tf.Reload()
	if tf.Changed() {
		t.Fatal("a broken file keeps reporting a change")
	}
	// A vanished file too.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if !tf.Changed() {
		t.Fatal("removal not seen")
	}
	tf.Reload()
	if tf.Changed() {
		t.Fatal("a missing file keeps reporting a change")
	}
	writeFile(t, p, "vm4: 10.0.0.4:5901\n")
	if !tf.Changed() {
		t.Fatal("the file's return not seen")
	}
	tf.Reload()
	if lookup(t, tf, "vm4") != "10.0.0.4:5901" {
		t.Fatal("vm4 after the file came back")
	}
}

func TestTokenFilePasswordFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tokens")
	writeFile(t, filepath.Join(dir, "vm1.pw"), "s3cret\n")
	abs := filepath.Join(t.TempDir(), "vm2.pw")
	writeFile(t, abs, "other\r\n")
	writeFile(t, p, "vm1: 10.0.0.1:5901 password-file=vm1.pw view-only\nvm2: 10.0.0.2:5901 password-file="+abs+"\n")
	tf, err := NewTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := tf.Lookup(context.Background(), "vm1")
	if g.Password != "s3cret" || !g.ViewOnly || g.Target != "10.0.0.1:5901" {
		t.Fatalf("vm1 = %+v", g)
	}
	if g, _ := tf.Lookup(context.Background(), "vm2"); g.Password != "other" {
		t.Fatalf("vm2 password %q", g.Password)
	}

	// Rotating a password file alone is a change, and a reload reads it.
	writeFile(t, filepath.Join(dir, "vm1.pw"), "n3w-pass\n")
	if !tf.Changed() {
		t.Fatal("password file change not seen")
	}
	rep := tf.Reload()
	if g, _ := tf.Lookup(context.Background(), "vm1"); g.Password != "n3w-pass" || rep.Changed != 1 {
		t.Fatalf("rotated password: %q, report %+v", g.Password, rep)
	}

	// A missing or empty password file makes its line bad: the file keeps
	// its previous contents, and the error names the line and the file but
	// never a password.
	if err := os.Remove(abs); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, "vm1: 10.0.0.1:5901 password-file=vm1.pw\nvm2: 10.0.0.2:5901 password-file="+abs+"\nvm3: 10.0.0.3:5901\n")
	rep = tf.Reload()
	err = rep.Error()
	if err == nil || !strings.Contains(err.Error(), p+":2: password-file") || strings.Contains(err.Error(), "n3w-pass") {
		t.Fatalf("missing password file: %v", err)
	}
	if lookup(t, tf, "vm3") != "" || lookup(t, tf, "vm2") == "" {
		t.Fatal("a file with a missing password file was applied")
	}
	writeFile(t, abs, "\n")
	if err := tf.Reload().Error(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty password file: %v", err)
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
	if tf.Len() != 0 {
		t.Fatal("a new file with a bad line has no previous contents to keep, so it serves nothing")
	}
	var many strings.Builder
	for range 100 {
		many.WriteString("bad\n")
	}
	writeFile(t, p, many.String())
	err = tf.Reload().Error()
	if err == nil || strings.Count(err.Error(), "\n") > maxReportedLines+1 || !strings.Contains(err.Error(), "80 more") {
		t.Fatalf("bad-line report not bounded: %v", err)
	}
	// Not a file nor a directory.
	if _, err := NewTokenFile(os.DevNull); err == nil {
		t.Fatal("a device accepted as a token file")
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
	if st := fileStatus(tf.LastReload(), filepath.Join(dir, "dangling")); st != FileSkipped {
		t.Errorf("dangling link: %v", st)
	}
}

// TestTokenFileDirectoryRules checks the per-file reload rule in a
// directory: a bad file keeps its own previous tokens while its neighbours
// apply; symlink loops and dangling links are skipped alike and never block
// later reloads; a removed file takes its tokens along.
func TestTokenFileDirectoryRules(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	writeFile(t, a, "a1: 10.0.0.1:5901\na2: 10.0.0.2:5901\n")
	writeFile(t, b, "b1: 10.0.1.1:5901\n")
	writeFile(t, c, "c1: 10.0.2.1:5901\n")
	tf, err := NewTokenFile(dir)
	if err != nil {
		t.Fatal(err)
	}

	// a gets a bad line beside a removal; b changes for real; c is deleted.
	writeFile(t, a, "a1: 10.0.0.1:5901\nbroken\n")
	writeFile(t, b, "b1: 10.0.1.9:5901\nb2: 10.0.1.2:5901\n")
	if err := os.Remove(c); err != nil {
		t.Fatal(err)
	}
	// A symlink loop and a dangling link appear.
	if err := os.Symlink(filepath.Join(dir, "loop2"), filepath.Join(dir, "loop1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "loop1"), filepath.Join(dir, "loop2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	rep := tf.Reload()
	if rep.Err != nil {
		t.Fatalf("a symlink loop blocked the reload: %v", rep.Err)
	}
	wantStatus := map[string]FileStatus{
		a: FileKept, b: FileApplied, c: FileRemoved,
		filepath.Join(dir, "loop1"): FileSkipped, filepath.Join(dir, "loop2"): FileSkipped,
		filepath.Join(dir, "dangling"): FileSkipped,
	}
	for p, st := range wantStatus {
		if got := fileStatus(rep, p); got != st {
			t.Errorf("%s: %v, want %v", filepath.Base(p), got, st)
		}
	}
	if lookup(t, tf, "a2") != "10.0.0.2:5901" || lookup(t, tf, "b1") != "10.0.1.9:5901" ||
		lookup(t, tf, "b2") != "10.0.1.2:5901" || lookup(t, tf, "c1") != "" {
		t.Fatal("per-file rule not applied")
	}
	if rep.Removed != 1 || rep.RemovedHashes[0] != TokenHash("c1") || rep.Added != 1 || rep.Changed != 1 {
		t.Errorf("counts: %+v", rep)
	}
	if n := len(rep.Warnings()); n != 3 {
		t.Errorf("%d warnings, want 3 (two loop links, one dangling): %v", n, rep.Warnings())
	}
	var loopWarn, danglingWarn bool
	for _, w := range rep.Warnings() {
		loopWarn = loopWarn || strings.Contains(w, "symlink loop")
		danglingWarn = danglingWarn || strings.Contains(w, "dangling")
	}
	if !loopWarn || !danglingWarn {
		t.Errorf("warnings should say loop and dangling: %v", rep.Warnings())
	}
	if err := rep.Error(); err == nil || !strings.Contains(err.Error(), a+" kept its previous 2 tokens") {
		t.Errorf("error: %v", err)
	}

	// Later reloads keep working with the loop in place.
	writeFile(t, a, "a1: 10.0.0.1:5901\n")
	rep = tf.Reload()
	if rep.Failed() || lookup(t, tf, "a2") != "" || fileStatus(rep, a) != FileApplied {
		t.Fatalf("reload after the loop: %+v", rep)
	}
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
				g, err := tf.Lookup(context.Background(), "a")
				// "a" is in every version of the file, with one of two targets.
				if err != nil || (g.Target != "10.0.0.1:5901" && g.Target != "10.0.0.9:5901") {
					t.Errorf("Lookup during reload = %q, %v", g.Target, err)
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
		if rep := tf.Reload(); rep.Failed() {
			t.Fatal(rep.Error())
		}
	}
	close(stop)
	wg.Wait()
}

// syncBuffer is a bytes.Buffer safe for goroutines writing while the test reads.
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

// waitFor polls cond until it holds, bounded in time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func BenchmarkTokenFileLookup(b *testing.B) {
	var sb strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&sb, "tok%06d: 10.%d.%d.%d:5901\n", i, i>>16&255, i>>8&255, i&255)
	}
	tf, _ := tempTokenFile(b, sb.String())
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tf.Lookup(ctx, "tok004242"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
