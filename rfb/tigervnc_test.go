package rfb

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the handshakes against a real TigerVNC server (Debian package
// tigervnc-standalone-server, with vncpasswd from tigervnc-tools), on loopback.

const (
	tigerPassword = "tiger-pw" // VNC passwords count 8 bytes
	tigerWidth    = 320
	tigerHeight   = 200
	ioTimeout     = 10 * time.Second
)

// needTool finds a binary or skips the test loudly (fails under CI=true, where it must exist).
func needTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("REAL-SERVER TEST SKIPPED: none of %v installed (apt-get install tigervnc-standalone-server tigervnc-tools)", names)
	if os.Getenv("CI") == "true" {
		t.Fatal(strings.Replace(msg, "SKIPPED", "FAILED (CI=true)", 1))
	}
	t.Skip(msg)
	return ""
}

type tigerVNC struct {
	addr string
	dir  string
}

// startTigerVNC runs Xtigervnc with the given -SecurityTypes on a free display and loopback port
// and stops it when the test ends.
func startTigerVNC(t *testing.T, securityTypes string, extra ...string) *tigerVNC {
	t.Helper()
	bin := needTool(t, "Xtigervnc", "Xvnc")
	passwd := needTool(t, "tigervncpasswd", "vncpasswd")
	dir := t.TempDir()
	cmd := exec.Command(passwd, "-f")
	cmd.Stdin = strings.NewReader(tigerPassword + "\n")
	pw, err := cmd.Output()
	if err != nil {
		t.Fatalf("vncpasswd -f: %v", err)
	}
	pwFile := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pwFile, pw, 0o600); err != nil {
		t.Fatal(err)
	}
	for display := 120 + os.Getpid()%40; display < 400; display += 11 {
		if xDisplayHeld(display) {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		args := append([]string{fmt.Sprintf(":%d", display), "-rfbport", fmt.Sprint(port), "-localhost",
			"-nolisten", "tcp", "-SecurityTypes", securityTypes, "-PasswordFile", pwFile,
			"-geometry", fmt.Sprintf("%dx%d", tigerWidth, tigerHeight), "-depth", "24", "-desktop", "tiger-test"}, extra...)
		p := exec.Command(bin, args...)
		var log bytes.Buffer
		p.Stdout, p.Stderr = &log, &log
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { p.Wait(); close(exited) }()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		deadline := time.Now().Add(10 * time.Second)
		up := false
		for !up && time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{}
				continue
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				up = true
			} else {
				time.Sleep(50 * time.Millisecond)
			}
		}
		if !up {
			p.Process.Kill()
			<-exited
			t.Logf("Xtigervnc :%d did not come up, trying another display:\n%s", display, log.String())
			continue
		}
		t.Cleanup(func() {
			// SIGTERM, so that Xtigervnc removes its lock file and socket: killed,
			// it leaves them behind and later runs run out of display numbers.
			_ = p.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				return
			case <-time.After(ioTimeout):
			}
			p.Process.Kill()
			select {
			case <-exited:
			case <-time.After(ioTimeout):
				t.Error("Xtigervnc did not exit")
			}
		})
		return &tigerVNC{addr: addr, dir: dir}
	}
	t.Fatal("no free X display for Xtigervnc")
	return nil
}

// conn is what the handshake driver reads and writes: a TCP conn, later maybe a TLS one on it.
type conn interface {
	io.ReadWriter
	SetDeadline(time.Time) error
}

// driveVM runs a VMHandshake over c the way an I/O-based caller would: write the output, read,
// feed. On NeedTLS it runs a TLS client over c with tlsCfg and continues inside it. It returns
// the connection to use after the handshake.
func driveVM(t *testing.T, c conn, h *VMHandshake, tlsCfg *tls.Config) (conn, error) {
	t.Helper()
	buf := make([]byte, 4096)
	var pending []byte
	for !h.Done() {
		if out := h.AppendOutput(nil); len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return c, err
			}
		}
		if h.NeedTLS() {
			if tlsCfg == nil {
				t.Fatal("NeedTLS without a TLS config")
			}
			if len(pending) > 0 {
				t.Fatalf("%d bytes read past the TLS ack", len(pending))
			}
			tc := tls.Client(c.(net.Conn), tlsCfg)
			if err := tc.Handshake(); err != nil {
				return c, fmt.Errorf("TLS handshake: %w", err)
			}
			c = tc
			h.TLSStarted()
			continue
		}
		if len(pending) == 0 {
			n, err := c.Read(buf)
			if err != nil {
				return c, fmt.Errorf("read (handshake state %d): %w", h.st, err)
			}
			pending = buf[:n]
		}
		n, err := h.Feed(pending)
		pending = pending[n:]
		if err != nil {
			if out := h.AppendOutput(nil); len(out) > 0 {
				c.Write(out)
			}
			return c, err
		}
	}
	if len(pending) > 0 {
		t.Fatalf("%d bytes after the handshake", len(pending))
	}
	return c, nil
}

