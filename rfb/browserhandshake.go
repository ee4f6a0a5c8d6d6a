package rfb

import "strconv"

type brState uint8

const (
	brVersion brState = iota
	brChoice
	brDone
	brFailed
)

// BrowserHandshake is the proxy's side, as RFB server, of the handshake with the browser's VNC
// client (noVNC). It announces 3.8, reads the client's version, offers exactly security type
// None, reads the choice and, for 3.8, confirms it with SecurityResult OK. Then it is Done and
// the client's ClientInit follows, which the caller forwards to the VM (see ForceShared).
//
// In failure mode (NewBrowserFailure) it instead answers the client's version with an empty
// security type list and a reason (security type 0 and the reason for a 3.3 client), which
// noVNC shows to its user; it is then Done and the caller closes once the output is sent.
//
// Like VMHandshake it is a pure state machine fed with the client's bytes in pieces of any size.
// It reads at most 13 bytes, so a client sending garbage costs nothing: the first byte that
// cannot be a ProtocolVersion fails it with ErrNotRFB.
type BrowserHandshake struct {
	st     brState
	fail   bool
	ver    Version
	g      gatherBuf
	out    outBuf
	reason string // the failure's reason, sent after out
	sendR  bool   // reason is pending output
	err    error
}

// NewBrowserHandshake starts a handshake that lets the client in with security type None. Its
// first output, the server's ProtocolVersion, is pending at once.
func NewBrowserHandshake() BrowserHandshake {
	var h BrowserHandshake
	h.out.addVersion(V38)
	return h
}

// NewBrowserFailure starts a handshake that refuses the client with reason (cut to
// MaxReasonLen bytes).
func NewBrowserFailure(reason string) BrowserHandshake {
	h := NewBrowserHandshake()
	h.fail = true
	h.reason = reason[:min(len(reason), MaxReasonLen)]
	return h
}

// Feed consumes the client's bytes from in and returns how many it used; it stops at Done
// (the bytes after it, ClientInit and on, are the caller's) and at an error, which is sticky.
func (h *BrowserHandshake) Feed(in []byte) (n int, err error) {
	if h.err != nil {
		return 0, h.err
	}
	for n < len(in) && h.st != brDone {
		k, err := h.step(in[n:])
		n += k
		if err != nil {
			h.err, h.st = err, brFailed
			return n, err
		}
	}
	return n, nil
}

func (h *BrowserHandshake) step(in []byte) (int, error) {
	switch h.st {
	case brVersion:
		k, full, err := h.g.fillVersion(in, "client")
		if err != nil || !full {
			return k, err
		}
		client, _, _ := ParseVersion(h.g.b[:VersionLen])
		h.g.reset()
		v, err := NegotiateClient(client)
		if err != nil {
			return k, err
		}
		h.ver = v
		switch {
		case h.fail:
			if v == V33 {
				h.out.add32(0)
			} else {
				h.out.add(0)
			}
			h.out.add32(uint32(len(h.reason)))
			h.sendR = true
			h.st = brDone
		case v == V33:
			h.out.add32(uint32(SecNone)) // the server decides; no SecurityResult for None
			h.st = brDone
		default:
			h.out.add(1, byte(SecNone))
			h.st = brChoice
		}
		return k, nil

	case brChoice:
		if SecurityType(in[0]) != SecNone {
			h.out.add32(ResultFailed)
			err := &HandshakeError{Err: ErrProtocol, Peer: "client",
				Detail: "client chose security type " + strconv.Itoa(int(in[0])) + ", only None (1) was offered"}
			if h.ver >= V38 {
				h.reason, h.sendR = "security type not offered", true
				h.out.add32(uint32(len(h.reason)))
			}
			return 1, err
		}
		if h.ver >= V38 {
			h.out.add32(ResultOK) // 3.7 sends no SecurityResult for None
		}
		h.st = brDone
		return 1, nil
	}
	return 0, &HandshakeError{Err: ErrProtocol, Detail: "handshake fed in state " + strconv.Itoa(int(h.st))}
}

// AppendOutput appends the bytes to send to the client that were not taken yet, and marks them
// taken. After an error it may still give a refusal to send before closing.
func (h *BrowserHandshake) AppendOutput(dst []byte) []byte {
	dst = h.out.appendTo(dst)
	if h.sendR {
		dst = append(dst, h.reason...)
		h.sendR = false
	}
	return dst
}

// Pending is the number of output bytes not taken yet.
func (h *BrowserHandshake) Pending() int {
	n := h.out.pending()
	if h.sendR {
		n += len(h.reason)
	}
	return n
}

// Done reports that the handshake is over: in normal mode the client is in and its ClientInit
// comes next; in failure mode the refusal is queued and the caller closes after sending it.
func (h *BrowserHandshake) Done() bool { return h.st == brDone }

// Refusing reports whether the handshake is in failure mode.
func (h *BrowserHandshake) Refusing() bool { return h.fail }

// Err is the handshake's error, if it failed.
func (h *BrowserHandshake) Err() error { return h.err }

// Version is the protocol version agreed with the client, once its version was read.
func (h *BrowserHandshake) Version() Version { return h.ver }
