package routing

import (
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
			if err := r.allow.Check(ap); err != nil {
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
			for opt, on := range map[string]bool{"view-only": e.ViewOnly, "record": e.Record, "tls": e.TLS} {
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
