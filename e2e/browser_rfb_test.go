package e2e

import (
	"bytes"
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
	"path/filepath"
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

// Canvas points of each pattern and the colours they must show: both colours in the first
// tile, and tiles far from it.
var (
	stripeSamples = [][2]int{{4, 4}, {12, 4}, {404, 300}, {412, 300}, {796, 596}, {788, 596}}
	stripeWant    = [][3]int{stripeFG, stripeBG, stripeFG, stripeBG, stripeBG, stripeFG}
	checkSamples  = [][2]int{{4, 4}, {12, 4}, {4, 12}, {12, 12}, {404, 292}, {412, 300}, {404, 300}, {796, 596}}
)

func checkWant() [][3]int {
	want := make([][3]int, len(checkSamples))
	for i, s := range checkSamples {
		want[i] = checkBG
		if (s[0]%16 < 8) == (s[1]%16 < 8) {
			want[i] = checkFG
		}
	}
	return want
}

// rfbRig is what TestBrowsersRFB runs: TigerVNC with a password, a simulated VM with the same
// password, vncedge holding that password (plain and TLS listeners, recordings), a second
// vncedge holding a wrong one, a test CA with two server certificates, and the hooks the
// flows call.
type rfbRig struct {
	t        *testing.T
	tmp      string
	xsetroot string
	benchBin string
	x        *xvnc
	xAddr    string
	sim      *vncsim.Server
	edge     *edge // --vnc-password-file right, --record-dir, --tls-listen
	wrong    *edge // --vnc-password-file wrong
	tlsAddr  string
	tlsDir   string
	recDir   string
	ca       *testCA
	cert1    issued // served first
	cert2    issued // served after the replacement
	replay   int    // port of the replay server, once the recording is done
	hooks    *hookSet
}

// rfbCase is one flow and its checks, run after the driver is done.
type rfbCase struct {
	flow  flow
	check func(t *testing.T, r *flowResult)
}

func (g *rfbRig) oursURL(base, path string) string {
	return base + "/vnc.html?reconnect=0&path=" + url.QueryEscape(path)
}

func (g *rfbRig) novncURL(base, path string) string {
	return base + "/novnc/vnc.html?autoconnect=true&path=" + url.QueryEscape(path)
}

func shot(page, file string) flowStep {
	return flowStep{Do: "screenshot", Page: page, File: "rfb-" + file}
}

func showsStripes(id, page string) flowStep {
	return flowStep{ID: id, Do: "pixels", Page: page, Samples: stripeSamples,
		WaitColour: &waitColour{X: 12, Y: 4, RGB: stripeBG, Tol: 8}}
}

func showsChecker(id, page string) flowStep {
	return flowStep{ID: id, Do: "pixels", Page: page, Samples: checkSamples,
		WaitColour: &waitColour{X: 12, Y: 12, RGB: checkFG, Tol: 8}}
}

// lastFrame waits for the checker and then for the canvas to stop changing, and hashes it.
func lastFrame(id, page string) flowStep {
	s := showsChecker(id, page)
	s.StableMs, s.Hash = 1000, true
	return s
}

func (g *rfbRig) root(name string, p rootPattern) flowStep {
	return g.hooks.add("root-"+name, func() (string, error) {
		return "root " + name, setRoot(g.xsetroot, g.tmp, g.x.display, name, p)
	})
}

// injectCases (issue 12): noVNC, ours and Debian's, connects to a VNC server that wants a
// password with none in the page: the proxy offered it security type None only, and it
// answered None, never a VNC authentication response.
func (g *rfbRig) injectCases() []rfbCase {
	var cases []rfbCase
	for _, app := range []string{"ours", "novnc"} {
		u := g.oursURL(g.edge.base, "websockify?token=xvnc")
		if app == "novnc" {
			u = g.novncURL(g.edge.base, "websockify?token=xvnc")
		}
		cases = append(cases, rfbCase{
			flow: flow{Name: "inject-" + app, Steps: []flowStep{
				g.root("stripes", stripesPattern()),
				{ID: "open", Do: "open", Page: "p", App: app, URL: u},
				showsStripes("pixels", "p"),
				{ID: "secrets", Do: "secrets", Page: "p", Forbid: vncPassword},
				shot("p", "inject-"+app),
				// The same password serves every session, not only the first.
				{ID: "again", Do: "open", Page: "again", App: app, URL: u},
				showsStripes("again-pixels", "again"),
			}},
			check: func(t *testing.T, r *flowResult) {
				r.connected(t, "open")
				r.pixels(t, "pixels", 800, 600, stripeSamples, stripeWant)
				if s := r.step("again"); r.step("open").State == "connected" && s.State != "connected" {
					r.failf(t, "a second session with the same --vnc-password-file: state %q (status %q), the first was connected", s.State, s.Status)
				}
				r.pixels(t, "again-pixels", 800, 600, stripeSamples, stripeWant)
				if s := r.step("secrets"); s.Error != "" || len(s.Found) > 0 {
					r.failf(t, "the VNC password shows in the page: %v (%s)", s.Found, s.Error)
				}
				p := r.page("p")
				if strings.Contains(strings.ToLower(p.URL), "password") {
					t.Errorf("page URL %q names a password", p.URL)
				}
				recv, sent := frames(p.Recv), frames(p.Sent)
				if len(recv) < 14 || string(recv[:12]) != "RFB 003.008\n" || recv[12] != 1 || recv[13] != 1 {
					r.failf(t, "the browser was offered %x, want RFB 003.008 and exactly one security type, None (1)", recv[:min(len(recv), 14)])
				}
				if len(sent) < 14 || string(sent[:12]) != "RFB 003.008\n" || sent[12] != 1 {
					r.failf(t, "the browser answered %x, want its version and security type None (1), then ClientInit", sent[:min(len(sent), 14)])
				}
			},
		})
	}
	return cases
}

// wrongPasswordCases (issue 12): a wrong password at the proxy is explained in noVNC's status
// line, in our viewer's words and in Debian noVNC's.
func (g *rfbRig) wrongPasswordCases() []rfbCase {
	const reason = "the VNC server refused the proxy's credentials"
	var cases []rfbCase
	for _, app := range []string{"ours", "novnc"} {
		u, want := g.oursURL(g.wrong.base, "websockify?token=xvnc"), reason
		if app == "novnc" {
			u, want = g.novncURL(g.wrong.base, "websockify?token=xvnc"), "rejected with reason: "+reason
		}
		cases = append(cases, rfbCase{
			flow: flow{Name: "wrong-password-" + app, Steps: []flowStep{
				{ID: "open", Do: "open", Page: "p", App: app, URL: u},
				// Debian's status bar slides in: let it come to rest for the picture.
				{Do: "screenshot", Page: "p", File: "rfb-wrong-password-" + app, DelayMs: 700},
			}},
			check: func(t *testing.T, r *flowResult) {
				if s := r.step("open"); s.State != "failed" || !strings.Contains(s.Status, want) {
					r.failf(t, "state %q status %q, want failed saying %q", s.State, s.Status, want)
				}
			},
		})
	}
	return cases
}

// viewOnlyCase (issue 12): Debian's app watches through a view-only token (the proxy makes it
// view-only: the app's own setting stays off) while our viewer works through a normal token
// on the same VM. The VM counts what arrives; the hooks take its counts between the steps.
func (g *rfbRig) viewOnlyCase() rfbCase {
	var mu sync.Mutex
	counts := map[string]vncsim.Stats{}
	snapshot := func(name string) (string, error) {
		st := g.sim.Stats()
		mu.Lock()
		counts[name] = st
		mu.Unlock()
		b, err := json.Marshal(st)
		return string(b), err
	}
	before := g.hooks.add("vo-before", func() (string, error) { return snapshot("before") })
	afterViewOnly := g.hooks.add("vo-after-view-only", func() (string, error) {
		// Nothing is expected to arrive; on loopback a second is hundreds of round trips,
		// time enough for anything typed to.
		time.Sleep(time.Second)
		return snapshot("after-view-only")
	})
	afterNormal := g.hooks.add("vo-after-normal", func() (string, error) {
		mu.Lock()
		base := counts["after-view-only"].KeyEvents
		mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for g.sim.Stats().KeyEvents < base+int64(2*len(keysTyped)) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond) // anything more would have arrived by now
		return snapshot("after-normal")
	})
	return rfbCase{
		flow: flow{Name: "view-only", Steps: []flowStep{
			{ID: "open-watcher", Do: "open", Page: "watcher", App: "novnc", URL: g.novncURL(g.edge.base, "websockify?token=vo")},
			{ID: "watcher-first", Do: "pixels", Page: "watcher", MinDistinct: 8, Hash: true},
			{ID: "open-worker", Do: "open", Page: "worker", App: "ours", URL: g.oursURL(g.edge.base, "websockify?token=rw")},
			{ID: "worker-pixels", Do: "pixels", Page: "worker", MinDistinct: 8},
			before,
			{Do: "input", Page: "watcher", Keys: keysTyped, Clicks: clicks},
			afterViewOnly,
			{ID: "watcher-later", Do: "pixels", Page: "watcher", MinDistinct: 8, ChangedFrom: "watcher-first"},
			shot("watcher", "view-only-watcher"),
			{Do: "input", Page: "worker", Keys: keysTyped, Clicks: clicks},
			afterNormal,
			{ID: "watcher-end", Do: "state", Page: "watcher"},
			{ID: "worker-end", Do: "state", Page: "worker"},
			shot("worker", "view-only-worker"),
		}},
		check: func(t *testing.T, r *flowResult) {
			r.connected(t, "open-watcher")
			r.connected(t, "open-worker")
			mu.Lock()
			b, v, n := counts["before"], counts["after-view-only"], counts["after-normal"]
			mu.Unlock()
			if v.KeyEvents != b.KeyEvents || v.PointerEvents != b.PointerEvents {
				r.failf(t, "keys and clicks typed in the view-only session reached the VM: key events %d -> %d, pointer events %d -> %d",
					b.KeyEvents, v.KeyEvents, b.PointerEvents, v.PointerEvents)
			}
			if k := n.KeyEvents - v.KeyEvents; k != int64(2*len(keysTyped)) {
				r.failf(t, "the normal session's %d key presses and releases gave %d key events at the VM, want exactly %d",
					2*len(keysTyped), k, 2*len(keysTyped))
			}
			if p := n.PointerEvents - v.PointerEvents; p < int64(2*clicks) {
				r.failf(t, "the normal session's %d clicks gave %d pointer events at the VM, want at least %d", clicks, p, 2*clicks)
			}
			if s := r.step("watcher-later"); !s.Settled {
				r.failf(t, "the view-only session's screen stopped updating (state %q, hash %.16s as before the keys)", s.State, s.Hash)
			}
			r.connected(t, "watcher-end")
			r.connected(t, "worker-end")
			t.Logf("VM counts: before %+v, after the view-only input %+v, after the normal input %+v", b, v, n)
		},
	}
}

