package routing

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// TokenFile is a token source in websockify's TokenFile format: a file, or a
// directory of such files, of "token: host:port" lines. Lookups read an
// in-memory snapshot behind an atomic pointer, so they never touch the disk
// and never block; Reload and Watch swap in a new snapshot.
type TokenFile struct {
	path string
	snap atomic.Pointer[tokenSnapshot]
	mu   sync.Mutex // serialises loads, so an older load never overwrites a newer one
}

type tokenSnapshot struct {
	targets map[string]string
	stamps  []fileStamp
}

// fileStamp is what Watch compares to notice a change without reading files.
type fileStamp struct {
	path string
	size int64
	mod  int64 // UnixNano; comparable, unlike time.Time's location pointer
}

// LineError is one bad line of a token file. It names the line, never its
// text: the text holds a token.
type LineError struct {
	File   string // empty for ParseTokenFile
	Line   int    // 1-based
	Reason string
}

func (e *LineError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// maxReportedLines bounds the line errors joined into one error value, so a
// binary file dropped into a token directory cannot flood the log.
const maxReportedLines = 20

// NewTokenFile loads a file, or a directory of files (every regular file in
// it, symlinks followed, not recursive, dotfiles skipped, in name order so a
// token in a later file wins), and keeps the result in memory.
//
// If the path cannot be read, it returns a nil *TokenFile. If some lines are
// bad, it returns a usable *TokenFile holding the good lines together with an
// error listing the bad ones (*LineError values, joined): the caller decides
// whether that is fatal at start-up.
func NewTokenFile(path string) (*TokenFile, error) {
	t := &TokenFile{path: path}
	if err := t.Reload(); err != nil {
		if t.snap.Load() == nil {
			return nil, err
		}
		return t, err
	}
	return t, nil
}

// Name identifies the source in logs.
func (t *TokenFile) Name() string { return "token-file " + t.path }

// Lookup returns the "host:port" for token, or ErrUnknownToken.
func (t *TokenFile) Lookup(_ context.Context, token string) (string, error) {
	if hp, ok := t.snap.Load().targets[token]; ok {
		return hp, nil
	}
	return "", ErrUnknownToken
}

// Len is the number of tokens in the current snapshot.
func (t *TokenFile) Len() int { return len(t.snap.Load().targets) }

// Reload re-reads the file or directory. If it cannot be read, the old
// snapshot stays. Bad lines do not stop the reload: like websockify, the good
// lines take effect (so removing a token takes effect even next to a typo)
// and the bad ones are returned as joined *LineError values.
func (t *TokenFile) Reload() error {
	_, err := t.reload()
	return err
}

// reload reports whether it swapped in a new snapshot.
func (t *TokenFile) reload() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamps, err := statTokenFiles(t.path)
	if err != nil {
		return false, err
	}
	targets := make(map[string]string)
	var lineErrs []error
	for _, st := range stamps {
		data, err := os.ReadFile(st.path)
		if err != nil {
			return false, fmt.Errorf("token file: %w", err)
		}
		m, errs := ParseTokenFile(data)
		for _, e := range errs {
			var le *LineError
			if errors.As(e, &le) {
				le.File = st.path
			}
			lineErrs = append(lineErrs, e)
		}
		for k, v := range m {
			targets[k] = v
		}
	}
	t.snap.Store(&tokenSnapshot{targets: targets, stamps: stamps})
	return true, joinLineErrors(lineErrs)
}

func joinLineErrors(errs []error) error {
	if len(errs) > maxReportedLines {
		more := len(errs) - maxReportedLines
		errs = append(errs[:maxReportedLines:maxReportedLines], fmt.Errorf("and %d more bad lines", more))
	}
	return errors.Join(errs...)
}

// statTokenFiles lists the files a load would read, with their stamps. The
// stamps are taken before reading, so a write racing a load is seen as a
// change on the next poll instead of being missed.
func statTokenFiles(path string) ([]fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	if fi.Mode().IsRegular() {
		return []fileStamp{{path: path, size: fi.Size(), mod: fi.ModTime().UnixNano()}}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("token file: %s is neither a regular file nor a directory", path)
	}
	entries, err := os.ReadDir(path) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	stamps := make([]fileStamp, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // editor swap files; Kubernetes' ..data links
		}
		p := filepath.Join(path, e.Name())
		fi, err := os.Stat(p) // follows symlinks (ConfigMap volumes)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir, or a dangling link
		}
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		if fi.Mode().IsRegular() {
			stamps = append(stamps, fileStamp{path: p, size: fi.Size(), mod: fi.ModTime().UnixNano()})
		}
	}
	return stamps, nil
}

