package engine

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/pires/go-proxyproto"
)

// PROXY protocol (v1 text, v2 binary) lets a TLS terminator or TCP load
// balancer in front of vncedge tell it the real client address. Parsing is
// go-proxyproto's; this file only decides, on gnet's buffered bytes, when a
// header is complete, since the engine never blocks for more input.

// errProxyIncomplete means the bytes so far may be the start of a header.
var errProxyIncomplete = errors.New("proxy protocol header incomplete")

var (
	proxySigV1 = []byte("PROXY ")
	proxySigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

const (
	proxyV1Max = 107        // longest v1 line, CRLF included (spec 2.1)
	proxyV2Max = 16 + 1<<12 // fixed part plus addresses and TLVs we accept
)

// parseProxyHeader parses the PROXY header at the start of b and returns
// the client address it names ("" for LOCAL/UNKNOWN, which carry none) and
// the header's length. errProxyIncomplete asks for more bytes.
func parseProxyHeader(b []byte) (client string, n int, err error) {
	switch {
	case len(b) < len(proxySigV1) && bytes.HasPrefix(proxySigV1, b),
		len(b) < len(proxySigV2) && bytes.HasPrefix(proxySigV2, b):
		return "", 0, errProxyIncomplete
	case bytes.HasPrefix(b, proxySigV1):
		if bytes.Index(b[:min(len(b), proxyV1Max)], []byte("\r\n")) < 0 {
			if len(b) < proxyV1Max {
				return "", 0, errProxyIncomplete
			}
			return "", 0, errors.New("PROXY v1 header longer than 107 bytes")
		}
	case bytes.HasPrefix(b, proxySigV2):
		if len(b) < 16 {
			return "", 0, errProxyIncomplete
		}
		need := 16 + int(binary.BigEndian.Uint16(b[14:16]))
		if need > proxyV2Max {
			return "", 0, fmt.Errorf("PROXY v2 header of %d bytes is too long", need)
		}
		if len(b) < need {
			return "", 0, errProxyIncomplete
		}
	default:
		return "", 0, errors.New("no PROXY protocol header")
	}
	r := bytes.NewReader(b)
	br := bufio.NewReaderSize(r, proxyV2Max)
	h, err := proxyproto.Read(br)
	if err != nil {
		return "", 0, fmt.Errorf("PROXY header: %w", err)
	}
	n = len(b) - r.Len() - br.Buffered()
	if a, ok := h.SourceAddr.(*net.TCPAddr); ok && h.Command.IsProxy() {
		return a.String(), n, nil
	}
	return "", n, nil
}
