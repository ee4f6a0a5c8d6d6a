package rfb

import (
	"strconv"
)

// VMConfig is what the proxy knows when it connects to a VM as an RFB client.
type VMConfig struct {
	// Password is the VM's VNC password; empty means the proxy can only use security type None.
	// Only its first 8 bytes matter (VNC Authentication); it is not kept: the handshake keeps
	// the DES key it derives, and wipes that once used.
	Password []byte
	// VeNCryptTLS lets the handshake choose VeNCrypt's certificate-based TLS sub-types (X509Vnc
	// with a password, X509None), preferring them to plaintext ones. When the server accepts
	// one, NeedTLS reports true: the caller runs a TLS client handshake on the connection and
	// calls TLSStarted, and from then on feeds the decrypted bytes. The anonymous TLS* sub-types
	// are never chosen: Go's crypto/tls lacks their cipher suites.
	VeNCryptTLS bool
}

type vmState uint8

const (
	vmVersion vmState = iota
	vmSecCount
	vmSecTypes
	vmSec33
	vmChallenge
	vmResult
	vmReasonLen
	vmReason
	vmVeVersion
	vmVeAck
	vmVeCount
	vmVeTypes
	vmVeTLSAck
	vmNeedTLS
	vmDone
	vmFailed
)

// Bits of VMHandshake.subSeen for the VeNCrypt sub-types the handshake can use.
const (
	seenNone = 1 << iota
	seenVNCAuth
	seenX509None
	seenX509Vnc
	seenAnonTLS // TLSNone, TLSVnc, TLSPlain: anonymous DH, which crypto/tls lacks
)

// maxKeptSubtypes is how many offered VeNCrypt sub-types an error lists.
const maxKeptSubtypes = 16

// VMHandshake is the proxy's side, as RFB client, of the handshake with a VM: version, security
// (None, VNC Authentication, or VeNCrypt carrying either), up to and including a successful
// SecurityResult. It is a pure state machine: the caller feeds the VM's bytes as they arrive, in
// pieces of any size, and writes what AppendOutput gives to the VM. After Done the caller
// forwards the browser's ClientInit, and from there the VM's ServerInit and everything else pass
// through unchanged.
//
// It speaks 3.8 where the server allows it, else 3.7 or 3.3 (see NegotiateServer). It chooses
// security types in this order: None (the VM lets anybody in: a password would prove nothing),
// VNC Authentication when it has a password, then VeNCrypt, and inside VeNCrypt its None and
// VncAuth sub-types. With VMConfig.VeNCryptTLS, VeNCrypt comes first whenever it is offered and
// X509Vnc (with a password) and X509None are preferred inside it: the operator asked for TLS. Failures are *HandshakeError values wrapping ErrNotRFB, ErrUnsupportedVersion,
// ErrRefused, ErrNoUsableType, ErrAuthFailed, ErrVeNCrypt or ErrProtocol; they are sticky.
type VMHandshake struct {
	key     [VNCAuthKeyLen]byte
	hasPass bool
	tls     bool
	st      vmState
	ver     Version
	chosen  SecurityType
	subtype uint32
	// reasonFor is the sentinel a reason being read will be reported with.
	reasonFor error
	count     uint8 // security types or sub-types still to read
	offered   typeSet
	subSeen   uint8
	nsub      uint8
	subtypes  [maxKeptSubtypes]uint32
	g         gatherBuf
	reason    reasonBuf
	out       outBuf
	err       error
}

// NewVMHandshake starts a handshake with a VM.
func NewVMHandshake(cfg VMConfig) VMHandshake {
	h := VMHandshake{hasPass: len(cfg.Password) > 0, tls: cfg.VeNCryptTLS}
	if h.hasPass {
		h.key = VNCAuthKey(cfg.Password)
	}
	return h
}

