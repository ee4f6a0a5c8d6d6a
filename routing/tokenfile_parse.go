package routing

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FileEntry is one token line of a token file.
type FileEntry struct {
	// Grant holds the target and the options. Its Password is empty: a
	// password-file option is read by the loader (TokenFile), never by the
	// parser, so parsing stays a pure function.
	Grant
	PasswordFile string // the password-file option as written, "" for none
	Line         int    // 1-based
}

// LineError is one bad line of a token file. It names the line, never its
// text: the text holds a token.
type LineError struct {
	File   string // empty for ParseTokenFile
	Line   int    // 1-based
	Reason string
}

func (e *LineError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// ParseTokenFile parses one file's content. Lines are split and cleaned the
// way websockify 0.10/0.11 (ReadOnlyTokenFile._load_targets) does:
//   - lines end at "\n", "\r\n" or "\r" (Python's universal newlines);
//   - each line is stripped of white space (Python's notion, which includes
//     \x1c-\x1f); empty lines and lines starting with '#' are skipped;
//   - the line must contain ": " exactly once, splitting token from the rest
//     ("a: b: c" is an error, "vm1:host:5901" too);
//   - the target is split at its LAST ':' into host and port, so an
//     unbracketed IPv6 "fd00::1:5901" is host fd00::1, port 5901;
//   - a later line for the same token wins.
//
// vncedge extends the line to "token: target [option ...]" (CONTRACT.md):
// the target may be "unix:/absolute/path", and white-space separated options
// may follow it: view-only, record, tls and password-file=PATH (the VM's VNC
// password; a relative PATH is relative to the token file's directory).
// An unknown or repeated option makes the line bad, so a typo never silently
// drops a restriction such as view-only.
//
// Targets are returned normalised (see normaliseTarget), e.g. "[fd00::1]:5901".
// Where websockify would accept a line that can never work or never match,
// this reports it instead: a target without a port, a port that is not a
// number in 1-65535 (websockify would pass a service name to getaddrinfo), a
// host that is neither an IP nor a DNS name, an empty token, a line that is
// not UTF-8. The token is stripped too (websockify keeps "vm1 " from
// "vm1 : host:port", a token no URL can carry), a bracketed IPv6 host
// "[fd00::1]:5901" is accepted, and a UTF-8 byte-order mark at the start is
// skipped.
//
// Each bad line is skipped and reported as a *LineError.
func ParseTokenFile(data []byte) (map[string]FileEntry, []error) {
	m := make(map[string]FileEntry)
	var errs []error
	s := strings.TrimPrefix(string(data), "\ufeff")
	for n := 1; len(s) > 0; n++ {
		line := s
		s = ""
		if i := strings.IndexAny(line, "\r\n"); i >= 0 {
			next := i + 1
			if line[i] == '\r' && next < len(line) && line[next] == '\n' {
				next++
			}
			line, s = line[:i], line[next:]
		}
		tok, e, reason := parseTokenLine(line)
		switch {
		case reason != "":
			errs = append(errs, &LineError{Line: n, Reason: reason})
		case tok != "":
			e.Line = n
			m[tok] = e
		}
	}
	return m, errs
}

// parseTokenLine returns the token and entry of one line, an empty token for
// a blank or comment line, or a reason the line is bad. Reasons never quote
// the line: it holds a token.
func parseTokenLine(line string) (tok string, e FileEntry, reason string) {
	line = strings.TrimFunc(line, isPySpace)
	if line == "" || line[0] == '#' {
		return "", e, ""
	}
	if !utf8.ValidString(line) {
		return "", e, "not valid UTF-8"
	}
	tok, rest, ok := strings.Cut(line, ": ")
	if !ok {
		return "", e, `no ": " between token and target`
	}
	if strings.Contains(rest, ": ") {
		return "", e, `more than one ": "`
	}
	tok = strings.TrimFunc(tok, isPySpace)
	if tok == "" {
		return "", e, "empty token"
	}
	fields := strings.FieldsFunc(rest, isPySpace)
	if len(fields) == 0 {
		return "", e, "no target after the token"
	}
	target, err := normaliseTarget(fields[0])
	if err != nil {
		return "", e, err.Error()
	}
	e.Target = target
	if reason := parseLineOptions(fields[1:], &e); reason != "" {
		return "", FileEntry{}, reason
	}
	return tok, e, ""
}

func parseLineOptions(opts []string, e *FileEntry) string {
	seen := make(map[string]bool, len(opts))
	for i, o := range opts {
		name, val, hasVal := strings.Cut(o, "=")
		if seen[name] {
			return fmt.Sprintf("option %s given twice", name)
		}
		seen[name] = true
		flag := func(p *bool) string {
			if hasVal {
				return fmt.Sprintf("option %s takes no value", name)
			}
			*p = true
			return ""
		}
		var reason string
		switch name {
		case "view-only":
			reason = flag(&e.ViewOnly)
		case "record":
			reason = flag(&e.Record)
		case "tls":
			reason = flag(&e.TLS)
		case "vencrypt":
			reason = flag(&e.VeNCrypt)
		case "password-file":
			if val == "" {
				return "option password-file needs a path: password-file=/etc/vncedge/vm1.pass"
			}
			e.PasswordFile = val
		default:
			return unknownOption(name, i)
		}
		if reason != "" {
			return reason
		}
	}
	if e.TLS && e.VeNCrypt {
		return "options tls and vencrypt exclude each other: tls is TLS from the first byte, vencrypt TLS inside RFB"
	}
	return ""
}

// unknownOption names an unknown option only when it looks like one: a
// token pasted in the wrong place must not end up in the log.
func unknownOption(name string, i int) string {
	if name == "#" || strings.HasPrefix(name, "#") {
		return "text after the target (websockify token files have no inline comments)"
	}
	if len(name) <= 32 && strings.IndexFunc(name, func(r rune) bool { return !(r == '-' || 'a' <= r && r <= 'z') }) < 0 {
		return fmt.Sprintf("unknown option %q (known: view-only, record, tls, vencrypt, password-file=PATH)", name)
	}
	return fmt.Sprintf("unknown option number %d after the target (known: view-only, record, tls, vencrypt, password-file=PATH)", i+1)
}

// isPySpace is Python's str.isspace, which str.strip() uses: Unicode
// white space plus the ASCII separators \x1c-\x1f.
func isPySpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}
