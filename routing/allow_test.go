package routing

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestParseAllowList(t *testing.T) {
	good := []struct {
		spec   string
		prefix string
		ports  []portRange
	}{
		{"10.0.0.0/8", "10.0.0.0/8", []portRange{{5901, 5901}}},
		{" 10.0.0.0/8 ", "10.0.0.0/8", []portRange{{5901, 5901}}},
		{"10.0.0.0/8:5900", "10.0.0.0/8", []portRange{{5900, 5900}}},
		{"10.0.0.0/8:5901,5902", "10.0.0.0/8", []portRange{{5901, 5901}, {5902, 5902}}},
		{"10.0.0.0/8:5900-5999,6000", "10.0.0.0/8", []portRange{{5900, 5999}, {6000, 6000}}},
		{"192.168.1.7", "192.168.1.7/32", []portRange{{5901, 5901}}},
		{"192.168.1.7:1", "192.168.1.7/32", []portRange{{1, 1}}},
		{"0.0.0.0/0:65535", "0.0.0.0/0", []portRange{{65535, 65535}}},
		{"fd00::/8", "fd00::/8", []portRange{{5901, 5901}}},
		{"[fd00::/8]", "fd00::/8", []portRange{{5901, 5901}}},
		{"[fd00::/8]:5901,5902", "fd00::/8", []portRange{{5901, 5901}, {5902, 5902}}},
		{"[fd00::1]:5900", "fd00::1/128", []portRange{{5900, 5900}}},
		{"::1", "::1/128", []portRange{{5901, 5901}}},
		{"[::ffff:10.0.0.0/104]", "10.0.0.0/8", []portRange{{5901, 5901}}},
	}
	for _, c := range good {
		a, err := ParseAllowList([]string{c.spec})
		if err != nil {
			t.Errorf("ParseAllowList(%q): %v", c.spec, err)
			continue
		}
		e := a.entries[0]
		if e.prefix.String() != c.prefix || !equalPorts(e.ports, c.ports) {
			t.Errorf("ParseAllowList(%q) = %s %v, want %s %v", c.spec, e.prefix, e.ports, c.prefix, c.ports)
		}
	}
	bad := []string{
		"", " ", "10.0.0.0/33", "10.0.0.1/8", "300.1.1.1", "10.0.0.0/8:", "10.0.0.0/8:0",
		"10.0.0.0/8:65536", "10.0.0.0/8:x", "10.0.0.0/8:5901,", "10.0.0.0/8:5902-5901", "10.0.0.0/8:-5",
		"10.0.0.0/8:5901:5902", "[fd00::/8", "[fd00::/8]5901", "[fd00::/8]:", "fd00::/8:5901x",
		"fe80::1%eth0", "[fe80::/10%eth0]", "vm1.lan", "10.0.0.0/8:+5901", "10.0.0.0/8: 5901",
	}
	for _, spec := range bad {
		_, err := ParseAllowList([]string{"10.0.0.0/8", spec})
		if err == nil {
			t.Errorf("ParseAllowList(%q) accepted", spec)
			continue
		}
		if !strings.Contains(err.Error(), strings.TrimSpace(spec)) {
			t.Errorf("error for %q does not name it: %v", spec, err)
		}
	}
	_, err := ParseAllowList([]string{"10.1.2.3/8"})
	if err == nil || !strings.Contains(err.Error(), "10.0.0.0/8") {
		t.Errorf("host bits error should suggest the network: %v", err)
	}
}

