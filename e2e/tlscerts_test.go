package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a certificate authority made by a test, so TLS checks verify real chains instead
// of switching verification off.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"vncedge e2e"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issued is a certificate from a testCA: chain is the leaf's PEM followed by the CA's, as a
// server presents it.
type issued struct {
	leaf  *x509.Certificate
	chain []byte
	key   []byte
}

// issueServer makes a server certificate for localhost and 127.0.0.1.
func (ca *testCA) issueServer(t *testing.T, cn string) issued {
	t.Helper()
	return ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// issueClient makes a client certificate with common name cn.
func (ca *testCA) issueClient(t *testing.T, cn string) issued {
	t.Helper()
	return ca.issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate) issued {
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = newSerial(t)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	return issued{leaf: leaf, chain: chain, key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// writeFiles writes the chain and key as dir/name.pem and dir/name.key and returns their
// paths.
func (c issued) writeFiles(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := c.write(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// write is writeFiles for goroutines other than the test's. Each file is replaced by a
// rename, so a reader never sees half a file; the key goes first, so a reader that sees the
// new certificate finds its key.
func (c issued) write(dir, name string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := writeAtomic(keyFile, c.key, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, writeAtomic(certFile, c.chain, 0o644)
}

// spki is the base64 SHA-256 of the leaf's SubjectPublicKeyInfo: the form Chromium's
// --ignore-certificate-errors-spki-list takes.
func (c issued) spki() string {
	sum := sha256.Sum256(c.leaf.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// tlsPeer is what a fresh Go TLS client sees at addr, verifying against roots: no session
// cache, so every call is a full handshake and shows the certificate served now.
type tlsPeer struct {
	leaf     *x509.Certificate
	version  uint16
	protocol string
}

func dialTLS(addr string, roots *x509.CertPool, serverName string, certs ...tls.Certificate) (tlsPeer, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: 3 * time.Second},
		Config: &tls.Config{
			RootCAs:      roots,
			ServerName:   serverName,
			NextProtos:   []string{"http/1.1"},
			Certificates: certs,
		},
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return tlsPeer{}, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	return tlsPeer{leaf: st.PeerCertificates[0], version: st.Version, protocol: st.NegotiatedProtocol}, nil
}