// Feed consumes the VM's bytes from in and returns how many it used. It stops at the end of the
// handshake (Done), at NeedTLS, and at an error; bytes after that point are not its own (after
// Done there should be none: the server waits for ClientInit). Feeding after Done returns 0, nil.
func (h *VMHandshake) Feed(in []byte) (n int, err error) {
	if h.err != nil {
		return 0, h.err
	}
	for n < len(in) && h.st != vmDone && h.st != vmNeedTLS {
		k, err := h.step(in[n:])
		n += k
		if err != nil {
			h.err, h.st = err, vmFailed
			h.key = [VNCAuthKeyLen]byte{}
			return n, err
		}
	}
	if h.st == vmDone {
		h.key = [VNCAuthKeyLen]byte{}
	}
	return n, nil
}

// step handles the next field of the current state, consuming at least one byte of in.
func (h *VMHandshake) step(in []byte) (int, error) {
	switch h.st {
	case vmVersion:
		k, full, err := h.g.fillVersion(in, "server")
		if err != nil || !full {
			return k, err
		}
		server, _, _ := ParseVersion(h.g.b[:VersionLen])
		v, err := NegotiateServer(server)
		if err != nil {
			return k, err
		}
		h.ver = v
		h.out.addVersion(v)
		h.g.reset()
		if v == V33 {
			h.st = vmSec33
		} else {
			h.st = vmSecCount
		}
		return k, nil

	case vmSecCount:
		h.count = in[0]
		if h.count == 0 {
			h.st, h.reasonFor = vmReasonLen, ErrRefused
		} else {
			h.st = vmSecTypes
		}
		return 1, nil

	case vmSecTypes:
		k := min(int(h.count), len(in))
		for _, t := range in[:k] {
			h.offered.add(SecurityType(t))
		}
		h.count -= uint8(k)
		if h.count > 0 {
			return k, nil
		}
		return k, h.chooseType()

	case vmSec33:
		k, full := h.g.fill(in, 4)
		if !full {
			return k, nil
		}
		t := h.g.u32()
		h.g.reset()
		switch {
		case t == 0:
			h.st, h.reasonFor = vmReasonLen, ErrRefused
		case t == uint32(SecNone):
			h.chosen, h.st = SecNone, vmDone // 3.3 sends no SecurityResult for None
		case t == uint32(SecVNCAuth) && h.hasPass:
			h.chosen, h.st = SecVNCAuth, vmChallenge
		default:
			e := &HandshakeError{Err: ErrNoUsableType, Peer: "server"}
			if t <= 255 {
				e.Offered = []SecurityType{SecurityType(t)}
			} else {
				e.Detail = "RFB 3.3 security type " + strconv.FormatUint(uint64(t), 10)
			}
			if t == uint32(SecVNCAuth) {
				e.Detail = "the VM asks for a VNC password and none is configured"
			}
			return k, e
		}
		return k, nil

	case vmChallenge:
		k, full := h.g.fill(in, ChallengeLen)
		if !full {
			return k, nil
		}
		resp := VNCAuthEncrypt(h.key, h.g.b)
		h.key = [VNCAuthKeyLen]byte{}
		h.out.add(resp[:]...)
		h.g.reset()
		h.st = vmResult
		return k, nil

	case vmResult:
		k, full := h.g.fill(in, 4)
		if !full {
			return k, nil
		}
		r := h.g.u32()
		h.g.reset()
		switch {
		case r == ResultOK:
			h.st = vmDone
		case h.ver < V38:
			return k, &HandshakeError{Err: ErrAuthFailed, Peer: "server", Detail: "SecurityResult " + strconv.FormatUint(uint64(r), 10)}
		default:
			h.st, h.reasonFor = vmReasonLen, ErrAuthFailed
		}
		return k, nil

	case vmReasonLen:
		k, full := h.g.fill(in, 4)
		if !full {
			return k, nil
		}
		l := h.g.u32()
		h.g.reset()
		h.reason.start(l)
		if l == 0 {
			return k, &HandshakeError{Err: h.reasonFor, Peer: "server"}
		}
		h.st = vmReason
		return k, nil

	case vmReason:
		// Only the kept part is read: the connection ends here anyway.
		k, full := h.reason.fill(in)
		if !full {
			return k, nil
		}
		return k, &HandshakeError{Err: h.reasonFor, Peer: "server", Reason: h.reason.String()}

	case vmVeVersion:
		k, full := h.g.fill(in, 2)
		if !full {
			return k, nil
		}
		major, minor := h.g.b[0], h.g.b[1]
		h.g.reset()
		if major != VeNCryptMajor || minor < VeNCryptMinor {
			return k, &HandshakeError{Err: ErrVeNCrypt, Peer: "server",
				Detail: "server speaks VeNCrypt " + strconv.Itoa(int(major)) + "." + strconv.Itoa(int(minor)) + ", not 0.2"}
		}
		h.out.add(VeNCryptMajor, VeNCryptMinor)
		h.st = vmVeAck
		return k, nil

	case vmVeAck:
		if in[0] != 0 {
			return 1, &HandshakeError{Err: ErrVeNCrypt, Peer: "server", Detail: "server refused VeNCrypt 0.2"}
		}
		h.st = vmVeCount
		return 1, nil

	case vmVeCount:
		h.count = in[0]
		h.st = vmVeTypes
		if h.count == 0 {
			return 1, h.chooseSubtype()
		}
		return 1, nil

	case vmVeTypes:
		k, full := h.g.fill(in, 4)
		if !full {
			return k, nil
		}
		t := h.g.u32()
		h.g.reset()
		switch t {
		case VeNCryptNone:
			h.subSeen |= seenNone
		case VeNCryptVNCAuth:
			h.subSeen |= seenVNCAuth
		case VeNCryptX509None:
			h.subSeen |= seenX509None
		case VeNCryptX509Vnc:
			h.subSeen |= seenX509Vnc
		case VeNCryptTLSNone, VeNCryptTLSVnc, VeNCryptTLSPlain:
			h.subSeen |= seenAnonTLS
		}
		if h.nsub < maxKeptSubtypes {
			h.subtypes[h.nsub] = t
			h.nsub++
		}
		h.count--
		if h.count > 0 {
			return k, nil
		}
		return k, h.chooseSubtype()

	case vmVeTLSAck:
		if in[0] != 1 {
			return 1, &HandshakeError{Err: ErrVeNCrypt, Peer: "server",
				Detail: "server refused sub-type " + VeNCryptSubtypeName(h.subtype)}
		}
		h.st = vmNeedTLS
		return 1, nil
	}
	return 0, &HandshakeError{Err: ErrProtocol, Detail: "handshake fed in state " + strconv.Itoa(int(h.st))}
}