// Watch polls the files' sizes and modification times every interval (one
// second if interval <= 0) and reloads on a change, until ctx ends. Errors go
// to log (slog.Default() if nil), each distinct error once until it changes.
// Run it in its own goroutine.
func (t *TokenFile) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	lastErr := ""
	report := func(err error) {
		if err == nil {
			lastErr = ""
			return
		}
		if msg := err.Error(); msg != lastErr {
			lastErr = msg
			log.Warn("token file reload", "source", t.Name(), "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stamps, err := statTokenFiles(t.path)
		if err != nil {
			report(err)
			continue
		}
		if slices.Equal(stamps, t.snap.Load().stamps) {
			continue
		}
		swapped, err := t.reload()
		if swapped {
			log.Info("token file reloaded", "source", t.Name(), "tokens", t.Len())
		}
		report(err)
	}
}

// ParseTokenFile parses one file's content the way websockify 0.10/0.11
// (ReadOnlyTokenFile._load_targets) does:
//   - lines end at "\n", "\r\n" or "\r" (Python's universal newlines);
//   - each line is stripped of whitespace (Python's notion, which includes
//     \x1c-\x1f); empty lines and lines starting with '#' are skipped;
//   - the line must contain ": " exactly once, splitting token from target
//     ("a: b: c" is an error, "vm1:host:5901" too);
//   - the target is stripped and split at its LAST ':' into host and port,
//     so an unbracketed IPv6 "fd00::1:5901" is host fd00::1, port 5901;
//   - a later line for the same token wins.
//
// Values are returned normalised as net.JoinHostPort(host, port), e.g.
// "[fd00::1]:5901". Where websockify would accept a line that can never work
// or never match, this reports it instead: a target without a port, a port
// that is not a number in 1-65535 (websockify would pass a service name to
// getaddrinfo), a host that is neither an IP nor a DNS name, an empty token,
// a line that is not UTF-8. Two deliberate extensions: the token is stripped
// too (websockify keeps "vm1 " from "vm1 : host:port", a token no URL can
// carry) and a bracketed IPv6 host "[fd00::1]:5901" is accepted (websockify
// would hand the brackets to getaddrinfo, which fails). A UTF-8 byte-order
// mark at the start is skipped.
//
// Each bad line is skipped and reported as a *LineError.
func ParseTokenFile(data []byte) (map[string]string, []error) {
	m := make(map[string]string)
	var errs []error
	s := strings.TrimPrefix(string(data), "\ufeff")
	for n := 1; len(s) > 0; n++ {
		line := s
		s = ""
		if i := strings.IndexAny(line, "\r\n"); i >= 0 {
			next := i + 1
			if line[i] == '\r' && next < len(line) && line[next] == '\n' {
				next++
			}
			line, s = line[:i], line[next:]
		}
		tok, target, reason := parseTokenLine(line)
		switch {
		case reason != "":
			errs = append(errs, &LineError{Line: n, Reason: reason})
		case tok != "":
			m[tok] = target
		}
	}
	return m, errs
}

// parseTokenLine returns the token and normalised target of one line, both
// empty for a blank or comment line, or a reason the line is bad.
func parseTokenLine(line string) (tok, target, reason string) {
	line = strings.TrimFunc(line, isPySpace)
	if line == "" || line[0] == '#' {
		return "", "", ""
	}
	if !utf8.ValidString(line) {
		return "", "", "not valid UTF-8"
	}
	tok, target, ok := strings.Cut(line, ": ")
	if !ok {
		return "", "", `no ": " between token and target`
	}
	if strings.Contains(target, ": ") {
		return "", "", `more than one ": "`
	}
	tok = strings.TrimFunc(tok, isPySpace)
	if tok == "" {
		return "", "", "empty token"
	}
	target = strings.TrimFunc(target, isPySpace)
	i := strings.LastIndexByte(target, ':')
	if i < 0 {
		return "", "", "target has no port"
	}
	host, portStr := target[:i], target[i+1:]
	port, err := parsePort(portStr)
	if err != nil {
		return "", "", "target " + err.Error()
	}
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "", "", "brackets around something that is not an IPv6 address"
		}
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return "", "", "target host is neither an IP address nor a host name"
	}
	return tok, net.JoinHostPort(host, strconv.Itoa(int(port))), ""
}

// isPySpace is Python's str.isspace, which str.strip() uses: Unicode
// white space plus the ASCII separators \x1c-\x1f.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}
