package load

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// tlsFront terminates TLS on addr and relays every connection to backend: a stand-in for a
// proxy reached over wss://. It returns the CA file that verifies it.
func tlsFront(t *testing.T, ip string, backend string) (port int, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(ip)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := tls.Listen("tcp", ip+":0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go io.Copy(b, c)
				io.Copy(c, b)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, caFile
}

func TestWSSTargets(t *testing.T) {
	vmPort := freePort(t)
	vm := VMFor(0, 0)
	port, ca := tlsFront(t, vm.IP, net.JoinHostPort(vm.IP, strconv.Itoa(vmPort)))
	target := Target{Name: "tls", URL: "wss://{ip}:" + strconv.Itoa(port) + "/", Relay: true}
	for _, tc := range []struct {
		name string
		tls  TLSOptions
		ok   bool
	}{
		{"ca", TLSOptions{CAFile: ca}, true},
		{"insecure", TLSOptions{Insecure: true}, true},
		{"system roots", TLSOptions{}, false},
		{"wrong name", TLSOptions{CAFile: ca, ServerName: "elsewhere.example"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := Run(ctx, Options{Scenario: "tls", Kind: KindDown, Sessions: 2, Bytes: 1 << 20, Target: target,
				TLS: tc.tls, Layout: Layout{Port: vmPort}, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if tc.ok && (len(r.Failures()) > 0 || r.TotalBytes != 2<<20) {
				t.Fatalf("over TLS: %v, %d bytes", r.Failures(), r.TotalBytes)
			}
			if !tc.ok && (r.OpenFailed != 2 || len(r.Failures()) == 0) {
				t.Fatalf("unverifiable certificate accepted: %+v", r)
			}
		})
	}
	if _, err := (TLSOptions{CAFile: filepath.Join(t.TempDir(), "none.pem")}).Config(); err == nil {
		t.Fatal("missing CA file accepted")
	}
}
