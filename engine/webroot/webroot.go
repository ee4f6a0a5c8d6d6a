// Package webroot serves one directory of static files (the noVNC client) from memory, so that the
// engine's event loops can answer plain HTTP requests without ever touching the file system.
//
// Load reads the whole tree once at start. Respond then maps a request-target to a file by its
// cleaned relative path in a map built at load time: a path that was not loaded cannot be served,
// so directory traversal is impossible by construction, whatever the target says.
package webroot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Limits of what Load accepts. A web root is a few MiB of scripts and images; anything near
// these numbers is a wrong --web directory (a home directory, a disk), not a client to serve.
const (
	MaxTotalBytes = 256 << 20 // sum of all file sizes
	MaxFiles      = 100000
	maxDepth      = 64 // symlink loops are caught by real path; this bounds pathological nesting
)

// Site is a loaded web root. It is immutable after Load and safe for concurrent use.
type Site struct {
	files     map[string]*file // cleaned relative path ("vnc.html", "core/rfb.js") -> file
	dirs      map[string]bool  // relative directory paths, "" for the root
	rootIndex *file            // index.html at the root, if any
	rootVNC   bool             // vnc.html at the root, the target of "/" without an index
}

type file struct {
	body         []byte
	contentType  string
	etag         string // strong: quoted hex of a content hash
	lastModified string
	heads        atomic.Pointer[heads] // rebuilt at most once a second, for the Date header
}

// heads holds the ready response heads of one file for one second. Once published it is never
// written again, so the engine may write these slices after Respond returns.
type heads struct {
	unix                    int64
	okKeep, okClose         []byte // 200
	notModKeep, notModClose []byte // 304
}

// Load reads every regular file under dir into memory. Symbolic links are followed now (Debian's
// noVNC package contains some); hidden entries (names starting with ".") are skipped.
func Load(dir string) (*Site, error) {
	return load(dir, MaxTotalBytes)
}

func load(dir string, maxTotal int64) (*Site, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("web root: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("web root %s: not a directory", dir)
	}
	l := &loader{
		site:     &Site{files: map[string]*file{}, dirs: map[string]bool{}},
		maxTotal: maxTotal,
		onPath:   map[string]bool{},
		bodies:   map[[sha256.Size]byte][]byte{},
	}
	if err := l.walk(dir, "", 0); err != nil {
		return nil, fmt.Errorf("web root %s: %w", dir, err)
	}
	if len(l.site.files) == 0 {
		return nil, fmt.Errorf("web root %s: no files", dir)
	}
	s := l.site
	s.rootIndex = s.files["index.html"]
	_, s.rootVNC = s.files["vnc.html"]
	return s, nil
}

type loader struct {
	site     *Site
	maxTotal int64
	total    int64
	onPath   map[string]bool              // real paths of the directories being walked, to stop symlink loops
	bodies   map[[sha256.Size]byte][]byte // one copy of each content, however many links reach it
}

func (l *loader) walk(abs, rel string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: nested deeper than %d directories", abs, maxDepth)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if l.onPath[real] {
		return nil // a symlink back to an ancestor: its files are already loaded under the ancestor
	}
	l.onPath[real] = true
	defer delete(l.onPath, real)
	l.site.dirs[rel] = true

	entries, err := os.ReadDir(abs)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		childAbs := filepath.Join(abs, name)
		childRel := path.Join(rel, name)
		info, err := os.Stat(childAbs) // follows symlinks
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && e.Type()&fs.ModeSymlink != 0 {
				continue // dangling symlink: nothing to serve
			}
			return err
		}
		switch {
		case info.IsDir():
			if err := l.walk(childAbs, childRel, depth+1); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := l.add(childAbs, childRel, info); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *loader) add(abs, rel string, info fs.FileInfo) error {
	if len(l.site.files) >= MaxFiles {
		return fmt.Errorf("more than %d files", MaxFiles)
	}
	if l.total+info.Size() > l.maxTotal {
		return fmt.Errorf("files add up to more than %d bytes", l.maxTotal)
	}
	body, err := os.ReadFile(abs)
	if err != nil {
		return err
	}
	l.total += int64(len(body))
	if l.total > l.maxTotal { // the file grew since Stat
		return fmt.Errorf("files add up to more than %d bytes", l.maxTotal)
	}
	sum := sha256.Sum256(body)
	if same, ok := l.bodies[sum]; ok {
		body = same
	} else {
		l.bodies[sum] = body
	}
	l.site.files[rel] = &file{
		body:         body,
		contentType:  contentType(rel, body),
		etag:         `"` + hex.EncodeToString(sum[:16]) + `"`,
		lastModified: info.ModTime().UTC().Format(http.TimeFormat),
	}
	return nil
}