// finishInit sends ClientInit and reads the ServerInit.
func finishInit(t *testing.T, c conn) ServerInit {
	t.Helper()
	if _, err := c.Write(AppendClientInit(nil, true)); err != nil {
		t.Fatal(err)
	}
	var b []byte
	buf := make([]byte, 512)
	for {
		si, n, err := ParseServerInit(b)
		if err == nil {
			if n != len(b) {
				t.Fatalf("%d bytes after ServerInit", len(b)-n)
			}
			return si
		}
		if err != ErrShort {
			t.Fatal(err)
		}
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read ServerInit: %v", err)
		}
		b = append(b, buf[:k]...)
	}
}

func dialTiger(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

func checkServerInit(t *testing.T, si ServerInit) {
	t.Helper()
	if si.Width != tigerWidth || si.Height != tigerHeight || !strings.Contains(si.Name, "tiger-test") || si.Format.BPP != 32 {
		t.Fatalf("ServerInit %+v", si)
	}
}

func TestTigerVNCHandshakes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Xtigervnc")
	}
	for _, tc := range []struct {
		name, types, password string
		want                  error
		sec                   SecurityType
		sub                   uint32
	}{
		{"None", "None", "", nil, SecNone, 0},
		{"VncAuth", "VncAuth", tigerPassword, nil, SecVNCAuth, 0},
		{"VncAuth long password", "VncAuth", tigerPassword + "-ignored", nil, SecVNCAuth, 0},
		{"wrong password", "VncAuth", "wrong", ErrAuthFailed, 0, 0},
		{"no password", "VncAuth", "", ErrNoUsableType, 0, 0},
		{"VeNCrypt plain VncAuth", "VeNCrypt,VncAuth", tigerPassword, nil, SecVNCAuth, 0},
		{"anonymous TLS only", "TLSVnc", tigerPassword, ErrNoUsableType, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vnc := startTigerVNC(t, tc.types)
			h := NewVMHandshake(VMConfig{Password: []byte(tc.password)})
			c, err := driveVM(t, dialTiger(t, vnc.addr), &h, nil)
			if tc.want != nil {
				var he *HandshakeError
				if !errors.Is(err, tc.want) || !errors.As(err, &he) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
				t.Logf("TigerVNC refused as expected: %v", err)
				if tc.want == ErrAuthFailed && he.Reason == "" {
					t.Fatal("TigerVNC's reason is missing")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sec, sub := h.Security(); sec != tc.sec || sub != tc.sub || h.Version() != V38 {
				t.Fatalf("security %v/%d version %v", sec, sub, h.Version())
			}
			checkServerInit(t, finishInit(t, c))
		})
	}
}

// TestTigerVNCVeNCryptX509 goes through VeNCrypt's X509Vnc and X509None: the machine stops at
// NeedTLS, crypto/tls runs over the same socket, and the handshake finishes inside TLS.
func TestTigerVNCVeNCryptX509(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Xtigervnc")
	}
	for _, tc := range []struct {
		types, password string
		sub             uint32
	}{{"X509Vnc", tigerPassword, VeNCryptX509Vnc}, {"X509None", "", VeNCryptX509None}} {
		t.Run(tc.types, func(t *testing.T) {
			dir := t.TempDir()
			pool := writeTestCert(t, dir)
			vnc := startTigerVNC(t, tc.types, "-X509Cert", filepath.Join(dir, "cert.pem"), "-X509Key", filepath.Join(dir, "key.pem"))
			h := NewVMHandshake(VMConfig{Password: []byte(tc.password), VeNCryptTLS: true})
			c, err := driveVM(t, dialTiger(t, vnc.addr), &h, &tls.Config{RootCAs: pool, ServerName: "localhost"})
			if err != nil {
				t.Fatal(err)
			}
			if sec, sub := h.Security(); sec != SecVeNCrypt || sub != tc.sub {
				t.Fatalf("security %v/%d", sec, sub)
			}
			if _, ok := c.(*tls.Conn); !ok {
				t.Fatal("no TLS")
			}
			checkServerInit(t, finishInit(t, c))
		})
	}
}

