package engine

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/bench/vncsim"
	"vncedge/rfb"
	"vncedge/routing"
)

// Tests of the RFB layer (issue 12): credential injection, readable
// failures, view-only. The VM is bench's simulated one (an RFB 3.8 server
// that counts the input it receives); the browser is a small RFB client
// over the test's WebSocket client.

func startSimVM(t *testing.T, cfg vncsim.Config) *vncsim.Server {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test-vm"
	}
	vm, err := vncsim.Listen("127.0.0.2:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	return vm
}

// rfbData returns the next n bytes of RFB from the server, reading binary
// frames as needed and keeping what a frame brought beyond n for the next
// call.
func (c *wsClient) rfbData(n int) []byte {
	c.t.Helper()
	for len(c.rfbBuf) < n {
		c.rfbBuf = append(c.rfbBuf, c.readData(1, 5*time.Second)...)
	}
	out := c.rfbBuf[:n:n]
	c.rfbBuf = c.rfbBuf[n:]
	return out
}

func (c *wsClient) sendRFB(p []byte) { c.t.Helper(); c.writeFrame(true, ws.OpBinary, p) }

// rfbHello does the browser's side of the handshake the proxy offers (RFB
// 3.8, security type None) and returns the security types offered.
func (c *wsClient) rfbHello() []byte {
	c.t.Helper()
	if v := c.rfbData(rfb.VersionLen); string(v) != "RFB 003.008\n" {
		c.t.Fatalf("server version %q", v)
	}
	c.sendRFB([]byte("RFB 003.008\n"))
	n := c.rfbData(1)[0]
	if n == 0 {
		l := binary.BigEndian.Uint32(c.rfbData(4))
		c.t.Fatalf("refused: %q", c.rfbData(int(l)))
	}
	return c.rfbData(int(n))
}

// rfbRefusal reads the proxy's refusal and returns its reason.
func (c *wsClient) rfbRefusal() string {
	c.t.Helper()
	if v := c.rfbData(rfb.VersionLen); string(v) != "RFB 003.008\n" {
		c.t.Fatalf("server version %q", v)
	}
	c.sendRFB([]byte("RFB 003.008\n"))
	if n := c.rfbData(1)[0]; n != 0 {
		c.t.Fatalf("offered %d security types, want a refusal", n)
	}
	l := binary.BigEndian.Uint32(c.rfbData(4))
	return string(c.rfbData(int(l)))
}

// rfbLogin completes the handshake with None and returns the ServerInit's name.
func (c *wsClient) rfbLogin() string {
	c.t.Helper()
	if types := c.rfbHello(); !bytes.Equal(types, []byte{byte(rfb.SecNone)}) {
		c.t.Fatalf("security types %v, want exactly None", types)
	}
	c.sendRFB([]byte{byte(rfb.SecNone)})
	if r := c.rfbData(4); binary.BigEndian.Uint32(r) != 0 {
		c.t.Fatalf("SecurityResult %v", r)
	}
	c.sendRFB([]byte{0}) // ClientInit, not shared
	si := c.rfbData(24)
	return string(c.rfbData(int(binary.BigEndian.Uint32(si[20:]))))
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCredentialInjection(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{Password: "s3cret"})
	pw := writeFile(t, "vm1.pw", "s3cret\n")
	tf := tokenFile(t, "vm1: "+vm.Addr().String()+" password-file="+pw+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	c := mustDialWS(t, ts.url+"/websockify?token=vm1")
	if name := c.rfbLogin(); name != "test-vm" {
		t.Fatalf("ServerInit name %q", name)
	}
	if st := vm.Stats(); st.Handshakes != 1 || st.AuthFailures != 0 {
		t.Fatalf("VM saw %d handshakes, %d auth failures", st.Handshakes, st.AuthFailures)
	}
}

func TestVNCPasswordFileForEveryVM(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{Password: "fleetpw"})
	pw := writeFile(t, "vnc.pw", "fleetpw\n")
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.VNCPasswordFile = pw })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.Addr().String())
	c.rfbLogin()
	// Everything after ServerInit passes through: an update arrives.
	c.sendRFB(rfb.AppendFramebufferUpdateRequest(nil, false, 0, 0, 16, 16))
	if msg := c.rfbData(1); msg[0] != rfb.MsgFramebufferUpdate {
		t.Fatalf("first server message type %d, want a FramebufferUpdate", msg[0])
	}
	// The file's password serves every session, not just the first: sessions
	// must not wipe the shared copy when they are done with theirs.
	for i := 2; i <= 3; i++ {
		c := mustDialWS(t, ts.url+"/vnc/"+vm.Addr().String())
		c.rfbLogin()
	}
	if st := vm.Stats(); st.Handshakes != 3 || st.AuthFailures != 0 {
		t.Fatalf("VM saw %d handshakes, %d auth failures; want 3, 0", st.Handshakes, st.AuthFailures)
	}
}

