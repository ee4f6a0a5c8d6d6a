package rfb

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// FBSHeader starts every FBS 001.000 file, the recording format of rfbproxy and of the TightVNC
// and noVNC players: after it come blocks of [u32 length][data, zero-padded to a multiple of 4]
// [u32 timestamp in milliseconds since the recording began], all big-endian. The data of all
// blocks together is the server-to-client byte stream, from the server's ProtocolVersion on.
const FBSHeader = "FBS 001.000\n"

// FBSHeaderLen is len(FBSHeader).
const FBSHeaderLen = len(FBSHeader)

// DefaultMaxFBSBlock is the largest block FBSDecoder accepts unless told otherwise. Recorders
// write one block per read from the server, far below this.
const DefaultMaxFBSBlock = 16 << 20

// ErrFBS is wrapped by every error of FBSDecoder and ParseRecordingStart.
var ErrFBS = errors.New("rfb: bad FBS recording")

// AppendFBSHeader appends the file header.
func AppendFBSHeader(dst []byte) []byte { return append(dst, FBSHeader...) }

// FBSPadding is the number of zero bytes after n data bytes in a block.
func FBSPadding(n int) int { return -n & 3 }

// FBSBlockLen is the encoded size of a block of n data bytes.
func FBSBlockLen(n int) int { return 4 + n + FBSPadding(n) + 4 }

// AppendFBSBlock appends one block holding data, stamped ms milliseconds after the start.
func AppendFBSBlock(dst, data []byte, ms uint32) []byte {
	dst = AppendFBSBlockHead(dst, len(data))
	dst = append(dst, data...)
	return AppendFBSBlockTail(dst, len(data), ms)
}

// AppendFBSBlockHead appends the length word of a block of n data bytes. With
// AppendFBSBlockTail it lets a writer send the data from its own buffer (a vectored write)
// instead of copying it into the block.
func AppendFBSBlockHead(dst []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}

// AppendFBSBlockTail appends what follows n data bytes in a block: the padding and the timestamp.
func AppendFBSBlockTail(dst []byte, n int, ms uint32) []byte {
	var zero [3]byte
	dst = append(dst, zero[:FBSPadding(n)]...)
	return binary.BigEndian.AppendUint32(dst, ms)
}

// FBSBlock is one decoded block; Data aliases the decoder's input.
type FBSBlock struct {
	Data []byte
	// Time is the block's timestamp in milliseconds since the recording began.
	Time uint32
}

// FBSDecoder reads an FBS file from bytes handed to it, with no I/O of its own: the caller
// keeps a buffer of what it read, calls Next on it, drops the n bytes Next used, and on ErrShort
// reads until the buffer holds the n bytes Next asked for. The zero value expects the file
// header first and accepts blocks up to DefaultMaxFBSBlock.
type FBSDecoder struct {
	// MaxBlock bounds a block's data (0: DefaultMaxFBSBlock), so a corrupt length cannot make
	// the caller buffer gigabytes.
	MaxBlock   int
	headerSeen bool
	last       uint32
	blocks     int64
}

// Next decodes the next block at the start of b (the file header first, when not seen yet) and
// returns it with the bytes used. With too few bytes it returns ErrShort and n = the bytes it
// needs from the start of b. A bad header, a block over MaxBlock or a timestamp that goes back in
// time gives an error wrapping ErrFBS.
func (d *FBSDecoder) Next(b []byte) (blk FBSBlock, n int, err error) {
	off := 0
	if !d.headerSeen {
		if len(b) < FBSHeaderLen {
			if string(b) != FBSHeader[:len(b)] {
				return blk, 0, d.badHeader(b)
			}
			return blk, FBSHeaderLen, ErrShort
		}
		if string(b[:FBSHeaderLen]) != FBSHeader {
			return blk, 0, d.badHeader(b)
		}
		// The header is consumed with the first block, so n always ends at a block boundary.
		off = FBSHeaderLen
	}
	if len(b) < off+4 {
		return blk, off + 4, ErrShort
	}
	l := binary.BigEndian.Uint32(b[off:])
	maxBlock := d.MaxBlock
	if maxBlock <= 0 {
		maxBlock = DefaultMaxFBSBlock
	}
	if uint64(l) > uint64(maxBlock) {
		return blk, 0, fbsError("block " + strconv.FormatInt(d.blocks, 10) + " of " + strconv.FormatUint(uint64(l), 10) +
			" bytes is over the limit of " + strconv.Itoa(maxBlock))
	}
	n = off + FBSBlockLen(int(l))
	if len(b) < n {
		return blk, n, ErrShort
	}
	t := binary.BigEndian.Uint32(b[n-4:])
	if t < d.last {
		return blk, 0, fbsError("block " + strconv.FormatInt(d.blocks, 10) + " is stamped " +
			strconv.FormatUint(uint64(t), 10) + " ms, before the previous block's " + strconv.FormatUint(uint64(d.last), 10))
	}
	d.headerSeen, d.last = true, t
	d.blocks++
	return FBSBlock{Data: b[off+4 : off+4+int(l)], Time: t}, n, nil
}

