package routing

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testKeys are generated once per test binary run; RSA generation is slow.
type testKeys struct {
	rsa   *rsa.PrivateKey
	ed    ed25519.PrivateKey
	ec    *ecdsa.PrivateKey
	hmac  []byte
	pemOf func(pub any) []byte
}

func newTestKeys(t testing.TB) testKeys {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{
		rsa: rk, ed: ek, ec: ck, hmac: []byte("0123456789abcdef0123456789abcdef-hmac"),
		pemOf: func(pub any) []byte {
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		},
	}
}

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func keyFile(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newJWT(t testing.TB, data []byte, format string) *JWTSource {
	t.Helper()
	s, err := NewJWTSource(JWTConfig{KeyFile: keyFile(t, data), KeyFormat: format})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTSourceClaims(t *testing.T) {
	k := newTestKeys(t)
	src := newJWT(t, append(k.hmac, '\n'), "") // one trailing newline is ignored
	if src.KeyKind() != "HMAC" || src.Name() != "jwt" {
		t.Fatal(src.KeyKind(), src.Name())
	}
	now := time.Now()
	ctx := context.Background()
	lookupErr := func(tok string) error { _, err := src.Lookup(ctx, tok); return err }

	g, err := src.Lookup(ctx, sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{
		"host": "10.0.0.1", "port": 5901, "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(-time.Minute).Unix(),
		"jti": "abc", "view_only": true, "record": true, "tls": true, "vencrypt": true, "sub": "ignored",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Grant{Target: "10.0.0.1:5901", ViewOnly: true, Record: true, TLS: true, VeNCrypt: true, ID: "abc",
		Expires: time.Unix(now.Add(time.Hour).Unix(), 0)}
	if !g.Expires.Equal(want.Expires) {
		t.Fatalf("expires %v want %v", g.Expires, want.Expires)
	}
	g.Expires = want.Expires
	if g != want {
		t.Fatalf("grant %+v, want %+v", g, want)
	}
	for _, claims := range []jwt.MapClaims{
		{"host": "vm1.lan", "port": "5901"},
		{"host": "vm1.lan:5901"},
		{"host": "fd00::1", "port": 5901},
	} {
		if _, err := src.Lookup(ctx, sign(t, jwt.SigningMethodHS256, k.hmac, claims)); err != nil {
			t.Errorf("%v: %v", claims, err)
		}
	}

	refusals := []struct {
		name     string
		tok      string
		sentinel error
		reason   string
	}{
		{"expired", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "h", "port": 1, "exp": now.Add(-time.Minute).Unix()}), ErrExpired, "expired"},
		{"not yet", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "h", "port": 1, "nbf": now.Add(time.Hour).Unix()}), ErrExpired, "not valid yet"},
		{"bad signature", sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!!"), jwt.MapClaims{"host": "h", "port": 1}), ErrInvalidToken, "signature"},
		{"vnc_password", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "h", "port": 1, "vnc_password": "pw"}), ErrInvalidToken, "vnc_password"},
		{"no host", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"port": 1}), ErrInvalidToken, "host"},
		{"bad port", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "h", "port": 0}), ErrInvalidToken, "port"},
		{"bad type", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "h", "port": 1, "view_only": "yes"}), ErrInvalidToken, "view_only"},
		{"exp string", sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "h", "port": 1, "exp": "tomorrow"}), ErrInvalidToken, "exp"},
		{"HS512 on a 37-byte key", sign(t, jwt.SigningMethodHS512, k.hmac, jwt.MapClaims{"host": "h", "port": 1}), ErrInvalidToken, "algorithm"},
		{"RS256 on an HMAC key", sign(t, jwt.SigningMethodRS256, k.rsa, jwt.MapClaims{"host": "h", "port": 1}), ErrInvalidToken, "algorithm"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"host": "h", "port": 1}), ErrInvalidToken, ""},
	}
	for _, c := range refusals {
		err := lookupErr(c.tok)
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusForbidden || !errors.Is(err, c.sentinel) || !strings.Contains(e.Reason, c.reason) {
			t.Errorf("%s: %v, want 403 %v with %q", c.name, err, c.sentinel, c.reason)
		}
		if strings.Contains(err.Error(), "pw") && c.name == "vnc_password" {
			t.Errorf("%s: error quotes the claim value: %v", c.name, err)
		}
	}
	// A forged token with a refused claim reads as a bad signature: the
	// claims of an unverified token are nobody's business.
	forged := sign(t, jwt.SigningMethodHS256, []byte("forger's secret, thirty-two bytes!"), jwt.MapClaims{"host": "h", "port": 1, "vnc_password": "x"})
	if err := lookupErr(forged); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged token: %v", err)
	}
	// Not a JWS: another source's token.
	for _, tok := range []string{"vm1", "a.b.c", "x.y", strings.Repeat("a", 40), "eyJ4IjoxfQ.e30.sig"} {
		if err := lookupErr(tok); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("%q: %v, want ErrUnknownToken", tok, err)
		}
	}
}