func TestWrongVNCPasswordExplained(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{Password: "right"})
	pw := writeFile(t, "vnc.pw", "wrong\n")
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.VNCPasswordFile = pw })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.Addr().String())
	if r := c.rfbRefusal(); r != "the VNC server refused the proxy's credentials" {
		t.Fatalf("refusal %q", r)
	}
	if v := ts.metricValue(`vncedge_sessions_closed_total{reason="vm_handshake_failed"}`); v != "1" {
		waitUntil(t, 5*time.Second, "the refusal counted", func() bool {
			return ts.metricValue(`vncedge_sessions_closed_total{reason="vm_handshake_failed"}`) == "1"
		})
	}
}

func TestRFBRefusals(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", func(c net.Conn) { _, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) })
	dead := startEcho(t, "127.0.0.3:0", nil)
	deadAddr := dead.addr()
	dead.close() // nothing listens there any more
	pw := writeFile(t, "vnc.pw", "pw\n")
	tf := tokenFile(t, "web: "+echo.addr()+" password-file="+pw+"\ndead: "+deadAddr+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	for _, tc := range []struct{ path, want string }{
		{"/websockify?token=nope", "unknown or expired link"},
		{"/websockify?token=dead", "this VM is not reachable right now"},
		{"/websockify?token=web", "this VM does not speak VNC"},
	} {
		c := mustDialWS(t, ts.url+tc.path)
		if r := c.rfbRefusal(); r != tc.want {
			t.Errorf("%s: refusal %q, want %q", tc.path, r, tc.want)
		}
		if code, _ := c.expectClose(2 * time.Second); code != ws.StatusNormalClosure {
			t.Errorf("%s: closed with %d after the refusal", tc.path, code)
		}
	}
	// Failures noVNC cannot meet with a link from a real page stay HTTP.
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/nowhere")); st != 404 {
		t.Errorf("no route: %d, want 404", st)
	}
}

// A refusal is a handshake like any other: a client that never sends its
// RFB version is cut at the handshake timeout.
func TestRFBRefusalTimesOut(t *testing.T) {
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.HandshakeTimeout = 500 * time.Millisecond
		rc.Sources = []routing.TokenSource{tokenFile(t, "x: 127.0.0.2:1\n")}
	})
	c := mustDialWS(t, ts.url+"/websockify?token=nope")
	if code, reason := c.expectClose(3 * time.Second); code != ws.StatusPolicyViolation || !strings.Contains(reason, "timeout") {
		t.Fatalf("silent client: closed %d %q", code, reason)
	}
}

