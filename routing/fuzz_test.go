package routing

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"/vnc/192.168.100.3:5901?x=1", "/vnc/192.168.100.3", "/vnc/[fd00::1]:5901", "/vnc/%5Bfd00::1%5D",
		"/vnc/127.0.0.1", "/vnc/[::ffff:127.0.0.1]:5901", "/vnc/../x", "/vnc/1.2.3.4:0", "/vnc/1.2.3.4:65536",
		"/websockify?token=vm1", "/websockify/?token=vm1&other=x", "/websockify?token=", "/websockify?token=a%zz",
		"http://h:1/websockify?token=a+b", "/vnc/%", "", "*", "/vnc/[fe80::1%25lo]:5901",
	} {
		f.Add([]byte(s))
	}
	r, err := New(Config{
		Allow:   []string{"192.168.0.0/16:5900-5999", "[fd00::/8]:5901", "127.0.0.1/32"},
		Sources: []TokenSource{&mapSource{name: "m"}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uri []byte) {
		rt, err := r.Classify(uri)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || e.Reason == "" {
				t.Fatalf("Classify(%q) error %v is not a 4xx *Error", uri, err)
			}
			if rt != (Route{}) {
				t.Fatalf("Classify(%q) returned a route with an error", uri)
			}
			return
		}
		switch rt.Kind {
		case KindPath:
			ap := rt.Addr
			if !ap.IsValid() || ap.Addr().Is4In6() || ap.Addr().Zone() != "" || ap.Port() == 0 {
				t.Fatalf("Classify(%q) target %v not normalised", uri, rt.Addr)
			}
			if err := r.AllowList().Check(ap); err != nil {
				t.Fatalf("Classify(%q) passed a target the allow-list refuses: %v", uri, err)
			}
		case KindToken:
			if rt.Token == "" || len(rt.Token) > maxTokenLen || strings.ContainsFunc(rt.Token, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				t.Fatalf("Classify(%q) token %q", uri, rt.Token)
			}
		default:
			t.Fatalf("Classify(%q) kind %v", uri, rt.Kind)
		}
	})
}

func FuzzParseTokenFile(f *testing.F) {
	for _, s := range []string{
		"vm1: 192.168.100.3:5901\n# c\n\nvm2: host.lan:5902\n",
		"v6: fd00::1:5901\r\nv6b: [fd00::2]:5902\r",
		"bad\nalso bad: x\na: b: c\n: 1.2.3.4:5\nz: 1.2.3.4:0\n",
		"\ufeffa: 10.0.0.1:05901\x1f\n", "a: [1.2.3.4]:5901", "t: fe80::1%eth0:5901", "\xff: 1.1.1.1:1",
		"o: 10.0.0.1:5901 view-only record tls password-file=vm.pass\n",
		"u: unix:/run/vnc/vm1.sock view-only\n", "u: unix:relative\nd: 1.1.1.1:1 view-only view-only\n",
		"x: 1.1.1.1:1 view-only=1\ny: 1.1.1.1:1 password-file=\nz: 1.1.1.1:1 # c\n",
		"v: 10.0.0.1:5901 vencrypt password-file=vm.pass\nw: 10.0.0.1:5901 tls vencrypt\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, errs := ParseTokenFile(data)
		lines := 1 + strings.Count(string(data), "\n") + strings.Count(string(data), "\r")
		for _, err := range errs {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 || le.Line > lines || le.Reason == "" {
				t.Fatalf("bad error %v", err)
			}
		}
		for tok, e := range m {
			if tok == "" || strings.TrimFunc(tok, isPySpace) != tok || !utf8.ValidString(tok) || strings.Contains(tok, ": ") {
				t.Fatalf("token %q", tok)
			}
			if e.Line < 1 || e.Line > lines || e.Password != "" {
				t.Fatalf("entry %+v", e)
			}
			if path, ok := strings.CutPrefix(e.Target, "unix:"); ok {
				if checkUnixPath(path) != nil {
					t.Fatalf("target %q: bad unix path", e.Target)
				}
			} else {
				host, port, err := net.SplitHostPort(e.Target)
				if err != nil {
					t.Fatalf("target %q: %v", e.Target, err)
				}
				if _, err := parsePort(port); err != nil {
					t.Fatalf("target %q: %v", e.Target, err)
				}
				if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
					t.Fatalf("target %q: bad host", e.Target)
				}
			}
			// The normalised form, with its options, parses back to itself.
			line := "x: " + e.Target
			for opt, on := range map[string]bool{"view-only": e.ViewOnly, "record": e.Record, "tls": e.TLS, "vencrypt": e.VeNCrypt} {
				if on {
					line += " " + opt
				}
			}
			if e.PasswordFile != "" {
				line += " password-file=" + e.PasswordFile
			}
			m2, errs2 := ParseTokenFile([]byte(line))
			back := m2["x"]
			back.Line = e.Line
			if len(errs2) != 0 || back != e {
				t.Fatalf("entry %+v does not round-trip: %+v %v", e, m2, errs2)
			}
		}
	})
}