// TestJWTAlgorithmConfusion: with an RSA public key, an HS256 token signed
// with that public key's PEM as the HMAC secret must never verify.
func TestJWTAlgorithmConfusion(t *testing.T) {
	k := newTestKeys(t)
	pemBytes := k.pemOf(&k.rsa.PublicKey)
	src := newJWT(t, pemBytes, "")
	if src.KeyKind() != "RSA" {
		t.Fatal(src.KeyKind())
	}
	claims := jwt.MapClaims{"host": "10.0.0.1", "port": 5901}
	for _, secret := range [][]byte{pemBytes, trimOneNewline(pemBytes), x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)} {
		for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			_, err := src.Lookup(context.Background(), sign(t, m, secret, claims))
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("%s token signed with the public key verified: %v", m.Alg(), err)
			}
		}
	}
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodRS256, jwt.SigningMethodPS256, jwt.SigningMethodRS512} {
		if _, err := src.Lookup(context.Background(), sign(t, m, k.rsa, claims)); err != nil {
			t.Errorf("%s: %v", m.Alg(), err)
		}
	}
	// An Ed25519 token does not verify against the RSA key either.
	if _, err := src.Lookup(context.Background(), sign(t, jwt.SigningMethodEdDSA, k.ed, claims)); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("EdDSA on an RSA key: %v", err)
	}
}

