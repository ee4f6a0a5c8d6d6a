package tlsio

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialStore runs one handshake of a crypto/tls client against a Conn server using st, and
// returns what the client saw (or the handshake errors of both sides).
func dialStore(t *testing.T, st *Store, ccfg *tls.Config) (tls.ConnectionState, *testLoop, *tls.Conn, error, error) {
	t.Helper()
	l, m := memServer(t, testPool(), st.ServerConfig())
	c := tls.Client(m, ccfg)
	cerr := clientHandshake(t, c)
	serr := l.handshake() // a client that gives up sends an alert: the server's handshake ends too
	return c.ConnectionState(), l, c, cerr, serr
}

func leafCN(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.CommonName
}

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSNI: the pair is chosen by the client's server name: exact names, then wildcards (one
// label deep), then the first pair; among pairs for one name, the first the client supports.
func TestSNI(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Certs = []CertPair{
		ca.writePair(t, dir, "default", certSpec{cn: "default", dns: []string{"default.test"}}),
		ca.writePair(t, dir, "a", certSpec{cn: "a-ecdsa", dns: []string{"a.example.test"}}),
		ca.writePair(t, dir, "a-rsa", certSpec{cn: "a-rsa", dns: []string{"a.example.test"}, rsa: true}),
		ca.writePair(t, dir, "wild", certSpec{cn: "wild", dns: []string{"*.b.example.test", "b.example.test"}}),
		ca.writePair(t, dir, "legacy", certSpec{cn: "legacy.example.test"}), // CN only, no SANs
	}
	st := newStore(t, cfg)
	cases := []struct {
		sni    string
		want   string
		rsa    bool // client offers only RSA suites (TLS 1.2)
		verify bool
	}{
		{"a.example.test", "a-ecdsa", false, true},
		{"A.Example.Test", "a-ecdsa", false, false},
		{"a.example.test", "a-rsa", true, true},
		{"x.b.example.test", "wild", false, true},
		{"b.example.test", "wild", false, true},
		{"y.x.b.example.test", "default", false, false},
		{"unknown.test", "default", false, false},
		{"", "default", false, false},
		{"legacy.example.test", "legacy.example.test", false, false}, // Go clients refuse CN-only certificates; browsers too
	}
	for _, c := range cases {
		ccfg := &tls.Config{ServerName: c.sni, RootCAs: ca.pool, InsecureSkipVerify: !c.verify}
		if c.rsa {
			ccfg.MaxVersion = tls.VersionTLS12
			ccfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		}
		cs, _, _, cerr, serr := dialStore(t, st, ccfg)
		if cerr != nil || serr != nil {
			t.Errorf("SNI %q: client %v, server %v", c.sni, cerr, serr)
			continue
		}
		if got := leafCN(cs); got != c.want {
			t.Errorf("SNI %q (rsa only %v): got %q, want %q", c.sni, c.rsa, got, c.want)
		}
	}
	infos := st.Certificates()
	if len(infos) != 5 || infos[3].Names[0] != "*.b.example.test" || infos[4].Names[0] != "legacy.example.test" {
		t.Errorf("Certificates: %+v", infos)
	}
}

// TestReload: a reload swaps the certificate for new handshakes while a running connection
// keeps working; bad files keep the old snapshot and the error names them.
func TestReload(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	cfg := DefaultConfig()
	pair := ca.writePair(t, dir, "srv", certSpec{cn: "first", dns: []string{testHost}})
	cfg.Certs = []CertPair{pair}
	st := newStore(t, cfg)
	ccfg := clientConfig(ca, tls.VersionTLS13)

	cs, l, running, cerr, serr := dialStore(t, st, ccfg)
	if cerr != nil || serr != nil || leafCN(cs) != "first" {
		t.Fatalf("first handshake: %q, %v, %v", leafCN(cs), cerr, serr)
	}
	l.app = echo

	ca.writePair(t, dir, "srv", certSpec{cn: "second", dns: []string{testHost}})
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, running, testMessages(100, 20000)) // the old connection does not notice
	if cs, _, _, cerr, serr := dialStore(t, st, ccfg); leafCN(cs) != "second" || cerr != nil || serr != nil {
		t.Fatalf("after reload: %q, %v, %v", leafCN(cs), cerr, serr)
	}

	otherCert, _ := ca.issue(t, certSpec{cn: "mismatch", dns: []string{testHost}})
	_, otherKey := ca.issue(t, certSpec{cn: "other", dns: []string{testHost}})
	expiredCert, expiredKey := ca.issue(t, certSpec{cn: "expired", dns: []string{testHost}, notAfter: time.Now().Add(-time.Minute)})
	goodCert, goodKey := ca.issue(t, certSpec{cn: "third", dns: []string{testHost}})
	bad := []struct {
		name       string
		cert, key  []byte
		remove     bool
		errHas     []string
		wantStayed string
	}{
		{"key mismatch", otherCert, otherKey, false, []string{pair.Cert, pair.Key, "private key does not match"}, "second"},
		{"not PEM", []byte("not a certificate"), goodKey, false, []string{pair.Cert}, "second"},
		{"expired", expiredCert, expiredKey, false, []string{pair.Cert, "expired"}, "second"},
		{"missing", nil, nil, true, []string{pair.Cert, "no such file"}, "second"},
	}
	for i, b := range bad {
		if b.remove {
			os.Remove(pair.Cert)
		} else {
			writeFile(t, pair.Cert, b.cert)
			writeFile(t, pair.Key, b.key)
		}
		err := st.Reload()
		if err == nil {
			t.Fatalf("%s: reload succeeded", b.name)
		}
		for _, s := range b.errHas {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not mention %q", b.name, err, s)
			}
		}
		if cs, _, _, cerr, _ := dialStore(t, st, ccfg); leafCN(cs) != b.wantStayed || cerr != nil {
			t.Errorf("%s: new handshake got %q, %v; want the old %q", b.name, leafCN(cs), cerr, b.wantStayed)
		}
		if s := st.Stats(); s.Failures != uint64(i+1) || s.Reloads != 1 {
			t.Errorf("%s: stats %+v", b.name, s)
		}
	}
	writeFile(t, pair.Cert, goodCert)
	writeFile(t, pair.Key, goodKey)
	if err := st.Reload(); err != nil {
		t.Fatal(err)
	}
	if cs, _, _, _, _ := dialStore(t, st, ccfg); leafCN(cs) != "third" {
		t.Fatalf("after the fix: %q", leafCN(cs))
	}
	roundTrip(t, running, testMessages(10))
}

