package routing

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// TokenFile is a token source in websockify's TokenFile format, extended
// with options (see ParseTokenFile): a file, or a directory of such files.
// Lookups read an in-memory snapshot behind an atomic pointer, so they never
// touch the disk and never block; Reload swaps in a new snapshot.
//
// The reload rule, per file (each file of a directory on its own):
//   - a file with any bad line, or a password file that cannot be read,
//     keeps its previous contents whole (an error);
//   - a file holding only white space keeps its previous contents (a
//     warning: that is what a file being rewritten in place looks like for a
//     moment; a file with only a comment is applied and removes every token);
//   - a directory entry that is a dangling symlink or a symlink loop is
//     skipped (a warning), like a file that is not there;
//   - a file gone from the directory takes its tokens with it;
//   - if the file or directory itself cannot be read, everything is kept.
//
// Within a directory, files are read in name order and a token in a later
// file wins.
type TokenFile struct {
	path string
	snap atomic.Pointer[tokenSnapshot]

	mu      sync.Mutex // serialises reloads, so an older one never overwrites a newer one
	lastSig []fileStamp
	lastPw  []string
	last    SourceReload
}

type tokenSnapshot struct {
	grants map[string]Grant
	files  map[string]*fileState // by path
}

type fileState struct {
	grants map[string]Grant
}

// fileStamp is what Changed compares to notice a change without reading files.
type fileStamp struct {
	path string
	size int64
	mod  int64  // UnixNano; comparable, unlike time.Time's location pointer
	err  string // why it could not be stat'ed
}

// maxTokenFileSize bounds one file's read: a token file of a million lines
// is some 60 MiB; anything past this is the wrong file.
const maxTokenFileSize = 256 << 20

// maxPasswordFileSize bounds a password file: a VNC password is 8 bytes.
const maxPasswordFileSize = 4 << 10

// maxReportedLines bounds the line errors joined into one error value, so a
// binary file dropped into a token directory cannot flood the log.
const maxReportedLines = 20

// NewTokenFile loads a file, or a directory of files (every regular file in
// it, symlinks followed, not recursive, dotfiles skipped), and keeps the
// result in memory.
//
// If the path cannot be read, it returns a nil *TokenFile. If some files are
// bad, it returns a usable *TokenFile holding the good files together with
// the error of the report: the caller decides whether that is fatal at
// start-up. LastReload has the full report, warnings included.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	rep := t.Reload()
	if rep.Err != nil {
		return nil, rep.Error()
	}
	return t, rep.Error()
}

// Name identifies the source in logs and metrics.
func (t *TokenFile) Name() string { return "file" }

// Path is the file or directory the source reads.
func (t *TokenFile) Path() string { return t.path }

// NonBlocking marks TokenFile as a source whose Lookup never blocks.
func (t *TokenFile) NonBlocking() {}

// operatorOwned marks the token file as the operator's own configuration on
// this host: its unix: targets are not limited by Config.UnixDirs.
func (t *TokenFile) operatorOwned() {}

// Lookup returns the token's grant, or ErrUnknownToken.
func (t *TokenFile) Lookup(_ context.Context, token string) (Grant, error) {
	if g, ok := t.snap.Load().grants[token]; ok {
		return g, nil
	}
	return Grant{}, ErrUnknownToken
}

// Len is the number of tokens in the current snapshot.
func (t *TokenFile) Len() int { return len(t.snap.Load().grants) }

