package routing

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPort is the VNC port an --allow entry admits when it names none,
// and the port a path route dials when the request names none.
const DefaultPort = 5901

// AllowList is the parsed --allow set. It is immutable once parsed and safe
// for concurrent use.
//
// IPv4 targets are matched against IPv4 entries only: targets are unmapped
// from ::ffff:a.b.c.d before any check (so the mapped form cannot bypass a
// rule), and entries written in the mapped form are unmapped when parsed.
type AllowList struct {
	entries []allowEntry
}

type allowEntry struct {
	spec   string // as given, for reasons in logs
	prefix netip.Prefix
	ports  []portRange
}

type portRange struct{ lo, hi uint16 }

// ParseAllowList parses --allow specs: "CIDR[:PORT[,PORT]]", where CIDR may
// also be a single address, IPv6 is written "[fd00::/8]:5901,5902" (or bare
// "fd00::/8" without ports), and a PORT may be a range "5900-5999". Ports
// default to 5901. All bad specs are reported, each named.
func ParseAllowList(specs []string) (AllowList, error) {
	var (
		a    AllowList
		errs []error
	)
	for _, spec := range specs {
		e, err := parseAllowSpec(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("--allow %q: %w", spec, err))
			continue
		}
		a.entries = append(a.entries, e)
	}
	if len(errs) > 0 {
		return AllowList{}, errors.Join(errs...)
	}
	return a, nil
}

func parseAllowSpec(spec string) (allowEntry, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return allowEntry{}, errors.New("empty spec")
	}
	var network, ports string
	hasPorts := false
	switch {
	case s[0] == '[':
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return allowEntry{}, errors.New("missing ']'")
		}
		network, ports = s[1:end], s[end+1:]
		if ports != "" {
			if ports[0] != ':' {
				return allowEntry{}, fmt.Errorf("unexpected %q after ']'", ports)
			}
			ports, hasPorts = ports[1:], true
		}
	case strings.Count(s, ":") >= 2:
		// Bare IPv6: a port would be ambiguous, so none can be given.
		network = s
	default:
		network, ports, hasPorts = strings.Cut(s, ":")
	}

	prefix, err := parseNetwork(network)
	if err != nil {
		return allowEntry{}, err
	}
	e := allowEntry{spec: s, prefix: prefix}
	if !hasPorts {
		e.ports = []portRange{{DefaultPort, DefaultPort}}
		return e, nil
	}
	if e.ports, err = parsePortList(ports); err != nil {
		return allowEntry{}, err
	}
	return e, nil
}

func parseNetwork(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network: %w", err)
		}
	} else {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad network: %w", err)
		}
		if addr.Zone() != "" {
			return netip.Prefix{}, errors.New("bad network: zones are not allowed")
		}
		p = netip.PrefixFrom(addr, addr.BitLen())
	}
	// An operator who wrote 10.1.2.3/8 may have meant /32; do not guess.
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("host bits set in %s (did you mean %s?)", p, m)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

func parsePortList(s string) ([]portRange, error) {
	if s == "" {
		return nil, errors.New("empty port list after ':'")
	}
	var out []portRange
	for item := range strings.SplitSeq(s, ",") {
		loS, hiS, isRange := strings.Cut(item, "-")
		lo, err := parsePort(loS)
		if err != nil {
			return nil, err
		}
		hi := lo
		if isRange {
			if hi, err = parsePort(hiS); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, fmt.Errorf("empty port range %q", item)
			}
		}
		out = append(out, portRange{lo, hi})
	}
	return out, nil
}

// parsePort accepts decimal 1..65535 and nothing else (no sign, no spaces).
func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty port")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad port %q", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q out of range 1-65535", s)
	}
	if n == 0 {
		return 0, errors.New("port 0 is not a port")
	}
	return uint16(n), nil
}

// Empty reports whether no --allow was given.
func (a AllowList) Empty() bool { return len(a.entries) == 0 }

// Specs returns the entries as given (white space trimmed), in order.
func (a AllowList) Specs() []string {
	out := make([]string, len(a.entries))
	for i, e := range a.entries {
		out[i] = e.spec
	}
	return out
}

// Len is the number of entries.
func (a AllowList) Len() int { return len(a.entries) }

// Check reports whether ap may be reached: nil, or a 403 *Error whose reason
// says why not. An empty list allows nothing (path routes with no --allow).
func (a AllowList) Check(ap netip.AddrPort) error {
	if a.Empty() {
		return errNoAllow()
	}
	return a.check(ap)
}

func errNoAllow() *Error { return forbidden("no --allow given, so path routes reach nothing") }