// chooseType picks from the 3.7/3.8 list and sends the choice.
func (h *VMHandshake) chooseType() error {
	t := h.offered.choose(h.hasPass, true)
	if h.tls && h.offered.has(SecVeNCrypt) {
		t = SecVeNCrypt
	}
	h.chosen = t
	switch t {
	case SecNone:
		h.out.add(byte(SecNone))
		if h.ver < V38 {
			h.st = vmDone // 3.7 sends no SecurityResult for None either
		} else {
			h.st = vmResult
		}
	case SecVNCAuth:
		h.out.add(byte(SecVNCAuth))
		h.st = vmChallenge
	case SecVeNCrypt:
		h.out.add(byte(SecVeNCrypt))
		h.st = vmVeVersion
	default:
		e := &HandshakeError{Err: ErrNoUsableType, Peer: "server", Offered: h.offered.list()}
		if h.offered.has(SecVNCAuth) && !h.hasPass {
			e.Detail = "the VM asks for a VNC password and none is configured"
		}
		return e
	}
	return nil
}

// chooseSubtype picks from the VeNCrypt sub-type list and sends the choice.
func (h *VMHandshake) chooseSubtype() error {
	var t uint32
	switch s := h.subSeen; {
	case h.tls && h.hasPass && s&seenX509Vnc != 0:
		t = VeNCryptX509Vnc
	case h.tls && s&seenX509None != 0:
		t = VeNCryptX509None
	case s&seenNone != 0:
		t = VeNCryptNone
	case h.hasPass && s&seenVNCAuth != 0:
		t = VeNCryptVNCAuth
	default:
		e := &HandshakeError{Err: ErrNoUsableType, Peer: "server", Offered: h.offered.list(),
			OfferedSubtypes: append([]uint32(nil), h.subtypes[:h.nsub]...)}
		switch {
		case !h.tls && (s&(seenX509None|seenX509Vnc) != 0):
			e.Detail = "the VM wants VeNCrypt with TLS, which is not enabled for it"
		case !h.hasPass && s&(seenVNCAuth|seenX509Vnc) != 0:
			e.Detail = "the VM asks for a VNC password and none is configured"
		case s&seenAnonTLS != 0:
			e.Detail = "the VM offers anonymous TLS (TLSNone, TLSVnc, TLSPlain), which Go's crypto/tls cannot speak"
		}
		return e
	}
	h.subtype = t
	h.out.add32(t)
	switch t {
	case VeNCryptX509Vnc, VeNCryptX509None:
		h.st = vmVeTLSAck
	case VeNCryptVNCAuth:
		h.st = vmChallenge
	case VeNCryptNone:
		// Like TigerVNC: the result is skipped before 3.8 when what was used is None.
		if h.ver < V38 {
			h.st = vmDone
		} else {
			h.st = vmResult
		}
	}
	return nil
}

