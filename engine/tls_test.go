package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/bench/vncsim"
	"vncedge/engine/tlsio"
	"vncedge/routing"
)

// Tests of TLS on the edge (issue 13): wss:// and https:// terminated on
// the event loops, with a CA and certificates made by the test.

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	dir  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vncedge test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ca := &testCA{cert: cert, key: key, pool: pool, dir: t.TempDir()}
	ca.write("ca.pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		panic(err)
	}
	return p
}

var serials atomic.Int64

// issue makes a leaf for cn (a server name or a client name) and returns
// its files, and its serial.
func (ca *testCA) issue(t *testing.T, cn string, client bool) (certFile, keyFile string, serial int64) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial = 100 + serials.Add(1)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{cn}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	name := strings.ReplaceAll(cn, "*", "star") + "-" + big.NewInt(serial).String()
	return ca.write(name+".pem", "CERTIFICATE", der), ca.write(name+"-key.pem", "EC PRIVATE KEY", kder), serial
}

// startTLSServer runs a server with a TLS listener and a certificate for
// vncedge.test.
func startTLSServer(t *testing.T, ca *testCA, tweak func(*Config, *routing.Config)) (*testServer, string, string) {
	t.Helper()
	certFile, keyFile, _ := ca.issue(t, "vncedge.test", false)
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.TLSListen = "127.0.0.1:0"
		c.TLS.Certs = []tlsio.CertPair{{Cert: certFile, Key: keyFile}}
		if tweak != nil {
			tweak(c, rc)
		}
	})
	return ts, certFile, keyFile
}

func (ca *testCA) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: "vncedge.test"}
}

func dialWSS(t *testing.T, ts *testServer, path string, cfg *tls.Config) (*wsClient, error) {
	t.Helper()
	d := ws.Dialer{TLSConfig: cfg, Timeout: 5 * time.Second}
	conn, br, hs, err := d.Dial(context.Background(), "wss://"+ts.TLSAddr()+path)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &wsClient{t: t, conn: conn, br: br, hs: hs}, nil
}

func TestTLSSessionEcho(t *testing.T) {
	ca := newTestCA(t)
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts, _, _ := startTLSServer(t, ca, nil)
	c, err := dialWSS(t, ts, "/vnc/"+echo.addr(), ca.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.writeFrame(true, ws.OpBinary, []byte("over wss"))
	if got := c.readData(8, 5*time.Second); string(got) != "over wss" {
		t.Fatalf("echo %q", got)
	}
	// A megabyte each way, in frames of many sizes: records and frames cut
	// anywhere.
	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		for off := 0; off < len(payload); {
			n := min(1+off%70000, len(payload)-off)
			c.writeFrame(true, ws.OpBinary, payload[off:off+n])
			off += n
		}
	}()
	if got := c.readData(len(payload), 20*time.Second); !bytes.Equal(got, payload) {
		t.Fatal("1 MiB echoed over wss:// differs")
	}
	list := ts.listSessions("")
	if len(list) != 1 {
		t.Fatalf("sessions: %+v", list)
	}
}

func TestTLSStaticAndPlainHTTPOnTLSPort(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.js"), []byte("export const x = 1;"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts, _, _ := startTLSServer(t, ca, func(c *Config, _ *routing.Config) { c.WebDir = dir })
	cfg := ca.clientConfig()
	cfg.NextProtos = []string{"http/1.1"}
	hc := http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + ts.TLSAddr() + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "export const x = 1;" || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "http/1.1" {
		t.Fatalf("GET over https: %q, tls %+v", body, resp.TLS)
	}
	if status, resp := rawRequest(t, ts.TLSAddr(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); status != 400 || !strings.Contains(resp, "speaks TLS") {
		t.Fatalf("plain HTTP on the TLS port: %d %q", status, resp)
	}
}

func TestTLSHandshakeBounds(t *testing.T) {
	ca := newTestCA(t)
	ts, _, _ := startTLSServer(t, ca, func(c *Config, _ *routing.Config) { c.HandshakeTimeout = 500 * time.Millisecond })
	// A partial ClientHello: a slowloris like any other.
	conn, err := net.Dial("tcp", ts.TLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01})
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	t0 := time.Now()
	if _, err := io.ReadAll(conn); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("partial ClientHello: %v", err)
	}
	if d := time.Since(t0); d > 2500*time.Millisecond {
		t.Fatalf("a partial ClientHello held its connection for %v", d)
	}
	// Garbage instead of TLS is dropped at once.
	g, err := net.Dial("tcp", ts.TLSAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, _ = g.Write(bytes.Repeat([]byte{0xff}, 64))
	_ = g.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadAll(g); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("garbage: %v", err)
	}
	if v := ts.metricValue("vncedge_tls_handshake_failures_total"); v == "0" || v == "" {
		t.Errorf("failed handshakes not counted: %q", v)
	}
}