// recordCase (issue 12): the live session sees the stripes, then the checker; its last frame
// is hashed once it has not changed for a second, the page closes, `bench vm --replay` serves
// the recording, and noVNC must end on the same pixels.
func (g *rfbRig) recordCase() rfbCase {
	var mu sync.Mutex
	var recFile string
	replay := g.hooks.add("replay", func() (string, error) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, err := metricValue(g.edge.admin, "vncedge_recordings_completed_total")
			if err == nil && v >= 1 {
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("no recording completed within 10 s (metric %v, err %v)", v, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		files, err := filepath.Glob(filepath.Join(g.recDir, "*.fbs"))
		if err != nil || len(files) != 1 {
			return "", fmt.Errorf("recordings in %s: %v (err %v), want exactly one", g.recDir, files, err)
		}
		fi, err := os.Stat(files[0])
		if err != nil {
			return "", err
		}
		mu.Lock()
		recFile = files[0]
		mu.Unlock()
		addr := fmt.Sprintf("127.0.0.1:%d", g.replay)
		p := startProc(g.t, g.tmp, "bench-vm-replay", g.benchBin, "vm", "--replay", files[0], "--replay-fast", "--listen", addr)
		deadline = time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if p.exited() || time.Now().After(deadline) {
				return "", fmt.Errorf("bench vm --replay not listening on %s: %v\n%s", addr, err, p.tail(2000))
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fmt.Sprintf("replaying %s (%d bytes)", filepath.Base(files[0]), fi.Size()), nil
	})
	return rfbCase{
		flow: flow{Name: "record-replay", Steps: []flowStep{
			g.root("stripes", stripesPattern()),
			{ID: "open-live", Do: "open", Page: "live", App: "ours", URL: g.oursURL(g.edge.base, "websockify?token=rec")},
			showsStripes("live-stripes", "live"),
			g.root("checker", checkerPattern()),
			lastFrame("live-last", "live"),
			shot("live", "record-live"),
			{Do: "close", Page: "live"},
			replay,
			{ID: "open-replay", Do: "open", Page: "replay", App: "ours", URL: g.oursURL(g.edge.base, "websockify?token=replay")},
			lastFrame("replay-last", "replay"),
			shot("replay", "record-replay"),
		}},
		check: func(t *testing.T, r *flowResult) {
			r.connected(t, "open-live")
			r.pixels(t, "live-stripes", 800, 600, stripeSamples, stripeWant)
			r.pixels(t, "live-last", 800, 600, checkSamples, checkWant())
			if s := r.step("hook-replay"); s.Error != "" {
				r.failf(t, "replay: %s", s.Error)
			}
			r.connected(t, "open-replay")
			r.pixels(t, "replay-last", 800, 600, checkSamples, checkWant())
			live, replay := r.step("live-last").Hash, r.step("replay-last").Hash
			if live == "" || replay != live {
				r.failf(t, "the replay ends on pixels with SHA-256 %q, the live session's last frame had %q", replay, live)
			}
			mu.Lock()
			f := recFile
			mu.Unlock()
			if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("recording %q: %v, want a file of mode 0600", f, err)
			}
			t.Logf("live and replayed canvas: SHA-256 %s; recording %s", live, filepath.Base(f))
		},
	}
}

// tlsCase (issue 13): the viewer loads over https:// from vncedge and its session runs over
// wss:// to TigerVNC; the certificate files are replaced and vncedge gets SIGHUP while the
// session runs. A fresh Go TLS client must then get the new certificate; the running session
// must show the root window painted after the reload (TigerVNC sends only what noVNC asks
// for, so both directions work), on its first and only WebSocket; Debian's app must connect
// over https/wss after the reload; and a server whose key is not pinned must be refused.
func (g *rfbRig) tlsCase() rfbCase {
	var mu sync.Mutex
	var after tlsPeer
	reload := g.hooks.add("tls-reload", func() (string, error) {
		if _, _, err := g.cert2.write(g.tlsDir, "server"); err != nil {
			return "", err
		}
		if err := g.edge.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return "", err
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			p, err := dialTLS(g.tlsAddr, g.ca.pool(), "127.0.0.1")
			if err == nil && p.leaf.SerialNumber.Cmp(g.cert2.leaf.SerialNumber) == 0 {
				mu.Lock()
				after = p
				mu.Unlock()
				return "new certificate served: " + peerName(p), nil
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("10 s after SIGHUP a new connection still gets %s (err %v)", peerName(p), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	untrusted := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "<!DOCTYPE html><title>untrusted</title>")
	}))
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // Chromium's refusal is expected here
	untrusted.StartTLS()
	g.t.Cleanup(untrusted.Close)

	base := "https://" + g.tlsAddr
	return rfbCase{
		flow: flow{Name: "tls", Steps: []flowStep{
			g.root("stripes", stripesPattern()),
			{ID: "open", Do: "open", Page: "t", App: "ours", URL: g.oursURL(base, "websockify?token=xvnc")},
			showsStripes("stripes", "t"),
			shot("t", "tls-before-reload"),
			reload,
			g.root("checker", checkerPattern()),
			showsChecker("checker", "t"),
			{ID: "after", Do: "state", Page: "t"},
			shot("t", "tls-after-reload"),
			{ID: "open-novnc", Do: "open", Page: "n", App: "novnc", URL: g.novncURL(base, "websockify?token=xvnc")},
			showsChecker("novnc-checker", "n"),
			shot("n", "tls-novnc-after-reload"),
			{ID: "untrusted", Do: "open", Page: "u", App: "ours", URL: untrusted.URL + "/"},
		}},
		check: func(t *testing.T, r *flowResult) {
			r.connected(t, "open")
			r.pixels(t, "stripes", 800, 600, stripeSamples, stripeWant)
			if s := r.step("hook-tls-reload"); s.Error != "" {
				r.failf(t, "certificate replacement: %s", s.Error)
			}
			mu.Lock()
			p := after
			mu.Unlock()
			if p.leaf == nil || p.leaf.SerialNumber.Cmp(g.cert2.leaf.SerialNumber) != 0 || p.protocol != "http/1.1" {
				t.Errorf("after the replacement a new connection got %s, ALPN %q; want the new certificate and http/1.1", peerName(p), p.protocol)
			}
			r.pixels(t, "checker", 800, 600, checkSamples, checkWant())
			r.connected(t, "after")
			pg := r.page("t")
			if !strings.HasPrefix(pg.URL, "https://") || pg.WebSockets != 1 || len(pg.WSURLs) != 1 || !strings.HasPrefix(pg.WSURLs[0], "wss://") {
				r.failf(t, "page %s opened WebSockets %v, want exactly one wss:// for the whole session", pg.URL, pg.WSURLs)
			}
			r.connected(t, "open-novnc")
			r.pixels(t, "novnc-checker", 800, 600, checkSamples, checkWant())
			if n := r.page("n"); len(n.WSURLs) == 0 || !strings.HasPrefix(n.WSURLs[0], "wss://") {
				r.failf(t, "Debian's noVNC over https opened %v, want wss://", n.WSURLs)
			}
			if s := r.step("untrusted"); !strings.Contains(s.LoadError, "ERR_CERT") {
				r.failf(t, "a server whose key is not pinned: load error %q (state %q), want Chromium to refuse its certificate", s.LoadError, s.State)
			}
		},
	}
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
// server whose key is not pinned. Go's TLS client here and openssl (TestTLSOpenSSL) verify the
// whole chain against the test CA.
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

	g := &rfbRig{t: t, tmp: t.TempDir(), xsetroot: xsetroot, hooks: newHookSet(t)}
	art := artifactsDir(t)
	bin := buildVncedge(t, g.tmp)
	g.benchBin = buildBench(t, g.tmp)
	// One web root holds both viewers: ours at /, Debian's noVNC app at /novnc/.
	webRoot := filepath.Join(g.tmp, "web")
	runNode(t, node, root, time.Minute, filepath.Join(root, "web", "build.mjs"), webRoot)
	if err := os.Symlink(novncDir, filepath.Join(webRoot, "novnc")); err != nil {
		t.Fatal(err)
	}

	// Every connection here comes from 127.0.0.1, and the wrong-password cases fail VNC
	// authentication on purpose: TigerVNC must not blacklist the address for the rest.
	g.x = startXvnc(t, xvncBin, vncpasswd, xsetroot, g.tmp, "-BlacklistThreshold", "1000")
	g.xAddr = fmt.Sprintf("127.0.0.1:%d", g.x.port)
	sim, err := vncsim.Listen("127.0.0.1:0", vncsim.Config{
		Name: "vm-view-only", Password: vncPassword, Width: 640, Height: 480,
		FrameInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	g.sim = sim
	simPort := sim.Addr().(*net.TCPAddr).Port
	g.replay = freePort(t)

	// The control: TigerVNC itself asks for a password (VNC authentication only), so security
	// type None in the browser can only come from the proxy.
	if types, err := securityTypes(g.xAddr); err != nil || !bytes.Equal(types, []byte{2}) {
		t.Fatalf("TigerVNC offers security types %v (err %v), want only VNC authentication [2]", types, err)
	}

	goodPW, wrongPW := filepath.Join(g.tmp, "vnc-password"), filepath.Join(g.tmp, "wrong-vnc-password")
	writeFile(t, goodPW, vncPassword+"\n", 0o600)
	writeFile(t, wrongPW, "not-it\n", 0o600)
	g.recDir = filepath.Join(g.tmp, "recordings")
	g.tlsDir = filepath.Join(g.tmp, "tls")
	for _, d := range []string{g.recDir, g.tlsDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	tokenFile := filepath.Join(g.tmp, "tokens")
	writeFile(t, tokenFile, fmt.Sprintf("xvnc: %s\nrec: %s record\nvo: 127.0.0.1:%d view-only\nrw: 127.0.0.1:%d\nreplay: 127.0.0.1:%d\n",
		g.xAddr, g.xAddr, simPort, simPort, g.replay), 0o644)
	wrongTokens := filepath.Join(g.tmp, "tokens-wrong")
	writeFile(t, wrongTokens, "xvnc: "+g.xAddr+"\n", 0o644)

	g.ca = newTestCA(t, "vncedge e2e CA")
	g.cert1, g.cert2 = g.ca.issueServer(t, "vncedge e2e 1"), g.ca.issueServer(t, "vncedge e2e 2")
	certFile, keyFile := g.cert1.writeFiles(t, g.tlsDir, "server")
	g.tlsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))

	g.edge = startEdge(t, bin, g.tmp, "vncedge-rfb", webRoot, tokenFile, []int{g.x.port, simPort, g.replay},
		"--vnc-password-file", goodPW, "--record-dir", g.recDir,
		"--tls-listen", g.tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile)
	waitTCP(t, g.edge.p, g.tlsAddr, 10*time.Second)
	g.wrong = startEdge(t, bin, g.tmp, "vncedge-wrong-password", webRoot, wrongTokens, []int{g.x.port},
		"--vnc-password-file", wrongPW)
	if p, err := dialTLS(g.tlsAddr, g.ca.pool(), "127.0.0.1"); err != nil || p.leaf.SerialNumber.Cmp(g.cert1.leaf.SerialNumber) != 0 {
		t.Fatalf("before the replacement, Go's TLS client got %s (err %v), want the first certificate", peerName(p), err)
	}

	cases := append(g.injectCases(), g.wrongPasswordCases()...)
	cases = append(cases, g.viewOnlyCase(), g.recordCase(), g.tlsCase())
	flows := make([]flow, len(cases))
	for i, c := range cases {
		flows[i] = c.flow
		flows[i].TimeoutMs = 15000
	}
	results := runFlows(t, node, chromium, g.tmp, art,
		[]string{"--ignore-certificate-errors-spki-list=" + g.cert1.spki() + "," + g.cert2.spki()}, flows)

	var summary strings.Builder
	for _, c := range cases {
		t.Run(c.flow.Name, func(t *testing.T) {
			r := results[c.flow.Name]
			if r == nil {
				t.Fatalf("no result from the driver")
			}
			r.summary(&summary)
			for _, s := range r.Steps {
				if s.Screenshot != "" {
					t.Logf("screenshot: %s", s.Screenshot)
				}
			}
			if r.Error != "" {
				r.failf(t, "the flow stopped: %s", r.Error)
			}
			c.check(t, r)
		})
	}
	took := time.Since(began).Round(time.Millisecond)
	fmt.Fprintf(&summary, "took %v, failed: %v\n", took, t.Failed())
	summaryFile := filepath.Join(art, "rfb-summary.txt")
	if err := os.WriteFile(summaryFile, []byte(summary.String()), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("RFB and TLS browser test took %v; screenshots (rfb-*.png) and %s in %s", took, filepath.Base(summaryFile), art)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
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
