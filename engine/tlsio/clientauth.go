package tlsio

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// checkClientCN lets a verified client certificate through only if its subject common name
// matches one of patterns (--tls-client-cn). crypto/tls answers a refusal with a bad_certificate
// alert, and the handshake error names the CN for the engine's log.
func checkClientCN(cs tls.ConnectionState, patterns []string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tlsio: no client certificate")
	}
	cn := cs.PeerCertificates[0].Subject.CommonName
	for _, p := range patterns {
		if MatchCN(p, cn) {
			return nil
		}
	}
	return fmt.Errorf("tlsio: client certificate CN %q is not allowed by --tls-client-cn", cn)
}

// MatchCN reports whether a certificate's common name matches a --tls-client-cn pattern: the
// same bytes (case matters, as in websockify's ClientCertCNAuth), where each '*' in the pattern
// stands for any run of characters, dots included, possibly empty. There is no other special
// character and no escape: a CN that contains '*' is matched by '*'.
func MatchCN(pattern, cn string) bool {
	// Greedy matching with one backtrack point: the last '*' seen and where its run ends.
	p, s := 0, 0
	star, mark := -1, 0
	for s < len(cn) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, s
			p++
		case p < len(pattern) && pattern[p] == cn[s]:
			p++
			s++
		case star >= 0:
			mark++
			p, s = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// PeerSubject returns the subject of the peer's verified certificate, for the session log
// ("CN=alice,OU=ops,O=Example"), or "" when the peer sent none or it was not verified. It
// copies the connection state, so call it once.
func (c *Conn) PeerSubject() string {
	cs := c.ConnectionState()
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	return cs.PeerCertificates[0].Subject.String()
}