func TestJWTKeyFormats(t *testing.T) {
	k := newTestKeys(t)
	claims := jwt.MapClaims{"host": "10.0.0.1", "port": 5901}
	cert := func() []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signer"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.ed.Public(), k.ed)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwk := func(m map[string]string) []byte { b, _ := json.Marshal(m); return b }
	ecPub := k.ec.PublicKey
	ecX, ecY := ecPub.X.FillBytes(make([]byte, 32)), ecPub.Y.FillBytes(make([]byte, 32))
	good := []struct {
		name   string
		data   []byte
		format string
		kind   string
		tok    string
	}{
		{"RSA PKIX", k.pemOf(&k.rsa.PublicKey), "", "RSA", sign(t, jwt.SigningMethodRS256, k.rsa, claims)},
		{"RSA PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)}), "", "RSA", sign(t, jwt.SigningMethodRS256, k.rsa, claims)},
		{"Ed25519", k.pemOf(k.ed.Public()), "", "Ed25519", sign(t, jwt.SigningMethodEdDSA, k.ed, claims)},
		{"Ed25519 certificate", cert(), "", "Ed25519", sign(t, jwt.SigningMethodEdDSA, k.ed, claims)},
		{"ECDSA", k.pemOf(&k.ec.PublicKey), "", "ECDSA P-256", sign(t, jwt.SigningMethodES256, k.ec, claims)},
		{"raw HMAC", k.hmac, JWTKeyStandard, "HMAC", sign(t, jwt.SigningMethodHS256, k.hmac, claims)},
		{"raw HMAC CRLF", append(append([]byte{}, k.hmac...), '\r', '\n'), "", "HMAC", sign(t, jwt.SigningMethodHS256, k.hmac, claims)},
		{"websockify k", []byte(b64(k.hmac) + "\n"), JWTKeyWebsockify, "HMAC", sign(t, jwt.SigningMethodHS256, k.hmac, claims)},
		{"websockify PEM", k.pemOf(k.ed.Public()), JWTKeyWebsockify, "Ed25519", sign(t, jwt.SigningMethodEdDSA, k.ed, claims)},
		{"JWK oct", jwk(map[string]string{"kty": "oct", "k": b64(k.hmac)}), JWTKeyWebsockify, "HMAC", sign(t, jwt.SigningMethodHS256, k.hmac, claims)},
		{"JWK OKP", jwk(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k.ed.Public().(ed25519.PublicKey))}), JWTKeyWebsockify, "Ed25519", sign(t, jwt.SigningMethodEdDSA, k.ed, claims)},
		{"JWK RSA", jwk(map[string]string{"kty": "RSA", "n": b64(k.rsa.N.Bytes()), "e": b64(big.NewInt(int64(k.rsa.E)).Bytes())}), JWTKeyWebsockify, "RSA", sign(t, jwt.SigningMethodRS256, k.rsa, claims)},
		{"JWK EC", jwk(map[string]string{"kty": "EC", "crv": "P-256", "x": b64(ecX), "y": b64(ecY)}), JWTKeyWebsockify, "ECDSA P-256", sign(t, jwt.SigningMethodES256, k.ec, claims)},
	}
	for _, c := range good {
		src, err := NewJWTSource(JWTConfig{KeyFile: keyFile(t, c.data), KeyFormat: c.format})
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if src.KeyKind() != c.kind {
			t.Errorf("%s: kind %s", c.name, src.KeyKind())
		}
		if _, err := src.Lookup(context.Background(), c.tok); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// websockify's form read as raw bytes is another secret: the difference docs/websockify.md explains.
	raw := newJWT(t, []byte(b64(k.hmac)), "")
	if _, err := raw.Lookup(context.Background(), sign(t, jwt.SigningMethodHS256, k.hmac, claims)); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("base64url key file read raw verified the decoded secret: %v", err)
	}

	privDER, _ := x509.MarshalPKCS8PrivateKey(k.ed)
	bad := []struct {
		name, want string
		data       []byte
		format     string
	}{
		{"private key", "public key only", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), ""},
		{"two blocks", "more than one", append(k.pemOf(k.ed.Public()), k.pemOf(&k.ec.PublicKey)...), ""},
		{"bad PEM", "PEM", []byte("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"), ""},
		{"other block", "not a public key", pem.EncodeToMemory(&pem.Block{Type: "DH PARAMETERS", Bytes: []byte{1}}), ""},
		{"short HMAC", "too short", []byte("secret\n"), ""},
		{"empty", "too short", nil, ""},
		{"small RSA", "too small", func() []byte {
			small, err := rsa.GenerateKey(rand.Reader, 1024)
			if err != nil {
				t.Fatal(err)
			}
			return k.pemOf(&small.PublicKey)
		}(), ""},
		{"websockify not base64", "base64url", []byte("not base64!!\n"), JWTKeyWebsockify},
		{"JWK private", "private", jwk(map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k.ed.Public().(ed25519.PublicKey)), "d": "x"}), JWTKeyWebsockify},
		{"JWK no kty", "kty", []byte(`{"k": "abc"}`), JWTKeyWebsockify},
		{"JWK EC off curve", "JWK", jwk(map[string]string{"kty": "EC", "crv": "P-256", "x": b64(ecX), "y": b64(ecX)}), JWTKeyWebsockify},
		{"unknown format", "unknown key format", k.hmac, "jwks"},
	}
	for _, c := range bad {
		_, err := NewJWTSource(JWTConfig{KeyFile: keyFile(t, c.data), KeyFormat: c.format})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if _, err := NewJWTSource(JWTConfig{KeyFile: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("missing key file accepted")
	}
}

func TestJWTKeyRotation(t *testing.T) {
	k := newTestKeys(t)
	p := keyFile(t, k.hmac)
	src, err := NewJWTSource(JWTConfig{KeyFile: p})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"host": "10.0.0.1", "port": 5901}
	oldTok := sign(t, jwt.SigningMethodHS256, k.hmac, claims)
	if src.Changed() {
		t.Fatal("changed before rotation")
	}
	writeFile(t, p, string(k.pemOf(k.ed.Public())))
	if !src.Changed() {
		t.Fatal("rotation not seen")
	}
	if rep := src.Reload(); rep.Err != nil {
		t.Fatal(rep.Err)
	}
	if _, err := src.Lookup(context.Background(), oldTok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("old key still verifies: %v", err)
	}
	if _, err := src.Lookup(context.Background(), sign(t, jwt.SigningMethodEdDSA, k.ed, claims)); err != nil {
		t.Fatal(err)
	}
	// A broken key file keeps the previous key.
	writeFile(t, p, "short")
	if rep := src.Reload(); rep.Err == nil || !rep.Failed() {
		t.Fatal("broken key accepted")
	}
	if _, err := src.Lookup(context.Background(), sign(t, jwt.SigningMethodEdDSA, k.ed, claims)); err != nil {
		t.Fatalf("previous key lost: %v", err)
	}
}

