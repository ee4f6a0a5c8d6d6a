package tlsio

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// alpnHTTP11 is the only application protocol offered: the WebSocket upgrade and the static
// files are HTTP/1.1. A browser offers h2 and http/1.1 and gets http/1.1; a client offering only
// h2 is refused with no_application_protocol (crypto/tls's negotiateALPN).
const alpnHTTP11 = "http/1.1"

// Store holds the certificates of the process: the server pairs chosen by SNI, the client CA
// and the roots for TLS to VMs. They live in one immutable snapshot that Reload replaces
// atomically, so handshakes never lock and a reload never disturbs a running connection (its
// certificate was chosen at its handshake). It is safe for concurrent use.
type Store struct {
	cfg          Config
	snap         atomic.Pointer[snapshot]
	server       *tls.Config // what ServerConfig returns; it asks snap for everything
	sessionCache tls.ClientSessionCache
	reloads      atomic.Uint64
	failures     atomic.Uint64
}

// snapshot is one load of every file.
type snapshot struct {
	certs  []*tls.Certificate            // in flag order; certs[0] is the default
	exact  map[string][]*tls.Certificate // lower-case DNS name -> pairs naming it, in order
	wild   map[string][]*tls.Certificate // "example.com" for a "*.example.com" name
	server *tls.Config                   // the per-snapshot server config
	roots  *x509.CertPool                // upstream roots; nil means the system's
	stamps []fileStamp
	infos  []CertInfo
}

// CertInfo describes one loaded pair, for logs and the admin API.
type CertInfo struct {
	Cert, Key string
	Names     []string // the DNS names it is chosen for ("*.example.com" included)
	NotAfter  time.Time
}

// StoreStats counts reloads, for metrics.
type StoreStats struct {
	Reloads  uint64 // successful reloads since start
	Failures uint64 // reloads that kept the old snapshot because a file was bad
}

// fileStamp is what Watch compares to notice a change without reading the files.
type fileStamp struct {
	path string
	size int64
	mod  int64
}

// NewStore loads every file of cfg (which must have passed Validate). An error names each bad
// file and why: unreadable, no PEM, a key that does not match its certificate, an expired leaf.
func NewStore(cfg Config) (*Store, error) {
	s := &Store{cfg: cfg, sessionCache: tls.NewLRUClientSessionCache(1024)}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.snap.Store(snap)
	if len(cfg.Certs) > 0 {
		s.server = &tls.Config{
			MinVersion: cfg.MinVersion,
			NextProtos: []string{alpnHTTP11},
			// Everything comes from the snapshot current at the ClientHello. Session ticket keys
			// stay those of this outer config (crypto/tls takes them from the original config),
			// so clients can resume across reloads.
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return s.snap.Load().server, nil
			},
		}
	}
	return s, nil
}

// ServerConfig returns the config for NewServer; nil when no certificate is configured.
func (s *Store) ServerConfig() *tls.Config { return s.server }

// UpstreamConfig returns a config for a TLS connection to a VM whose address has host
// serverName (a DNS name or an IP literal, without port): the certificate must chain to
// --upstream-ca (or the system roots) and name that host, unless UpstreamInsecureSkipVerify.
// Sessions are cached, so reconnecting to a VM resumes instead of a full handshake.
func (s *Store) UpstreamConfig(serverName string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		RootCAs:            s.snap.Load().roots,
		MinVersion:         s.cfg.MinVersion,
		InsecureSkipVerify: s.cfg.UpstreamInsecureSkipVerify, // opt-in, loud name, documented on the field
		ClientSessionCache: s.sessionCache,
	}
}

// Certificates describes the pairs in use.
func (s *Store) Certificates() []CertInfo { return slices.Clone(s.snap.Load().infos) }

// Stats returns the reload counters.
func (s *Store) Stats() StoreStats {
	return StoreStats{Reloads: s.reloads.Load(), Failures: s.failures.Load()}
}

// Reload re-reads every file (on SIGHUP, or from Watch). If all of them are good, new
// handshakes use the new snapshot from now on; running connections keep what they have. If any
// is bad, the old snapshot stays in use entirely (a new certificate without its new key would
// fail every handshake) and the error names each bad file.
func (s *Store) Reload() error {
	snap, err := s.load()
	if err != nil {
		s.failures.Add(1)
		return err
	}
	s.snap.Store(snap)
	s.reloads.Add(1)
	return nil
}

// Watch reloads whenever a file's size or modification time changes, every WatchInterval
// until ctx ends, and logs the outcome. A bad file is tried once per change, not on every poll,
// so Stats().Failures counts bad versions, not seconds.
func (s *Store) Watch(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	tick := time.NewTicker(s.cfg.WatchInterval)
	defer tick.Stop()
	tried := s.snap.Load().stamps
	lastStatErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		stamps, err := s.stat()
		if err != nil {
			// A file replaced by rename is briefly missing; say so once, not every poll.
			if msg := err.Error(); msg != lastStatErr {
				lastStatErr = msg
				log.Warn("tls certificate files", "err", err)
			}
			continue
		}
		lastStatErr = ""
		if slices.Equal(stamps, tried) || slices.Equal(stamps, s.snap.Load().stamps) {
			continue // nothing new, or already loaded by a Reload of its own (SIGHUP)
		}
		tried = stamps
		if err := s.Reload(); err != nil {
			log.Error("tls certificate reload failed; the previous certificates stay in use", "err", err)
			continue
		}
		for _, ci := range s.Certificates() {
			log.Info("tls certificate loaded", "cert", ci.Cert, "names", ci.Names, "not_after", ci.NotAfter)
		}
	}
}