// TestNewStoreRefuses: a bad file at start is an error naming it, not a server without
// certificates.
func TestNewStoreRefuses(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	good := ca.writePair(t, dir, "good", certSpec{cn: "good", dns: []string{"good.test"}})
	expired := ca.writePair(t, dir, "old", certSpec{cn: "old", dns: []string{"old.test"}, notAfter: time.Now().Add(-time.Hour)})
	empty := filepath.Join(dir, "empty.pem")
	writeFile(t, empty, []byte("# nothing\n"))
	cases := []struct {
		name   string
		mod    func(*Config)
		errHas string
	}{
		{"expired second pair", func(c *Config) { c.Certs = append(c.Certs, expired) }, expired.Cert},
		{"client CA without certificates", func(c *Config) { c.ClientCA = empty }, empty},
		{"upstream CA missing", func(c *Config) { c.UpstreamCA = filepath.Join(dir, "nope.pem") }, "nope.pem"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		cfg.Certs = []CertPair{good}
		c.mod(&cfg)
		if _, err := NewStore(cfg); err == nil || !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.errHas)
		}
	}
}

// syncBuffer is a log destination safe for Watch's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatch: a changed file is picked up without a signal; a bad version is tried (and
// counted) once, not on every poll, and logged with the file's name.
func TestWatch(t *testing.T) {
	ca := newCA(t, "test CA")
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.WatchInterval = 20 * time.Millisecond
	pair := ca.writePair(t, dir, "srv", certSpec{cn: "first", dns: []string{testHost}})
	cfg.Certs = []CertPair{pair}
	st := newStore(t, cfg)
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { st.Watch(ctx, slog.New(slog.NewTextHandler(&logs, nil))); close(done) }()
	defer func() { cancel(); <-done }()

	// Modification times may be coarse: make sure the new files differ in size or time.
	time.Sleep(10 * time.Millisecond)
	ca.writePair(t, dir, "srv", certSpec{cn: "second-with-a-longer-name", dns: []string{testHost}})
	waitFor(t, "the watch to reload", func() bool { return st.Stats().Reloads == 1 })
	if cs, _, _, _, _ := dialStore(t, st, clientConfig(ca, tls.VersionTLS13)); leafCN(cs) != "second-with-a-longer-name" {
		t.Fatalf("after the watch: %q", leafCN(cs))
	}

	// (The pair above was written as two files: a poll between them may have seen the new
	// certificate with the old key and counted a failure already.)
	failed := st.Stats().Failures
	writeFile(t, pair.Key, []byte("broken"))
	waitFor(t, "the failure", func() bool { return st.Stats().Failures == failed+1 })
	time.Sleep(10 * cfg.WatchInterval)
	if s := st.Stats(); s.Failures != failed+1 {
		t.Fatalf("a bad file was counted %d times", s.Failures-failed)
	}
	if out := logs.String(); !strings.Contains(out, pair.Key) || !strings.Contains(out, "reload failed") {
		t.Fatalf("log does not name the file:\n%s", out)
	}
}