func equalPorts(a, b []portRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAllowListCheck(t *testing.T) {
	cases := []struct {
		allow  []string
		target string
		ok     bool
		reason string // substring of the reason when refused
	}{
		{[]string{"192.168.100.0/24"}, "192.168.100.3:5901", true, ""},
		{[]string{"192.168.100.0/24"}, "192.168.100.3:5902", false, "port 5902"},
		{[]string{"192.168.100.0/24"}, "192.168.101.3:5901", false, "not in the allow-list"},
		{[]string{"192.168.100.0/24:5901,5902"}, "192.168.100.3:5902", true, ""},
		{[]string{"192.168.100.0/24:5900-5910"}, "192.168.100.3:5910", true, ""},
		{[]string{"192.168.100.0/24:5900-5910"}, "192.168.100.3:5911", false, "port 5911"},
		{[]string{"192.168.100.0/24:5900", "192.168.100.3/32:5901"}, "192.168.100.3:5901", true, ""},
		{[]string{"192.168.100.0/24:5900", "192.168.0.0/16:5901"}, "192.168.100.3:5901", true, ""},
		// mapped addresses are unmapped before checks, both ways
		{[]string{"192.168.100.0/24"}, "[::ffff:192.168.100.3]:5901", true, ""},
		{[]string{"0.0.0.0/0"}, "[::ffff:127.0.0.1]:5901", false, "loopback"},
		{[]string{"::/0"}, "[::ffff:10.0.0.1]:5901", false, "not in the allow-list"},
		// special ranges: covered by a wide entry, but not opened by it
		{[]string{"0.0.0.0/0"}, "10.9.8.7:5901", true, ""},
		{[]string{"0.0.0.0/0"}, "127.0.0.1:5901", false, "loopback"},
		{[]string{"0.0.0.0/0"}, "127.5.5.5:5901", false, "loopback"},
		{[]string{"0.0.0.0/0"}, "169.254.169.254:5901", false, "link-local"},
		{[]string{"0.0.0.0/0:80"}, "169.254.169.254:80", false, "link-local"},
		{[]string{"0.0.0.0/0"}, "0.0.0.0:5901", false, "unspecified"},
		{[]string{"0.0.0.0/0"}, "0.1.2.3:5901", false, "unspecified"},
		{[]string{"::/0"}, "[::1]:5901", false, "loopback"},
		{[]string{"::/0"}, "[::]:5901", false, "unspecified"},
		{[]string{"::/0"}, "[fe80::1]:5901", false, "link-local"},
		{[]string{"::/0"}, "[febf::1]:5901", false, "link-local"},
		{[]string{"::/0"}, "[fec0::1]:5901", true, ""},
		{[]string{"::/0"}, "[fd00::1]:5901", true, ""},
		{[]string{"169.0.0.0/8"}, "169.254.169.254:5901", false, "link-local"},
		{[]string{"169.0.0.0/8"}, "169.253.1.1:5901", true, ""},
		// an entry inside the special range opens it (for its own addresses and ports)
		{[]string{"127.0.0.0/8"}, "127.0.0.1:5901", true, ""},
		{[]string{"127.0.0.0/8"}, "127.0.0.1:5902", false, "port 5902"},
		{[]string{"127.0.0.1/32:5901"}, "127.0.0.1:5901", true, ""},
		{[]string{"127.0.0.1/32:5901"}, "127.0.0.2:5901", false, "loopback"},
		{[]string{"127.0.0.1/32:5901", "0.0.0.0/0:5902"}, "127.0.0.2:5902", false, "loopback"},
		{[]string{"127.0.0.1/32:5901", "0.0.0.0/0:5902"}, "127.0.0.1:5902", false, "port 5902"},
		{[]string{"169.254.169.254/32:80"}, "169.254.169.254:80", true, ""},
		{[]string{"0.0.0.0/8"}, "0.0.0.0:5901", true, ""},
		{[]string{"::1"}, "[::1]:5901", true, ""},
		{[]string{"::1"}, "[::ffff:127.0.0.1]:5901", false, "loopback"},
		{[]string{"fe80::/64"}, "[fe80::1]:5901", true, ""},
		{[]string{"fe80::/64"}, "[fe80::1%eth0]:5901", true, ""},
		{[]string{"fe80::/9"}, "[fe80::1]:5901", false, "link-local"},
		// port 0 is never a target
		{[]string{"10.0.0.0/8"}, "10.0.0.1:0", false, "invalid"},
	}
	for _, c := range cases {
		a, err := ParseAllowList(c.allow)
		if err != nil {
			t.Fatalf("ParseAllowList(%q): %v", c.allow, err)
		}
		ap := netip.MustParseAddrPort(c.target)
		err = a.Check(ap)
		if c.ok {
			if err != nil {
				t.Errorf("allow %q: Check(%s) = %v, want nil", c.allow, c.target, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("allow %q: Check(%s) = nil, want refusal", c.allow, c.target)
			continue
		}
		wantError(t, err, http.StatusForbidden, ErrForbidden)
		if !strings.Contains(err.Error(), c.reason) {
			t.Errorf("allow %q: Check(%s) = %v, want reason with %q", c.allow, c.target, err, c.reason)
		}
	}
}

func TestAllowListEmpty(t *testing.T) {
	var a AllowList
	if !a.Empty() {
		t.Fatal("zero AllowList not empty")
	}
	err := a.Check(netip.MustParseAddrPort("10.0.0.1:5901"))
	wantError(t, err, http.StatusForbidden, ErrForbidden)
	if !strings.Contains(err.Error(), "no --allow") {
		t.Errorf("reason should say no --allow was given: %v", err)
	}
	// Token targets: any network, any port, but never a special range.
	if err := a.check(netip.MustParseAddrPort("10.0.0.1:22")); err != nil {
		t.Errorf("check with no --allow: %v", err)
	}
	for _, s := range []string{"127.0.0.1:5901", "[::ffff:127.0.0.1]:5901", "169.254.169.254:80", "[::1]:5901", "0.0.0.0:5901", "[fe80::1]:5901"} {
		if err := a.check(netip.MustParseAddrPort(s)); err == nil {
			t.Errorf("check(%s) with no --allow = nil, want refusal", s)
		}
	}
	b, _ := ParseAllowList([]string{"10.0.0.0/8"})
	if b.Empty() || b.Len() != 1 {
		t.Fatal("one entry: Empty or Len wrong")
	}
	if err := b.check(netip.MustParseAddrPort("192.168.1.1:5901")); err == nil {
		t.Error("with --allow, token targets outside it must be refused")
	}
}

// TestSpecialRanges covers CONTRACT.md's special ranges beyond loopback,
// link-local and unspecified: the other clouds' metadata and host
// endpoints, and every IPv6 form that embeds a special IPv4 range. Each is
// refused under a covering --allow and with no --allow (token targets), and
// opened only by an entry inside it.
func TestSpecialRanges(t *testing.T) {
	cases := []struct {
		target string
		name   string // substring of the reason
		open   string // an --allow entry inside the range that opens it
		near   string // an address just outside, which the covering entry admits
	}{
		{"168.63.129.16:5901", "Azure", "168.63.129.16/32", "168.63.129.17:5901"},
		{"100.100.100.200:5901", "Alibaba", "100.100.100.200/32", "100.100.100.201:5901"},
		{"[fd00:ec2::254]:5901", "AWS metadata", "fd00:ec2::254", "[fd00:ec2::253]:5901"},
		// NAT64 (RFC 6052 well-known prefix) forms of every special IPv4 range
		{"[64:ff9b::7f00:1]:5901", "loopback (NAT64 form)", "[64:ff9b::7f00:0/104]", "[64:ff9b::a00:1]:5901"},
		{"[64:ff9b::a9fe:a9fe]:5901", "link-local (NAT64 form)", "[64:ff9b::a9fe:a9fe]:5901", "[64:ff9b::a9fd:a9fe]:5901"},
		{"[64:ff9b::1]:5901", "unspecified (NAT64 form)", "[64:ff9b::/104]", "[64:ff9b::101:101]:5901"},
		{"[64:ff9b::a83f:8110]:5901", "Azure host endpoint (NAT64 form)", "64:ff9b::a83f:8110", "[64:ff9b::a83f:8111]:5901"},
		{"[64:ff9b::6464:64c8]:5901", "Alibaba Cloud metadata (NAT64 form)", "64:ff9b::6464:64c8", "[64:ff9b::6464:64c9]:5901"},
		// 6to4, IPv4-translated (SIIT) and the deprecated IPv4-compatible form
		{"[2002:7f00:1::1]:5901", "loopback (6to4 form)", "[2002:7f00::/24]", "[2002:a00:1::1]:5901"},
		{"[2002:a9fe:a9fe::]:5901", "link-local (6to4 form)", "[2002:a9fe::/32]", "[2002:a9fd:a9fe::]:5901"},
		{"[::ffff:0:7f00:1]:5901", "loopback (IPv4-translated form)", "[::ffff:0:7f00:0/104]", "[::ffff:0:a00:1]:5901"},
		{"[::7f00:1]:5901", "loopback (IPv4-compatible form)", "[::7f00:0/104]", "[::a00:1]:5901"},
		{"[::a9fe:a9fe]:5901", "link-local (IPv4-compatible form)", "[::a9fe:0/112]", "[::a9fd:a9fe]:5901"},
	}
	for _, c := range cases {
		ap := netip.MustParseAddrPort(c.target)
		cover := "0.0.0.0/0"
		if ap.Addr().Is6() {
			cover = "::/0"
		}
		wide, err := ParseAllowList([]string{cover})
		if err != nil {
			t.Fatal(err)
		}
		err = wide.Check(ap)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("--allow %s: Check(%s) = %v, want a refusal naming %q", cover, c.target, err, c.name)
		}
		if err := (AllowList{}).check(ap); err == nil {
			t.Errorf("no --allow: token target %s admitted", c.target)
		}
		if err := wide.Check(netip.MustParseAddrPort(c.near)); err != nil {
			t.Errorf("--allow %s: neighbour %s refused: %v", cover, c.near, err)
		}
		inside, err := ParseAllowList([]string{c.open})
		if err != nil {
			t.Fatalf("ParseAllowList(%q): %v", c.open, err)
		}
		if err := inside.Check(ap); err != nil {
			t.Errorf("--allow %s: Check(%s) = %v, want it opened", c.open, c.target, err)
		}
	}
	// An IPv4 entry does not open the IPv6 forms of its range: each form is
	// its own address to the kernel and must be opened on its own.
	lo, _ := ParseAllowList([]string{"127.0.0.0/8", "::/0"})
	if err := lo.Check(netip.MustParseAddrPort("[64:ff9b::7f00:1]:5901")); err == nil {
		t.Error("--allow 127.0.0.0/8 opened the NAT64 form of loopback")
	}
	// The IPv4-mapped form is unmapped first, so the IPv4 rule decides.
	if err := lo.Check(netip.MustParseAddrPort("[::ffff:127.0.0.1]:5901")); err != nil {
		t.Errorf("mapped loopback with --allow 127.0.0.0/8: %v", err)
	}
	p, name, ok := specialRange(netip.MustParseAddr("::ffff:169.254.169.254"))
	if !ok || p.String() != "::ffff:169.254.0.0/112" || !strings.Contains(name, "IPv4-mapped") {
		t.Errorf("specialRange(mapped metadata) = %v %q %v", p, name, ok)
	}
}
