package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"vncedge/bench/rfbclient"
	"vncedge/bench/wsstream"
)

// TestVeNCryptTigerVNC: real TigerVNC that offers nothing but VeNCrypt's X509Vnc (TLS with a
// certificate from a CA the test made, then VNC authentication inside it). With --vm-vencrypt,
// --upstream-ca and the password at the proxy, a client with no password connects over
// WebSocket, is offered None, and gets TigerVNC's ServerInit and a full update: the password
// and the desktop crossed the proxy-to-VM hop inside TLS, the certificate checked.
func TestVeNCryptTigerVNC(t *testing.T) {
	req := require(t)
	xvncBin := req.bin("Xvnc")
	vncpasswd := req.bin("vncpasswd")
	xsetroot := req.bin("xsetroot")
	req.check()
	tmp := t.TempDir()
	ca := newTestCA(t, "vncedge e2e VM CA")
	certFile, keyFile := ca.issueServer(t, "vm").writeFiles(t, tmp, "vm")
	caFile := filepath.Join(tmp, "vm-ca.pem")
	writeFile(t, caFile, string(ca.pem), 0o644)
	x := startXvnc(t, xvncBin, vncpasswd, xsetroot, tmp,
		"-SecurityTypes", "X509Vnc", "-X509Cert", certFile, "-X509Key", keyFile)
	xAddr := fmt.Sprintf("127.0.0.1:%d", x.port)
	// The control: TigerVNC offers VeNCrypt only, so nothing in the clear could have worked.
	if types, err := securityTypes(xAddr); err != nil || !bytes.Equal(types, []byte{19}) {
		t.Fatalf("TigerVNC offers security types %v (err %v), want only VeNCrypt [19]", types, err)
	}

	bin := buildVncedge(t, tmp)
	pw := filepath.Join(tmp, "vnc-password")
	writeFile(t, pw, vncPassword+"\n", 0o600)
	tokens := filepath.Join(tmp, "tokens")
	writeFile(t, tokens, "x: "+xAddr+"\n", 0o644)
	e := startEdge(t, bin, tmp, "vncedge-vencrypt", "", tokens, []int{x.port},
		"--vnc-password-file", pw, "--vm-vencrypt", "--upstream-ca", caFile)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, conn, err := wsstream.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/vnc/%s", e.port, xAddr), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	si, err := rfbclient.Handshake(st, "") // no password: the proxy must offer None
	if err != nil {
		t.Fatalf("RFB through vncedge to TigerVNC over VeNCrypt: %v\n%s", err, e.p.tail(2000))
	}
	if si.Width != 800 || si.Height != 600 {
		t.Fatalf("ServerInit %dx%d, want TigerVNC's 800x600", si.Width, si.Height)
	}
	if err := rfbclient.RequestUpdate(st, false, 0, 0, si.Width, si.Height); err != nil {
		t.Fatal(err)
	}
	bpp := int(si.Format.BPP / 8)
	var pixels int
	for pixels < int(si.Width)*int(si.Height) {
		_, _, err := rfbclient.ReadUpdate(st, bpp, func(r rfbclient.Rect, p []byte) { pixels += len(p) / bpp })
		if err != nil {
			t.Fatalf("update after %d pixels: %v", pixels, err)
		}
	}
	t.Logf("TigerVNC X509Vnc through vncedge: ServerInit %q %dx%d, %d pixels of the first update", si.Name, si.Width, si.Height, pixels)
}