// LastReload is the report of the most recent reload (or the first load).
func (t *TokenFile) LastReload() SourceReload {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Changed reports whether the files (or the password files they name)
// differ in size or modification time from what the last reload saw,
// whether that reload succeeded or not.
func (t *TokenFile) Changed() bool {
	t.mu.Lock()
	pw := t.lastPw
	last := t.lastSig
	t.mu.Unlock()
	entries, err := listTokenFiles(t.path)
	return !slices.Equal(signature(t.path, entries, err, pw), last)
}

// dirEntry is one file a load would read, or a directory entry it skips.
type dirEntry struct {
	stamp fileStamp
	skip  error // a dangling link or a loop
}

// signature is the comparable summary Changed and Reload agree on.
func signature(root string, entries []dirEntry, listErr error, pw []string) []fileStamp {
	if listErr != nil {
		return []fileStamp{{path: root, size: -1, err: errno(listErr)}}
	}
	sig := make([]fileStamp, 0, len(entries)+len(pw))
	for _, e := range entries {
		sig = append(sig, e.stamp)
	}
	for _, p := range pw {
		sig = append(sig, statStamp(p))
	}
	return sig
}

func statStamp(p string) fileStamp {
	fi, err := os.Stat(p)
	if err != nil {
		return fileStamp{path: p, size: -1, err: errno(err)}
	}
	return fileStamp{path: p, size: fi.Size(), mod: fi.ModTime().UnixNano()}
}

// errno reduces an error to something stable across polls (PathError
// messages are, but the wrapped errno is what changes matter for).
func errno(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	return err.Error()
}

// listTokenFiles lists the files a load would read, with their stamps. The
// stamps are taken before reading, so a write racing a load is seen as a
// change on the next poll instead of being missed.
func listTokenFiles(path string) ([]dirEntry, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if fi.Mode().IsRegular() {
		return []dirEntry{{stamp: fileStamp{path: path, size: fi.Size(), mod: fi.ModTime().UnixNano()}}}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("token file: %s is neither a regular file nor a directory", path)
	}
	des, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	entries := make([]dirEntry, 0, len(des))
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".") {
			continue // editor swap files; Kubernetes' ..data links
		}
		p := filepath.Join(path, de.Name())
		fi, err := os.Stat(p) // follows symlinks (ConfigMap volumes)
		switch {
		case errors.Is(err, fs.ErrNotExist) && de.Type()&fs.ModeSymlink == 0:
			continue // removed since ReadDir
		case errors.Is(err, fs.ErrNotExist):
			entries = append(entries, dirEntry{stamp: fileStamp{path: p, size: -1, err: "dangling"},
				skip: errors.New("dangling symlink (its target does not exist)")})
			continue
		case errors.Is(err, syscall.ELOOP):
			entries = append(entries, dirEntry{stamp: fileStamp{path: p, size: -1, err: "loop"},
				skip: errors.New("symlink loop")})
			continue
		case err != nil:
			// Unreadable for another reason: the load reports it and keeps
			// the file's previous tokens.
			entries = append(entries, dirEntry{stamp: fileStamp{path: p, size: -1, err: errno(err)}})
			continue
		}
		if fi.Mode().IsRegular() {
			entries = append(entries, dirEntry{stamp: fileStamp{path: p, size: fi.Size(), mod: fi.ModTime().UnixNano()}})
		}
	}
	return entries, nil
}

// Reload re-reads the file or directory under the rule in the type's
// comment and reports what it did.
func (t *TokenFile) Reload() SourceReload {
	t.mu.Lock()
	defer t.mu.Unlock()
	rep := t.reload()
	t.last = rep
	return rep
}

func (t *TokenFile) reload() SourceReload {
	rep := SourceReload{Source: t.Name(), Detail: t.path, Tokens: t.lenLocked()}
	old := t.snap.Load()
	if old == nil {
		old = &tokenSnapshot{}
	}
	entries, err := listTokenFiles(t.path)
	if err != nil {
		t.lastSig, t.lastPw = signature(t.path, nil, err, nil), nil
		rep.Err = err
		return rep
	}
	next := &tokenSnapshot{grants: make(map[string]Grant), files: make(map[string]*fileState, len(entries))}
	var pwPaths []string
	for _, e := range entries {
		p := e.stamp.path
		if e.skip != nil {
			rep.Files = append(rep.Files, FileReport{Path: p, Status: FileSkipped, Err: e.skip})
			continue
		}
		st, fr, pw := loadTokenFile(p, old.files[p])
		pwPaths = append(pwPaths, pw...)
		rep.Files = append(rep.Files, fr)
		if st == nil {
			continue
		}
		next.files[p] = st
		for tok, g := range st.grants {
			next.grants[tok] = g
		}
	}
	for p := range old.files {
		if _, still := next.files[p]; !still && !hasEntry(entries, p) {
			rep.Files = append(rep.Files, FileReport{Path: p, Status: FileRemoved})
		}
	}
	slices.Sort(pwPaths)
	pwPaths = slices.Compact(pwPaths)
	t.lastSig, t.lastPw = signature(t.path, entries, nil, pwPaths), pwPaths

	for tok, g := range next.grants {
		og, had := old.grants[tok]
		switch {
		case !had:
			rep.Added++
		case og != g:
			rep.Changed++
		}
	}
	for tok := range old.grants {
		if _, still := next.grants[tok]; !still {
			rep.Removed++
			rep.RemovedHashes = append(rep.RemovedHashes, TokenHash(tok))
		}
	}
	t.snap.Store(next)
	rep.Tokens = len(next.grants)
	return rep
}