// Need is how many more bytes the current field of the handshake takes: a caller reading from
// an io.Reader that reads at most this many never reads past the handshake. It is 0 once the
// handshake is done, failed or waiting for TLS.
func (h *VMHandshake) Need() int {
	switch h.st {
	case vmVersion:
		return VersionLen - int(h.g.have)
	case vmSecCount, vmVeAck, vmVeCount, vmVeTLSAck:
		return 1
	case vmSecTypes:
		return int(h.count)
	case vmSec33, vmResult, vmReasonLen, vmVeTypes:
		return 4 - int(h.g.have)
	case vmChallenge:
		return ChallengeLen - int(h.g.have)
	case vmReason:
		return int(h.reason.want - h.reason.have)
	case vmVeVersion:
		return 2 - int(h.g.have)
	}
	return 0
}

// NeedTLS reports that the server accepted a VeNCrypt TLS sub-type: the next bytes on the
// connection are a TLS handshake, which the caller runs as client before calling TLSStarted.
func (h *VMHandshake) NeedTLS() bool { return h.st == vmNeedTLS }

// TLSStarted tells the handshake that TLS is up; it continues with the sub-type's own exchange
// (VNC Authentication for X509Vnc, none for X509None) and the SecurityResult, fed with
// decrypted bytes.
func (h *VMHandshake) TLSStarted() {
	if h.st != vmNeedTLS {
		return
	}
	if h.subtype == VeNCryptX509Vnc {
		h.st = vmChallenge
	} else {
		h.st = vmResult
	}
}

// AppendOutput appends the bytes to send to the VM that were not taken yet, and marks them
// taken. The caller sends them after every Feed (also after one that failed: nothing is lost by
// sending what was produced before the failure).
func (h *VMHandshake) AppendOutput(dst []byte) []byte { return h.out.appendTo(dst) }

// Pending is the number of output bytes not taken yet.
func (h *VMHandshake) Pending() int { return h.out.pending() }

// Done reports that the handshake succeeded: the caller may forward ClientInit now.
func (h *VMHandshake) Done() bool { return h.st == vmDone }

// Err is the handshake's error, if it failed.
func (h *VMHandshake) Err() error { return h.err }

// Version is the protocol version spoken with the VM, once the server's version was read.
func (h *VMHandshake) Version() Version { return h.ver }

// Security gives the security type chosen and, for VeNCrypt, the sub-type.
func (h *VMHandshake) Security() (SecurityType, uint32) { return h.chosen, h.subtype }
