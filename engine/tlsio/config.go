package tlsio

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// CertPair names one certificate and its key: a --tls-cert FILE --tls-key FILE pair. The
// certificate file holds the leaf first, then its chain, in PEM.
type CertPair struct {
	Cert string
	Key  string
}

// Config is everything this package needs: the TLS flags plus the bounds of the handshake
// workers. cmd/vncedge fills it from flags; tests fill it directly. Use DefaultConfig as the
// starting point: zero bounds are refused by Validate rather than silently meaning "none".
type Config struct {
	// Certs are the server certificates in flag order (--tls-cert/--tls-key, repeatable). A
	// handshake gets the first pair whose leaf names the client's SNI (exact names before
	// wildcards, and among several the first one the client can use, so an ECDSA and an RSA
	// pair for one name both work); without SNI, or with a name no pair has, the first pair.
	// Required for a server; a process that only dials TLS upstreams may leave it empty.
	Certs []CertPair
	// ClientCA (--tls-client-ca) turns on client certificates: every client must present one
	// that chains to a certificate in this PEM file (RequireAndVerifyClientCert).
	ClientCA string
	// ClientCNs (--tls-client-cn, repeatable) restricts the accepted client certificates to
	// those whose subject common name matches one pattern: exact and case-sensitive, where '*'
	// stands for any run of characters, dots included ("ops-*", "*.ops.example.com"). Empty
	// accepts every certificate ClientCA verifies. Needs ClientCA. websockify's
	// ClientCertCNAuth has the exact form only.
	ClientCNs []string
	// UpstreamCA (--upstream-ca) is the PEM file of roots that TLS connections to VMs must chain
	// to; empty means the system roots. The server name checked is the target's host (a name or
	// an IP address, matched against the certificate's DNS or IP SANs).
	UpstreamCA string
	// UpstreamInsecureSkipVerify accepts any certificate from a VM, for parity with websockify's
	// --ssl-target (which never verifies) while an operator has no CA file for the VMs yet.
	// The connection is then encrypted but not authenticated: anyone on the path to the VM can
	// read the session. The engine should log a warning at start when it is set.
	UpstreamInsecureSkipVerify bool

	// MinVersion is the lowest protocol version accepted, tls.VersionTLS12 or VersionTLS13.
	MinVersion uint16
	// HandshakeWorkers bounds the goroutines running handshakes at once. A handshake holds its
	// worker from the complete ClientHello to the client's Finished, one round trip plus the
	// key exchange, so the bound is about slow peers, not CPU: too low and a few stalling
	// clients delay everyone's handshake until --handshake-timeout reaps them.
	HandshakeWorkers int
	// HandshakeQueue bounds the handshakes waiting for a worker; a complete ClientHello that
	// finds the queue full fails with ErrBusy.
	HandshakeQueue int
	// HandshakeTimeout bounds one handshake on a worker, from its start. The engine's own
	// --handshake-timeout (from accept, covering the queue too) normally fires first; this one
	// guarantees no worker outlives a peer that the engine forgot.
	HandshakeTimeout time.Duration
	// MaxClientHello is the longest ClientHello accepted, in bytes of handshake message. A
	// partial hello is kept by the engine's read buffer, so this bounds what a slowloris costs.
	MaxClientHello int
	// MaxHandshakeInput bounds the bytes received during a handshake that the worker has not
	// read yet (the client's certificate chain, application data sent right after Finished).
	MaxHandshakeInput int
	// WatchInterval is how often Store.Watch looks at the certificate files' stamps.
	WatchInterval time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		MinVersion:        tls.VersionTLS12,
		HandshakeWorkers:  256,
		HandshakeQueue:    1024,
		HandshakeTimeout:  10 * time.Second,
		MaxClientHello:    MaxPlaintext,
		MaxHandshakeInput: 256 << 10,
		WatchInterval:     2 * time.Second,
	}
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	for i, p := range c.Certs {
		if p.Cert == "" || p.Key == "" {
			errs = append(errs, fmt.Errorf("tls certificate pair %d: both --tls-cert and --tls-key are needed", i+1))
		}
	}
	if len(c.ClientCNs) > 0 && c.ClientCA == "" {
		errs = append(errs, errors.New("tls-client-cn needs tls-client-ca: a name is only worth checking on a verified certificate"))
	}
	for _, p := range c.ClientCNs {
		if p == "" {
			errs = append(errs, errors.New("tls-client-cn: empty pattern"))
		}
	}
	if c.ClientCA != "" && len(c.Certs) == 0 {
		errs = append(errs, errors.New("tls-client-ca without a server certificate (--tls-cert/--tls-key)"))
	}
	if c.MinVersion != tls.VersionTLS12 && c.MinVersion != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("tls minimum version %#04x: only TLS 1.2 (0x0303) or 1.3 (0x0304)", c.MinVersion))
	}
	if c.HandshakeWorkers < 1 {
		errs = append(errs, fmt.Errorf("tls handshake workers %d: at least 1", c.HandshakeWorkers))
	}
	if c.HandshakeQueue < 0 {
		errs = append(errs, fmt.Errorf("tls handshake queue %d is negative", c.HandshakeQueue))
	}
	if c.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("tls handshake timeout %v: must be positive", c.HandshakeTimeout))
	}
	if c.MaxClientHello < 512 || c.MaxClientHello > 1<<20 {
		errs = append(errs, fmt.Errorf("tls max ClientHello %d: between 512 bytes and 1 MiB", c.MaxClientHello))
	}
	if c.MaxHandshakeInput < MaxRecord {
		errs = append(errs, fmt.Errorf("tls max handshake input %d: at least one record (%d)", c.MaxHandshakeInput, MaxRecord))
	}
	if c.WatchInterval <= 0 {
		errs = append(errs, fmt.Errorf("tls watch interval %v: must be positive", c.WatchInterval))
	}
	return errors.Join(errs...)
}
