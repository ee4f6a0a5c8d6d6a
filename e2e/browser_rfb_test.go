package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vncedge/bench/vncsim"
)

// The second root-window pattern: 8-pixel squares, so a frame that changed colours, and not
// merely its position, is told apart from the stripes.
var (
	checkFG = [3]int{0xcc, 0x33, 0x66}
	checkBG = [3]int{0x00, 0xcc, 0x99}
)

// flowStep and flowResult mirror driver.mjs's flows.
type flowStep struct {
	ID          string      `json:"id,omitempty"`
	Do          string      `json:"do"`
	Page        string      `json:"page,omitempty"`
	URL         string      `json:"url,omitempty"`
	App         string      `json:"app,omitempty"`
	WaitColour  *waitColour `json:"waitColour,omitempty"`
	MinDistinct int         `json:"minDistinct,omitempty"`
	Samples     [][2]int    `json:"samples,omitempty"`
	Hash        bool        `json:"hash,omitempty"`
	StableMs    int         `json:"stableMs,omitempty"`
	ChangedFrom string      `json:"changedFrom,omitempty"`
	Keys        string      `json:"keys,omitempty"`
	Clicks      int         `json:"clicks,omitempty"`
	Forbid      string      `json:"forbid,omitempty"`
	File        string      `json:"file,omitempty"`
	DelayMs     int         `json:"delayMs,omitempty"`
}

type flow struct {
	Name      string     `json:"name"`
	TimeoutMs int        `json:"timeoutMs"`
	Steps     []flowStep `json:"steps"`
}

type stepResult struct {
	ID   string `json:"id"`
	Do   string `json:"do"`
	Page string `json:"page"`
	pageState
	LoadError string `json:"loadError"`
	Canvas    struct {
		W int `json:"w"`
		H int `json:"h"`
	} `json:"canvas"`
	Samples    [][4]int `json:"samples"`
	Distinct   int      `json:"distinct"`
	Hash       string   `json:"hash"`
	Settled    bool     `json:"settled"`
	Body       string   `json:"body"`
	Found      []string `json:"found"`
	Screenshot string   `json:"screenshot"`
	Error      string   `json:"error"`
	Ms         int      `json:"ms"`
}

// describe is the step's line in the summary: what it saw.
func (s *stepResult) describe() string {
	var d string
	switch s.Do {
	case "open", "state":
		d = fmt.Sprintf("%s %q", s.State, s.Status)
		if s.LoadError != "" {
			d = "load error: " + s.LoadError
		}
	case "pixels":
		d = fmt.Sprintf("settled %v, %dx%d, %d colours", s.Settled, s.Canvas.W, s.Canvas.H, s.Distinct)
		if s.Hash != "" {
			d += ", sha256 " + s.Hash[:16]
		}
		if s.State != "" {
			d += fmt.Sprintf(", session %s %q", s.State, s.Status)
		}
	case "hook":
		d = s.Body
	case "secrets":
		d = fmt.Sprintf("found %v", s.Found)
	case "screenshot":
		d = s.Screenshot
	}
	if s.Error != "" {
		d += " ERROR " + s.Error
	}
	return d
}

type pageInfo struct {
	URL        string   `json:"url"`
	WebSockets int      `json:"websockets"`
	WSURLs     []string `json:"wsURLs"`
	Recv       []string `json:"recv"`
	Sent       []string `json:"sent"`
}

type flowResult struct {
	Name    string               `json:"name"`
	Steps   []stepResult         `json:"steps"`
	Pages   map[string]*pageInfo `json:"pages"`
	Error   string               `json:"error"`
	Console []string             `json:"console"`
}

// step returns the result of the step with this id, or an empty one that fails every check
// (the flow stopped before it).
func (r *flowResult) step(id string) *stepResult {
	for i := range r.Steps {
		if r.Steps[i].ID == id {
			return &r.Steps[i]
		}
	}
	return &stepResult{ID: id, Error: "the step did not run"}
}

func (r *flowResult) page(name string) *pageInfo {
	if p := r.Pages[name]; p != nil {
		return p
	}
	return &pageInfo{}
}

