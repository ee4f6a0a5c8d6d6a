package routing

import (
	"bytes"
	"strings"
)

// stripAuthority turns an absolute-form request target
// ("http://host:port/path?q", which HTTP/1.1 servers must accept) into
// origin-form; anything else is returned as is.
func stripAuthority(uri []byte) []byte {
	var rest []byte
	switch {
	case hasPrefixFold(uri, "http://"):
		rest = uri[len("http://"):]
	case hasPrefixFold(uri, "https://"):
		rest = uri[len("https://"):]
	case hasPrefixFold(uri, "ws://"):
		rest = uri[len("ws://"):]
	case hasPrefixFold(uri, "wss://"):
		rest = uri[len("wss://"):]
	default:
		return uri
	}
	if i := bytes.IndexAny(rest, "/?#"); i >= 0 && rest[i] == '/' {
		return rest[i:]
	}
	return nil // no path after the authority: nothing routes there
}

func hasPrefixFold(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// appendUnescape appends the percent-decoding of s to dst; plus turns '+'
// into ' ' (query encoding). It reports false on a malformed escape.
func appendUnescape(dst, s []byte, plus bool) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			if i+2 >= len(s) {
				return dst, false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return dst, false
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		case c == '+' && plus:
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// validHostName accepts DNS names of letters, digits, '-' and '_' in labels
// of 1-63 bytes, 253 bytes at most, one trailing dot allowed. It keeps
// garbage from token sources away from the resolver.
func validHostName(s string) bool {
	if n := len(s); n > 0 && s[n-1] == '.' {
		s = s[:n-1]
	}
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
		case c == '_', '0' <= c && c <= '9', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return s[len(s)-1] != '-'
}

// looksLikeHostName tells a host name (to explain that path routes refuse
// them) from other garbage.
func looksLikeHostName(s string) bool {
	return strings.ContainsFunc(s, func(c rune) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }) &&
		validHostName(s)
}