func TestJWTThroughRouter(t *testing.T) {
	k := newTestKeys(t)
	src := newJWT(t, k.hmac, "")
	tf, _ := tempTokenFile(t, "vm1: 10.0.0.9:5901\n")
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{tf, src}, SingleUse: true, CacheTTL: time.Minute})
	exp := time.Now().Add(time.Hour)
	tok := sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "10.0.0.1", "port": 5901, "jti": "one", "exp": exp.Unix(), "view_only": true})
	ctx := context.Background()
	// A signature check is a worker's job; once cached, the loop answers.
	if _, err := r.ResolveFast(Route{Kind: KindToken, Token: tok}); err != ErrWouldBlock {
		t.Fatalf("ResolveFast of a new signed token = %v, want ErrWouldBlock", err)
	}
	tgt, err := r.Resolve(ctx, Route{Kind: KindToken, Token: tok})
	if err != nil || tgt.Source != "jwt" || !tgt.ViewOnly || tgt.ID != "one" || tgt.Addr.String() != "10.0.0.1:5901" {
		t.Fatalf("Resolve = %+v %v", tgt, err)
	}
	// The cached grant is still single-use: the claim is per lookup.
	_, err = r.ResolveFast(Route{Kind: KindToken, Token: tok})
	wantError(t, err, http.StatusForbidden, ErrTokenUsed)
	// Another token with the same jti is the same single-use token.
	tok2 := sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "10.0.0.1", "port": 5901, "jti": "one", "exp": exp.Unix()})
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: tok2})
	wantError(t, err, http.StatusForbidden, ErrTokenUsed)
	// A leaked key cannot reach beyond --allow.
	out := sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "192.168.1.1", "port": 5901})
	_, err = r.Resolve(ctx, Route{Kind: KindToken, Token: out})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	meta := sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "169.254.169.254", "port": 80})
	_, err = newRouter(t, Config{Sources: []TokenSource{src}}).Resolve(context.Background(), Route{Kind: KindToken, Token: meta})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	sock := sign(t, jwt.SigningMethodHS256, k.hmac, jwt.MapClaims{"host": "unix:/var/run/docker.sock"})
	_, err = newRouter(t, Config{Sources: []TokenSource{src}}).Resolve(context.Background(), Route{Kind: KindToken, Token: sock})
	wantError(t, err, http.StatusForbidden, ErrForbidden)
}