// files lists every file a load reads, in a fixed order.
func (s *Store) files() []string {
	var fs []string
	for _, p := range s.cfg.Certs {
		fs = append(fs, p.Cert, p.Key)
	}
	if s.cfg.ClientCA != "" {
		fs = append(fs, s.cfg.ClientCA)
	}
	if s.cfg.UpstreamCA != "" {
		fs = append(fs, s.cfg.UpstreamCA)
	}
	return fs
}

// stat takes the stamps of every file. Stamps are taken before reading, so a write that races a
// load shows up as a change on the next poll instead of being missed.
func (s *Store) stat() ([]fileStamp, error) {
	var stamps []fileStamp
	for _, f := range s.files() {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		stamps = append(stamps, fileStamp{path: f, size: fi.Size(), mod: fi.ModTime().UnixNano()})
	}
	return stamps, nil
}

// load reads everything into a new snapshot.
func (s *Store) load() (*snapshot, error) {
	stamps, _ := s.stat() // a missing file is reported below, by the read
	snap := &snapshot{
		exact:  map[string][]*tls.Certificate{},
		wild:   map[string][]*tls.Certificate{},
		stamps: stamps,
	}
	now := time.Now()
	var errs []error
	for _, p := range s.cfg.Certs {
		cert, names, err := loadPair(p, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snap.certs = append(snap.certs, cert)
		snap.infos = append(snap.infos, CertInfo{Cert: p.Cert, Key: p.Key, Names: names, NotAfter: cert.Leaf.NotAfter})
		for _, n := range names {
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				snap.wild[parent] = append(snap.wild[parent], cert)
			} else {
				snap.exact[n] = append(snap.exact[n], cert)
			}
		}
	}
	var clientCAs *x509.CertPool
	if s.cfg.ClientCA != "" {
		var err error
		if clientCAs, err = loadPool(s.cfg.ClientCA, "tls client CA"); err != nil {
			errs = append(errs, err)
		}
	}
	if s.cfg.UpstreamCA != "" {
		var err error
		if snap.roots, err = loadPool(s.cfg.UpstreamCA, "upstream CA"); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	snap.server = &tls.Config{
		MinVersion:     s.cfg.MinVersion,
		NextProtos:     []string{alpnHTTP11},
		GetCertificate: snap.certificate,
	}
	if clientCAs != nil {
		snap.server.ClientAuth = tls.RequireAndVerifyClientCert
		snap.server.ClientCAs = clientCAs
		if len(s.cfg.ClientCNs) > 0 {
			patterns := slices.Clone(s.cfg.ClientCNs)
			// VerifyConnection, unlike VerifyPeerCertificate, also runs on resumed sessions.
			snap.server.VerifyConnection = func(cs tls.ConnectionState) error {
				return checkClientCN(cs, patterns)
			}
		}
	}
	return snap, nil
}

// loadPair reads and checks one --tls-cert/--tls-key pair and returns the names it serves.
func loadPair(p CertPair, now time.Time) (*tls.Certificate, []string, error) {
	certPEM, err := os.ReadFile(p.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tls certificate %s with key %s: %w", p.Cert, p.Key, err)
	}
	leaf := cert.Leaf // X509KeyPair parses it (Go 1.23+)
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("tls certificate %s: %w", p.Cert, err)
		}
		cert.Leaf = leaf
	}
	// An expired certificate fails every browser's handshake: refusing it keeps the working
	// one in place on a reload and fails fast at start. One that is not valid yet is accepted
	// (it may be a renewal installed minutes early; clocks differ).
	if now.After(leaf.NotAfter) {
		return nil, nil, fmt.Errorf("tls certificate %s expired at %s", p.Cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	names := certNames(leaf)
	return &cert, names, nil
}

// certNames returns the lower-case DNS names a leaf is for: its DNS SANs, or its common name
// when it has none and the name looks like a host (certificates from before SANs were required).
func certNames(leaf *x509.Certificate) []string {
	src := leaf.DNSNames
	if len(src) == 0 && leaf.Subject.CommonName != "" && !strings.ContainsAny(leaf.Subject.CommonName, " /:@") {
		src = []string{leaf.Subject.CommonName}
	}
	names := make([]string, 0, len(src))
	for _, n := range src {
		names = append(names, strings.TrimSuffix(strings.ToLower(n), "."))
	}
	return names
}

// loadPool reads a PEM file of CA certificates.
func loadPool(path, what string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in the file", what, path)
	}
	return pool, nil
}

// certificate chooses the pair for a ClientHello: exact SNI match, then wildcard, then the
// first pair. Among pairs for the same name, the first one the client supports wins.
func (s *snapshot) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if name != "" {
		if cs := s.exact[name]; len(cs) > 0 {
			return pick(hello, cs), nil
		}
		if i := strings.IndexByte(name, '.'); i > 0 {
			if cs := s.wild[name[i+1:]]; len(cs) > 0 {
				return pick(hello, cs), nil
			}
		}
	}
	return s.certs[0], nil
}

func pick(hello *tls.ClientHelloInfo, cs []*tls.Certificate) *tls.Certificate {
	for _, c := range cs {
		if hello.SupportsCertificate(c) == nil {
			return c
		}
	}
	return cs[0]
}