func TestViewOnlyDropsInput(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{})
	tf := tokenFile(t, "watch: "+vm.Addr().String()+" view-only\nwork: "+vm.Addr().String()+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	watcher := mustDialWS(t, ts.url+"/websockify?token=watch")
	watcher.rfbLogin()
	var input []byte
	for i := range 5 {
		input = rfb.AppendKeyEvent(input, true, 0x61+uint32(i))
		input = rfb.AppendPointerEvent(input, 1, uint16(i), uint16(i))
	}
	input = rfb.AppendFramebufferUpdateRequest(input, false, 0, 0, 16, 16)
	watcher.sendRFB(input)
	if msg := watcher.rfbData(1); msg[0] != rfb.MsgFramebufferUpdate {
		t.Fatalf("the watcher's screen did not update: message type %d", msg[0])
	}
	if st := vm.Stats(); st.KeyEvents != 0 || st.PointerEvents != 0 {
		t.Fatalf("a view-only session's input reached the VM: %d keys, %d pointer events", st.KeyEvents, st.PointerEvents)
	}
	// A normal session to the same VM keeps working, input included.
	worker := mustDialWS(t, ts.url+"/websockify?token=work")
	worker.rfbHello()
	worker.sendRFB([]byte{byte(rfb.SecNone)})
	worker.rfbData(4)
	worker.sendRFB([]byte{1})
	si := worker.rfbData(24)
	worker.rfbData(int(binary.BigEndian.Uint32(si[20:])))
	worker.sendRFB(rfb.AppendKeyEvent(nil, true, 0x61))
	waitUntil(t, 5*time.Second, "the working session's key at the VM", func() bool { return vm.Stats().KeyEvents == 1 })
	// An unknown message type on a scanned session closes it: its length
	// cannot be known, so nothing after it could be filtered.
	watcher.sendRFB([]byte{99, 1, 2, 3})
	if code, _ := watcher.expectClose(2 * time.Second); code != ws.StatusPolicyViolation {
		t.Fatalf("unknown message on a view-only session: closed %d, want 1008", code)
	}
}

func TestRecording(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{})
	dir := t.TempDir()
	tf := tokenFile(t, "rec: "+vm.Addr().String()+" record\nplain: "+vm.Addr().String()+"\n")
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.RecordDir, c.RecordInput = dir, true
		rc.Sources = []routing.TokenSource{tf}
	})
	c := mustDialWS(t, ts.url+"/websockify?token=rec")
	c.rfbLogin()
	// The client asks for its own pixel format: the recording must carry it.
	pf := rfb.RGB565()
	c.sendRFB(rfb.AppendSetPixelFormat(nil, pf))
	c.sendRFB(rfb.AppendKeyEvent(nil, true, 0x61))
	c.sendRFB(rfb.AppendFramebufferUpdateRequest(nil, false, 0, 0, 16, 16))
	if msg := c.rfbData(1); msg[0] != rfb.MsgFramebufferUpdate {
		t.Fatalf("update type %d", msg[0])
	}
	c.writeFrame(true, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "done"))
	c.expectClose(2 * time.Second)
	_ = c.conn.Close()
	mustDialWS(t, ts.url+"/websockify?token=plain").rfbHello() // not recorded
	var fbs string
	waitUntil(t, 10*time.Second, "the recording closed", func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "*.fbs"))
		if len(m) == 1 {
			fbs = m[0]
		}
		return ts.metricValue("vncedge_recordings_completed_total") == "1"
	})
	st, err := os.Stat(fbs)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("recording %s: %v, mode %v", fbs, err, st.Mode())
	}
	b, _ := os.ReadFile(fbs)
	var d rfb.FBSDecoder
	var all []byte
	for rest := b; len(rest) > 0; {
		blk, k, err := d.Next(rest)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, blk.Data...)
		rest = rest[k:]
	}
	v, si, n, err := rfb.ParseRecordingStart(all)
	if err != nil || v != rfb.V38 || si.Format != pf || si.Name != "test-vm" {
		t.Fatalf("recording start: %v %v %+v", err, v, si)
	}
	stream := all[n:]
	if len(stream) == 0 || stream[0] != rfb.MsgFramebufferUpdate {
		t.Fatalf("recorded stream starts %v", stream[:min(len(stream), 8)])
	}
	input, err := os.ReadFile(strings.TrimSuffix(fbs, ".fbs") + ".input.jsonl")
	if err != nil || !strings.Contains(string(input), `"keysym":97`) {
		t.Fatalf("input log: %v %q", err, input)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.fbs")); len(m) != 1 {
		t.Fatalf("recordings %v: the plain session was recorded too", m)
	}
}

func TestRecordRequired(t *testing.T) {
	vm := startSimVM(t, vncsim.Config{})
	tf := tokenFile(t, "rec: "+vm.Addr().String()+" record\n")
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.RecordRequired = true // and no RecordDir: recording is impossible
		rc.Sources = []routing.TokenSource{tf}
	})
	c := mustDialWS(t, ts.url+"/websockify?token=rec")
	if r := c.rfbRefusal(); !strings.Contains(r, "must be recorded") {
		t.Fatalf("a session that must be recorded but cannot be: refusal %q", r)
	}
}
