package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Grant is what a token source says a token may do. The policy fields are
// the engine's to enforce; Router.Resolve checks Target and Expires.
type Grant struct {
	// Target is "host:port" (host an IP literal or a DNS name) or
	// "unix:/absolute/path" (a Unix socket on this host).
	Target string
	// Password is the VM's VNC password the proxy answers the VM's
	// challenge with; "" for none. Never log it.
	Password string
	ViewOnly bool // drop the browser's input events
	Record   bool // record the session
	TLS      bool // speak TLS to the VM
	// VeNCrypt has the proxy prefer VeNCrypt's X509 sub-types (TLS inside
	// RFB) where it runs the RFB handshake with the VM, as --vm-vencrypt
	// does for every VM. Meaningless with TLS, which encrypts from the
	// first byte.
	VeNCrypt bool
	// Expires is when the grant ends (zero: never). Resolve refuses a grant
	// past it; the engine may end sessions at it (--token-expiry-closes).
	Expires time.Time
	// ID identifies one issued token for --token-single-use (a JWT's jti);
	// "" means the token itself identifies it.
	ID string
}

// unixPrefix starts a Unix socket target.
const unixPrefix = "unix:"

// maxUnixPath is what fits in sockaddr_un.sun_path with its NUL.
const maxUnixPath = 107

// maxGrantValue bounds a Redis value or an HTTP lookup answer.
const maxGrantValue = 64 << 10

// checkUnixPath accepts an absolute, clean path without NUL that fits a
// socket address. Clean matters: an --allow-unix directory check compares
// prefixes, and "/run/vnc/../docker.sock" must not pass for "/run/vnc".
func checkUnixPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty unix socket path")
	case p[0] != '/':
		return errors.New("unix socket path must be absolute")
	case len(p) > maxUnixPath:
		return fmt.Errorf("unix socket path longer than %d bytes", maxUnixPath)
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("NUL in unix socket path")
	case filepath.Clean(p) != p:
		return errors.New("unix socket path is not clean (no '..', '//' or trailing '/')")
	}
	return nil
}

// normaliseTarget checks a "host:port" or "unix:/path" target and returns it
// in canonical form: the port without leading zeros, IPv6 in brackets. The
// last ':' splits host from port (websockify's rule, so an unbracketed IPv6
// "fd00::1:5901" is host fd00::1 port 5901); brackets are accepted around
// IPv6 only.
func normaliseTarget(target string) (string, error) {
	if strings.HasPrefix(target, unixPrefix) {
		if err := checkUnixPath(target[len(unixPrefix):]); err != nil {
			return "", err
		}
		return target, nil
	}
	i := strings.LastIndexByte(target, ':')
	if i < 0 {
		return "", errors.New("target has no port")
	}
	host, portStr := target[:i], target[i+1:]
	port, err := parsePort(portStr)
	if err != nil {
		return "", fmt.Errorf("target %w", err)
	}
	return joinTarget(host, port)
}

// joinTarget checks host (brackets allowed around IPv6) and joins it with port.
func joinTarget(host string, port uint16) (string, error) {
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return "", errors.New("brackets around something that is not an IPv6 address")
		}
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return "", errors.New("target host is neither an IP address nor a host name")
	}
	var buf [8]byte
	return net.JoinHostPort(host, string(strconv.AppendUint(buf[:0], uint64(port), 10))), nil
}

