package rfb

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func expectedSeen(m []testMsg, drop KindSet) []seen {
	var want []seen
	var off int64
	for _, x := range m {
		want = append(want, seen{x.kind, int64(len(x.b)), off, drop.Has(x.kind)})
		off += int64(len(x.b))
	}
	return want
}

func TestScannerWholeStream(t *testing.T) {
	m := noVNCSession()
	got, err := scanAll([][]byte{joinMsgs(m)})
	if err != nil {
		t.Fatal(err)
	}
	if want := expectedSeen(m, 0); !slices.Equal(got, want) {
		t.Fatalf("observed\n%v\nwant\n%v", got, want)
	}
}

// TestScannerEverySplit cuts the stream in two at every offset, and also feeds it one byte at a
// time: the messages seen must be the same as over the whole stream.
func TestScannerEverySplit(t *testing.T) {
	m := noVNCSession()
	stream := joinMsgs(m)
	want := expectedSeen(m, 0)
	for i := 0; i <= len(stream); i++ {
		got, err := scanAll([][]byte{stream[:i], stream[i:]})
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("split at %d: %v, err %v", i, got, err)
		}
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	if got, err := scanAll(bytewise); err != nil || !slices.Equal(got, want) {
		t.Fatalf("byte at a time: %v, err %v", got, err)
	}
}

func TestScannerRandomChunks(t *testing.T) {
	m := noVNCSession()
	stream := joinMsgs(m)
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		pieces := chunks(r, stream, 1+r.IntN(40))
		got, err := scanAll(pieces)
		if err != nil || !slices.Equal(got, expectedSeen(m, 0)) {
			t.Fatalf("%d pieces: %v, err %v", len(pieces), got, err)
		}
	}
}

func TestFilterViewOnly(t *testing.T) {
	m := noVNCSession()
	stream := joinMsgs(m)
	want := keptStream(m, ViewOnly)
	wantSeen := expectedSeen(m, ViewOnly)
	check := func(name string, pieces [][]byte) {
		t.Helper()
		out, got, err := filterAll(pieces, ViewOnly)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("%s: forwarded %d bytes, want %d\n got %x\nwant %x", name, len(out), len(want), out, want)
		}
		if !slices.Equal(got, wantSeen) {
			t.Fatalf("%s: observed %v", name, got)
		}
	}
	check("whole", [][]byte{stream})
	for i := 0; i <= len(stream); i++ {
		check("split", [][]byte{stream[:i], stream[i:]})
	}
	var bytewise [][]byte
	for i := range stream {
		bytewise = append(bytewise, stream[i:i+1])
	}
	check("byte at a time", bytewise)
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		check("random", chunks(r, stream, 1+r.IntN(64)))
	}
	// Nothing dropped: the stream passes unchanged.
	if out, _, err := filterAll([][]byte{stream}, 0); err != nil || !bytes.Equal(out, stream) {
		t.Fatalf("empty drop set changed the stream (err %v)", err)
	}
}

// TestFilterHeldTypeByte covers the one case where Filter returns a carry: a QEMU or gii
// message cut right after its type byte, whose fate depends on the sub-type in the next chunk.
func TestFilterHeldTypeByte(t *testing.T) {
	audio := AppendQEMUAudio(nil, QEMUAudioEnable)
	key := AppendQEMUKeyEvent(nil, true, 'a', 0x1e)
	fbur := AppendFramebufferUpdateRequest(nil, true, 0, 0, 10, 10)
	var s Scanner
	p1 := append(bytes.Clone(fbur), audio[0])
	carry, kept, err := s.Filter(p1, ViewOnly, nil)
	if err != nil || len(carry) != 0 || !bytes.Equal(kept, fbur) {
		t.Fatalf("chunk 1: carry %x kept %x err %v", carry, kept, err)
	}
	// The audio message is kept: its type byte comes back as carry. The key event after it ends
	// this chunk with its own type byte, which is held again and then dropped.
	p2 := append(bytes.Clone(audio[1:]), key[0])
	carry, kept, err = s.Filter(p2, ViewOnly, nil)
	if err != nil || !bytes.Equal(carry, audio[:1]) || !bytes.Equal(kept, audio[1:]) {
		t.Fatalf("chunk 2: carry %x kept %x err %v", carry, kept, err)
	}
	p3 := append(bytes.Clone(key[1:]), fbur...)
	carry, kept, err = s.Filter(p3, ViewOnly, nil)
	if err != nil || len(carry) != 0 || !bytes.Equal(kept, fbur) {
		t.Fatalf("chunk 3: carry %x kept %x err %v", carry, kept, err)
	}
	if !s.Between() {
		t.Fatal("not at a message boundary after whole messages")
	}
}

