package routing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// JWT key file formats (--token-jwt-key-format).
const (
	// JWTKeyStandard (CONTRACT.md): a PEM public key (RSA, Ed25519, ECDSA;
	// "PUBLIC KEY", "RSA PUBLIC KEY" or a "CERTIFICATE"), or else the HMAC
	// secret as raw bytes, one trailing newline ignored.
	JWTKeyStandard = "standard"
	// JWTKeyWebsockify is how websockify's JWTTokenApi reads its key file: a
	// PEM key as above, or else the file's text is a JWK "k" value, the
	// base64url encoding of the HMAC secret. A JWK JSON object (kty oct,
	// RSA, EC or OKP/Ed25519, public members only) is accepted too.
	JWTKeyWebsockify = "websockify"
)

// minHMACKey is RFC 7518 section 3.2's floor for HS256: a key at least as
// long as the hash. A shorter one can be guessed offline from one token.
const minHMACKey = 32

// jwtKey is a verification key and the algorithms pinned to its type: an
// RSA public key never verifies an HS256 token (the classic confusion where
// the public key, which is no secret, serves as the HMAC secret).
type jwtKey struct {
	key     any
	methods []string
	kind    string // for logs: "HMAC", "RSA", "Ed25519", "ECDSA P-256", ...
}

// parseJWTKey reads a key file's content in the given format.
func parseJWTKey(data []byte, format string) (jwtKey, error) {
	switch format {
	case "", JWTKeyStandard, JWTKeyWebsockify:
	default:
		return jwtKey{}, fmt.Errorf("unknown key format %q (want %s or %s)", format, JWTKeyStandard, JWTKeyWebsockify)
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return parsePEMKey(data)
	}
	if format != JWTKeyWebsockify {
		return hmacKey(trimOneNewline(data))
	}
	text := bytes.TrimSpace(data)
	if len(text) > 0 && text[0] == '{' {
		return parseJWK(text)
	}
	secret, err := decodeBase64URL(string(text))
	if err != nil {
		return jwtKey{}, fmt.Errorf("websockify key format: the file is neither PEM nor a base64url JWK k value: %w", err)
	}
	return hmacKey(secret)
}

func hmacKey(secret []byte) (jwtKey, error) {
	if len(secret) < minHMACKey {
		return jwtKey{}, fmt.Errorf("HMAC secret of %d bytes is too short: use at least %d random bytes (RFC 7518)", len(secret), minHMACKey)
	}
	k := jwtKey{key: bytes.Clone(secret), methods: []string{"HS256"}, kind: "HMAC"}
	if len(secret) >= 48 {
		k.methods = append(k.methods, "HS384")
	}
	if len(secret) >= 64 {
		k.methods = append(k.methods, "HS512")
	}
	return k, nil
}

func parsePEMKey(data []byte) (jwtKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return jwtKey{}, errors.New("PEM file without a valid PEM block")
	}
	if next, _ := pem.Decode(rest); next != nil {
		return jwtKey{}, errors.New("more than one PEM block: the file must hold exactly one public key")
	}
	if strings.Contains(block.Type, "PRIVATE KEY") {
		return jwtKey{}, fmt.Errorf("the file holds a %s: give vncedge the public key only (openssl pkey -in KEY -pubout)", block.Type)
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return jwtKey{}, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return jwtKey{}, fmt.Errorf("PEM %s: %w", block.Type, err)
	}
	return publicKey(pub)
}

func publicKey(pub any) (jwtKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return jwtKey{}, fmt.Errorf("RSA key of %d bits is too small (2048 at least)", k.N.BitLen())
		}
		return jwtKey{key: k, methods: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, kind: "RSA"}, nil
	case ed25519.PublicKey:
		return jwtKey{key: k, methods: []string{"EdDSA"}, kind: "Ed25519"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwtKey{key: k, methods: []string{"ES256"}, kind: "ECDSA P-256"}, nil
		case elliptic.P384():
			return jwtKey{key: k, methods: []string{"ES384"}, kind: "ECDSA P-384"}, nil
		case elliptic.P521():
			return jwtKey{key: k, methods: []string{"ES512"}, kind: "ECDSA P-521"}, nil
		}
		return jwtKey{}, errors.New("ECDSA key on an unsupported curve")
	}
	return jwtKey{}, fmt.Errorf("unsupported public key type %T", pub)
}

// parseJWK reads one JWK (RFC 7517) with public members only.
func parseJWK(text []byte) (jwtKey, error) {
	var j struct {
		Kty string `json:"kty"`
		K   string `json:"k"`
		N   string `json:"n"`
		E   string `json:"e"`
		Crv string `json:"crv"`
		X   string `json:"x"`
		Y   string `json:"y"`
		D   string `json:"d"`
	}
	if err := json.Unmarshal(text, &j); err != nil {
		return jwtKey{}, fmt.Errorf("JWK: %w", jsonError(err))
	}
	b64 := func(field, v string) ([]byte, error) {
		if v == "" {
			return nil, fmt.Errorf("JWK: %q missing", field)
		}
		b, err := decodeBase64URL(v)
		if err != nil {
			return nil, fmt.Errorf("JWK %q: %w", field, err)
		}
		return b, nil
	}
	if j.D != "" && j.Kty != "oct" {
		return jwtKey{}, errors.New("JWK holds a private key (\"d\"): give vncedge the public key only")
	}
	switch j.Kty {
	case "oct":
		k, err := b64("k", j.K)
		if err != nil {
			return jwtKey{}, err
		}
		return hmacKey(k)
	case "RSA":
		n, err := b64("n", j.N)
		if err != nil {
			return jwtKey{}, err
		}
		e, err := b64("e", j.E)
		if err != nil {
			return jwtKey{}, err
		}
		if len(e) == 0 || len(e) > 4 {
			return jwtKey{}, errors.New("JWK: bad RSA exponent")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		if exp < 3 || exp%2 == 0 {
			return jwtKey{}, errors.New("JWK: bad RSA exponent")
		}
		return publicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp})
	case "OKP":
		if j.Crv != "Ed25519" {
			return jwtKey{}, fmt.Errorf("JWK: OKP curve %q not supported (Ed25519 only)", j.Crv)
		}
		x, err := b64("x", j.X)
		if err != nil {
			return jwtKey{}, err
		}
		if len(x) != ed25519.PublicKeySize {
			return jwtKey{}, errors.New("JWK: Ed25519 \"x\" has the wrong length")
		}
		return publicKey(ed25519.PublicKey(x))
	case "EC":
		x, err := b64("x", j.X)
		if err != nil {
			return jwtKey{}, err
		}
		y, err := b64("y", j.Y)
		if err != nil {
			return jwtKey{}, err
		}
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return jwtKey{}, fmt.Errorf("JWK: EC curve %q not supported", j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) > size || len(y) > size {
			return jwtKey{}, errors.New("JWK: EC coordinates too long for the curve")
		}
		pt := make([]byte, 1+2*size)
		pt[0] = 4
		copy(pt[1+size-len(x):], x)
		copy(pt[1+2*size-len(y):], y)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return jwtKey{}, fmt.Errorf("JWK: %w", err)
		}
		return publicKey(pub)
	case "":
		return jwtKey{}, errors.New("JWK without \"kty\"")
	}
	return jwtKey{}, fmt.Errorf("JWK kty %q not supported", j.Kty)
}

// decodeBase64URL accepts base64url with or without padding.
func decodeBase64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
