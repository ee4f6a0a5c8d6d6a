package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vncedge/bench/vncsim"
)

const (
	vncPassword = "e2e-pass" // VNC passwords are at most 8 bytes
	keysTyped   = "vncedge"
	clicks      = 2
)

// The X root window shows vertical stripes, 8 pixels of each colour, so the canvas check proves
// the remote picture arrived the right way round, not merely a fill colour.
var (
	stripeFG = [3]int{0x33, 0x66, 0xcc}
	stripeBG = [3]int{0xff, 0xcc, 0x00}
)

// xvnc is a TigerVNC server on loopback with VNC authentication.
type xvnc struct {
	port    int
	display int
	p       *proc
}

// startXvnc starts TigerVNC with the stripes on its root window; extra are more Xvnc options.
func startXvnc(t *testing.T, xvncBin, vncpasswd, xsetroot, dir string, extra ...string) *xvnc {
	t.Helper()
	passFile := filepath.Join(dir, "xvnc.passwd")
	cmd := exec.Command(vncpasswd, "-f")
	cmd.Stdin = strings.NewReader(vncPassword + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("vncpasswd -f: %v", err)
	}
	if err := os.WriteFile(passFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	bitmap := filepath.Join(dir, "stripes.xbm")
	var xbm strings.Builder
	xbm.WriteString("#define s_width 16\n#define s_height 16\nstatic unsigned char s_bits[] = {\n")
	for range 16 {
		xbm.WriteString("   0xff, 0x00,\n") // bits are LSB first: x 0-7 foreground, 8-15 background
	}
	xbm.WriteString("};\n")
	if err := os.WriteFile(bitmap, []byte(xbm.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// A display number nobody uses: Xvnc refuses one whose lock file exists; try a few.
	for display := 60 + os.Getpid()%30; display < 200; display += 7 {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", display)); err == nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X11-unix/X%d", display)); err == nil {
			continue
		}
		port := freePort(t)
		argv := append([]string{xvncBin, fmt.Sprintf(":%d", display),
			"-rfbport", fmt.Sprint(port), "-localhost", "-nolisten", "tcp",
			"-SecurityTypes", "VncAuth", "-PasswordFile", passFile,
			"-geometry", "800x600", "-depth", "24", "-AlwaysShared"}, extra...)
		p := startProc(t, dir, fmt.Sprintf("xvnc-%d", display), argv...)
		deadline := time.Now().Add(10 * time.Second)
		for !p.exited() && time.Now().Before(deadline) {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if p.exited() {
			t.Logf("Xvnc :%d exited (%v), trying another display:\n%s", display, p.err, p.tail(1000))
			continue
		}
		waitTCP(t, p, fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		set := exec.Command(xsetroot, "-display", fmt.Sprintf(":%d", display), "-bitmap", bitmap,
			"-fg", rgbHex(stripeFG), "-bg", rgbHex(stripeBG))
		if b, err := set.CombinedOutput(); err != nil {
			t.Fatalf("xsetroot: %v\n%s", err, b)
		}
		return &xvnc{port: port, display: display, p: p}
	}
	t.Fatal("no free X display for Xvnc")
	return nil
}

func rgbHex(c [3]int) string { return fmt.Sprintf("#%02x%02x%02x", c[0], c[1], c[2]) }

// scenario and result mirror driver.mjs's plan and output.
type scenario struct {
	Name        string      `json:"name"`
	URL         string      `json:"url"`
	App         string      `json:"app"`
	TimeoutMs   int         `json:"timeoutMs"`
	WaitColour  *waitColour `json:"waitColour,omitempty"`
	MinDistinct int         `json:"minDistinct,omitempty"`
	Samples     [][2]int    `json:"samples,omitempty"`
	Keys        *string     `json:"keys,omitempty"`
	Clicks      int         `json:"clicks,omitempty"`
	StopURL     string      `json:"stopURL,omitempty"`
	Screenshot  bool        `json:"screenshot"`
}

type waitColour struct {
	X   int    `json:"x"`
	Y   int    `json:"y"`
	RGB [3]int `json:"rgb"`
	Tol int    `json:"tol"`
}

type pageState struct {
	State     string `json:"state"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	ElapsedMs int    `json:"elapsedMs"`
}

type result struct {
	Name string `json:"name"`
	pageState
	Canvas struct {
		W int `json:"w"`
		H int `json:"h"`
	} `json:"canvas"`
	Samples             [][4]int   `json:"samples"`
	Distinct            int        `json:"distinct"`
	PixelsSettled       bool       `json:"pixelsSettled"`
	Actions             bool       `json:"actions"`
	AfterStop           *pageState `json:"afterStop"`
	Screenshot          string     `json:"screenshot"`
	ScreenshotAfterStop string     `json:"screenshotAfterStop"`
	Error               string     `json:"error"`
	Console             []string   `json:"console"`
}

// TestBrowsers drives noVNC in headless Chromium through vncedge: our viewer (web/) and Debian's
// noVNC app, path and token routing, a TigerVNC server (pixels) and the simulated VM (keys and
// clicks counted on arrival), an unknown token, and a VNC server stopped during and before a
// session.
func TestBrowsers(t *testing.T) {
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
	web := filepath.Join(tmp, "web")
	runNode(t, node, root, time.Minute, filepath.Join(root, "web", "build.mjs"), web)

	x := startXvnc(t, xvncBin, vncpasswd, xsetroot, tmp)
	sim := func(name string) *vncsim.Server {
		s, err := vncsim.Listen("127.0.0.1:0", vncsim.Config{
			Name: name, Password: vncPassword, Width: 640, Height: 480,
			FrameInterval: 100 * time.Millisecond, // enough for a test, gentle on 2 cores
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	simOurs, simNoVNC, simStop := sim("vm-ours"), sim("vm-novnc"), sim("vm-stop")
	port := func(s *vncsim.Server) int { return s.Addr().(*net.TCPAddr).Port }
	deadPort := freePort(t) // nothing listens here

	tokenFile := filepath.Join(tmp, "tokens")
	tokens := fmt.Sprintf("# websockify TokenFile format\nxvnc: 127.0.0.1:%d\nsim: 127.0.0.1:%d\nstop: 127.0.0.1:%d\ndead: 127.0.0.1:%d\n",
		x.port, port(simNoVNC), port(simStop), deadPort)
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o644); err != nil {
		t.Fatal(err)
	}
	allow := []int{x.port, port(simOurs), port(simNoVNC), port(simStop), deadPort}
	ours := startEdge(t, bin, tmp, "vncedge-ours", web, tokenFile, allow)
	debian := startEdge(t, bin, tmp, "vncedge-debian-novnc", novncDir, tokenFile, allow)

	// The driver fetches these to stop a VNC server while a session is live.
	var stopMu sync.Mutex
	stops := map[string]func(){
		"sim":  func() { simStop.Close() },
		"xvnc": func() { x.p.stop() },
	}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stopMu.Lock()
		defer stopMu.Unlock()
		stop, ok := stops[strings.TrimPrefix(r.URL.Path, "/stop/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		stop()
		fmt.Fprintln(w, "stopped")
	}))
	t.Cleanup(hook.Close)

	keys := keysTyped
	none := ""
	fg, bg := stripeFG, stripeBG
	xvncPixels := func(sc scenario) scenario {
		sc.WaitColour = &waitColour{X: 12, Y: 4, RGB: bg, Tol: 8}
		sc.Samples = [][2]int{{4, 4}, {12, 4}, {404, 300}, {412, 300}, {796, 596}, {788, 596}}
		return sc
	}
	oursURL := func(path, fragment string) string {
		u := ours.base + "/vnc.html?path=" + url.QueryEscape(path)
		if fragment != "" {
			u += "#" + fragment
		}
		return u
	}
	debianURL := func(path string, password bool) string {
		u := debian.base + "/vnc.html?autoconnect=true&path=" + url.QueryEscape(path)
		if password {
			u += "&password=" + vncPassword
		}
		return u
	}
	const to = 20000
	scenarios := []scenario{
		// our viewer: path routing to the simulated VM, password in the query string
		{Name: "ours-path-vncsim", App: "ours", URL: oursURL(fmt.Sprintf("vnc/127.0.0.1:%d", port(simOurs)), "") + "&password=" + vncPassword,
			MinDistinct: 8, Samples: [][2]int{{0, 0}, {320, 240}}, Keys: &keys, Clicks: clicks, Screenshot: true},
		// our viewer: token routing to TigerVNC, password in the fragment
		xvncPixels(scenario{Name: "ours-token-xvnc", App: "ours", URL: oursURL("websockify?token=xvnc", "password="+vncPassword),
			Keys: &none, Clicks: 1, Screenshot: true}),
		// Debian's noVNC: path routing to TigerVNC, token routing to the simulated VM
		xvncPixels(scenario{Name: "novnc-path-xvnc", App: "novnc", URL: debianURL(fmt.Sprintf("vnc/127.0.0.1:%d", x.port), true),
			Keys: &none, Clicks: 1, Screenshot: true}),
		{Name: "novnc-token-vncsim", App: "novnc", URL: debianURL("websockify?token=sim", true),
			MinDistinct: 8, Keys: &keys, Clicks: clicks, Screenshot: true},
		// failure: unknown token
		{Name: "ours-unknown-token", App: "ours", URL: oursURL("websockify?token=no-such-vm", ""), Screenshot: true},
		{Name: "novnc-unknown-token", App: "novnc", URL: debianURL("websockify?token=no-such-vm", false), Screenshot: true},
		// failure: a VNC server that is not running, and one that stops during the session
		{Name: "ours-vnc-server-down", App: "ours", URL: oursURL("websockify?token=dead", ""), Screenshot: true},
		{Name: "ours-vncsim-stops", App: "ours", URL: oursURL("websockify?token=stop", "password="+vncPassword),
			MinDistinct: 8, StopURL: hook.URL + "/stop/sim", Screenshot: true},
		{Name: "ours-xvnc-stops", App: "ours", URL: oursURL(fmt.Sprintf("vnc/127.0.0.1:%d", x.port), "password="+vncPassword),
			StopURL: hook.URL + "/stop/xvnc", Screenshot: true},
		// after that, TigerVNC is gone: connecting now must fail clearly in both apps
		{Name: "ours-xvnc-stopped", App: "ours", URL: oursURL("websockify?token=xvnc", "password="+vncPassword), Screenshot: true},
		{Name: "novnc-xvnc-stopped", App: "novnc", URL: debianURL("websockify?token=xvnc", true), Screenshot: true},
	}
	for i := range scenarios {
		scenarios[i].TimeoutMs = to
	}
	plan := map[string]any{
		"chromium":    chromium,
		"userDataDir": filepath.Join(tmp, "chromium-profile"),
		"artifacts":   art,
		"scenarios":   scenarios,
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
	results := map[string]*result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("driver output %q: %v", sc.Text(), err)
		}
		results[r.Name] = &r
	}

	var summary strings.Builder
	for _, s := range scenarios {
		r := results[s.Name]
		if r == nil {
			t.Errorf("%s: no result from the driver", s.Name)
			continue
		}
		fmt.Fprintf(&summary, "%-22s %-10s %5d ms  %q  %s\n", s.Name, r.State, r.ElapsedMs, r.Status, r.Screenshot)
		if a := r.AfterStop; a != nil {
			fmt.Fprintf(&summary, "%-22s %-10s %5d ms  %q  %s\n", "  after stop", a.State, a.ElapsedMs, a.Status, r.ScreenshotAfterStop)
		}
		if r.Screenshot != "" {
			t.Logf("screenshot %s: %s", s.Name, r.Screenshot)
		}
		if r.ScreenshotAfterStop != "" {
			t.Logf("screenshot %s after the VNC server stopped: %s", s.Name, r.ScreenshotAfterStop)
		}
		if r.Error != "" {
			t.Errorf("%s: driver error: %s\nconsole: %s", s.Name, r.Error, strings.Join(r.Console, "\n  "))
		}
		t.Logf("%s: state %q status %q after %d ms", s.Name, r.State, r.Status, r.ElapsedMs)
	}
	fail := func(name, format string, args ...any) {
		t.Helper()
		r := results[name]
		console := ""
		if r != nil {
			console = strings.Join(r.Console, "\n  ")
		}
		t.Errorf(name+": "+format+"\n  console:\n  %s", append(args, console)...)
	}
	get := func(name string) *result {
		if r := results[name]; r != nil {
			return r
		}
		return &result{}
	}

	// connected sessions show the remote desktop
	for _, name := range []string{"ours-path-vncsim", "ours-token-xvnc", "novnc-path-xvnc", "novnc-token-vncsim", "ours-vncsim-stops", "ours-xvnc-stops"} {
		if r := get(name); r.State != "connected" {
			fail(name, "state %q (status %q), want connected", r.State, r.Status)
		}
	}
	for _, name := range []string{"ours-path-vncsim", "novnc-token-vncsim", "ours-vncsim-stops"} {
		r := get(name)
		if r.Canvas.W != 640 || r.Canvas.H != 480 || r.Distinct < 8 {
			fail(name, "canvas %dx%d with %d colours, want the 640x480 test pattern", r.Canvas.W, r.Canvas.H, r.Distinct)
		}
	}
	for _, name := range []string{"ours-token-xvnc", "novnc-path-xvnc"} {
		r := get(name)
		if r.Canvas.W != 800 || r.Canvas.H != 600 {
			fail(name, "canvas %dx%d, want 800x600", r.Canvas.W, r.Canvas.H)
		}
		want := [][3]int{fg, bg, fg, bg, bg, fg}
		if len(r.Samples) != len(want) {
			fail(name, "%d pixel samples, want %d", len(r.Samples), len(want))
			continue
		}
		for i, w := range want {
			if !near(r.Samples[i], w, 8) {
				fail(name, "pixel %v = %v, want %v: the X root window is not on the canvas", xvncPixels(scenario{}).Samples[i], r.Samples[i], w)
			}
		}
	}

	// keys and clicks reached the VNC server (counted there)
	for name, s := range map[string]*vncsim.Server{"ours-path-vncsim": simOurs, "novnc-token-vncsim": simNoVNC} {
		wantKeys, wantPtr := int64(2*len(keysTyped)), int64(2*clicks)
		deadline := time.Now().Add(10 * time.Second)
		st := s.Stats()
		for (st.KeyEvents < wantKeys || st.PointerEvents < wantPtr) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			st = s.Stats()
		}
		if st.KeyEvents < wantKeys || st.PointerEvents < wantPtr {
			fail(name, "VNC server got %d key and %d pointer events, want at least %d and %d", st.KeyEvents, st.PointerEvents, wantKeys, wantPtr)
		}
		t.Logf("%s: VNC server received %d key events, %d pointer events", name, st.KeyEvents, st.PointerEvents)
	}

	// failures end in a disconnect with a reason, never a hang
	expectFailed := map[string][]string{
		// vncedge explains these in RFB (--rfb-errors), where both viewers
		// show the reason; Debian's noVNC in its own words around it.
		"ours-unknown-token":   {"unknown or expired link"},
		"novnc-unknown-token":  {"rejected with reason: unknown or expired link"},
		"ours-vnc-server-down": {"this VM is not reachable right now"},
		"ours-xvnc-stopped":    {"this VM is not reachable right now"},
		"novnc-xvnc-stopped":   {"rejected with reason: this VM is not reachable right now"},
	}
	for name, words := range expectFailed {
		r := get(name)
		if r.State != "failed" {
			fail(name, "state %q (status %q), want failed", r.State, r.Status)
		}
		for _, w := range words {
			if !strings.Contains(r.Status, w) {
				fail(name, "status %q does not say %q", r.Status, w)
			}
		}
	}
	for _, name := range []string{"ours-vncsim-stops", "ours-xvnc-stops"} {
		r := get(name)
		if r.AfterStop == nil {
			fail(name, "no state after the VNC server stopped")
			continue
		}
		a := r.AfterStop
		if a.State != "disconnected" && a.State != "failed" || !strings.Contains(a.Status, "VNC server") {
			fail(name, "after the VNC server stopped: state %q status %q, want a disconnect that names the VNC server", a.State, a.Status)
		}
		t.Logf("%s: after the VNC server stopped: %q within %d ms", name, a.Status, a.ElapsedMs)
	}
	took := time.Since(began).Round(time.Millisecond)
	fmt.Fprintf(&summary, "took %v, failed: %v\n", took, t.Failed())
	summaryFile := filepath.Join(art, "summary.txt")
	if err := os.WriteFile(summaryFile, []byte(summary.String()), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("end-to-end browser test took %v; screenshots and %s in %s", took, filepath.Base(summaryFile), art)
}

func near(got [4]int, want [3]int, tol int) bool {
	for i := range want {
		if d := got[i] - want[i]; d > tol || d < -tol {
			return false
		}
	}
	return true
}