func TestTLSCertificateReload(t *testing.T) {
	ca := newTestCA(t)
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts, certFile, keyFile := startTLSServer(t, ca, nil)
	serialOf := func() int64 {
		c, err := tls.Dial("tcp", ts.TLSAddr(), ca.clientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	first := serialOf()
	old, err := dialWSS(t, ts, "/vnc/"+echo.addr(), ca.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	newCert, newKey, serial := ca.issue(t, "vncedge.test", false)
	for _, f := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		b, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(); got != serial || got == first {
		t.Fatalf("after the reload the certificate's serial is %d, want the new %d", got, serial)
	}
	old.writeFrame(true, ws.OpBinary, []byte("still"))
	if got := old.readData(5, 5*time.Second); string(got) != "still" {
		t.Fatal("the session from before the reload stopped")
	}
	// A broken file keeps the certificate in use.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err == nil {
		t.Fatal("a broken certificate file reloaded without an error")
	}
	if got := serialOf(); got != serial {
		t.Fatalf("after a bad reload the serial is %d, want %d kept", got, serial)
	}
}

func TestTLSClientCertificates(t *testing.T) {
	ca := newTestCA(t)
	echo := startEcho(t, "127.0.0.2:0", nil)
	var logs syncBuffer
	ts, _, _ := startTLSServer(t, ca, func(c *Config, _ *routing.Config) {
		c.TLS.ClientCA = filepath.Join(ca.dir, "ca.pem")
		c.TLS.ClientCNs = []string{"alice*"}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	certFile, keyFile, _ := ca.issue(t, "alice.ops", true)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ca.clientConfig()
	cfg.Certificates = []tls.Certificate{pair}
	if _, err := dialWSS(t, ts, "/vnc/"+echo.addr(), cfg); err != nil {
		t.Fatalf("a client certificate from the CA with an allowed CN: %v", err)
	}
	waitUntil(t, 5*time.Second, "the client's subject in the session log", func() bool {
		return strings.Contains(logs.String(), `tls.client_subject="CN=alice.ops"`)
	})
	if _, err := dialWSS(t, ts, "/vnc/"+echo.addr(), ca.clientConfig()); err == nil {
		t.Fatal("no client certificate: the upgrade succeeded")
	}
	bobCert, bobKey, _ := ca.issue(t, "bob.ops", true)
	bob, _ := tls.LoadX509KeyPair(bobCert, bobKey)
	cfg = ca.clientConfig()
	cfg.Certificates = []tls.Certificate{bob}
	if _, err := dialWSS(t, ts, "/vnc/"+echo.addr(), cfg); err == nil {
		t.Fatal("a CN outside --tls-client-cn: the upgrade succeeded")
	}
}

// A TLS browser that stops reading parks its VM like a plain one: memory
// stays bounded, and once it reads again every byte arrives in order.
func TestTLSSlowReaderBounded(t *testing.T) {
	const total = 64 << 20
	var written atomic.Int64
	ca := newTestCA(t)
	vm := startEcho(t, "127.0.0.2:0", patternSource(total, &written))
	ts, _, _ := startTLSServer(t, ca, func(c *Config, _ *routing.Config) { c.PingInterval = 0 })
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := dialWSS(t, ts, "/vnc/"+vm.addr(), ca.clientConfig())
	if err != nil {
		t.Fatal(err)
	}
	checkStalled(t, ts, &written, &before, "VM wrote", "while the TLS browser read nothing")
	got := int64(0)
	buf := make([]byte, 0, 64<<10)
	for got < total {
		h, p, err := c.readFrame(20 * time.Second)
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if h.OpCode != ws.OpBinary {
			continue
		}
		buf = buf[:0]
		buf = append(buf, make([]byte, len(p))...)
		fillPattern(buf, got)
		if !bytes.Equal(p, buf) {
			t.Fatalf("bytes at %d differ", got)
		}
		got += int64(len(p))
	}
}

// startTLSVM runs a VM behind TLS: a certificate for 127.0.0.1 from ca,
// and the simulated RFB server (or an echo when cfg is nil) inside.
func startTLSVM(t *testing.T, ca *testCA, sim *vncsim.Config) net.Addr {
	t.Helper()
	certFile, keyFile, _ := ca.issue(t, "vm.test", false)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.2:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	if sim != nil {
		vm, err := vncsim.Serve(ln, *sim)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = vm.Close() })
		return ln.Addr()
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr()
}

func TestTLSToVM(t *testing.T) {
	ca := newTestCA(t)
	echo := startTLSVM(t, ca, nil)
	sim := startTLSVM(t, ca, &vncsim.Config{Password: "pw", Name: "tls-vm"})
	pw := writeFile(t, "pw", "pw\n")
	other := newTestCA(t)
	tf := tokenFile(t, "echo: "+echo.String()+" tls\nsim: "+sim.String()+" tls password-file="+pw+"\n")
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.TLS.UpstreamCA = filepath.Join(ca.dir, "ca.pem")
		rc.Sources = []routing.TokenSource{tf}
	})
	c := mustDialWS(t, ts.url+"/websockify?token=echo")
	msg := bytes.Repeat([]byte("tls to the vm "), 20000)
	go c.writeFrame(true, ws.OpBinary, msg)
	if got := c.readData(len(msg), 10*time.Second); !bytes.Equal(got, msg) {
		t.Fatal("the echo over TLS to the VM differs")
	}
	// Credential injection through TLS to a VNC server.
	v := mustDialWS(t, ts.url+"/websockify?token=sim")
	if name := v.rfbLogin(); name != "tls-vm" {
		t.Fatalf("ServerInit over TLS: %q", name)
	}
	// A VM whose certificate the proxy cannot verify is not reached.
	ts2 := startServer(t, func(c *Config, rc *routing.Config) {
		c.TLS.UpstreamCA = filepath.Join(other.dir, "ca.pem")
		rc.Sources = []routing.TokenSource{tf}
	})
	if r := mustDialWS(t, ts2.url+"/websockify?token=echo").rfbRefusal(); r != "this VM is not reachable right now" {
		t.Fatalf("an unverifiable VM: refusal %q", r)
	}
}