func contentType(name string, body []byte) string {
	ext := strings.ToLower(path.Ext(name))
	if ct := knownType(ext); ct != "" {
		return ct
	}
	if ct := mime.TypeByExtension(ext); ct != "" {
		return ct
	}
	return http.DetectContentType(body)
}

// Files reports how many files were loaded.
func (s *Site) Files() int { return len(s.files) }

// Respond answers one HTTP request that is not a WebSocket upgrade. method and target come from
// the request line (target is the raw, percent-encoded request-target, maybe with a query);
// ifNoneMatch is the If-None-Match header value or "". close selects "Connection: close" over
// "Connection: keep-alive". It returns the response head (status line, headers, blank line) and
// the body to write after it (nil for HEAD and 304). The returned slices are never modified
// afterwards and must not be modified by the caller.
func (s *Site) Respond(method, target, ifNoneMatch string, close bool) (head, body []byte) {
	if method != "GET" && method != "HEAD" {
		return errorResponse(405, "Method Not Allowed", "Allow: GET, HEAD\r\n", true, close)
	}
	get := method == "GET"
	p, query, ok := splitTarget(target)
	if !ok {
		return errorResponse(400, "Bad Request", "", get, close)
	}
	f, loc := s.lookup(p)
	if f == nil {
		if loc != "" {
			if query != "" {
				loc += "?" + query
			}
			return errorResponse(302, "Found", "Location: "+loc+"\r\n", get, close)
		}
		return errorResponse(404, "Not Found", "", get, close)
	}
	h := f.headsNow()
	if ifNoneMatch != "" && etagMatches(ifNoneMatch, f.etag) {
		if close {
			return h.notModClose, nil
		}
		return h.notModKeep, nil
	}
	head = h.okKeep
	if close {
		head = h.okClose
	}
	if !get {
		return head, nil
	}
	return head, f.body
}

// splitTarget returns the decoded, cleaned absolute path of a request-target and its raw query.
// It refuses anything a browser would not send for a static file: control bytes, backslashes,
// NUL (also percent-encoded) and ".." segments, rather than trying to make sense of them.
func splitTarget(target string) (p, query string, ok bool) {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		// absolute-form (RFC 9112 3.2.2): drop scheme and authority
		rest := target[strings.Index(target, "//")+2:]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			return "", "", false
		}
		target = rest[i:]
	}
	if target == "" || target[0] != '/' {
		return "", "", false
	}
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target, query = target[:i], target[i+1:]
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f || c == '\\' {
			return "", "", false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c <= ' ' || c == 0x7f {
			return "", "", false // the query may be echoed in a Location header
		}
	}
	p = target
	if strings.IndexByte(p, '%') >= 0 {
		var err error
		if p, err = pathUnescape(p); err != nil {
			return "", "", false
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; c < ' ' || c == 0x7f || c == '\\' {
				return "", "", false
			}
		}
	}
	if hasDotDot(p) {
		return "", "", false
	}
	return p, query, true
}

func pathUnescape(s string) (string, error) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("short percent escape")
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			return "", errors.New("bad percent escape")
		}
		b = append(b, byte(hi<<4|lo))
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func hasDotDot(p string) bool {
	for p != "" {
		seg := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		if seg == ".." {
			return true
		}
	}
	return false
}