func (t *TokenFile) lenLocked() int {
	if s := t.snap.Load(); s != nil {
		return len(s.grants)
	}
	return 0
}

func hasEntry(entries []dirEntry, p string) bool {
	for _, e := range entries {
		if e.stamp.path == p {
			return true
		}
	}
	return false
}

// loadTokenFile reads one file and its password files. It returns the state
// that serves from now on (prev when the file keeps its previous contents,
// nil when there is none), the report, and the password files it named.
func loadTokenFile(path string, prev *fileState) (*fileState, FileReport, []string) {
	fr := FileReport{Path: path}
	keep := func(status FileStatus, err error, bad int) (*fileState, FileReport) {
		fr.Status, fr.Err, fr.BadLines = status, err, bad
		if prev != nil {
			fr.Tokens = len(prev.grants)
		}
		return prev, fr
	}
	data, err := readBounded(path, maxTokenFileSize)
	if err != nil {
		st, fr := keep(FileKept, err, 0)
		return st, fr, nil
	}
	if len(bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\ufeff")))) == 0 {
		st, fr := keep(FileEmpty, nil, 0)
		if st == nil {
			fr.Status = FileApplied // new and empty: nothing to keep, nothing to warn about
		}
		return st, fr, nil
	}
	entries, errs := ParseTokenFile(data)
	dir := filepath.Dir(path)
	var pwPaths []string
	pwCache := make(map[string]string)
	grants := make(map[string]Grant, len(entries))
	for tok, e := range entries {
		g := e.Grant
		if e.PasswordFile != "" {
			p := e.PasswordFile
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			pwPaths = append(pwPaths, p)
			pw, ok := pwCache[p]
			if !ok {
				var err error
				if pw, err = readPasswordFile(p); err != nil {
					errs = append(errs, &LineError{Line: e.Line, Reason: "password-file: " + err.Error()})
					continue
				}
				pwCache[p] = pw
			}
			g.Password = pw
		}
		grants[tok] = g
	}
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b error) int { return lineOf(a) - lineOf(b) })
		for _, e := range errs {
			var le *LineError
			if errors.As(e, &le) {
				le.File = path
			}
		}
		st, fr := keep(FileKept, joinLineErrors(errs), len(errs))
		return st, fr, pwPaths
	}
	fr.Status, fr.Tokens = FileApplied, len(grants)
	return &fileState{grants: grants}, fr, pwPaths
}

func lineOf(err error) int {
	var le *LineError
	if errors.As(err, &le) {
		return le.Line
	}
	return 0
}

func joinLineErrors(errs []error) error {
	if len(errs) > maxReportedLines {
		more := len(errs) - maxReportedLines
		errs = append(errs[:maxReportedLines:maxReportedLines], fmt.Errorf("and %d more bad lines", more))
	}
	return errors.Join(errs...)
}

// readBounded reads a regular file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// readPasswordFile reads a VNC password: the file's content without one
// trailing newline. The error names the file, never its content.
func readPasswordFile(path string) (string, error) {
	data, err := readBounded(path, maxPasswordFileSize)
	if err != nil {
		return "", err
	}
	pw := string(trimOneNewline(data))
	if pw == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return pw, nil
}

// trimOneNewline drops one trailing "\n" or "\r\n", as editors and echo add.
func trimOneNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n > 1 && b[n-2] == '\r' {
			b = b[:n-2]
		}
	}
	return b
}