func FuzzParseAllowList(f *testing.F) {
	for _, s := range []string{
		"10.0.0.0/8", "10.0.0.0/8:5901,5902", "10.0.0.0/8:5900-5999", "[fd00::/8]:5901,5902", "fd00::/8",
		"127.0.0.1/32:5901", "0.0.0.0/0", "[::ffff:10.0.0.0/104]", "10.0.0.1/8", "[x]:", "1.2.3.4:0",
	} {
		f.Add(s, "127.0.0.1:5901")
	}
	f.Fuzz(func(t *testing.T, spec, target string) {
		a, err := ParseAllowList(strings.Split(spec, "\n"))
		if err != nil {
			if !a.Empty() {
				t.Fatal("error with a non-empty list")
			}
			return
		}
		for _, e := range a.entries {
			if !e.prefix.IsValid() || e.prefix.Masked() != e.prefix || e.prefix.Addr().Is4In6() || len(e.ports) == 0 {
				t.Fatalf("spec %q: entry %+v", spec, e)
			}
			for _, p := range e.ports {
				if p.lo == 0 || p.lo > p.hi {
					t.Fatalf("spec %q: port range %+v", spec, p)
				}
			}
		}
		ap, err := netip.ParseAddrPort(target)
		if err != nil {
			return
		}
		if err := a.Check(ap); err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status != 403 || !errors.Is(err, ErrForbidden) {
				t.Fatalf("Check error %v", err)
			}
			return
		}
		// Whatever passed is inside an entry, and special ranges only through an entry inside them.
		addr := ap.Addr().Unmap().WithZone("")
		if special, _, ok := specialRange(addr); ok {
			inside := false
			for _, e := range a.entries {
				if e.prefix.Contains(addr) && special.Contains(e.prefix.Addr()) && e.prefix.Bits() >= special.Bits() {
					inside = true
				}
			}
			if !inside {
				t.Fatalf("spec %q let %s into a special range", spec, ap)
			}
		}
	})
}

func FuzzParseGrantValue(f *testing.F) {
	for _, s := range []string{
		"10.0.0.1:5901", " vm1.lan:05901\n", "fd00::1:5901", "unix:/run/vm.sock", "unix:a/../b",
		`{"host": "10.0.0.1:5901"}`, `{"host": "h", "port": 5901}`, `{"host": "h", "port": "5901"}`,
		`{"host": "fd00::1", "port": 1}`, `{"host": "fd00::1:1"}`, `{"host": "h:1", "port": 2}`,
		`{"host": "h:1", "view_only": true, "record": true, "tls": true, "vnc_password": "pw", "expires": 1900000000.5}`,
		`{"host": "h:1", "vencrypt": true}`,
		`{"host": "h:1", "expires": -1}`, `{"host": 1}`, `{"host": "h:1"`, `[]`, `{}`, "", "{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGrantValue(data)
		if err != nil {
			if g != (Grant{}) {
				t.Fatal("grant with an error")
			}
			if strings.Contains(err.Error(), "pw") && strings.Contains(string(data), `"pw"`) {
				t.Fatalf("error quotes the value: %v", err)
			}
			return
		}
		// The target is normalised: normalising again changes nothing.
		again, err := normaliseTarget(g.Target)
		if err != nil || again != g.Target {
			t.Fatalf("target %q not normalised: %q %v", g.Target, again, err)
		}
		if !g.Expires.IsZero() && g.Expires.Unix() <= 0 {
			t.Fatalf("expiry %v", g.Expires)
		}
	})
}