func TestScannerAccessors(t *testing.T) {
	var s Scanner
	stream := slices.Concat(
		AppendSetEncodings(nil, EncodingRaw, EncodingExtendedMouseButtons),
		AppendKeyEvent(nil, true, 0xff0d),
		AppendQEMUKeyEvent(nil, false, 'q', 0x10),
		AppendPointerEvent(nil, 5, 300, 400),
		AppendExtendedPointerEvent(nil, 0x181, 7, 8),
		AppendSetPixelFormat(nil, RGB565()),
		AppendClientCutText(nil, []byte("abc")),
		AppendExtendedCutText(nil, []byte{1, 2, 3, 4, 5}),
		AppendFramebufferUpdateRequest(nil, true, 1, 2, 3, 4),
		AppendSetDesktopSize(nil, 640, 480, Screen{}, Screen{}),
		AppendXvp(nil, 1, 3),
	)
	var got []Message
	if err := s.Scan(stream, func(m Message) { got = append(got, m) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 11 {
		t.Fatalf("%d messages", len(got))
	}
	if d, k := got[1].Key(); !d || k != 0xff0d {
		t.Errorf("KeyEvent %v %x", d, k)
	}
	if d, k := got[2].Key(); d || k != 'q' || got[2].KeyCode() != 0x10 {
		t.Errorf("QEMU key %v %x %x", d, k, got[2].KeyCode())
	}
	if b, x, y := got[3].Pointer(); b != 5 || x != 300 || y != 400 || got[3].Len != 6 {
		t.Errorf("PointerEvent %d %d %d len %d", b, x, y, got[3].Len)
	}
	if b, x, y := got[4].Pointer(); b != 0x181 || x != 7 || y != 8 || got[4].Len != 7 {
		t.Errorf("extended PointerEvent %#x %d %d len %d", b, x, y, got[4].Len)
	}
	if pf := got[5].PixelFormat(); pf != RGB565() {
		t.Errorf("PixelFormat %+v", pf)
	}
	if l, ext := got[6].CutText(); l != 3 || ext {
		t.Errorf("cut text %d %v", l, ext)
	}
	if l, ext := got[7].CutText(); l != 5 || !ext {
		t.Errorf("extended cut text %d %v", l, ext)
	}
	if inc, x, y, w, h := got[8].UpdateRequest(); !inc || x != 1 || y != 2 || w != 3 || h != 4 {
		t.Errorf("update request %v %d %d %d %d", inc, x, y, w, h)
	}
	if w, h, n := got[9].DesktopSize(); w != 640 || h != 480 || n != 2 || got[9].Len != 8+32 {
		t.Errorf("desktop size %d %d %d len %d", w, h, n, got[9].Len)
	}
	if v, op := got[10].Xvp(); v != 1 || op != 3 {
		t.Errorf("xvp %d %d", v, op)
	}
	// Accessors of another kind give zero values.
	if d, k := got[3].Key(); d || k != 0 {
		t.Error("Key on a PointerEvent")
	}
	if b, _, _ := got[1].Pointer(); b != 0 {
		t.Error("Pointer on a KeyEvent")
	}
}

// TestScannerExtendedPointer: the 7-byte form exists only after a SetEncodings that announces
// ExtendedMouseButtons; a later SetEncodings without it turns it off again.
func TestScannerExtendedPointer(t *testing.T) {
	ptrMarked := []byte{MsgPointerEvent, 0x81, 0, 1, 0, 2} // 6 bytes, button 8 in the old sense
	stream := slices.Concat(
		ptrMarked,
		AppendSetEncodings(nil, EncodingExtendedMouseButtons),
		AppendExtendedPointerEvent(nil, 0x80, 1, 2),
		AppendSetEncodings(nil, EncodingRaw),
		ptrMarked,
	)
	got, err := scanAll([][]byte{stream})
	if err != nil {
		t.Fatal(err)
	}
	lens := []int64{}
	for _, m := range got {
		lens = append(lens, m.len)
	}
	if want := []int64{6, 8, 7, 8, 6}; !slices.Equal(lens, want) {
		t.Fatalf("lengths %v, want %v", lens, want)
	}
	// The encoding split across chunks at every offset is still found.
	for i := 0; i <= len(stream); i++ {
		got2, err := scanAll([][]byte{stream[:i], stream[i:]})
		if err != nil || !slices.Equal(got2, got) {
			t.Fatalf("split %d: %v %v", i, got2, err)
		}
	}
}

func TestScannerGIIEndianness(t *testing.T) {
	le := AppendGII(nil, false, GIIDeviceCreate, make([]byte, 300))
	be := AppendGII(nil, true, GIIDeviceCreate, make([]byte, 300))
	if le[2] != 0x2c || le[3] != 0x01 || be[2] != 0x01 || be[3] != 0x2c {
		t.Fatalf("length fields %x %x", le[:4], be[:4])
	}
	got, err := scanAll([][]byte{slices.Concat(le, be)})
	if err != nil || len(got) != 2 || got[0].len != 304 || got[1].len != 304 || got[1].kind != KindGII {
		t.Fatalf("%v %v", got, err)
	}
}

func TestScannerLargeCutText(t *testing.T) {
	// 1 GiB of announced clipboard streams through without being held: feed the header, then
	// body pieces that are never allocated as a whole.
	const size = 1 << 30
	var s Scanner
	hdr := []byte{MsgClientCutText, 0, 0, 0, 0x40, 0, 0, 0}
	var seenLen int64
	if err := s.Scan(hdr, func(m Message) { seenLen = m.Len }); err != nil || seenLen != 8+size {
		t.Fatalf("header: len %d err %v", seenLen, err)
	}
	piece := make([]byte, 1<<20)
	carry, kept, err := s.Filter(piece, ViewOnly, nil)
	if err != nil || len(carry)+len(kept) != 0 {
		t.Fatalf("dropped body piece forwarded %d bytes, err %v", len(carry)+len(kept), err)
	}
	for range size/len(piece) - 1 {
		if err := s.Scan(piece, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !s.Between() || s.Offset() != 8+size {
		t.Fatalf("after the body: between %v offset %d", s.Between(), s.Offset())
	}
	// The most negative length, 2^31 bytes, is a valid extended form too.
	s.Reset()
	if err := s.Scan([]byte{MsgClientCutText, 0, 0, 0, 0x80, 0, 0, 0}, func(m Message) { seenLen = m.Len }); err != nil || seenLen != 8+1<<31 {
		t.Fatalf("min int32 length: %d %v", seenLen, err)
	}
}

func TestScannerErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		typ    uint8
		sub    int
		op     int
		offset int64
	}{
		{"unknown type", []byte{7}, 7, -1, -1, 0},
		{"after a message", append(AppendKeyEvent(nil, true, 1), 200), 200, -1, -1, 8},
		{"QEMU sub-type", []byte{MsgQEMU, 9, 0, 0}, 255, 9, -1, 0},
		{"QEMU audio operation", []byte{MsgQEMU, QEMUAudio, 0, 7}, 255, 1, 7, 0},
		{"server message type", []byte{1}, 1, -1, -1, 0},
	} {
		var s Scanner
		err := s.Scan(tc.in, nil)
		var me *MessageError
		if !errors.Is(err, ErrUnknownMessage) || !errors.As(err, &me) {
			t.Fatalf("%s: err %v", tc.name, err)
		}
		if me.Type != tc.typ || me.SubType != tc.sub || me.Op != tc.op || me.Offset != tc.offset {
			t.Errorf("%s: %+v", tc.name, me)
		}
		if err2 := s.Scan([]byte{MsgKeyEvent}, nil); err2 != err {
			t.Errorf("%s: error not sticky: %v", tc.name, err2)
		}
		if _, _, err2 := s.Filter([]byte{MsgKeyEvent}, ViewOnly, nil); err2 != err {
			t.Errorf("%s: Filter error not sticky: %v", tc.name, err2)
		}
		if s.Between() || s.Err() != err {
			t.Errorf("%s: Between/Err after error", tc.name)
		}
	}
	// Filter keeps what came before the bad message.
	var s Scanner
	good := AppendFramebufferUpdateRequest(nil, false, 0, 0, 1, 1)
	_, kept, err := s.Filter(append(bytes.Clone(good), 99, 1, 2), ViewOnly, nil)
	if err == nil || !bytes.Equal(kept, good) {
		t.Fatalf("kept %x err %v", kept, err)
	}
}

func TestKindStrings(t *testing.T) {
	for k := KindUnknown; k < numKinds; k++ {
		if s := k.String(); s == "" || strings.HasPrefix(s, "Kind(") {
			t.Errorf("Kind %d has no name: %q", k, s)
		}
	}
	if Kind(99).String() != "Kind(99)" {
		t.Error(Kind(99).String())
	}
	if !KindsOf(KindKeyEvent, KindXvp).Has(KindXvp) || KindsOf(KindKeyEvent).Has(KindXvp) {
		t.Error("KindsOf/Has")
	}
	for _, k := range []Kind{KindSetPixelFormat, KindSetEncodings, KindFramebufferUpdateRequest, KindFence,
		KindEnableContinuousUpdates, KindQEMUAudio, KindGII} {
		if ViewOnly.Has(k) {
			t.Errorf("ViewOnly drops %v", k)
		}
	}
}

// FuzzScanner: arbitrary bytes cut at random never panic, and the chunked scan agrees with the
// whole-stream scan (messages, error) and Filter forwards exactly the kept messages' bytes.
func FuzzScanner(f *testing.F) {
	f.Add(joinMsgs(noVNCSession()), uint64(1))
	f.Add([]byte{MsgQEMU, 0, 0, 1, 0, 0, 0, 'a', 0, 0, 0, 30, MsgQEMU, 1, 0, 2, 1, 2, 0, 0, 0, 1}, uint64(2))
	f.Add([]byte{MsgClientCutText, 0, 0, 0, 0xff, 0xff, 0xff, 0xfd, 1, 2, 3}, uint64(3))
	f.Add([]byte{MsgGII, 0x81, 0, 2, 0, 1, MsgGII, 0, 4, 0, 1, 2, 3, 4}, uint64(4))
	f.Add([]byte{MsgSetEncodings, 0, 0, 1, 0xff, 0xff, 0xfe, 0xc4, MsgPointerEvent, 0x80, 0, 0, 0, 0, 1}, uint64(5))
	f.Add([]byte{MsgSetDesktopSize, 0, 0, 64, 0, 48, 1, 0}, uint64(6))
	f.Add([]byte{77}, uint64(7))
	f.Add([]byte{}, uint64(8))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		whole, werr := scanAll([][]byte{data})
		r := rand.New(rand.NewPCG(seed, seed>>32))
		pieces := chunks(r, data, 1+r.IntN(32))
		split, serr := scanAll(pieces)
		if !slices.Equal(whole, split) || (werr == nil) != (serr == nil) {
			t.Fatalf("whole %v (%v) vs chunked %v (%v)", whole, werr, split, serr)
		}
		out, fseen, ferr := filterAll(pieces, ViewOnly)
		if (ferr == nil) != (werr == nil) || len(fseen) != len(whole) {
			t.Fatalf("filter saw %d messages (%v), scan %d (%v)", len(fseen), ferr, len(whole), werr)
		}
		if werr != nil {
			return
		}
		// Rebuild the expected output from the whole-stream boundaries. The last message may be
		// incomplete: its bytes present so far are kept or dropped like a whole one.
		var want []byte
		for _, m := range whole {
			end := min(m.off+m.len, int64(len(data)))
			if !ViewOnly.Has(m.kind) {
				want = append(want, data[m.off:end]...)
			}
		}
		var last int64
		if n := len(whole); n > 0 {
			last = whole[n-1].off + whole[n-1].len
		}
		if last < int64(len(data)) {
			// A partial header at the end: forwarded only once its kind is known to be kept.
			rest := data[last:]
			if k := kindOf(rest); k != KindUnknown && !ViewOnly.Has(k) {
				want = append(want, rest...)
			}
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("filter forwarded\n%x\nwant\n%x", out, want)
		}
	})
}
