package engine

import "bytes"

var crlfcrlf = []byte("\r\n\r\n")

// requestHead is what the engine needs to know about a request before
// deciding whether it is a WebSocket upgrade or a plain static-file request.
// Its slices alias the read buffer: valid only until that buffer is discarded.
type requestHead struct {
	method      []byte
	target      []byte
	proto       []byte
	upgrade     bool   // an Upgrade header is present (any value)
	closeConn   bool   // Connection: close, or HTTP/1.0 without keep-alive
	ifNoneMatch []byte // If-None-Match value
}

// headEnd returns the length of the request head including the blank line,
// or -1 when the head is not complete yet, or -2 when its line ends are
// not CRLF: a bare LF or a lone CR. Such a head would never complete (a
// client that ends lines with LF alone waits for our 408), and RFC 9112
// lets a server refuse them, which is safer than guessing what a proxy in
// front of us made of them.
func headEnd(b []byte) int {
	end := bytes.Index(b, crlfcrlf)
	scan := b
	if end >= 0 {
		scan = b[:end+len(crlfcrlf)]
	}
	for off := 0; off < len(scan); {
		i := bytes.IndexAny(scan[off:], "\r\n")
		if i < 0 {
			break
		}
		i += off
		switch {
		case scan[i] == '\n':
			return -2 // an LF that no CR precedes
		case i+1 < len(scan) && scan[i+1] != '\n':
			return -2 // a CR that no LF follows
		}
		off = i + 2
	}
	if end < 0 {
		return -1
	}
	return end + len(crlfcrlf)
}

// scanHead splits a complete request head (as delimited by headEnd) into the
// request line and the few headers routing between upgrade and static needs.
// Full validation of upgrades is left to gobwas/ws; this has to be right
// about which of the two paths a request takes, and it refuses what
// gobwas/ws would quietly accept: a second Host or Origin (the last would
// win, so Host: own + Host: evil + Origin: evil would pass the origin
// check; RFC 9112 makes a second Host a 400), a NUL byte, a header line
// folded onto the previous one (obs-fold), a header name with spaces.
func scanHead(b []byte) (h requestHead, ok bool) {
	if bytes.IndexByte(b, 0) >= 0 {
		return h, false
	}
	line, rest, found := bytes.Cut(b, []byte("\r\n"))
	if !found {
		return h, false
	}
	var sp bool
	h.method, line, sp = bytes.Cut(line, []byte(" "))
	if !sp || len(h.method) == 0 {
		return h, false
	}
	h.target, h.proto, sp = bytes.Cut(line, []byte(" "))
	if !sp || len(h.target) == 0 || !bytes.HasPrefix(h.proto, []byte("HTTP/")) {
		return h, false
	}
	keepAlive := false
	hosts, origins := 0, 0
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break
		}
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			return h, false // also an obs-fold line, which starts with a space
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Host")):
			if hosts++; hosts > 1 {
				return h, false
			}
		case bytes.EqualFold(k, []byte("Origin")):
			if origins++; origins > 1 {
				return h, false
			}
		case bytes.EqualFold(k, []byte("Upgrade")):
			h.upgrade = true
		case bytes.EqualFold(k, []byte("Connection")):
			if hasToken(v, "close") {
				h.closeConn = true
			}
			if hasToken(v, "keep-alive") {
				keepAlive = true
			}
		case bytes.EqualFold(k, []byte("If-None-Match")):
			h.ifNoneMatch = v
		}
	}
	if bytes.Equal(h.proto, []byte("HTTP/1.0")) && !keepAlive {
		h.closeConn = true
	}
	return h, true
}

// hasToken reports whether the comma-separated header value v holds token,
// compared case-insensitively.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(token)) {
			return true
		}
	}
	return false
}