// check applies the rules. An empty list refuses only the special ranges:
// that is the rule for token targets with no --allow, which are not limited
// by network, yet must not reach the metadata service through a leaked
// signing key.
func (a AllowList) check(ap netip.AddrPort) error {
	addr := ap.Addr().Unmap().WithZone("")
	port := ap.Port()
	if !addr.IsValid() || port == 0 {
		return forbidden("invalid address " + ap.String())
	}
	special, name, isSpecial := specialRange(addr)
	var portMiss *allowEntry
	for i := range a.entries {
		e := &a.entries[i]
		if !e.prefix.Contains(addr) {
			continue
		}
		// 0.0.0.0/0 covers loopback but must not open it: only an entry
		// that lies inside the special range counts for addresses in it.
		if isSpecial && !(e.prefix.Bits() >= special.Bits() && special.Contains(e.prefix.Addr())) {
			continue
		}
		if e.allowsPort(port) {
			return nil
		}
		portMiss = e
	}
	target := netip.AddrPortFrom(addr, port)
	switch {
	case portMiss != nil:
		return forbidden(fmt.Sprintf("%s: port %d not allowed by --allow %s", target, port, portMiss.spec))
	case isSpecial:
		return forbidden(fmt.Sprintf("%s is in the %s range %s, which only an --allow inside it opens",
			target, name, special))
	case a.Empty():
		return nil
	}
	return forbidden(fmt.Sprintf("%s is not in the allow-list", target))
}

func (e *allowEntry) allowsPort(port uint16) bool {
	for _, r := range e.ports {
		if port >= r.lo && port <= r.hi {
			return true
		}
	}
	return false
}

// specialRange names the CONTRACT.md special range holding addr (already
// unmapped and without zone): the prefix an --allow entry must lie inside to
// open it, and a name for the log. Built on the fly so no table is package
// state.
func specialRange(addr netip.Addr) (netip.Prefix, string, bool) {
	if addr.Is4() {
		return specialRange4(addr.As4())
	}
	a16 := addr.As16()
	switch {
	case addr == netip.IPv6Loopback():
		return netip.PrefixFrom(addr, 128), "loopback", true
	case addr == netip.IPv6Unspecified():
		return netip.PrefixFrom(addr, 128), "unspecified", true
	case a16[0] == 0xfe && a16[1]&0xc0 == 0x80: // fe80::/10 (netip's IsLinkLocalUnicast also unmaps)
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfe, 0x80}), 10), "link-local", true
	case addr == netip.AddrFrom16([16]byte{0xfd, 0x00, 0x0e, 0xc2, 14: 0x02, 15: 0x54}):
		return netip.PrefixFrom(addr, 128), "AWS metadata (IPv6)", true
	}
	// IPv6 forms that carry an IPv4 address, which a NAT64 gateway, a
	// 6to4 relay or a dual stack turns back into that IPv4 address.
	for _, f := range embeddings() {
		if !f.prefix.Contains(addr) {
			continue
		}
		var v4 [4]byte
		copy(v4[:], a16[f.at:f.at+4])
		p4, name, ok := specialRange4(v4)
		if !ok {
			return netip.Prefix{}, "", false
		}
		var b [16]byte
		pb := f.prefix.Addr().As16()
		copy(b[:], pb[:])
		copy(b[f.at:], p4.Addr().AsSlice())
		return netip.PrefixFrom(netip.AddrFrom16(b), f.at*8+p4.Bits()), name + " (" + f.name + " form)", true
	}
	return netip.Prefix{}, "", false
}

// embedding is an IPv6 prefix whose addresses carry an IPv4 address at byte at.
type embedding struct {
	prefix netip.Prefix
	at     int
	name   string
}

func embeddings() [5]embedding {
	return [5]embedding{
		{netip.PrefixFrom(netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff}), 96), 12, "IPv4-mapped"},
		{netip.PrefixFrom(netip.AddrFrom16([16]byte{8: 0xff, 9: 0xff}), 96), 12, "IPv4-translated"},
		{netip.PrefixFrom(netip.AddrFrom16([16]byte{0x00, 0x64, 0xff, 0x9b}), 96), 12, "NAT64"},
		{netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x02}), 16), 2, "6to4"},
		{netip.PrefixFrom(netip.IPv6Unspecified(), 96), 12, "IPv4-compatible"},
	}
}

// specialRange4 is specialRange for IPv4.
func specialRange4(b [4]byte) (netip.Prefix, string, bool) {
	switch {
	case b[0] == 127:
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{127}), 8), "loopback", true
	case b[0] == 0:
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{}), 8), "unspecified", true
	case b[0] == 169 && b[1] == 254:
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{169, 254}), 16), "link-local", true
	case b == [4]byte{168, 63, 129, 16}:
		return netip.PrefixFrom(netip.AddrFrom4(b), 32), "Azure host endpoint", true
	case b == [4]byte{100, 100, 100, 200}:
		return netip.PrefixFrom(netip.AddrFrom4(b), 32), "Alibaba Cloud metadata", true
	}
	return netip.Prefix{}, "", false
}