// ParseGrantValue parses a grant as Redis values and HTTP lookup answers
// carry it (CONTRACT.md "Grants and token-file options"):
//   - plain "host:port" or "unix:/path" (surrounding white space ignored);
//   - websockify's JSON {"host": "host:port"};
//   - JSON {"host": "h", "port": N} (N a number or a numeric string);
//
// and in JSON also "view_only", "record", "tls", "vencrypt" (booleans), "vnc_password"
// (string) and "expires" (Unix seconds). Unknown JSON fields are ignored, so
// a store can hold more than vncedge reads. The error never quotes the
// value: it may hold a password.
func ParseGrantValue(data []byte) (Grant, error) {
	if len(data) > maxGrantValue {
		return Grant{}, fmt.Errorf("value larger than %d bytes", maxGrantValue)
	}
	v := bytes.TrimSpace(data)
	if len(v) == 0 {
		return Grant{}, errors.New("empty value")
	}
	if v[0] != '{' {
		for _, c := range v {
			if c <= ' ' || c == 0x7f {
				return Grant{}, errors.New("plain value with white space or control characters")
			}
		}
		t, err := normaliseTarget(string(v))
		if err != nil {
			return Grant{}, err
		}
		return Grant{Target: t}, nil
	}
	var raw struct {
		Host        *string         `json:"host"`
		Port        json.RawMessage `json:"port"`
		ViewOnly    *bool           `json:"view_only"`
		Record      *bool           `json:"record"`
		TLS         *bool           `json:"tls"`
		VeNCrypt    *bool           `json:"vencrypt"`
		VNCPassword *string         `json:"vnc_password"`
		Expires     json.RawMessage `json:"expires"`
	}
	if err := json.Unmarshal(v, &raw); err != nil {
		return Grant{}, jsonError(err)
	}
	if raw.Host == nil {
		return Grant{}, errors.New(`JSON value without "host"`)
	}
	t, err := hostPortTarget(*raw.Host, raw.Port)
	if err != nil {
		return Grant{}, err
	}
	g := Grant{Target: t, ViewOnly: deref(raw.ViewOnly), Record: deref(raw.Record), TLS: deref(raw.TLS), VeNCrypt: deref(raw.VeNCrypt)}
	if raw.VNCPassword != nil {
		g.Password = *raw.VNCPassword
	}
	if g.Expires, err = parseExpires(raw.Expires); err != nil {
		return Grant{}, err
	}
	return g, nil
}

// jsonError drops encoding/json's quote of the offending value.
func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Errorf("JSON field %q: want %s, not %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("JSON value: want %s, not %s", te.Type, te.Value)
	}
	return errors.New("not valid JSON")
}

func deref(b *bool) bool { return b != nil && *b }

// hostPortTarget builds the target from a "host" field and an optional
// "port" field (JSON number or numeric string; raw is nil when absent).
// Without a port field, host must carry one, and an IPv6 host needs
// brackets: "fd00::1:5901" is both a valid address and a valid
// address:port, and a store answering for a fleet must not be guessed at.
func hostPortTarget(host string, port json.RawMessage) (string, error) {
	if host == "" {
		return "", errors.New(`empty "host"`)
	}
	if strings.HasPrefix(host, unixPrefix) {
		if port != nil {
			return "", errors.New(`"port" given with a unix socket "host"`)
		}
		return normaliseTarget(host)
	}
	if port == nil || string(port) == "null" {
		if strings.Count(host, ":") > 1 && host[0] != '[' {
			return "", errors.New(`IPv6 "host" needs brackets ([fd00::1]:5901) or a "port" field`)
		}
		return normaliseTarget(host)
	}
	p, err := jsonPort(port)
	if err != nil {
		return "", err
	}
	if strings.Contains(host, ":") {
		if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil || !a.Is6() {
			return "", errors.New(`"host" carries a port and a "port" field is given too`)
		}
	}
	return joinTarget(host, p)
}

// jsonPort reads a port given as a JSON number or a numeric string.
func jsonPort(raw json.RawMessage) (uint16, error) {
	s := string(raw)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return 0, errors.New(`"port" is not a valid string`)
		}
		s = str
	}
	p, err := parsePort(s)
	if err != nil {
		return 0, errors.New(`"port" must be a whole number 1-65535`)
	}
	return p, nil
}

// parseExpires reads Unix seconds (a JSON number, fractions allowed); nil or
// null means no expiry.
func parseExpires(raw json.RawMessage) (time.Time, error) {
	if raw == nil || string(raw) == "null" {
		return time.Time{}, nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return time.Time{}, errors.New(`"expires" must be Unix seconds (a number)`)
	}
	return unixSeconds(f, "expires")
}

// unixSeconds turns positive Unix seconds into a time, refusing values no
// clock will reach (they overflow time.Time's nanoseconds).
func unixSeconds(f float64, field string) (time.Time, error) {
	if math.IsNaN(f) || f <= 0 || f > 1<<40 {
		return time.Time{}, fmt.Errorf("%q out of range", field)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