// TestTigerVNCCredentialInjection is the proxy's credential injection end to end on loopback:
// a client with no password (the VM handshake with an empty password, as noVNC would connect)
// talks to a small proxy that runs BrowserHandshake towards it and VMHandshake with the password
// towards a TigerVNC that requires VNC Authentication; after both, the proxy relays bytes and
// the client gets the VM's ServerInit.
func TestTigerVNCCredentialInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Xtigervnc")
	}
	vnc := startTigerVNC(t, "VncAuth")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	proxyErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		proxyErr <- proxyOnce(ln, vnc.addr, []byte(tigerPassword))
	}()
	c := dialTiger(t, ln.Addr().String())
	h := NewVMHandshake(VMConfig{})
	if _, err := driveVM(t, c, &h, nil); err != nil {
		t.Fatal(err)
	}
	if sec, _ := h.Security(); sec != SecNone {
		t.Fatalf("the browser side was offered %v", sec)
	}
	checkServerInit(t, finishInit(t, c))
	c.Close()
	wg.Wait()
	if err := <-proxyErr; err != nil {
		t.Fatal(err)
	}
}

// proxyOnce accepts one client and runs both handshakes (VM first, as the engine does: the
// browser only sees None once the VM accepted the password), then relays in both directions,
// forcing the shared flag of the client's ClientInit.
func proxyOnce(ln net.Listener, vmAddr string, password []byte) error {
	bc, err := ln.Accept()
	if err != nil {
		return err
	}
	defer bc.Close()
	bc.SetDeadline(time.Now().Add(ioTimeout))
	vm, err := net.DialTimeout("tcp", vmAddr, ioTimeout)
	if err != nil {
		return err
	}
	defer vm.Close()
	vm.SetDeadline(time.Now().Add(ioTimeout))
	buf := make([]byte, 4096)
	vh := NewVMHandshake(VMConfig{Password: password})
	for !vh.Done() {
		n, err := vm.Read(buf)
		if err != nil {
			return err
		}
		if _, err := vh.Feed(buf[:n]); err != nil {
			return err
		}
		if _, err := vm.Write(vh.AppendOutput(nil)); err != nil {
			return err
		}
	}
	bh := NewBrowserHandshake()
	var rest []byte
	for !bh.Done() {
		if _, err := bc.Write(bh.AppendOutput(nil)); err != nil {
			return err
		}
		n, err := bc.Read(buf)
		if err != nil {
			return err
		}
		k, err := bh.Feed(buf[:n])
		if err != nil {
			return err
		}
		rest = append(rest, buf[k:n]...)
	}
	if _, err := bc.Write(bh.AppendOutput(nil)); err != nil {
		return err
	}
	if len(rest) == 0 {
		n, err := bc.Read(buf)
		if err != nil {
			return err
		}
		rest = buf[:n]
	}
	ForceShared(rest)
	if _, err := vm.Write(rest); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { io.Copy(vm, bc); vm.Close(); close(done) }()
	io.Copy(bc, vm)
	bc.Close()
	<-done
	return nil
}

// writeTestCert writes a self-signed ECDSA certificate for localhost and 127.0.0.1 with its key
// into dir and returns a pool holding it.
func writeTestCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// xDisplayHeld reports whether an X server holds display n. A lock file whose
// process is gone (an X server killed outright) is removed with its socket,
// so that stale locks do not use up the display numbers.
func xDisplayHeld(n int) bool {
	lock := fmt.Sprintf("/tmp/.X%d-lock", n)
	b, err := os.ReadFile(lock)
	if err != nil {
		return !os.IsNotExist(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
		return true
	}
	_ = os.Remove(lock)
	_ = os.Remove(fmt.Sprintf("/tmp/.X11-unix/X%d", n))
	return false
}
