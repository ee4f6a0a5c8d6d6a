package engine

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// originPolicy decides which browser origins may open sessions (CONTRACT.md):
// same host name as the Host header always passes, requests without an
// Origin header are not from a browser page and pass, and each configured
// pattern adds exact origins or subdomain wildcards. "*" turns it off.
type originPolicy struct {
	any      bool
	patterns []originPattern
}

type originPattern struct {
	scheme string
	host   string // lower case; for wildcards the suffix including the leading dot
	port   string // explicit or the scheme's default
	suffix bool
}

func newOriginPolicy(specs []string) (originPolicy, error) {
	var p originPolicy
	for _, s := range specs {
		if s == "*" {
			p.any = true
			continue
		}
		scheme, hostport, ok := strings.Cut(s, "://")
		if !ok || scheme == "" || hostport == "" || strings.ContainsAny(hostport, "/?#") {
			return p, fmt.Errorf("origin %q: want scheme://host[:port], e.g. https://console.example.com or https://*.example.com", s)
		}
		host, port := splitHostPortDefault(strings.ToLower(hostport), strings.ToLower(scheme))
		pat := originPattern{scheme: strings.ToLower(scheme), host: host, port: port}
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			if rest == "" || strings.Contains(rest, "*") {
				return p, fmt.Errorf("origin %q: a wildcard must be a whole leading label, as in https://*.example.com", s)
			}
			pat.host, pat.suffix = "."+rest, true
		} else if strings.Contains(host, "*") {
			return p, fmt.Errorf("origin %q: a wildcard must be a whole leading label, as in https://*.example.com", s)
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

// allow reports whether a request with this Origin and Host header may
// upgrade. Both values are as sent; origin is empty when absent.
func (p originPolicy) allow(origin, host string) bool {
	if p.any || origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" and garbage match nothing but "*"
	}
	scheme := strings.ToLower(u.Scheme)
	oHost, oPort := splitHostPortDefault(strings.ToLower(u.Host), scheme)
	hHost, _ := splitHostPortDefault(strings.ToLower(host), scheme)
	if oHost == hHost && hHost != "" {
		return true
	}
	for _, pat := range p.patterns {
		if pat.scheme != scheme || pat.port != oPort {
			continue
		}
		if pat.suffix && strings.HasSuffix(oHost, pat.host) && len(oHost) > len(pat.host) {
			return true
		}
		if !pat.suffix && pat.host == oHost {
			return true
		}
	}
	return false
}

// splitHostPortDefault splits host[:port] (IPv6 in brackets) and fills in the
// default port of scheme when none is given.
func splitHostPortDefault(hostport, scheme string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	host = strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	switch scheme {
	case "https", "wss":
		return host, "443"
	default:
		return host, "80"
	}
}