// lookup finds the file for a decoded absolute path. When there is none it may return the
// Location of a redirect instead: "vnc.html" for "/" without index.html, and "name/" for a
// directory named without its trailing slash that has an index.html (so relative links work).
// Locations are relative so that they stay right behind a reverse proxy that adds a prefix.
func (s *Site) lookup(p string) (f *file, location string) {
	rel := strings.TrimPrefix(path.Clean(p), "/")
	if rel == "" {
		if s.rootIndex != nil {
			return s.rootIndex, ""
		}
		if s.rootVNC {
			return nil, "vnc.html"
		}
		return nil, ""
	}
	if strings.HasSuffix(p, "/") {
		if !s.dirs[rel] {
			return nil, ""
		}
		return s.files[path.Join(rel, "index.html")], ""
	}
	if f := s.files[rel]; f != nil {
		return f, ""
	}
	if s.dirs[rel] && s.files[path.Join(rel, "index.html")] != nil {
		return nil, path.Base(rel) + "/"
	}
	return nil, ""
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 13.1.2): "*" or any listed tag
// whose opaque part equals ours, with or without W/.
func etagMatches(header, etag string) bool {
	for header != "" {
		var item string
		if i := strings.IndexByte(header, ','); i >= 0 {
			item, header = header[:i], header[i+1:]
		} else {
			item, header = header, ""
		}
		item = strings.TrimSpace(item)
		if item == "*" {
			return true
		}
		item = strings.TrimPrefix(item, "W/")
		if item == etag {
			return true
		}
	}
	return false
}

// headsNow returns this file's response heads with the current Date. Building them once per
// second per file keeps the 200 path free of allocations; a race between two loops only builds
// the same heads twice.
func (f *file) headsNow() *heads {
	now := time.Now()
	sec := now.Unix()
	if h := f.heads.Load(); h != nil && h.unix == sec {
		return h
	}
	date := now.UTC().Format(http.TimeFormat)
	common := "Date: " + date + "\r\n" +
		"ETag: " + f.etag + "\r\n" +
		"Last-Modified: " + f.lastModified + "\r\n" +
		"Cache-Control: no-cache\r\n"
	ok := "HTTP/1.1 200 OK\r\n" + common +
		"Content-Type: " + f.contentType + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(f.body)) + "\r\n" +
		"X-Content-Type-Options: nosniff\r\n"
	notMod := "HTTP/1.1 304 Not Modified\r\n" + common
	h := &heads{
		unix:        sec,
		okKeep:      []byte(ok + "Connection: keep-alive\r\n\r\n"),
		okClose:     []byte(ok + "Connection: close\r\n\r\n"),
		notModKeep:  []byte(notMod + "Connection: keep-alive\r\n\r\n"),
		notModClose: []byte(notMod + "Connection: close\r\n\r\n"),
	}
	f.heads.Store(h)
	return h
}

func connHeader(close bool) string {
	if close {
		return "Connection: close\r\n"
	}
	return "Connection: keep-alive\r\n"
}

// errorResponse builds a short plain-text answer (errors and redirects). These are rare enough
// to be built per call. Redirects are 302, never 301: browsers remember a 301 for good, and a
// web root may gain an index.html later.
func errorResponse(code int, reason, extra string, withBody, close bool) (head, body []byte) {
	text := strconv.Itoa(code) + " " + reason + "\n"
	head = []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + reason + "\r\n" +
		"Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n" +
		extra +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(text)) + "\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"Cache-Control: no-cache\r\n" +
		connHeader(close) + "\r\n")
	if withBody {
		body = []byte(text)
	}
	return head, body
}

// knownType fixes the types that matter here rather than taking them from the host's
// /etc/mime.types, which differs between machines and gets JavaScript wrong on some (browsers
// refuse ES modules that are not served as JavaScript).
func knownType(ext string) string {
	switch ext {
	case ".html", ".htm":
		return "text/html; charset=utf-8"
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".webmanifest":
		return "application/manifest+json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".gif":
		return "image/gif"
	case ".webp":
		return "image/webp"
	case ".wasm":
		return "application/wasm"
	case ".woff":
		return "font/woff"
	case ".woff2":
		return "font/woff2"
	case ".ttf":
		return "font/ttf"
	case ".otf":
		return "font/otf"
	case ".oga", ".ogg":
		return "audio/ogg"
	case ".mp3":
		return "audio/mpeg"
	case ".wav":
		return "audio/wav"
	case ".txt":
		return "text/plain; charset=utf-8"
	case ".md":
		return "text/markdown; charset=utf-8"
	case ".xml":
		return "text/xml; charset=utf-8"
	case ".pdf":
		return "application/pdf"
	}
	return ""
}
