package engine

import "testing"

func TestOriginPolicyAllow(t *testing.T) {
	p, err := newOriginPolicy([]string{"https://*.example.com", "http://console.test:8080"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		origin, host string
		want         bool
	}{
		{"", "anything", true},
		{"http://vnc.local", "vnc.local:6080", true},
		{"https://VNC.local:8443", "vnc.local", true},
		{"http://[::1]:3000", "[::1]:6080", true},
		{"https://evil.test", "vnc.local", false},
		{"https://a.example.com", "vnc.local", true},
		{"https://a.b.example.com", "vnc.local", true},
		{"https://example.com", "vnc.local", false},
		{"https://evilexample.com", "vnc.local", false},
		{"http://a.example.com", "vnc.local", false},
		{"https://a.example.com:444", "vnc.local", false},
		{"http://console.test:8080", "vnc.local", true},
		{"null", "vnc.local", false},
		{"::::", "vnc.local", false},
	} {
		if got := p.allow(tc.origin, tc.host); got != tc.want {
			t.Errorf("allow(%q, %q) = %v, want %v", tc.origin, tc.host, got, tc.want)
		}
	}
	star, _ := newOriginPolicy([]string{"*"})
	if !star.allow("null", "x") {
		t.Error("'*' must allow everything")
	}
	for _, bad := range []string{"example.com", "https://", "https://a*.example.com", "https://x/path", "https://*."} {
		if _, err := newOriginPolicy([]string{bad}); err == nil {
			t.Errorf("newOriginPolicy(%q) accepted", bad)
		}
	}
}

func TestTrustedProxiesClientAddr(t *testing.T) {
	tp, err := newTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ remote, xff, want string }{
		{"10.1.1.1:4000", "", "10.1.1.1:4000"},                               // no header
		{"203.0.113.5:4000", "198.51.100.1", "203.0.113.5:4000"},             // untrusted sender: ignored
		{"10.1.1.1:4000", "198.51.100.1", "198.51.100.1"},                    // one hop
		{"10.1.1.1:4000", "1.2.3.4, 198.51.100.1, 10.2.2.2", "198.51.100.1"}, // skip trusted hops, ignore spoofed left part
		{"192.0.2.7:80", "[2001:db8::1]:5555", "2001:db8::1"},                // hop with port
		{"10.1.1.1:4000", "10.3.3.3, 10.2.2.2", "10.3.3.3"},                  // all trusted: leftmost
		{"10.1.1.1:4000", "garbage, 198.51.100.1", "198.51.100.1"},
		{"10.1.1.1:4000", "198.51.100.1, garbage", "10.1.1.1:4000"},       // unparsable rightmost: keep the proxy
		{"[::ffff:10.1.1.1]:4000", "::ffff:198.51.100.9", "198.51.100.9"}, // mapped addresses
	} {
		if got := tp.clientAddr(tc.remote, tc.xff); got != tc.want {
			t.Errorf("clientAddr(%q, %q) = %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
	if _, err := newTrustedProxies([]string{"not-a-net"}); err == nil {
		t.Error("bad CIDR accepted")
	}
	var none trustedProxies
	if got := none.clientAddr("10.1.1.1:1", "198.51.100.1"); got != "10.1.1.1:1" {
		t.Errorf("no trusted proxies: %q", got)
	}
}