// frames joins a page's first WebSocket frames (each cut at 256 bytes by the driver; the
// handshake's are far shorter).
func frames(hexFrames []string) []byte {
	var b []byte
	for _, h := range hexFrames {
		d, _ := hex.DecodeString(h)
		b = append(b, d...)
	}
	return b
}

// hookSet is the Go side of the driver's hook steps: GET /NAME runs the named function, one
// at a time, and answers its text (500 with the error when it fails).
type hookSet struct {
	mu  sync.Mutex
	fns map[string]func() (string, error)
	srv *httptest.Server
}

func newHookSet(t *testing.T) *hookSet {
	h := &hookSet{fns: map[string]func() (string, error){}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		name := strings.TrimPrefix(r.URL.Path, "/")
		fn, ok := h.fns[name]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, err := fn()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookSet) add(name string, fn func() (string, error)) flowStep {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fns[name] = fn
	return flowStep{ID: "hook-" + name, Do: "hook", URL: h.srv.URL + "/" + name}
}

// rootPattern is an X root window bitmap (16x16 tile) and its two colours.
type rootPattern struct {
	rows   [16][2]byte // bits are LSB first: x 0-7 in the first byte, 8-15 in the second
	fg, bg [3]int
}

func stripesPattern() rootPattern {
	var p rootPattern
	for y := range p.rows {
		p.rows[y] = [2]byte{0xff, 0x00}
	}
	p.fg, p.bg = stripeFG, stripeBG
	return p
}

func checkerPattern() rootPattern {
	var p rootPattern
	for y := range p.rows {
		if y < 8 {
			p.rows[y] = [2]byte{0xff, 0x00}
		} else {
			p.rows[y] = [2]byte{0x00, 0xff}
		}
	}
	p.fg, p.bg = checkFG, checkBG
	return p
}

// setRoot paints the root window of Xvnc's display with the pattern.
func setRoot(xsetroot, dir string, display int, name string, p rootPattern) error {
	var xbm strings.Builder
	fmt.Fprintf(&xbm, "#define %s_width 16\n#define %s_height 16\nstatic unsigned char %s_bits[] = {\n", name, name, name)
	for _, r := range p.rows {
		fmt.Fprintf(&xbm, "   0x%02x, 0x%02x,\n", r[0], r[1])
	}
	xbm.WriteString("};\n")
	file := filepath.Join(dir, name+".xbm")
	if err := os.WriteFile(file, []byte(xbm.String()), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, xsetroot, "-display", fmt.Sprintf(":%d", display), "-bitmap", file,
		"-fg", rgbHex(p.fg), "-bg", rgbHex(p.bg)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xsetroot %s: %v: %s", name, err, out)
	}
	return nil
}

// metricValue reads one series from vncedge's admin /metrics (-1 when it is not there).
func metricValue(admin, series string) (float64, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return -1, sc.Err()
}

// securityTypes reads what a VNC server offers an RFB 3.8 client, then hangs up.
func securityTypes(addr string) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var ver [12]byte
	if _, err := io.ReadFull(c, ver[:]); err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte("RFB 003.008\n")); err != nil {
		return nil, err
	}
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	types := make([]byte, n[0])
	_, err = io.ReadFull(c, types)
	return types, err
}

func buildBench(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "bench")
	cmd := exec.Command(goTool(), "build", "-o", out, "./cmd/bench")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/bench: %v\n%s", err, b)
	}
	return out
}

