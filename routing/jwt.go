package routing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTConfig configures a JWTSource.
type JWTConfig struct {
	KeyFile   string        // --token-jwt-key
	KeyFormat string        // --token-jwt-key-format: JWTKeyStandard (default) or JWTKeyWebsockify
	Leeway    time.Duration // clock skew allowed on exp and nbf; default 0
}

// JWTSource grants signed tokens (JWS compact form): the token itself
// carries the grant in its claims, and the key file verifies it. Lookup
// does no I/O, but it is not NonBlocking: a signature check costs tens to
// hundreds of microseconds with RSA or Ed25519 keys (BenchmarkResolve),
// long enough to delay every other session on an event loop, so it runs on
// a worker, and the Router's cache then answers a reused token on the loop. Claims (CONTRACT.md): host (string; "h:p",
// "unix:/path", or a host with port), port (number or numeric string), exp
// and nbf (honoured when present), jti (the single-use identity),
// view_only, record, tls (booleans). A vnc_password claim is refused: the
// browser can read every claim. Tokens that are not JWS-shaped are not this
// source's (ErrUnknownToken), so the next source is asked; JWS-shaped tokens
// that fail (signature, algorithm, expiry, claims) get 403.
type JWTSource struct {
	cfg JWTConfig
	key atomic.Pointer[jwtSourceKey]

	mu      sync.Mutex // serialises reloads
	lastSig fileStamp
}

type jwtSourceKey struct {
	k      jwtKey
	parser *jwt.Parser
}

// NewJWTSource reads and checks the key file.
func NewJWTSource(cfg JWTConfig) (*JWTSource, error) {
	s := &JWTSource{cfg: cfg}
	if rep := s.Reload(); rep.Err != nil {
		return nil, rep.Err
	}
	return s, nil
}

// Name identifies the source in logs and metrics.
func (s *JWTSource) Name() string { return "jwt" }

// KeyKind says what kind of key verifies tokens ("HMAC", "RSA", "Ed25519",
// "ECDSA P-256", ...), for the start-up log.
func (s *JWTSource) KeyKind() string { return s.key.Load().k.kind }

// Reload re-reads the key file (key rotation); a key that cannot be read or
// parsed keeps the previous one.
func (s *JWTSource) Reload() SourceReload {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep := SourceReload{Source: s.Name(), Detail: s.cfg.KeyFile, Tokens: -1}
	s.lastSig = statStamp(s.cfg.KeyFile)
	data, err := readBounded(s.cfg.KeyFile, 1<<20)
	if err != nil {
		rep.Err = fmt.Errorf("signing key: %w", err)
		return rep
	}
	k, err := parseJWTKey(data, s.cfg.KeyFormat)
	if err != nil {
		rep.Err = fmt.Errorf("signing key %s: %w", s.cfg.KeyFile, err)
		return rep
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(k.methods)}
	if s.cfg.Leeway > 0 {
		opts = append(opts, jwt.WithLeeway(s.cfg.Leeway))
	}
	s.key.Store(&jwtSourceKey{k: k, parser: jwt.NewParser(opts...)})
	return rep
}

// Changed reports whether the key file changed since the last reload.
func (s *JWTSource) Changed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return statStamp(s.cfg.KeyFile) != s.lastSig
}

// looksLikeJWS tells a compact JWS (three base64url segments whose first is
// a JSON object with "alg") from the other sources' tokens without
// verifying anything.
func looksLikeJWS(token string) bool {
	if strings.Count(token, ".") != 2 {
		return false
	}
	head := token[:strings.IndexByte(token, '.')]
	if len(head) < 4 || len(head) > 2048 {
		return false
	}
	b, err := decodeBase64URL(head)
	if err != nil {
		return false
	}
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{' && bytes.Contains(b, []byte(`"alg"`))
}

// Lookup verifies token and returns the grant in its claims.
func (s *JWTSource) Lookup(_ context.Context, token string) (Grant, error) {
	if !looksLikeJWS(token) {
		return Grant{}, ErrUnknownToken
	}
	k := s.key.Load()
	var c jwtClaims
	_, err := k.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already pinned the algorithm to the key's type;
		// this second check keeps that true whatever the parser options.
		if !pinned(t.Method.Alg(), k.k.methods) {
			return nil, fmt.Errorf("algorithm %s does not match the %s key", t.Method.Alg(), k.k.kind)
		}
		return k.k.key, nil
	})
	if err != nil {
		return Grant{}, jwtError(err, &c)
	}
	return c.grant, nil
}

func pinned(alg string, methods []string) bool {
	for _, m := range methods {
		if m == alg {
			return true
		}
	}
	return false
}