func (d *FBSDecoder) badHeader(b []byte) error {
	return fbsError("file starts with " + strconv.Quote(string(b[:min(len(b), FBSHeaderLen)])) + ", not " + strconv.Quote(FBSHeader))
}

func fbsError(s string) error { return &fbsErr{s} }

type fbsErr struct{ s string }

func (e *fbsErr) Error() string { return "rfb: bad FBS recording: " + e.s }
func (e *fbsErr) Unwrap() error { return ErrFBS }

// AppendRecordingStart appends the server half of a handshake that lets a player show what
// follows: v's ProtocolVersion, security type None (the 3.3 form for V33; the 3.7/3.8 list, and
// for 3.8 SecurityResult OK) and the ServerInit si. A recorder puts it in the first block, with
// si carrying the pixel format the client set, since that is the format of the recorded pixels.
func AppendRecordingStart(dst []byte, v Version, si ServerInit) []byte {
	dst = AppendVersion(dst, v)
	switch {
	case v < V37:
		dst = AppendSecurityType33(dst, SecNone)
	case v < V38:
		dst = AppendSecurityTypes(dst, SecNone)
	default:
		dst = AppendSecurityResultOK(AppendSecurityTypes(dst, SecNone))
	}
	return si.Append(dst)
}

// ParseRecordingStart parses the server half of a handshake at the start of a recorded stream b
// and returns the version, the ServerInit and the bytes it used; the rest of the stream is server
// messages. It reads what AppendRecordingStart writes and what rfbproxy records from real
// servers: None or VNC Authentication (challenge and result) in 3.3, 3.7 and 3.8. A 3.7/3.8
// list with several types is refused: the client's choice is not in a recording. With too few
// bytes it returns ErrShort and the bytes needed; errors wrap ErrFBS (or ErrNotRFB).
func ParseRecordingStart(b []byte) (v Version, si ServerInit, n int, err error) {
	server, n, err := ParseVersion(b)
	if err != nil {
		return v, si, n, err
	}
	v, err = NegotiateServer(server)
	if err != nil {
		return v, si, 0, err
	}
	var auth SecurityType
	if v == V33 {
		t, k, err := ParseSecurityType33(b[n:])
		if err != nil {
			return v, si, n + k, err
		}
		n += k
		if t != uint32(SecNone) && t != uint32(SecVNCAuth) {
			return v, si, 0, fbsError("recorded RFB 3.3 security type " + strconv.FormatUint(uint64(t), 10))
		}
		auth = SecurityType(t)
	} else {
		types, k, err := ParseSecurityTypes(b[n:])
		if err != nil {
			return v, si, n + k, err
		}
		n += k
		if len(types) != 1 || (SecurityType(types[0]) != SecNone && SecurityType(types[0]) != SecVNCAuth) {
			return v, si, 0, fbsError("recorded security types " + strconv.Quote(string(types)) + ": want exactly None or VNC Authentication")
		}
		auth = SecurityType(types[0])
	}
	if auth == SecVNCAuth {
		if len(b) < n+ChallengeLen {
			return v, si, n + ChallengeLen, ErrShort
		}
		n += ChallengeLen
	}
	if auth == SecVNCAuth || v >= V38 {
		r, _, k, err := ParseSecurityResult(b[n:], v)
		if err != nil {
			return v, si, n + k, err
		}
		if r != ResultOK {
			return v, si, 0, fbsError("recorded SecurityResult " + strconv.FormatUint(uint64(r), 10))
		}
		n += k
	}
	si, k, err := ParseServerInit(b[n:])
	if err != nil {
		if err == ErrShort {
			return v, si, n + k, err
		}
		return v, si, 0, err
	}
	return v, si, n + k, nil
}
