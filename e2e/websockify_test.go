package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"vncedge/bench/rfbclient"
	"vncedge/bench/vncsim"
	"vncedge/rfb"
)

type proxyUnderTest struct{ name, base string }

// startBothProxies starts a simulated VM, websockify and vncedge, both reading one token file
// (vm1 -> the VM, dead -> a port nobody listens on).
func startBothProxies(t *testing.T) (*vncsim.Server, []proxyUnderTest) {
	t.Helper()
	req := require(t)
	websockify := req.bin("websockify")
	req.check()

	tmp := t.TempDir()
	bin := buildVncedge(t, tmp)
	vm, err := vncsim.Listen("127.0.0.1:0", vncsim.Config{
		Name: "vm-compat", Password: vncPassword, Width: 320, Height: 200, FrameInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	vmPort := vm.Addr().(*net.TCPAddr).Port
	deadPort := freePort(t)

	// One file in websockify's TokenFile format, comment included, for both proxies.
	tokenFile := filepath.Join(tmp, "tokens")
	tokens := fmt.Sprintf("# shared by websockify and vncedge\nvm1: 127.0.0.1:%d\ndead: 127.0.0.1:%d\n", vmPort, deadPort)
	if err := os.WriteFile(tokenFile, []byte(tokens), 0o644); err != nil {
		t.Fatal(err)
	}

	wsPort := freePort(t)
	wsp := startProc(t, tmp, "websockify", websockify, "--token-plugin", "TokenFile", "--token-source", tokenFile,
		fmt.Sprintf("127.0.0.1:%d", wsPort))
	waitTCP(t, wsp, fmt.Sprintf("127.0.0.1:%d", wsPort), 15*time.Second)
	edge := startEdge(t, bin, tmp, "vncedge", "", tokenFile, []int{vmPort, deadPort})
	return vm, []proxyUnderTest{
		{"websockify", fmt.Sprintf("ws://127.0.0.1:%d", wsPort)},
		{"vncedge", fmt.Sprintf("ws://127.0.0.1:%d", edge.port)},
	}
}

// TestWebsockifyCompat runs one scripted noVNC-like session against Debian's websockify and
// against vncedge, both reading the same token file, and compares what the client receives.
func TestWebsockifyCompat(t *testing.T) {
	vm, proxies := startBothProxies(t)
	var good, unknown, dead [2]record
	for i, p := range proxies {
		good[i] = session(t, vm, p.base+"/websockify?token=vm1")
		unknown[i] = session(t, vm, p.base+"/websockify?token=no-such-vm")
		dead[i] = session(t, vm, p.base+"/websockify?token=dead")
		for _, r := range []record{good[i], unknown[i], dead[i]} {
			t.Logf("%-10s %s", p.name, r)
		}
	}

	// A working session: the same bytes, the same way.
	w, v := good[0], good[1]
	if w.err != "" || v.err != "" {
		t.Fatalf("session failed: websockify %q, vncedge %q", w.err, v.err)
	}
	if w.status != 101 || v.status != 101 || w.protocol != v.protocol {
		t.Errorf("upgrade differs: websockify %d %q, vncedge %d %q", w.status, w.protocol, v.status, v.protocol)
	}
	if w.version != v.version || w.serverInit != v.serverInit {
		t.Errorf("handshake differs:\n websockify %q %+v\n vncedge    %q %+v", w.version, w.serverInit, v.version, v.serverInit)
	}
	if w.updateRects != v.updateRects || w.updateBytes != v.updateBytes || v.updateBytes == 0 {
		t.Errorf("first framebuffer update differs: websockify %d rects %d bytes, vncedge %d rects %d bytes",
			w.updateRects, w.updateBytes, v.updateRects, v.updateBytes)
	}
	if w.keys != v.keys || w.pointers != v.pointers || v.keys == 0 {
		t.Errorf("input reaching the VNC server differs: websockify %d keys %d pointer, vncedge %d keys %d pointer",
			w.keys, w.pointers, v.keys, v.pointers)
	}
	if w.closeEcho != v.closeEcho {
		t.Errorf("answer to the client's close differs: websockify %q, vncedge %q", w.closeEcho, v.closeEcho)
	}

	// Unknown token and unreachable target: no byte of the VM's RFB gets through, and the client
	// gets an answer, not a hang. The form differs by design (docs/websockify.md): websockify
	// refuses or closes with 1011, which noVNC shows as "Failed to connect to server"; vncedge
	// (--rfb-errors) answers as an RFB server that refuses with a reason noVNC shows.
	for i, p := range proxies {
		for _, r := range []record{unknown[i], dead[i]} {
			if r.status == 101 && r.closeCode == 0 && !r.eof && r.refusal == "" {
				t.Errorf("%s %s: upgraded but neither closed nor ended: %s", p.name, r.url, r)
			}
		}
		if unknown[i].version != "" && i == 0 {
			t.Errorf("websockify %s: the client received RFB data %q", unknown[i].url, unknown[i].version)
		}
	}
	if r := unknown[1]; r.status != 101 || r.refusal != "unknown or expired link" {
		t.Errorf("vncedge unknown token: %s, want 101 and the RFB refusal \"unknown or expired link\" (CONTRACT.md, --rfb-errors)", r)
	}
	if r := dead[1]; r.status != 101 || r.refusal != "this VM is not reachable right now" {
		t.Errorf("vncedge unreachable target: %s, want 101 and the RFB refusal \"this VM is not reachable right now\"", r)
	}
}

// record is what one scripted session saw.
type record struct {
	url         string
	status      int // 101, or the HTTP status of a refused upgrade
	protocol    string
	version     string // the server's RFB ProtocolVersion line
	serverInit  rfb.ServerInit
	updateRects int
	updateBytes int
	keys        int64 // events the VNC server counted during the session
	pointers    int64
	closeEcho   string // how the proxy answered our close frame
	closeCode   int    // close frame received before we sent anything (refusals)
	closeReason string
	refusal     string // the reason of an RFB security failure
	eof         bool
	err         string
}

func (r record) String() string {
	s := fmt.Sprintf("%s: HTTP %d", r.url, r.status)
	if r.status == 0 {
		s = r.url + ": no HTTP answer"
	}
	if r.protocol != "" {
		s += " protocol " + r.protocol
	}
	if r.version != "" {
		s += fmt.Sprintf(", %q, ServerInit %dx%d %q, first update %d rects %d bytes, %d keys %d pointer events reached the VM, close answered with %s",
			strings.TrimSpace(r.version), r.serverInit.Width, r.serverInit.Height, r.serverInit.Name,
			r.updateRects, r.updateBytes, r.keys, r.pointers, r.closeEcho)
	}
	if r.closeCode != 0 {
		s += fmt.Sprintf(", closed %d %q", r.closeCode, r.closeReason)
	}
	if r.eof {
		s += ", connection ended"
	}
	if r.err != "" {
		s += ", error: " + r.err
	}
	return s
}

// session plays what noVNC does: upgrade offering "binary", RFB handshake with VNC auth, a full
// update request, a few keys and a click, then a normal close.
func session(t *testing.T, vm *vncsim.Server, url string) (rec record) {
	t.Helper()
	rec.url = url[strings.Index(url, "/websockify"):]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d := ws.Dialer{
		Protocols: []string{"binary"},
		OnStatusError: func(status int, _ []byte, _ io.Reader) {
			rec.status = status
		},
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		switch {
		case rec.status != 0:
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			rec.eof = true // closed without answering the upgrade
		default:
			rec.err = err.Error()
		}
		return rec
	}
	defer conn.Close()
	rec.status, rec.protocol = 101, hs.Protocol
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var src io.Reader = conn
	if br != nil {
		src = io.MultiReader(br, conn)
	}
	c := &wsClient{conn: conn, r: bufio.NewReader(src)}

	// Peek at the first message: RFB's version line, or a close from a refusing proxy.
	first, err := c.next()
	if err != nil {
		var closed wsutil.ClosedError
		switch {
		case errors.As(err, &closed):
			rec.closeCode, rec.closeReason = int(closed.Code), closed.Reason
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			rec.eof = true
		default:
			rec.err = err.Error()
		}
		return rec
	}
	c.pending = first
	if len(first) >= 12 {
		rec.version = string(first[:12])
	}

	before := vm.Stats()
	si, err := rfbclient.Handshake(c, vncPassword)
	if err != nil {
		rec.err = "handshake: " + err.Error()
		var he *rfb.HandshakeError
		if errors.As(err, &he) && errors.Is(err, rfb.ErrRefused) {
			rec.refusal = he.Reason // an RFB server's refusal, as noVNC shows it
		}
		return rec
	}
	rec.serverInit = si
	steps := []error{
		rfbclient.SetEncodings(c, rfb.EncodingRaw),
		rfbclient.RequestUpdate(c, false, 0, 0, si.Width, si.Height),
	}
	for _, err := range steps {
		if err != nil {
			rec.err = err.Error()
			return rec
		}
	}
	rects, n, err := rfbclient.ReadUpdate(c, si.Format.BytesPerPixel(), nil)
	if err != nil {
		rec.err = "update: " + err.Error()
		return rec
	}
	rec.updateRects, rec.updateBytes = rects, n
	for _, k := range []uint32{'v', 'n', 'c'} {
		if err := errors.Join(rfbclient.KeyEvent(c, true, k), rfbclient.KeyEvent(c, false, k)); err != nil {
			rec.err = err.Error()
			return rec
		}
	}
	if err := errors.Join(rfbclient.PointerEvent(c, 1, 10, 10), rfbclient.PointerEvent(c, 0, 10, 10)); err != nil {
		rec.err = err.Error()
		return rec
	}
	// The events are counted when the VM reads them: wait (bounded) before the close.
	deadline := time.Now().Add(5 * time.Second)
	after := vm.Stats()
	for (after.KeyEvents-before.KeyEvents < 6 || after.PointerEvents-before.PointerEvents < 2) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		after = vm.Stats()
	}
	rec.keys, rec.pointers = after.KeyEvents-before.KeyEvents, after.PointerEvents-before.PointerEvents

	rec.closeEcho = c.closeAndWait(ws.StatusNormalClosure, "bye")
	return rec
}

// TestFramesSplitAcrossReads sends a key event and a close frame cut in two at every byte
// offset, with a pause between the halves, as a slow network delivers them: the proxy must
// reassemble frame headers that arrive in pieces. websockify shows the client is right.
func TestFramesSplitAcrossReads(t *testing.T) {
	_, proxies := startBothProxies(t)
	var wire bytes.Buffer
	for _, f := range []ws.Frame{
		ws.NewFrame(ws.OpBinary, true, []byte{rfb.MsgKeyEvent, 1, 0, 0, 0, 0, 0, 'v'}),
		ws.NewFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")),
	} {
		f.Header.Masked, f.Header.Mask = true, [4]byte{0x11, 0x22, 0x33, 0x44}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if err := ws.WriteFrame(&wire, f); err != nil {
			t.Fatal(err)
		}
	}
	msg := wire.Bytes()
	for _, p := range proxies {
		var bad []string
		for cut := 1; cut < len(msg); cut++ {
			if got := splitSession(t, p.base+"/websockify?token=vm1", msg, cut); got != `close 1000 "bye"` {
				bad = append(bad, fmt.Sprintf("cut at %d: %s", cut, got))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s: frames cut in two are not reassembled (%d of %d cuts):\n  %s", p.name, len(bad), len(msg)-1, strings.Join(bad, "\n  "))
		}
	}
}

func splitSession(t *testing.T, url string, msg []byte, cut int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var src io.Reader = conn
	if br != nil {
		src = io.MultiReader(br, conn)
	}
	c := &wsClient{conn: conn, r: bufio.NewReader(src)}
	if _, err := rfbclient.Handshake(c, vncPassword); err != nil {
		t.Fatalf("%s: handshake: %v", url, err)
	}
	if _, err := conn.Write(msg[:cut]); err != nil {
		return "write: " + err.Error()
	}
	time.Sleep(30 * time.Millisecond) // let the proxy read the first piece on its own
	if _, err := conn.Write(msg[cut:]); err != nil {
		return "write: " + err.Error()
	}
	return c.awaitClose()
}

// wsClient is a minimal client byte stream over WebSocket frames that, unlike a library reader,
// reports the close frame it receives, so the two proxies' close behaviour can be compared.
type wsClient struct {
	conn    net.Conn
	r       *bufio.Reader
	pending []byte
}

// next returns the payload of the next data frame, answering pings; a close frame ends it with
// wsutil.ClosedError.
func (c *wsClient) next() ([]byte, error) {
	for range 1000 {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return nil, err
		}
		if h.Length > 64<<20 {
			return nil, fmt.Errorf("frame of %d bytes", h.Length)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, p); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, wsutil.ClosedError{Code: code, Reason: reason}
		case ws.OpPing:
			if err := wsutil.WriteClientMessage(c.conn, ws.OpPong, p); err != nil {
				return nil, err
			}
		case ws.OpPong:
		default:
			if len(p) > 0 {
				return p, nil
			}
		}
	}
	return nil, errors.New("too many empty frames")
}

