package rfb

import "encoding/binary"

// gatherBuf collects a field of a handshake message that may arrive in pieces. want is at most
// len(b).
type gatherBuf struct {
	b    [ChallengeLen]byte
	have uint8
}

// fill copies from in until the buffer holds want bytes. It returns how many bytes of in it used
// and whether the field is complete; the field is then g.b[:want] and the buffer is ready for
// the next one after reset.
func (g *gatherBuf) fill(in []byte, want int) (n int, full bool) {
	n = copy(g.b[g.have:want], in)
	g.have += uint8(n)
	return n, int(g.have) == want
}

// fillVersion gathers a ProtocolVersion message and fails at its first byte that cannot be one.
// The error shows the bytes gathered and those of in after them, up to VersionLen, so that
// guessProtocol has more than one byte to go on.
func (g *gatherBuf) fillVersion(in []byte, peer string) (n int, full bool, err error) {
	before := g.have
	n, full = g.fill(in, VersionLen)
	if !CheckVersionPrefix(g.b[:g.have]) {
		got := append(append([]byte(nil), g.b[:before]...), in[:min(len(in), VersionLen-int(before))]...)
		return n, false, notRFB(peer, got)
	}
	return n, full, nil
}

func (g *gatherBuf) reset() { g.have = 0 }

func (g *gatherBuf) u32() uint32 { return binary.BigEndian.Uint32(g.b[:4]) }

// reasonBuf collects the first MaxKeptReason bytes of a reason string.
type reasonBuf struct {
	b    [MaxKeptReason]byte
	have uint8
	want uint8 // bytes to keep: min(length, MaxKeptReason)
	cut  bool  // the reason is longer than what is kept
}

func (r *reasonBuf) start(length uint32) {
	r.have, r.want, r.cut = 0, uint8(min(length, MaxKeptReason)), length > MaxKeptReason
}

func (r *reasonBuf) fill(in []byte) (n int, full bool) {
	n = copy(r.b[r.have:r.want], in)
	r.have += uint8(n)
	return n, r.have == r.want
}

func (r *reasonBuf) String() string {
	s := string(r.b[:r.have])
	if r.cut {
		s += "..."
	}
	return s
}

// outBuf is the bytes a handshake machine has produced and its caller has not taken yet. A
// machine's whole output fits, so it is never full: nothing waits on the caller to drain it.
type outBuf struct {
	b     [48]byte
	n     uint8
	taken uint8
}

func (o *outBuf) add(p ...byte) { o.n += uint8(copy(o.b[o.n:], p)) }

func (o *outBuf) add32(v uint32) {
	binary.BigEndian.PutUint32(o.b[o.n:], v)
	o.n += 4
}

// addVersion appends v's ProtocolVersion message in place (the slice has the room).
func (o *outBuf) addVersion(v Version) { o.n += uint8(len(AppendVersion(o.b[o.n:o.n], v))) }

func (o *outBuf) pending() int { return int(o.n - o.taken) }

func (o *outBuf) appendTo(dst []byte) []byte {
	dst = append(dst, o.b[o.taken:o.n]...)
	o.taken = o.n
	return dst
}
