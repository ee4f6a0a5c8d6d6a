package webroot

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const secret = "SECRET-OUTSIDE-THE-WEB-ROOT"

// testTree builds a web root next to a secret file that must never be served, and returns the
// root. The tree mimics noVNC's layout plus the awkward cases: symlinks (also a loop), a hidden
// file, a directory with and one without index.html.
func testTree(t testing.TB) string {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "www")
	files := map[string]string{
		"vnc.html":             "<!doctype html><title>vnc</title>",
		"app/ui.js":            "export default 1;",
		"app/styles/base.css":  "body{}",
		"core/rfb.js":          "export class RFB {}",
		"core/util.mjs":        "export const x = 1;",
		"app/images/a.svg":     "<svg/>",
		"app/images/b.png":     "\x89PNG\r\n\x1a\n",
		"app/locale/de.json":   "{}",
		"app/sounds/bell.oga":  "OggS",
		"app/sounds/bell.mp3":  "ID3",
		"vendor/x.wasm":        "\x00asm",
		"fonts/f.woff2":        "wOF2",
		"fonts/f.woff":         "wOFF",
		"favicon.ico":          "\x00\x00\x01\x00",
		"core/rfb.js.map":      "{}",
		"sub/index.html":       "<p>sub index</p>",
		"nodir/a.txt":          "plain",
		"a b.txt":              "spaced",
		"noext":                "just some text",
		".hidden":              "hidden",
		".git/config":          "hidden dir",
		"app/.secret":          "hidden too",
		"deep/er/still/x.html": "<p>deep</p>",
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(base, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "outside", "ext.js"), []byte("export const ext = 1;"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"link.html":     "vnc.html",
		"linkdir":       "app",
		"app/loop":      "..",
		"ext.js":        "../outside/ext.js",
		"dangling.html": "nowhere.html",
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(root, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func loadTree(t testing.TB) *Site {
	t.Helper()
	s, err := Load(testTree(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// parse reads Respond's answer back with net/http, which also proves it is well-formed HTTP.
func parse(t testing.TB, method string, head, body []byte) (*http.Response, []byte) {
	t.Helper()
	req := &http.Request{Method: method}
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(head), bytes.NewReader(body))), req)
	if err != nil {
		t.Fatalf("malformed response %q: %v", head, err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of %q: %v", head, err)
	}
	return resp, got
}

func TestLoad(t *testing.T) {
	s := loadTree(t)
	// 20 regular files not hidden, plus link.html, ext.js and linkdir/* (7 files under app).
	want := 20 + 2 + 7
	if s.Files() != want {
		keys := make([]string, 0, len(s.files))
		for k := range s.files {
			keys = append(keys, k)
		}
		t.Fatalf("Files() = %d, want %d: %v", s.Files(), want, keys)
	}
	for _, k := range []string{".hidden", ".git/config", "app/.secret", "dangling.html", "app/loop/vnc.html"} {
		if s.files[k] != nil {
			t.Errorf("%s was loaded", k)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "f")
	if err := os.WriteFile(regular, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]string{"missing": filepath.Join(dir, "nope"), "file": regular, "empty": empty} {
		if _, err := Load(d); err == nil {
			t.Errorf("%s: Load(%s) succeeded", name, d)
		}
	}
	if _, err := load(testTree(t), 10); err == nil || !strings.Contains(err.Error(), "more than 10 bytes") {
		t.Errorf("over the size cap: err = %v", err)
	}
}

func TestRespond(t *testing.T) {
	s := loadTree(t)
	tests := []struct {
		method, target string
		code           int
		ctype          string // checked when not empty
		body           string // checked when not empty
		location       string
	}{
		{"GET", "/vnc.html", 200, "text/html; charset=utf-8", "<!doctype html><title>vnc</title>", ""},
		{"GET", "/vnc.html?path=vnc/192.168.100.3&password=x", 200, "text/html; charset=utf-8", "<!doctype", ""},
		{"GET", "/core/rfb.js", 200, "text/javascript; charset=utf-8", "export class RFB {}", ""},
		{"GET", "/core/util.mjs", 200, "text/javascript; charset=utf-8", "", ""},
		{"GET", "/app/ui.js", 200, "text/javascript; charset=utf-8", "", ""},
		{"GET", "/app/styles/base.css", 200, "text/css; charset=utf-8", "", ""},
		{"GET", "/app/images/a.svg", 200, "image/svg+xml", "", ""},
		{"GET", "/app/images/b.png", 200, "image/png", "", ""},
		{"GET", "/app/locale/de.json", 200, "application/json", "", ""},
		{"GET", "/app/sounds/bell.oga", 200, "audio/ogg", "", ""},
		{"GET", "/app/sounds/bell.mp3", 200, "audio/mpeg", "", ""},
		{"GET", "/vendor/x.wasm", 200, "application/wasm", "", ""},
		{"GET", "/fonts/f.woff2", 200, "font/woff2", "", ""},
		{"GET", "/fonts/f.woff", 200, "font/woff", "", ""},
		{"GET", "/favicon.ico", 200, "image/x-icon", "", ""},
		{"GET", "/core/rfb.js.map", 200, "application/json", "", ""},
		{"GET", "/noext", 200, "text/plain; charset=utf-8", "just some text", ""},
		{"GET", "/a%20b.txt", 200, "text/plain; charset=utf-8", "spaced", ""},
		{"GET", "/core%2frfb.js", 200, "", "export class RFB {}", ""},
		{"GET", "//core//rfb.js", 200, "", "export class RFB {}", ""},
		{"GET", "/core/./rfb.js", 200, "", "export class RFB {}", ""},
		{"GET", "http://example.com:6080/vnc.html", 200, "", "<!doctype", ""},
		{"GET", "/link.html", 200, "", "<!doctype html><title>vnc</title>", ""},
		{"GET", "/linkdir/ui.js", 200, "text/javascript; charset=utf-8", "export default 1;", ""},
		{"GET", "/ext.js", 200, "", "export const ext = 1;", ""},
		{"GET", "/deep/er/still/x.html", 200, "", "<p>deep</p>", ""},
		{"GET", "/", 302, "", "", "vnc.html"},
		{"GET", "/?path=vnc/127.0.0.1", 302, "", "", "vnc.html?path=vnc/127.0.0.1"},
		{"GET", "/.", 302, "", "", "vnc.html"},
		{"GET", "/sub", 302, "", "", "sub/"},
		{"GET", "/sub?a=1", 302, "", "", "sub/?a=1"},
		{"GET", "/sub/", 200, "text/html; charset=utf-8", "<p>sub index</p>", ""},
		{"GET", "/sub/index.html", 200, "", "<p>sub index</p>", ""},
		{"GET", "/nodir/", 404, "", "", ""},
		{"GET", "/nodir", 404, "", "", ""},
		{"GET", "/app/", 404, "", "", ""},
		{"GET", "/vnc.html/", 404, "", "", ""},
		{"GET", "/missing.js", 404, "", "", ""},
		{"GET", "/.hidden", 404, "", "", ""},
		{"GET", "/.git/config", 404, "", "", ""},
		{"GET", "/app/.secret", 404, "", "", ""},
		{"GET", "/dangling.html", 404, "", "", ""},
		{"GET", "/secret.txt", 404, "", "", ""},
		{"GET", "/app/loop/vnc.html", 404, "", "", ""},
		// traversal: refused outright, never resolved
		{"GET", "/../secret.txt", 400, "", "", ""},
		{"GET", "/app/../../secret.txt", 400, "", "", ""},
		{"GET", "/%2e%2e/secret.txt", 400, "", "", ""},
		{"GET", "/%2E%2E/secret.txt", 400, "", "", ""},
		{"GET", "/app/..%2f..%2fsecret.txt", 400, "", "", ""},
		{"GET", "/app/%2e%2e%2f%2e%2e%2fsecret.txt", 400, "", "", ""},
		{"GET", "/..\\secret.txt", 400, "", "", ""},
		{"GET", "/%5c..%5csecret.txt", 400, "", "", ""},
		{"GET", "/vnc.html%00", 400, "", "", ""},
		{"GET", "/vnc.html%00.png", 400, "", "", ""},
		{"GET", "/vnc.html\x00", 400, "", "", ""},
		{"GET", "/%", 400, "", "", ""},
		{"GET", "/%zz", 400, "", "", ""},
		{"GET", "/%0d%0aX-Injected: 1", 400, "", "", ""},
		{"GET", "/?a=%0d%0a\r\nX-Injected: 1", 400, "", "", ""},
		{"GET", "secret.txt", 400, "", "", ""},
		{"GET", "*", 400, "", "", ""},
		{"GET", "", 400, "", "", ""},
		{"GET", "http://example.com", 400, "", "", ""},
		// methods
		{"POST", "/vnc.html", 405, "", "", ""},
		{"PUT", "/vnc.html", 405, "", "", ""},
		{"OPTIONS", "*", 405, "", "", ""},
		{"get", "/vnc.html", 405, "", "", ""},
	}
	for _, tc := range tests {
		head, body := s.Respond(tc.method, tc.target, "", false)
		resp, got := parse(t, tc.method, head, body)
		name := tc.method + " " + strconv.Quote(tc.target)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, tc.code)
			continue
		}
		if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", name, resp.Header.Get("Content-Type"), tc.ctype)
		}
		if tc.body != "" && !strings.HasPrefix(string(got), tc.body) {
			t.Errorf("%s: body %q, want %q", name, got, tc.body)
		}
		if resp.Header.Get("Location") != tc.location {
			t.Errorf("%s: Location %q, want %q", name, resp.Header.Get("Location"), tc.location)
		}
		if strings.Contains(string(got), secret) {
			t.Errorf("%s: served the secret", name)
		}
		if resp.Header.Get("X-Injected") != "" {
			t.Errorf("%s: header injection", name)
		}
		if resp.Header.Get("Connection") != "keep-alive" {
			t.Errorf("%s: Connection %q", name, resp.Header.Get("Connection"))
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("%s: no Date", name)
		}
		if n := resp.Header.Get("Content-Length"); n != strconv.Itoa(len(got)) {
			t.Errorf("%s: Content-Length %s for %d body bytes", name, n, len(got))
		}
		switch resp.StatusCode {
		case 200:
			if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("ETag") == "" || resp.Header.Get("Last-Modified") == "" {
				t.Errorf("%s: caching headers missing: %v", name, resp.Header)
			}
		case 405:
			if resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: Allow %q", name, resp.Header.Get("Allow"))
			}
		}
	}
}

func TestRootIndex(t *testing.T) {
	root := testTree(t)
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte("<p>index</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	head, b := s.Respond("GET", "/?x=1", "", false)
	resp, body := parse(t, "GET", head, b)
	if resp.StatusCode != 200 || string(body) != "<p>index</p>" {
		t.Fatalf("GET / with index.html: %d %q", resp.StatusCode, body)
	}

	// without index.html and vnc.html, "/" is simply not found
	only := t.TempDir()
	if err := os.WriteFile(filepath.Join(only, "app.js"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = Load(only)
	if err != nil {
		t.Fatal(err)
	}
	head, b = s.Respond("GET", "/", "", false)
	if resp, _ := parse(t, "GET", head, b); resp.StatusCode != 404 {
		t.Fatalf("GET / with neither index.html nor vnc.html: %d", resp.StatusCode)
	}
}

func TestHead(t *testing.T) {
	s := loadTree(t)
	gh, gb := s.Respond("GET", "/core/rfb.js", "", false)
	hh, hb := s.Respond("HEAD", "/core/rfb.js", "", false)
	if hb != nil {
		t.Fatalf("HEAD returned a body: %q", hb)
	}
	resp, _ := parse(t, "HEAD", hh, nil)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(gb)) {
		t.Fatalf("HEAD: %d, Content-Length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, len(gb))
	}
	gr, _ := parse(t, "GET", gh, gb)
	if gr.Header.Get("ETag") != resp.Header.Get("ETag") || gr.Header.Get("Content-Type") != resp.Header.Get("Content-Type") {
		t.Fatalf("HEAD and GET headers differ:\n%s\n%s", gh, hh)
	}
	// errors on HEAD carry no body either
	h, b := s.Respond("HEAD", "/missing", "", false)
	if b != nil {
		t.Fatalf("HEAD 404 returned a body")
	}
	if resp, _ := parse(t, "HEAD", h, nil); resp.StatusCode != 404 {
		t.Fatalf("HEAD /missing: %d", resp.StatusCode)
	}
}

func TestConditional(t *testing.T) {
	s := loadTree(t)
	head, body := s.Respond("GET", "/core/rfb.js", "", false)
	resp, _ := parse(t, "GET", head, body)
	etag := resp.Header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 10 {
		t.Fatalf("ETag %q is not a strong quoted tag", etag)
	}
	_, other := s.Respond("GET", "/app/ui.js", "", false)
	otherResp, _ := parse(t, "GET", s.files["app/ui.js"].headsNow().okKeep, other)
	if otherResp.Header.Get("ETag") == etag {
		t.Fatal("different files share an ETag")
	}
	for _, tc := range []struct {
		inm  string
		code int
	}{
		{etag, 304},
		{"W/" + etag, 304},
		{`"nope", ` + etag, 304},
		{`"nope",` + etag + `,"more"`, 304},
		{"*", 304},
		{`"nope"`, 200},
		{etag[:len(etag)-2] + `"`, 200},
		{"garbage", 200},
		{",,,", 200},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			h, b := s.Respond(method, "/core/rfb.js", tc.inm, false)
			resp, _ := parse(t, method, h, b)
			if resp.StatusCode != tc.code {
				t.Errorf("%s If-None-Match %q: %d, want %d", method, tc.inm, resp.StatusCode, tc.code)
			}
			if tc.code == 304 {
				if b != nil {
					t.Errorf("304 with a body")
				}
				if resp.Header.Get("ETag") != etag {
					t.Errorf("304 without the ETag: %q", h)
				}
			}
		}
	}
}

func TestConnectionClose(t *testing.T) {
	s := loadTree(t)
	for _, tc := range []struct{ target, inm string }{{"/vnc.html", ""}, {"/vnc.html", "*"}, {"/missing", ""}, {"/", ""}} {
		h, b := s.Respond("GET", tc.target, tc.inm, true)
		resp, _ := parse(t, "GET", h, b)
		if !bytes.Contains(h, []byte("\r\nConnection: close\r\n")) || !resp.Close {
			t.Errorf("%s: not Connection: close:\n%s", tc.target, h)
		}
	}
}

// TestConcurrent checks, under -race, that loops may call Respond at once and that a head once
// returned is never changed afterwards, also across the once-a-second rebuild.
func TestConcurrent(t *testing.T) {
	s := loadTree(t)
	type got struct{ head, copy []byte }
	var wg sync.WaitGroup
	results := make([][]got, 4)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				inm := ""
				if i%3 == 0 {
					inm = "*"
				}
				h, _ := s.Respond("GET", "/core/rfb.js", inm, i%2 == 0)
				if i%100 == 0 {
					results[g] = append(results[g], got{h, bytes.Clone(h)})
				}
			}
		}()
	}
	wg.Wait()
	for _, rs := range results {
		for _, r := range rs {
			if !bytes.Equal(r.head, r.copy) {
				t.Fatalf("a returned head changed:\n%s\n%s", r.copy, r.head)
			}
		}
	}
}

