package engine

import (
	"fmt"
	"net/netip"
	"strings"
)

// trustedProxies decides whose X-Forwarded-For header to believe.
type trustedProxies []netip.Prefix

func newTrustedProxies(specs []string) (trustedProxies, error) {
	var t trustedProxies
	for _, s := range specs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		t = append(t, p.Masked())
	}
	return t, nil
}

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the address to log for a connection from remote
// ("ip:port") that sent X-Forwarded-For xff. Only a trusted remote is
// believed, and then the rightmost hop that is not itself a trusted proxy
// (hops further left are whatever the client claimed). Anything that does
// not parse stops the walk: the last address known good is returned.
func (t trustedProxies) clientAddr(remote, xff string) string {
	if len(t) == 0 || xff == "" {
		return remote
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil || !t.contains(ap.Addr()) {
		return remote
	}
	client := remote
	for xff != "" {
		var hop string
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			hop, xff = strings.TrimSpace(xff[i+1:]), xff[:i]
		} else {
			hop, xff = strings.TrimSpace(xff), ""
		}
		a, err := netip.ParseAddr(hop)
		if err != nil {
			hap, perr := netip.ParseAddrPort(hop)
			if perr != nil {
				return client
			}
			a = hap.Addr()
		}
		client = a.Unmap().String()
		if !t.contains(a) {
			return client
		}
	}
	return client
}