func (c *wsClient) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		b, err := c.next()
		if err != nil {
			return 0, err
		}
		c.pending = b
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *wsClient) Write(p []byte) (int, error) {
	if err := wsutil.WriteClientBinary(c.conn, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// closeAndWait sends a close frame and describes the answer: the echoed close code, or how the
// connection ended without one. Data still in flight before the echo is skipped.
func (c *wsClient) closeAndWait(code ws.StatusCode, reason string) string {
	body := ws.NewCloseFrameBody(code, reason)
	if err := wsutil.WriteClientMessage(c.conn, ws.OpClose, body); err != nil {
		return "write failed: " + err.Error()
	}
	return c.awaitClose()
}

// awaitClose reads until a close frame arrives and describes how the stream ended.
func (c *wsClient) awaitClose() string {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for range 10000 {
		_, err := c.next()
		if err == nil {
			continue
		}
		var closed wsutil.ClosedError
		var ne net.Error
		switch {
		case errors.As(err, &closed):
			return "close " + strconv.Itoa(int(closed.Code)) + " " + strconv.Quote(closed.Reason)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return "end of stream without a close frame"
		case errors.As(err, &ne) && ne.Timeout():
			return "no answer within 5s"
		default:
			return "error: " + err.Error()
		}
	}
	return "only data frames"
}
