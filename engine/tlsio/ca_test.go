package tlsio

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a certificate authority made by a test.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
	pool *x509.CertPool
}

// certSpec says what to issue.
type certSpec struct {
	cn       string
	dns      []string
	ips      []net.IP
	rsa      bool // RSA 2048 instead of ECDSA P-256
	client   bool // client-auth usage instead of server-auth
	notAfter time.Time
}

func newKey(t testing.TB, useRSA bool) crypto.Signer {
	t.Helper()
	if useRSA {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	key := newKey(t, false)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue returns a leaf signed by the CA, as PEM (leaf then CA: a chain) and its key as PEM.
func (ca *testCA) issue(t testing.TB, s certSpec) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t, s.rsa)
	notAfter := s.notAfter
	if notAfter.IsZero() {
		notAfter = time.Now().Add(12 * time.Hour)
	}
	usage := x509.ExtKeyUsageServerAuth
	if s.client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: s.cn, Organization: []string{"vncedge test"}},
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// tlsCert returns an issued certificate as a tls.Certificate (for test clients and servers).
func (ca *testCA) tlsCert(t testing.TB, s certSpec) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, s)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writePair writes an issued certificate into dir as name.crt and name.key.
func (ca *testCA) writePair(t testing.TB, dir, name string, s certSpec) CertPair {
	t.Helper()
	c, k := ca.issue(t, s)
	p := CertPair{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
	writeFile(t, p.Cert, c)
	writeFile(t, p.Key, k)
	return p
}

// writeCA writes the CA certificate into dir and returns its path.
func (ca *testCA) writeCA(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, ca.pem)
	return p
}

// writeFile replaces a file the way an operator's tooling does: a new file renamed over the
// old one, so a reader never sees half of it.
func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
