package rfb

import (
	"bytes"
	"math/rand/v2"
)

// noVNCEncodings is the SetEncodings list noVNC 1.7 sends at depth 24 (core/rfb.js
// _sendEncodings), ExtendedMouseButtons included.
var noVNCEncodings = []int32{1, 7, -260, 16, 6, 5, 2, 0, -26, -250, -223, -224, -258, -261, -308, -309, -312, -313, -307,
	EncodingExtendedClipboard, EncodingExtendedMouseButtons, 0x574d5664, -239}

// testMsg is one message of a test stream and the Kind the Scanner must give it.
type testMsg struct {
	kind Kind
	b    []byte
}

// noVNCSession is a typical noVNC input stream after ClientInit: the setup messages, then
// mouse movement, clicks, typing (plain and QEMU key events), a scroll with the extended
// pointer form, the clipboard (plain and extended), a resize, fences, continuous updates and xvp.
func noVNCSession() []testMsg {
	var m []testMsg
	add := func(k Kind, b []byte) { m = append(m, testMsg{k, b}) }
	add(KindSetPixelFormat, AppendSetPixelFormat(nil, NoVNC32()))
	add(KindSetEncodings, AppendSetEncodings(nil, noVNCEncodings...))
	add(KindFramebufferUpdateRequest, AppendFramebufferUpdateRequest(nil, false, 0, 0, 1280, 800))
	add(KindFence, AppendFence(nil, 1<<31|3, []byte("noVNC")))
	add(KindEnableContinuousUpdates, AppendEnableContinuousUpdates(nil, true, 0, 0, 1280, 800))
	extCaps := []byte{0x1f, 0, 0, 1, 0, 0, 0x10, 0} // caps: actions, text format, max size
	add(KindClientCutText, AppendExtendedCutText(nil, extCaps))
	for i := range 40 {
		add(KindPointerEvent, AppendPointerEvent(nil, 0, uint16(100+i), uint16(200+i)))
		if i%8 == 0 {
			add(KindFramebufferUpdateRequest, AppendFramebufferUpdateRequest(nil, true, 0, 0, 1280, 800))
		}
	}
	add(KindPointerEvent, AppendPointerEvent(nil, 1, 140, 240))
	add(KindPointerEvent, AppendPointerEvent(nil, 0, 140, 240))
	add(KindPointerEvent, AppendExtendedPointerEvent(nil, 1<<7, 140, 240)) // button 8 (back)
	add(KindPointerEvent, AppendExtendedPointerEvent(nil, 0, 140, 240))
	for _, c := range []byte("hello") {
		add(KindQEMUKeyEvent, AppendQEMUKeyEvent(nil, true, uint32(c), 0x1e))
		add(KindQEMUKeyEvent, AppendQEMUKeyEvent(nil, false, uint32(c), 0x1e))
	}
	add(KindKeyEvent, AppendKeyEvent(nil, true, 0xff0d))
	add(KindKeyEvent, AppendKeyEvent(nil, false, 0xff0d))
	add(KindClientCutText, AppendClientCutText(nil, []byte("copied text")))
	add(KindClientCutText, AppendExtendedCutText(nil, []byte{0x10, 0, 0, 1})) // notify
	add(KindSetDesktopSize, AppendSetDesktopSize(nil, 1024, 768, Screen{ID: 1, W: 1024, H: 768}))
	add(KindXvp, AppendXvp(nil, 1, 2))
	add(KindQEMUAudio, AppendQEMUAudioFormat(nil, 3, 2, 44100))
	add(KindQEMUAudio, AppendQEMUAudio(nil, QEMUAudioEnable))
	add(KindGII, AppendGII(nil, true, GIIVersion, []byte{0, 1}))
	add(KindGIIEvents, AppendGII(nil, false, GIIEvents, make([]byte, 12)))
	add(KindQEMUAudio, AppendQEMUAudio(nil, QEMUAudioDisable))
	add(KindFramebufferUpdateRequest, AppendFramebufferUpdateRequest(nil, true, 0, 0, 1024, 768))
	return m
}

func joinMsgs(m []testMsg) []byte {
	var b []byte
	for _, x := range m {
		b = append(b, x.b...)
	}
	return b
}

// keptStream is what a filter dropping drop must forward from m.
func keptStream(m []testMsg, drop KindSet) []byte {
	var b []byte
	for _, x := range m {
		if !drop.Has(x.kind) {
			b = append(b, x.b...)
		}
	}
	return b
}

// chunks cuts b into pieces of random sizes from 1 to max.
func chunks(r *rand.Rand, b []byte, max int) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(len(b), 1+r.IntN(max))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// seen is a message as observed, comparable.
type seen struct {
	kind    Kind
	len     int64
	off     int64
	dropped bool
}

// scanAll runs a fresh Scanner over the pieces and returns what it observed.
func scanAll(pieces [][]byte) ([]seen, error) {
	var s Scanner
	var got []seen
	for _, p := range pieces {
		if err := s.Scan(p, func(m Message) { got = append(got, seen{m.Kind, m.Len, m.Offset, m.Dropped}) }); err != nil {
			return got, err
		}
	}
	return got, nil
}

// filterAll runs a fresh Scanner's Filter over copies of the pieces and returns the forwarded
// stream (carry and kept of every piece, in order) and what it observed.
func filterAll(pieces [][]byte, drop KindSet) ([]byte, []seen, error) {
	var s Scanner
	var out bytes.Buffer
	var got []seen
	for _, p := range pieces {
		p = bytes.Clone(p)
		carry, kept, err := s.Filter(p, drop, func(m Message) { got = append(got, seen{m.Kind, m.Len, m.Offset, m.Dropped}) })
		out.Write(carry)
		out.Write(kept)
		if err != nil {
			return out.Bytes(), got, err
		}
	}
	return out.Bytes(), got, nil
}