// TestBrowsersRFB drives noVNC in headless Chromium through vncedge's RFB layer and its TLS
// listener (issue 12 section 6, issue 13's browser checks): the proxy holds the VNC password of
// a real TigerVNC and the browser has none; a wrong password there shows its reason in both
// viewers; a view-only session's keys and clicks never reach the VM while a normal session
// beside it works; a recorded session replayed by `bench vm --replay` shows the live session's
// last frame exactly; the viewer loads over https:// and runs over wss:// with a certificate
// from a CA the test made, and goes on while that certificate is replaced.
//
// Chromium is made to accept the test's server certificates with
// --ignore-certificate-errors-spki-list, pinned to the two leaf keys the test made (before and
// after the replacement): any other certificate is still refused, which the test checks with a
// server whose key is not pinned. Go's TLS client and openssl (TestTLSOpenSSL) verify the full
// chain against the test CA.
func TestBrowsersRFB(t *testing.T) {
	began := time.Now()
	root := repoRoot(t)
	req := require(t)
	chromium := req.bin("chromium", "/usr/bin/chromium")
	xvncBin := req.bin("Xvnc")
	vncpasswd := req.bin("vncpasswd")
	xsetroot := req.bin("xsetroot")
	node := req.bin("node")
	novncDir := filepath.Dir(req.file("/usr/share/novnc/vnc.html", "Debian package novnc"))
	req.file(filepath.Join(root, "e2e", "node_modules", "playwright-core", "package.json"), "npm ci --prefix e2e")
	req.file(filepath.Join(root, "web", "node_modules", "@novnc", "novnc", "core", "rfb.js"), "npm ci --prefix web")
	req.check()

	tmp := t.TempDir()
	art := artifactsDir(t)
	bin := buildVncedge(t, tmp)
	benchBin := buildBench(t, tmp)
	// One web root holds both viewers: ours at /, Debian's noVNC app at /novnc/.
	webRoot := filepath.Join(tmp, "web")
	runNode(t, node, root, time.Minute, filepath.Join(root, "web", "build.mjs"), webRoot)
	if err := os.Symlink(novncDir, filepath.Join(webRoot, "novnc")); err != nil {
		t.Fatal(err)
	}

	// Every connection here comes from 127.0.0.1, and the wrong-password cases fail VNC
	// authentication on purpose: TigerVNC must not blacklist the address for the rest.
	x := startXvnc(t, xvncBin, vncpasswd, xsetroot, tmp, "-BlacklistThreshold", "1000")
	xAddr := fmt.Sprintf("127.0.0.1:%d", x.port)
	sim, err := vncsim.Listen("127.0.0.1:0", vncsim.Config{
		Name: "vm-view-only", Password: vncPassword, Width: 640, Height: 480,
		FrameInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	simPort := sim.Addr().(*net.TCPAddr).Port
	replayPort := freePort(t)

	// The control: TigerVNC itself asks for a password (VNC authentication only), so security
	// type None in the browser can only come from the proxy.
	if types, err := securityTypes(xAddr); err != nil || !bytes.Equal(types, []byte{2}) {
		t.Fatalf("TigerVNC offers security types %v (err %v), want only VNC authentication [2]", types, err)
	}

	goodPW, wrongPW := filepath.Join(tmp, "vnc-password"), filepath.Join(tmp, "wrong-vnc-password")
	if err := os.WriteFile(goodPW, []byte(vncPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrongPW, []byte("not-it\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	recDir := filepath.Join(tmp, "recordings")
	if err := os.Mkdir(recDir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(tmp, "tokens")
	tokens := fmt.Sprintf("xvnc: %s\nrec: %s record\nvo: 127.0.0.1:%d view-only\nrw: 127.0.0.1:%d\nreplay: 127.0.0.1:%d\n",
		xAddr, xAddr, simPort, simPort, replayPort)
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o644); err != nil {
		t.Fatal(err)
	}

	tlsDir := filepath.Join(tmp, "tls")
	if err := os.Mkdir(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t, "vncedge e2e CA")
	cert1, cert2 := ca.issueServer(t, "vncedge e2e 1"), ca.issueServer(t, "vncedge e2e 2")
	certFile, keyFile := cert1.writeFiles(t, tlsDir, "server")
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	edge := startEdge(t, bin, tmp, "vncedge-rfb", webRoot, tokenFile, []int{x.port, simPort, replayPort},
		"--vnc-password-file", goodPW, "--record-dir", recDir,
		"--tls-listen", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile)
	waitTCP(t, edge.p, tlsAddr, 10*time.Second)
	wrongTokens := filepath.Join(tmp, "tokens-wrong")
	if err := os.WriteFile(wrongTokens, []byte("xvnc: "+xAddr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := startEdge(t, bin, tmp, "vncedge-wrong-password", webRoot, wrongTokens, []int{x.port},
		"--vnc-password-file", wrongPW)

	if p, err := dialTLS(tlsAddr, ca.pool(), "127.0.0.1"); err != nil || p.leaf.SerialNumber.Cmp(cert1.leaf.SerialNumber) != 0 {
		t.Fatalf("before the replacement, Go's TLS client got %v (err %v), want the first certificate", peerName(p), err)
	}
	// A server whose key is not pinned: Chromium must refuse it, or the pin checks nothing.
	untrusted := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "<!DOCTYPE html><title>untrusted</title>")
	}))
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // Chromium's refusal is expected here
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)

	hooks := newHookSet(t)
	rootHook := func(name string, p rootPattern) flowStep {
		return hooks.add("root-"+name, func() (string, error) {
			return "root " + name, setRoot(xsetroot, tmp, x.display, name, p)
		})
	}
	stripes, checker := stripesPattern(), checkerPattern()
	// Canvas points of each pattern: fg, bg in the first tile and far from it.
	stripeSamples := [][2]int{{4, 4}, {12, 4}, {404, 300}, {412, 300}, {796, 596}, {788, 596}}
	stripeWant := [][3]int{stripeFG, stripeBG, stripeFG, stripeBG, stripeBG, stripeFG}
	checkSamples := [][2]int{{4, 4}, {12, 4}, {4, 12}, {12, 12}, {404, 292}, {412, 300}, {404, 300}, {796, 596}}
	checkWant := make([][3]int, len(checkSamples))
	for i, s := range checkSamples {
		checkWant[i] = checkBG
		if (s[0]%16 < 8) == (s[1]%16 < 8) {
			checkWant[i] = checkFG
		}
	}
	showsStripes := func(id, page string) flowStep {
		return flowStep{ID: id, Do: "pixels", Page: page, Samples: stripeSamples,
			WaitColour: &waitColour{X: 12, Y: 4, RGB: stripeBG, Tol: 8}}
	}
	showsChecker := func(id, page string) flowStep {
		return flowStep{ID: id, Do: "pixels", Page: page, Samples: checkSamples,
			WaitColour: &waitColour{X: 12, Y: 12, RGB: checkFG, Tol: 8}}
	}
	oursURL := func(base, path string) string {
		return base + "/vnc.html?reconnect=0&path=" + url.QueryEscape(path)
	}
	novncURL := func(base, path string) string {
		return base + "/novnc/vnc.html?autoconnect=true&path=" + url.QueryEscape(path)
	}
	shot := func(page, file string) flowStep { return flowStep{Do: "screenshot", Page: page, File: "rfb-" + file} }
	tlsBase := "https://" + tlsAddr

	// View-only: the simulated VM counts what arrives; the hooks take its counts between steps.
	var voMu sync.Mutex
	vo := map[string]vncsim.Stats{}
	snapshot := func(name string) (string, error) {
		st := sim.Stats()
		voMu.Lock()
		vo[name] = st
		voMu.Unlock()
		b, err := json.Marshal(st)
		return string(b), err
	}
	voBefore := hooks.add("vo-before", func() (string, error) { return snapshot("before") })
	voAfterViewOnly := hooks.add("vo-after-view-only", func() (string, error) {
		// Nothing is expected to arrive: give what was typed time to, on loopback a second
		// is hundreds of round trips.
		time.Sleep(time.Second)
		return snapshot("after-view-only")
	})
	voAfterNormal := hooks.add("vo-after-normal", func() (string, error) {
		voMu.Lock()
		base := vo["after-view-only"].KeyEvents
		voMu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for sim.Stats().KeyEvents < base+int64(2*len(keysTyped)) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // anything more would have arrived by now
		return snapshot("after-normal")
	})

	// Recording: once the live session is closed and its recording complete, a replay server
	// serves it where the token "replay" points.
	var recMu sync.Mutex
	var recFile string
	replayHook := hooks.add("replay", func() (string, error) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := metricValue(edge.admin, "vncedge_recordings_completed_total")
			if err == nil && v >= 1 {
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("no recording completed within 10 s (metric %v, err %v)", v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		files, err := filepath.Glob(filepath.Join(recDir, "*.fbs"))
		if err != nil || len(files) != 1 {
			return "", fmt.Errorf("recordings in %s: %v (err %v), want exactly one", recDir, files, err)
		}
		fi, err := os.Stat(files[0])
		if err != nil {
			return "", err
		}
		recMu.Lock()
		recFile = files[0]
		recMu.Unlock()
		p := startProc(t, tmp, "bench-vm-replay", benchBin, "vm", "--replay", files[0], "--replay-fast",
			"--listen", fmt.Sprintf("127.0.0.1:%d", replayPort))
		deadline = time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", replayPort), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if p.exited() || time.Now().After(deadline) {
				return "", fmt.Errorf("bench vm --replay not listening: %v\n%s", err, p.tail(2000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fmt.Sprintf("replaying %s (%d bytes)", filepath.Base(files[0]), fi.Size()), nil
	})

	// Certificate replacement: new files, SIGHUP, then a fresh Go TLS client must see the new
	// certificate while the browser's session goes on.
	var reloadMu sync.Mutex
	var afterReload tlsPeer
	reloadHook := hooks.add("tls-reload", func() (string, error) {
		cert2.writeFiles(t, tlsDir, "server")
		if err := edge.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return "", err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, err := dialTLS(tlsAddr, ca.pool(), "127.0.0.1")
			if err == nil && p.leaf.SerialNumber.Cmp(cert2.leaf.SerialNumber) == 0 {
				reloadMu.Lock()
				afterReload = p
				reloadMu.Unlock()
				return "new certificate served: " + peerName(p), nil
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("10 s after SIGHUP a new connection still gets %s (err %v)", peerName(p), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	flows := []flow{
		{Name: "inject-ours", Steps: []flowStep{
			rootHook("stripes", stripes),
			{ID: "open", Do: "open", Page: "p", App: "ours", URL: oursURL(edge.base, "websockify?token=xvnc")},
			showsStripes("pixels", "p"),
			{ID: "secrets", Do: "secrets", Page: "p", Forbid: vncPassword},
			shot("p", "inject-ours"),
		}},
		{Name: "inject-novnc", Steps: []flowStep{
			{ID: "open", Do: "open", Page: "p", App: "novnc", URL: novncURL(edge.base, "websockify?token=xvnc")},
			showsStripes("pixels", "p"),
			{ID: "secrets", Do: "secrets", Page: "p", Forbid: vncPassword},
			shot("p", "inject-novnc"),
		}},
		{Name: "wrong-password-ours", Steps: []flowStep{
			{ID: "open", Do: "open", Page: "p", App: "ours", URL: oursURL(wrong.base, "websockify?token=xvnc")},
			shot("p", "wrong-password-ours"),
		}},
		{Name: "wrong-password-novnc", Steps: []flowStep{
			{ID: "open", Do: "open", Page: "p", App: "novnc", URL: novncURL(wrong.base, "websockify?token=xvnc")},
			{Do: "screenshot", Page: "p", File: "rfb-wrong-password-novnc", DelayMs: 700},
		}},
		// Debian's app watches (the proxy makes it view-only: its own setting stays off),
		// our viewer works beside it on the same VM.
		{Name: "view-only", Steps: []flowStep{
			{ID: "open-watcher", Do: "open", Page: "watcher", App: "novnc", URL: novncURL(edge.base, "websockify?token=vo")},
			{ID: "watcher-first", Do: "pixels", Page: "watcher", MinDistinct: 8, Hash: true},
			{ID: "open-worker", Do: "open", Page: "worker", App: "ours", URL: oursURL(edge.base, "websockify?token=rw")},
			{ID: "worker-pixels", Do: "pixels", Page: "worker", MinDistinct: 8},
			voBefore,
			{Do: "input", Page: "watcher", Keys: keysTyped, Clicks: clicks},
			voAfterViewOnly,
			{ID: "watcher-later", Do: "pixels", Page: "watcher", MinDistinct: 8, ChangedFrom: "watcher-first"},
			shot("watcher", "view-only-watcher"),
			{Do: "input", Page: "worker", Keys: keysTyped, Clicks: clicks},
			voAfterNormal,
			{ID: "watcher-end", Do: "state", Page: "watcher"},
			{ID: "worker-end", Do: "state", Page: "worker"},
			shot("worker", "view-only-worker"),
		}},
		// The live session sees the stripes, then the checker; its last frame is hashed once
		// it has not changed for a while, the page closes, and the replay must end on the
		// same pixels.
		{Name: "record-replay", Steps: []flowStep{
			rootHook("stripes", stripes),
			{ID: "open-live", Do: "open", Page: "live", App: "ours", URL: oursURL(edge.base, "websockify?token=rec")},
			showsStripes("live-stripes", "live"),
			rootHook("checker", checker),
			func() flowStep {
				s := showsChecker("live-last", "live")
				s.StableMs, s.Hash = 1000, true
				return s
			}(),
			shot("live", "record-live"),
			{Do: "close", Page: "live"},
			replayHook,
			{ID: "open-replay", Do: "open", Page: "replay", App: "ours", URL: oursURL(edge.base, "websockify?token=replay")},
			func() flowStep {
				s := showsChecker("replay-last", "replay")
				s.StableMs, s.Hash = 1000, true
				return s
			}(),
			shot("replay", "record-replay"),
		}},
		// https:// page, wss:// session to TigerVNC; the certificate is replaced while it runs,
		// and the session must go on (the root window changes after the reload and the page
		// must show it, on its first and only WebSocket).
		{Name: "tls", Steps: []flowStep{
			rootHook("stripes", stripes),
			{ID: "open", Do: "open", Page: "t", App: "ours", URL: oursURL(tlsBase, "websockify?token=xvnc")},
			showsStripes("stripes", "t"),
			shot("t", "tls-before-reload"),
			reloadHook,
			rootHook("checker", checker),
			showsChecker("checker", "t"),
			{ID: "after", Do: "state", Page: "t"},
			shot("t", "tls-after-reload"),
			{ID: "open-novnc", Do: "open", Page: "n", App: "novnc", URL: novncURL(tlsBase, "websockify?token=xvnc")},
			showsChecker("novnc-checker", "n"),
			shot("n", "tls-novnc-after-reload"),
			{ID: "untrusted", Do: "open", Page: "u", App: "ours", URL: untrusted.URL + "/"},
		}},
	}
	for i := range flows {
		flows[i].TimeoutMs = 15000
	}
	plan := map[string]any{
		"chromium":     chromium,
		"userDataDir":  filepath.Join(tmp, "chromium-profile"),
		"artifacts":    art,
		"chromiumArgs": []string{"--ignore-certificate-errors-spki-list=" + cert1.spki() + "," + cert2.spki()},
		"flows":        flows,
	}
	planFile := filepath.Join(tmp, "plan.json")
	pb, err := json.MarshalIndent(plan, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(planFile, pb, 0o644); err != nil {
		t.Fatal(err)
	}
	out := runNode(t, node, filepath.Join(root, "e2e"), 150*time.Second, "driver.mjs", planFile)
	results := map[string]*flowResult{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		var r flowResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("driver output %q: %v", sc.Text(), err)
		}
		results[r.Name] = &r
	}

	var summary strings.Builder
	get := func(t *testing.T, name string) *flowResult {
		t.Helper()
		r := results[name]
		if r == nil {
			t.Fatalf("flow %s: no result from the driver", name)
		}
		for _, s := range r.Steps {
			fmt.Fprintf(&summary, "%-20s %-7s %-10s %-20s %5d ms  %s\n", name, s.Page, s.Do, s.ID, s.Ms, s.describe())
			if s.Screenshot != "" {
				t.Logf("screenshot %s: %s", name, s.Screenshot)
			}
		}
		if r.Error != "" {
			t.Errorf("flow %s stopped: %s\n  console:\n  %s", name, r.Error, strings.Join(r.Console, "\n  "))
		}
		return r
	}
	fail := func(t *testing.T, r *flowResult, format string, args ...any) {
		t.Helper()
		t.Errorf(format+"\n  console:\n  %s", append(args, strings.Join(r.Console, "\n  "))...)
	}
	checkPixels := func(t *testing.T, r *flowResult, s *stepResult, w, h int, samples [][2]int, want [][3]int) {
		t.Helper()
		if !s.Settled || s.Canvas.W != w || s.Canvas.H != h || len(s.Samples) != len(want) {
			fail(t, r, "%s: canvas %dx%d settled %v with %d samples, want %dx%d showing the pattern (%s)",
				s.ID, s.Canvas.W, s.Canvas.H, s.Settled, len(s.Samples), w, h, s.Error)
			return
		}
		for i := range want {
			if !near(s.Samples[i], want[i], 8) {
				fail(t, r, "%s: pixel %v = %v, want %v", s.ID, samples[i], s.Samples[i], want[i])
			}
		}
	}
	connected := func(t *testing.T, r *flowResult, s *stepResult) {
		t.Helper()
		if s.State != "connected" {
			fail(t, r, "%s: state %q (status %q, load error %q, step error %q), want connected", s.ID, s.State, s.Status, s.LoadError, s.Error)
		}
	}

	// Issue 12: noVNC connects to a VNC server that wants a password, with none in the page:
	// the proxy offered it security type None only, and it answered None, never a VNC
	// authentication response.
	for _, name := range []string{"inject-ours", "inject-novnc"} {
		t.Run(name, func(t *testing.T) {
			r := get(t, name)
			connected(t, r, r.step("open"))
			checkPixels(t, r, r.step("pixels"), 800, 600, stripeSamples, stripeWant)
			if s := r.step("secrets"); s.Error != "" || len(s.Found) > 0 {
				fail(t, r, "the VNC password shows in the page: %v (%s)", s.Found, s.Error)
			}
			p := r.page("p")
			if strings.Contains(p.URL, vncPassword) || strings.Contains(p.URL, "password") {
				t.Errorf("page URL %q names a password", p.URL)
			}
			recv, sent := frames(p.Recv), frames(p.Sent)
			if len(recv) < 14 || string(recv[:12]) != "RFB 003.008\n" || recv[12] != 1 || recv[13] != 1 {
				fail(t, r, "the browser was offered %x, want RFB 003.008 and exactly one security type, None (1)", recv[:min(len(recv), 14)])
			}
			if len(sent) < 14 || string(sent[:12]) != "RFB 003.008\n" || sent[12] != 1 {
				fail(t, r, "the browser answered %x, want its version and security type None (1), then ClientInit", sent[:min(len(sent), 14)])
			}
		})
	}
	// Issue 12: a wrong password at the proxy is explained in noVNC's status line.
	for name, want := range map[string]string{
		"wrong-password-ours":  "the VNC server refused the proxy's credentials",
		"wrong-password-novnc": "rejected with reason: the VNC server refused the proxy's credentials",
	} {
		t.Run(name, func(t *testing.T) {
			r := get(t, name)
			s := r.step("open")
			if s.State != "failed" || !strings.Contains(s.Status, want) {
				fail(t, r, "state %q status %q, want failed saying %q", s.State, s.Status, want)
			}
		})
	}
	// Issue 12: view-only, enforced at the proxy.
	t.Run("view-only", func(t *testing.T) {
		r := get(t, "view-only")
		connected(t, r, r.step("open-watcher"))
		connected(t, r, r.step("open-worker"))
		voMu.Lock()
		before, afterVO, afterRW := vo["before"], vo["after-view-only"], vo["after-normal"]
		voMu.Unlock()
		if afterVO.KeyEvents != before.KeyEvents || afterVO.PointerEvents != before.PointerEvents {
			fail(t, r, "keys and clicks typed in the view-only session reached the VM: key events %d -> %d, pointer events %d -> %d",
				before.KeyEvents, afterVO.KeyEvents, before.PointerEvents, afterVO.PointerEvents)
		}
		if k := afterRW.KeyEvents - afterVO.KeyEvents; k != int64(2*len(keysTyped)) {
			fail(t, r, "the normal session's %d key presses and releases gave %d key events at the VM, want exactly %d",
				2*len(keysTyped), k, 2*len(keysTyped))
		}
		if p := afterRW.PointerEvents - afterVO.PointerEvents; p < int64(2*clicks) {
			fail(t, r, "the normal session's %d clicks gave %d pointer events at the VM, want at least %d", clicks, p, 2*clicks)
		}
		if s := r.step("watcher-later"); !s.Settled {
			fail(t, r, "the view-only session's screen stopped updating (hash %s, as before the keys)", s.Hash)
		}
		for _, id := range []string{"watcher-end", "worker-end"} {
			connected(t, r, r.step(id))
		}
		t.Logf("VM counts: before %+v, after the view-only input %+v, after the normal input %+v", before, afterVO, afterRW)
	})
	// Issue 12: a recording replayed shows the live session's last frame.
	t.Run("record-replay", func(t *testing.T) {
		r := get(t, "record-replay")
		connected(t, r, r.step("open-live"))
		checkPixels(t, r, r.step("live-stripes"), 800, 600, stripeSamples, stripeWant)
		live := r.step("live-last")
		checkPixels(t, r, live, 800, 600, checkSamples, checkWant)
		connected(t, r, r.step("open-replay"))
		replay := r.step("replay-last")
		checkPixels(t, r, replay, 800, 600, checkSamples, checkWant)
		if live.Hash == "" || replay.Hash != live.Hash {
			fail(t, r, "the replay ends on pixels with SHA-256 %q, the live session's last frame had %q", replay.Hash, live.Hash)
		}
		recMu.Lock()
		f := recFile
		recMu.Unlock()
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("recording %s: %v (err %v), want mode 0600", f, fi.Mode(), err)
		}
		t.Logf("live and replay canvases: SHA-256 %s; recording %s", live.Hash, filepath.Base(f))
	})
	// Issue 13: https:// and wss:// from vncedge, a certificate replaced under a live session.
	t.Run("tls", func(t *testing.T) {
		r := get(t, "tls")
		connected(t, r, r.step("open"))
		checkPixels(t, r, r.step("stripes"), 800, 600, stripeSamples, stripeWant)
		if s := r.step("hook-tls-reload"); s.Error != "" {
			fail(t, r, "certificate replacement: %s", s.Error)
		}
		reloadMu.Lock()
		p := afterReload
		reloadMu.Unlock()
		if p.leaf == nil || p.leaf.SerialNumber.Cmp(cert2.leaf.SerialNumber) != 0 || p.protocol != "http/1.1" {
			t.Errorf("after the replacement a new connection got %s, ALPN %q; want the new certificate and http/1.1", peerName(p), p.protocol)
		}
		checkPixels(t, r, r.step("checker"), 800, 600, checkSamples, checkWant)
		connected(t, r, r.step("after"))
		pg := r.page("t")
		if !strings.HasPrefix(pg.URL, "https://") || pg.WebSockets != 1 || len(pg.WSURLs) != 1 || !strings.HasPrefix(pg.WSURLs[0], "wss://") {
			fail(t, r, "page %s opened WebSockets %v, want exactly one wss:// for the whole session", pg.URL, pg.WSURLs)
		}
		connected(t, r, r.step("open-novnc"))
		checkPixels(t, r, r.step("novnc-checker"), 800, 600, checkSamples, checkWant)
		if n := r.page("n"); len(n.WSURLs) == 0 || !strings.HasPrefix(n.WSURLs[0], "wss://") {
			fail(t, r, "Debian's noVNC over https opened %v, want wss://", n.WSURLs)
		}
		if s := r.step("untrusted"); !strings.Contains(s.LoadError, "ERR_CERT") {
			fail(t, r, "a server whose key is not pinned: load error %q (state %q), want Chromium to refuse its certificate", s.LoadError, s.State)
		}
	})

	took := time.Since(began).Round(time.Millisecond)
	fmt.Fprintf(&summary, "took %v, failed: %v\n", took, t.Failed())
	summaryFile := filepath.Join(art, "rfb-summary.txt")
	if err := os.WriteFile(summaryFile, []byte(summary.String()), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("RFB and TLS browser test took %v; screenshots and %s in %s", took, filepath.Base(summaryFile), art)
}

// peerName describes a served certificate for failure messages.
func peerName(p tlsPeer) string {
	if p.leaf == nil {
		return "no certificate"
	}
	return fmt.Sprintf("%q serial %s (TLS %#x)", p.leaf.Subject.CommonName, shortSerial(p.leaf.SerialNumber), p.version)
}

func shortSerial(n *big.Int) string {
	s := n.Text(16)
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}
