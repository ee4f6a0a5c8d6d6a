package engine

import "bytes"

// maxHeaderBytes bounds an HTTP request head; beyond it the client gets 431.
const maxHeaderBytes = 8 << 10

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
// or -1 when the head is not complete yet.
func headEnd(b []byte) int {
	i := bytes.Index(b, crlfcrlf)
	if i < 0 {
		return -1
	}
	return i + len(crlfcrlf)
}

// scanHead splits a complete request head (as delimited by headEnd) into the
// request line and the few headers routing between upgrade and static needs.
// Full validation of upgrades is left to gobwas/ws; this only has to be
// right about which of the two paths a request takes.
func scanHead(b []byte) (h requestHead, ok bool) {
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
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		if len(line) == 0 {
			break
		}
		k, v, found := bytes.Cut(line, []byte(":"))
		if !found {
			return h, false
		}
		v = bytes.TrimSpace(v)
		switch {
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
