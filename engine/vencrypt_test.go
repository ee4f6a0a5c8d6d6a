package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"vncedge/rfb"
	"vncedge/routing"
)

// vencryptVM is a VNC server that offers only VeNCrypt's X509Vnc, as
// TigerVNC does with -SecurityTypes X509Vnc: RFB 3.8 in the clear up to
// the sub-type, then TLS, then VNC Authentication inside it, ServerInit,
// and an echo of whatever follows. It reports what happened on done.
type vencryptVM struct {
	ln   net.Listener
	done chan error
}

func startVeNCryptVM(t *testing.T, certFile, keyFile, password string) *vencryptVM {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	vm := &vencryptVM{ln: ln, done: make(chan error, 1)}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			vm.done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		vm.done <- vm.serve(c, &tls.Config{Certificates: []tls.Certificate{cert}}, password)
	}()
	return vm
}

func (vm *vencryptVM) addr() string { return vm.ln.Addr().String() }

func (vm *vencryptVM) serve(c net.Conn, cfg *tls.Config, password string) error {
	step := func(name string, out []byte, in int) ([]byte, error) {
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return nil, err
			}
		}
		b := make([]byte, in)
		if _, err := io.ReadFull(c, b); err != nil {
			return nil, &net.OpError{Op: name, Err: err}
		}
		return b, nil
	}
	if _, err := step("version", rfb.AppendVersion(nil, rfb.V38), 12); err != nil {
		return err
	}
	if b, err := step("security type", rfb.AppendSecurityTypes(nil, rfb.SecVeNCrypt), 1); err != nil || b[0] != byte(rfb.SecVeNCrypt) {
		return fmt.Errorf("security type %v, %v", b, err)
	}
	if _, err := step("VeNCrypt version", rfb.AppendVeNCryptVersion(nil, rfb.VeNCryptMajor, rfb.VeNCryptMinor), 2); err != nil {
		return err
	}
	out := rfb.AppendVeNCryptAck(nil, true)
	out = rfb.AppendVeNCryptSubtypes(out, rfb.VeNCryptX509Vnc)
	if b, err := step("sub-type", out, 4); err != nil || b[3] != byte(rfb.VeNCryptX509Vnc&0xff) {
		return fmt.Errorf("sub-type %v, %v", b, err)
	}
	if _, err := c.Write(rfb.AppendVeNCryptTLSAck(nil, true)); err != nil {
		return err
	}
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	c = tc
	var challenge [rfb.ChallengeLen]byte
	copy(challenge[:], "0123456789abcdef")
	resp, err := step("VNC auth", challenge[:], rfb.ChallengeLen)
	if err != nil {
		return err
	}
	if !rfb.VNCAuthCheck([]byte(password), challenge, [rfb.ChallengeLen]byte(resp)) {
		_, _ = c.Write(rfb.AppendSecurityResultFailed(nil, rfb.V38, "wrong password"))
		return errors.New("wrong VNC password")
	}
	if _, err := step("ClientInit", rfb.AppendSecurityResultOK(nil), 1); err != nil {
		return err
	}
	si := rfb.ServerInit{Width: 64, Height: 48, Format: rfb.Default32(), Name: "inside TLS"}
	if _, err := c.Write(si.Append(nil)); err != nil {
		return err
	}
	// The proxy hangs up when its browser leaves: that ends the echo.
	if _, err = io.Copy(c, c); errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
		err = nil
	}
	return err
}

// wait returns how the VM's session ended.
func (vm *vencryptVM) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-vm.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the VM's session did not end")
		return nil
	}
}

// vencryptSetup starts a VeNCrypt VM whose certificate signer issued (the
// proxy trusts ca), and writes its password to a file for the proxy.
func vencryptSetup(t *testing.T, ca, signer *testCA) (vm *vencryptVM, passwordFile, caFile string) {
	t.Helper()
	certFile, keyFile, _ := signer.issue(t, "vm.test", false)
	return startVeNCryptVM(t, certFile, keyFile, "tlspw"), writeFile(t, "vnc.pw", "tlspw\n"), ca.dir + "/ca.pem"
}

// With --vm-vencrypt the proxy takes a VM that offers only VeNCrypt's
// X509Vnc: TLS on the loop after the plaintext negotiation (its certificate
// checked against --upstream-ca), VNC Authentication inside it, and the
// session relayed through that TLS. Before, such a VM was refused with
// "this VM asks for a login vncedge cannot give".
func TestVeNCryptX509TowardsVM(t *testing.T) {
	ca := newTestCA(t)
	vm, pw, caFile := vencryptSetup(t, ca, ca)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.VNCPasswordFile = pw
		c.VMVeNCrypt = true
		c.TLS.UpstreamCA = caFile
	})
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr())
	if name := c.rfbLogin(); name != "inside TLS" {
		t.Fatalf("desktop name %q", name)
	}
	msg := rfb.AppendFramebufferUpdateRequest(nil, false, 0, 0, 8, 8)
	c.sendRFB(msg)
	if got := c.rfbData(len(msg)); string(got) != string(msg) {
		t.Fatalf("echo through the VM's TLS: %x, want %x", got, msg)
	}
	_ = c.conn.Close()
	if err := vm.wait(t); err != nil {
		t.Fatalf("VM: %v", err)
	}
}

// A VM whose certificate the proxy cannot verify is refused with a reason
// noVNC shows, not relayed in the clear or without checking.
func TestVeNCryptUntrustedVM(t *testing.T) {
	vm, pw, caFile := vencryptSetup(t, newTestCA(t), newTestCA(t))
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.VNCPasswordFile = pw
		c.VMVeNCrypt = true
		c.TLS.UpstreamCA = caFile
	})
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr())
	if r := c.rfbRefusal(); r != "the VNC server's TLS certificate is not trusted" {
		t.Fatalf("refusal %q", r)
	}
	if err := vm.wait(t); err == nil || !strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("VM: %v, want its TLS handshake to fail", err)
	}
}

// Without --vm-vencrypt the same VM is refused as before: the proxy never
// picks a TLS sub-type it was not asked for.
func TestVeNCryptOffByDefault(t *testing.T) {
	ca := newTestCA(t)
	vm, pw, _ := vencryptSetup(t, ca, ca)
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.VNCPasswordFile = pw })
	c := mustDialWS(t, ts.url+"/vnc/"+vm.addr())
	if r := c.rfbRefusal(); r != "this VM asks for a login vncedge cannot give" {
		t.Fatalf("refusal %q", r)
	}
}

// A grant's vencrypt option asks for the same for one VM, without the
// flag: from the token file here, with the VM's password beside it.
func TestVeNCryptGrantOption(t *testing.T) {
	ca := newTestCA(t)
	vm, pw, caFile := vencryptSetup(t, ca, ca)
	tf := tokenFile(t, "tls-vm: "+vm.addr()+" vencrypt password-file="+pw+"\n")
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		rc.Sources = []routing.TokenSource{tf}
		c.TLS.UpstreamCA = caFile
	})
	c := mustDialWS(t, ts.url+"/websockify?token=tls-vm")
	if name := c.rfbLogin(); name != "inside TLS" {
		t.Fatalf("desktop name %q", name)
	}
	_ = c.conn.Close()
	if err := vm.wait(t); err != nil {
		t.Fatalf("VM: %v", err)
	}
}