// TestClientCertificates: --tls-client-ca requires a certificate from that CA; --tls-client-cn
// narrows it by common name; the verified subject is there for the session log.
func TestClientCertificates(t *testing.T) {
	ca := newCA(t, "test CA")
	clientCA := newCA(t, "client CA")
	otherCA := newCA(t, "other CA")
	dir := t.TempDir()
	base := DefaultConfig()
	base.Certs = []CertPair{ca.writePair(t, dir, "srv", certSpec{cn: testHost, dns: []string{testHost}})}
	base.ClientCA = clientCA.writeCA(t, dir, "clients.pem")
	open := newStore(t, base)
	narrow := base
	narrow.ClientCNs = []string{"ops-*", "alice"}
	restricted := newStore(t, narrow)

	alice := clientCA.tlsCert(t, certSpec{cn: "alice", client: true})
	ops := clientCA.tlsCert(t, certSpec{cn: "ops-7.example.test", client: true})
	bob := clientCA.tlsCert(t, certSpec{cn: "bob", client: true})
	forged := otherCA.tlsCert(t, certSpec{cn: "alice", client: true})
	cases := []struct {
		name   string
		st     *Store
		certs  []tls.Certificate
		ok     bool
		errHas string
	}{
		{"CA-signed", open, []tls.Certificate{bob}, true, ""},
		{"no certificate", open, nil, false, "didn't provide a certificate"},
		{"other CA", open, []tls.Certificate{forged}, false, "unknown authority"},
		{"allowed CN", restricted, []tls.Certificate{alice}, true, ""},
		{"allowed by glob", restricted, []tls.Certificate{ops}, true, ""},
		{"wrong CN", restricted, []tls.Certificate{bob}, false, `CN "bob" is not allowed`},
		{"no certificate, restricted", restricted, nil, false, "didn't provide a certificate"},
	}
	for _, v := range versions {
		for _, c := range cases {
			t.Run(v.name+"/"+c.name, func(t *testing.T) {
				ccfg := clientConfig(ca, v.v)
				if len(c.certs) > 0 {
					// Present the certificate even when its CA is not among those the server
					// names (a Go client would otherwise send none).
					ccfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
						return &c.certs[0], nil
					}
				}
				_, l, cl, cerr, serr := dialStore(t, c.st, ccfg)
				if cerr == nil && !c.ok && serr != nil {
					// In TLS 1.3 the client finishes first and learns of the refusal (the
					// server's alert) on its next read.
					_, cerr = cl.Read(make([]byte, 1))
				}
				if !c.ok {
					if serr == nil || !strings.Contains(serr.Error(), c.errHas) {
						t.Fatalf("server: %v, want a refusal with %q (client: %v)", serr, c.errHas, cerr)
					}
					t.Logf("refused: server %v; client %v", serr, cerr)
					return
				}
				if serr != nil {
					t.Fatalf("server refused: %v (client %v)", serr, cerr)
				}
				var subject string
				l.do(func() { subject = l.c.PeerSubject() })
				want := c.certs[0].Leaf.Subject.String()
				if subject != want || !strings.Contains(subject, "CN=") {
					t.Fatalf("PeerSubject %q, want %q", subject, want)
				}
			})
		}
	}
}

func TestMatchCN(t *testing.T) {
	cases := []struct {
		p, s string
		ok   bool
	}{
		{"alice", "alice", true},
		{"alice", "Alice", false},
		{"alice", "alice2", false},
		{"*", "", true},
		{"*", "anything at all", true},
		{"ops-*", "ops-", true},
		{"ops-*", "ops-7.example.test", true},
		{"ops-*", "dev-ops-7", false},
		{"*.ops.example.com", "a.b.ops.example.com", true},
		{"*.ops.example.com", "ops.example.com", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYc!", false},
		{"**", "x", true},
		{"a*", "", false},
		{"", "", true},
		{"", "x", false},
		{"*x", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxy", false},
	}
	for _, c := range cases {
		if got := MatchCN(c.p, c.s); got != c.ok {
			t.Errorf("MatchCN(%q, %q) = %v, want %v", c.p, c.s, got, c.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		name   string
		mod    func(*Config)
		errHas string
	}{
		{"cert without key", func(c *Config) { c.Certs = []CertPair{{Cert: "a.crt"}} }, "both --tls-cert and --tls-key"},
		{"CN without CA", func(c *Config) { c.ClientCNs = []string{"x"} }, "tls-client-cn needs tls-client-ca"},
		{"client CA without cert", func(c *Config) { c.ClientCA = "ca.pem" }, "without a server certificate"},
		{"TLS 1.1", func(c *Config) { c.MinVersion = tls.VersionTLS11 }, "minimum version"},
		{"no workers", func(c *Config) { c.HandshakeWorkers = 0 }, "workers"},
		{"negative queue", func(c *Config) { c.HandshakeQueue = -1 }, "queue"},
		{"no timeout", func(c *Config) { c.HandshakeTimeout = 0 }, "timeout"},
		{"tiny hello", func(c *Config) { c.MaxClientHello = 100 }, "ClientHello"},
		{"tiny input", func(c *Config) { c.MaxHandshakeInput = 1000 }, "handshake input"},
		{"no interval", func(c *Config) { c.WatchInterval = 0 }, "watch interval"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		c.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("%s: %v, want %q", c.name, err, c.errHas)
		}
	}
}