func TestEtagMatches(t *testing.T) {
	const e = `"abc"`
	for _, tc := range []struct {
		h    string
		want bool
	}{
		{`"abc"`, true}, {` "abc" `, true}, {`W/"abc"`, true}, {`"x", W/"abc"`, true}, {`*`, true},
		{`"ab"`, false}, {`abc`, false}, {``, false}, {`W/`, false}, {`"abc`, false},
	} {
		if got := etagMatches(tc.h, e); got != tc.want {
			t.Errorf("etagMatches(%q) = %v", tc.h, got)
		}
	}
}

// FuzzRespond throws arbitrary request-targets and If-None-Match values at a site that sits next
// to a secret file: Respond must never panic, always produce well-formed HTTP, and answer 200 only
// with the body of a file that was loaded.
func FuzzRespond(f *testing.F) {
	for _, seed := range []string{
		"/", "/vnc.html", "/core/rfb.js?x=1", "/../secret.txt", "/%2e%2e/secret.txt", "/app/..%2f..%2fsecret.txt",
		"/..\\secret.txt", "/vnc.html%00", "/%", "http://h/vnc.html", "//", "/sub", "/sub/", "/a%20b.txt",
		"/linkdir/ui.js", "/app/loop/vnc.html", "/?q=\r\nX: y", "*", "",
	} {
		f.Add("GET", seed, "")
	}
	f.Add("HEAD", "/vnc.html", `W/"x", *`)
	f.Add("POST", "/vnc.html", "")
	s := loadTree(f)
	bodies := map[string]bool{}
	for _, fl := range s.files {
		bodies[string(fl.body)] = true
	}
	f.Fuzz(func(t *testing.T, method, target, inm string) {
		head, body := s.Respond(method, target, inm, false)
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) || bytes.Count(head, []byte("\r\n\r\n")) != 1 {
			t.Fatalf("head is not one header block: %q", head)
		}
		rm := method
		if rm != "HEAD" {
			rm = "GET"
		}
		resp, got := parse(t, rm, head, body)
		if bytes.Contains(head, []byte(secret)) || bytes.Contains(got, []byte(secret)) {
			t.Fatalf("%q served the secret", target)
		}
		if resp.StatusCode == 200 && method == "GET" && !bodies[string(got)] {
			t.Fatalf("%q: 200 with a body that was not loaded: %q", target, got)
		}
	})
}

func BenchmarkRespond(b *testing.B) {
	s := loadTree(b)
	b.Run("200", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if h, body := s.Respond("GET", "/core/rfb.js?v=1", "", false); h == nil || body == nil {
				b.Fatal("no response")
			}
		}
	})
	b.Run("304", func(b *testing.B) {
		etag := s.files["core/rfb.js"].etag
		inm := `W/"other", ` + etag
		b.ReportAllocs()
		for b.Loop() {
			if h, _ := s.Respond("GET", "/core/rfb.js", inm, false); h == nil {
				b.Fatal("no response")
			}
		}
	})
	b.Run("404", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Respond("GET", "/missing.js", "", false)
		}
	})
	b.Run("200-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Respond("GET", "/core/rfb.js", "", false)
			}
		})
	})
}