// jwtError maps the parser's errors to 403 refusals with a reason for the
// log (never the token or its claims' values).
func jwtError(err error, c *jwtClaims) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return refused(ErrExpired, "signed token expired"+at(c.exp))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refused(ErrExpired, "signed token not valid yet"+at(c.nbf))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return refused(ErrInvalidToken, "signed token's algorithm is not one this key verifies")
		}
		return refused(ErrInvalidToken, "signed token's signature does not verify")
	case errors.Is(err, jwt.ErrTokenInvalidClaims) && c.err != nil:
		return refused(ErrInvalidToken, "signed token: "+c.err.Error())
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refused(ErrInvalidToken, "signed token cannot be verified: unknown or mismatched algorithm")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refused(ErrInvalidToken, "malformed signed token")
	}
	return refused(ErrInvalidToken, "signed token refused")
}

func at(t *jwt.NumericDate) string {
	if t == nil {
		return ""
	}
	return " (" + t.UTC().Format(time.RFC3339) + ")"
}

// jwtClaims decodes the claims with ParseJWTClaims. Its parse error is held
// until Validate, which the parser calls only after the signature verified:
// an unsigned token learns nothing about what vncedge checks, and the log
// says "bad signature" for a forgery rather than a claim problem.
type jwtClaims struct {
	grant    Grant
	exp, nbf *jwt.NumericDate
	err      error
}

func (c *jwtClaims) UnmarshalJSON(b []byte) error {
	var err error
	c.grant, c.exp, c.nbf, err = ParseJWTClaims(b)
	if err != nil {
		c.err = err
	}
	return nil
}

// Validate implements jwt.ClaimsValidator.
func (c *jwtClaims) Validate() error { return c.err }

func (c *jwtClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.exp, nil }
func (c *jwtClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.nbf, nil }
func (c *jwtClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c *jwtClaims) GetIssuer() (string, error)                   { return "", nil }
func (c *jwtClaims) GetSubject() (string, error)                  { return "", nil }
func (c *jwtClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// ParseJWTClaims reads the claims part of a signed token (its decoded JSON
// payload) into a grant and its exp and nbf. It checks types strictly: a
// claim of the wrong type is an error, not a default. Errors never quote
// claim values.
func ParseJWTClaims(payload []byte) (Grant, *jwt.NumericDate, *jwt.NumericDate, error) {
	var raw struct {
		Host        *string         `json:"host"`
		Port        json.RawMessage `json:"port"`
		Exp         json.RawMessage `json:"exp"`
		Nbf         json.RawMessage `json:"nbf"`
		JTI         *string         `json:"jti"`
		ViewOnly    *bool           `json:"view_only"`
		Record      *bool           `json:"record"`
		TLS         *bool           `json:"tls"`
		VeNCrypt    *bool           `json:"vencrypt"`
		VNCPassword json.RawMessage `json:"vnc_password"`
	}
	if len(payload) > maxGrantValue {
		return Grant{}, nil, nil, fmt.Errorf("claims larger than %d bytes", maxGrantValue)
	}
	if err := json.Unmarshal(payload, &raw); err != nil {
		return Grant{}, nil, nil, fmt.Errorf("claims: %w", jsonError(err))
	}
	if raw.VNCPassword != nil {
		return Grant{}, nil, nil, errors.New(`"vnc_password" claim refused: the browser can read every claim of a signed token; ` +
			"give VM passwords through the token file, Redis or the HTTP lookup")
	}
	if raw.Host == nil {
		return Grant{}, nil, nil, errors.New(`no "host" claim`)
	}
	target, err := hostPortTarget(*raw.Host, raw.Port)
	if err != nil {
		return Grant{}, nil, nil, err
	}
	g := Grant{Target: target, ViewOnly: deref(raw.ViewOnly), Record: deref(raw.Record), TLS: deref(raw.TLS), VeNCrypt: deref(raw.VeNCrypt)}
	exp, err := numericDate(raw.Exp, "exp")
	if err != nil {
		return Grant{}, nil, nil, err
	}
	nbf, err := numericDate(raw.Nbf, "nbf")
	if err != nil {
		return Grant{}, nil, nil, err
	}
	if exp != nil {
		g.Expires = exp.Time
	}
	if raw.JTI != nil {
		if *raw.JTI == "" || len(*raw.JTI) > 256 {
			return Grant{}, nil, nil, errors.New(`"jti" must be a string of 1-256 bytes`)
		}
		g.ID = *raw.JTI
	}
	return g, exp, nbf, nil
}

func numericDate(raw json.RawMessage, field string) (*jwt.NumericDate, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("%q must be a number of seconds", field)
	}
	t, err := unixSeconds(f, field)
	if err != nil {
		return nil, err
	}
	return jwt.NewNumericDate(t), nil
}