func FuzzParseJWTClaims(f *testing.F) {
	for _, s := range []string{
		`{"host": "10.0.0.1", "port": 5901}`, `{"host": "h", "port": "5901", "exp": 1900000000, "nbf": 1}`,
		`{"host": "h:1", "jti": "x", "view_only": true, "record": false, "tls": true}`,
		`{"host": "h:1", "vencrypt": true}`, `{"host": "h:1", "vencrypt": 1}`,
		`{"host": "h", "port": 1, "vnc_password": "pw"}`, `{"host": "unix:/run/a.sock"}`, `{"port": 1}`,
		`{"host": "h", "port": 1, "exp": "x"}`, `{"host": "h", "port": 1, "jti": ""}`, `null`, `[1]`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		g, exp, nbf, err := ParseJWTClaims(payload)
		if err != nil {
			if g != (Grant{}) || exp != nil || nbf != nil {
				t.Fatal("result with an error")
			}
			return
		}
		if g.Password != "" {
			t.Fatal("a password from a signed token")
		}
		if again, err := normaliseTarget(g.Target); err != nil || again != g.Target {
			t.Fatalf("target %q not normalised", g.Target)
		}
		if (exp == nil) != g.Expires.IsZero() || (exp != nil && !exp.Equal(g.Expires)) {
			t.Fatalf("exp %v vs expires %v", exp, g.Expires)
		}
	})
}

func FuzzClassifyCookie(f *testing.F) {
	for _, s := range []string{
		"token=abc", "a=1; token=\"q\"; b=2", "token=;token=x", " token = v ", "tokens=x", "token", ";;;", "token=\"",
		"token=a\x00b", "token=" + strings.Repeat("x", 100),
	} {
		f.Add([]byte("/websockify"), []byte(s))
	}
	f.Add([]byte("/websockify?token=q"), []byte("token=c"))
	r, err := New(Config{Sources: []TokenSource{&mapSource{name: "m"}}, TokenCookie: "token"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uri, cookie []byte) {
		v := CookieValue(cookie, "token")
		if v != nil && (len(v) == 0 || !bytes.Contains(cookie, v)) {
			t.Fatalf("CookieValue(%q) = %q", cookie, v)
		}
		rt, err := r.ClassifyCookie(uri, cookie)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || rt != (Route{}) {
				t.Fatalf("ClassifyCookie(%q, %q): %v %+v", uri, cookie, err, rt)
			}
			return
		}
		if rt.Kind == KindToken && (rt.Token == "" || len(rt.Token) > maxTokenLen ||
			strings.ContainsFunc(rt.Token, func(c rune) bool { return c < 0x20 || c == 0x7f })) {
			t.Fatalf("token %q", rt.Token)
		}
		// With no token in the query, the token is the cookie's.
		if rt.Kind == KindToken && !bytes.Contains(uri, []byte("token=")) && !bytes.Contains(uri, []byte("%")) && rt.Token != string(v) {
			t.Fatalf("token %q, cookie value %q", rt.Token, v)
		}
	})
}

func FuzzParseHeaderFile(f *testing.F) {
	for _, s := range []string{"Authorization: Bearer x\n", "# c\n\nA: b\r\nC:d", "bad", "Host: x", "A: \x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeaderFile(data)
		if err != nil {
			return
		}
		for k, vs := range h {
			if checkCookieName(k) != nil {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header value %q", v)
				}
			}
		}
	})
}

func FuzzParseJWTKey(f *testing.F) {
	for _, s := range []string{
		"0123456789abcdef0123456789abcdef\n", "short", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		`{"kty": "oct", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}`, `{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}`,
		"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
	} {
		f.Add([]byte(s), JWTKeyStandard)
		f.Add([]byte(s), JWTKeyWebsockify)
	}
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		k, err := parseJWTKey(data, format)
		if err != nil {
			return
		}
		if len(k.methods) == 0 || k.key == nil || k.kind == "" {
			t.Fatalf("key %+v", k)
		}
		// Pinning: HMAC keys verify HMAC algorithms only, and the rest never do.
		for _, m := range k.methods {
			if (k.kind == "HMAC") != strings.HasPrefix(m, "HS") {
				t.Fatalf("%s key with method %s", k.kind, m)
			}
		}
	})
}
