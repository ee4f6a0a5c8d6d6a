package rfb

import (
	"bytes"
	"errors"
	"testing"
)

// recording is an FBS file: the synthesized start, then blocks of a made-up stream.
func recording(t testing.TB, v Version) (file []byte, blocks [][]byte, times []uint32) {
	si := ServerInit{Width: 1024, Height: 768, Format: NoVNC32(), Name: "recorded vm"}
	start := AppendRecordingStart(nil, v, si)
	blocks = [][]byte{start, {0, 0, 0, 1}, bytes.Repeat([]byte{7}, 4093), {}, []byte("xyz")}
	times = []uint32{0, 40, 40, 1000, 65000}
	file = AppendFBSHeader(nil)
	for i, b := range blocks {
		file = AppendFBSBlock(file, b, times[i])
	}
	return file, blocks, times
}

func TestFBSBlockEncoding(t *testing.T) {
	b := AppendFBSBlock(nil, []byte("hello"), 0x01020304)
	want := "\x00\x00\x00\x05hello\x00\x00\x00\x01\x02\x03\x04"
	if string(b) != want || len(b) != FBSBlockLen(5) {
		t.Fatalf("%q", b)
	}
	split := AppendFBSBlockTail(append(AppendFBSBlockHead(nil, 5), "hello"...), 5, 0x01020304)
	if !bytes.Equal(split, b) {
		t.Fatal("head+data+tail differs from AppendFBSBlock")
	}
	for n, pad := range map[int]int{0: 0, 1: 3, 2: 2, 3: 1, 4: 0, 5: 3} {
		if FBSPadding(n) != pad {
			t.Errorf("FBSPadding(%d) = %d", n, FBSPadding(n))
		}
	}
}

func TestFBSDecode(t *testing.T) {
	file, blocks, times := recording(t, V38)
	// Decode with the caller's buffer growing a byte at a time: ErrShort must always ask for
	// more than it was given, and the blocks come out the same as from the whole file.
	var d FBSDecoder
	var buf []byte
	var got [][]byte
	var gotTimes []uint32
	for i := 0; i < len(file); i++ {
		buf = append(buf, file[i])
		for {
			blk, n, err := d.Next(buf)
			if err == ErrShort {
				if n <= len(buf) {
					t.Fatalf("ErrShort asking for %d of %d", n, len(buf))
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, bytes.Clone(blk.Data))
			gotTimes = append(gotTimes, blk.Time)
			buf = buf[n:]
		}
	}
	if len(buf) != 0 || len(got) != len(blocks) {
		t.Fatalf("%d blocks, %d bytes left", len(got), len(buf))
	}
	for i := range blocks {
		if !bytes.Equal(got[i], blocks[i]) || gotTimes[i] != times[i] {
			t.Fatalf("block %d: %d bytes at %d ms", i, len(got[i]), gotTimes[i])
		}
	}
}

func TestFBSDecodeErrors(t *testing.T) {
	var d FBSDecoder
	if _, _, err := d.Next([]byte("FBS 002")); !errors.Is(err, ErrFBS) {
		t.Fatalf("bad short header: %v", err)
	}
	if _, _, err := d.Next([]byte("RFB 003.008\n\x00\x00\x00\x00")); !errors.Is(err, ErrFBS) {
		t.Fatalf("bad header: %v", err)
	}
	if _, n, err := d.Next([]byte("FBS 0")); err != ErrShort || n != FBSHeaderLen {
		t.Fatal(n, err)
	}
	big := AppendFBSHeader(nil)
	big = AppendFBSBlockHead(big, 1<<30)
	if _, _, err := d.Next(big); !errors.Is(err, ErrFBS) {
		t.Fatalf("huge block: %v", err)
	}
	small := FBSDecoder{MaxBlock: 3}
	if _, _, err := small.Next(AppendFBSBlock(AppendFBSHeader(nil), []byte("four"), 0)); !errors.Is(err, ErrFBS) {
		t.Fatalf("over MaxBlock: %v", err)
	}
	back := AppendFBSBlock(AppendFBSBlock(AppendFBSHeader(nil), []byte("a"), 50), []byte("b"), 49)
	var d2 FBSDecoder
	_, n, err := d2.Next(back)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d2.Next(back[n:]); !errors.Is(err, ErrFBS) {
		t.Fatalf("time going back: %v", err)
	}
}

func TestRecordingStart(t *testing.T) {
	si := ServerInit{Width: 640, Height: 480, Format: RGB565(), Name: "n"}
	for _, v := range []Version{V33, V37, V38} {
		b := AppendRecordingStart(nil, v, si)
		gv, gsi, n, err := ParseRecordingStart(append(b, MsgBell))
		if err != nil || gv != v || gsi != si || n != len(b) {
			t.Fatalf("%v: %v %+v %d %v", v, gv, gsi, n, err)
		}
		for i := 0; i < len(b); i++ {
			if _, _, n, err := ParseRecordingStart(b[:i]); err != ErrShort || n <= i {
				t.Fatalf("%v cut at %d: %d %v", v, i, n, err)
			}
		}
	}
	// Recorded from a real server with VNC Authentication (rfbproxy records the server side).
	var ch [ChallengeLen]byte
	for _, rec := range [][]byte{
		append(append([]byte("RFB 003.003\n"+u32(2)), ch[:]...), u32(0)+string(si.Append(nil))...),
		append(append([]byte(v38+"\x01\x02"), ch[:]...), u32(0)+string(si.Append(nil))...),
	} {
		if _, gsi, n, err := ParseRecordingStart(rec); err != nil || gsi != si || n != len(rec) {
			t.Fatalf("VNC auth recording: %+v %d %v", gsi, n, err)
		}
	}
	for name, rec := range map[string]string{
		"two types":   v38 + "\x02\x01\x02",
		"failed auth": v38 + "\x01\x02" + string(ch[:]) + u32(1) + reason("no"),
		"3.3 type 16": "RFB 003.003\n" + u32(16),
		"repeater":    "RFB 000.000\n",
		"not rfb":     "FBS 001.000\n",
	} {
		if _, _, _, err := ParseRecordingStart([]byte(rec)); err == nil || err == ErrShort {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzFBSDecoder: any bytes, decoded from a buffer that grows in random steps, never panic,
// ErrShort always asks for more, and the blocks equal those of a whole-file decode.
func FuzzFBSDecoder(f *testing.F) {
	file, _, _ := recording(f, V38)
	f.Add(file, uint8(3))
	f.Add([]byte(FBSHeader+"\x00\x00\x00\x01a\x00\x00\x00\x00\x00\x00\x01"), uint8(1))
	f.Add([]byte(FBSHeader+"\xff\xff\xff\xff"), uint8(7))
	f.Add([]byte("FBS 001.00"), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		decode := func(step int) (blocks []string, err error) {
			var d FBSDecoder
			var buf []byte
			for i := 0; ; {
				blk, n, err := d.Next(buf)
				if err == ErrShort {
					if n <= len(buf) {
						t.Fatalf("ErrShort asking for %d of %d", n, len(buf))
					}
					if i >= len(data) {
						return blocks, nil
					}
					k := min(len(data)-i, step)
					buf = append(buf, data[i:i+k]...)
					i += k
					continue
				}
				if err != nil {
					return blocks, err
				}
				blocks = append(blocks, string(blk.Data))
				buf = buf[n:]
			}
		}
		a, erra := decode(len(data) + 1)
		b, errb := decode(1 + int(step))
		if (erra == nil) != (errb == nil) || len(a) != len(b) {
			t.Fatalf("whole %d blocks %v; stepped %d blocks %v", len(a), erra, len(b), errb)
		}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("block %d differs", i)
			}
		}
		if len(a) > 0 {
			_, _, _, _ = ParseRecordingStart([]byte(a[0]))
		}
	})
}

// FuzzParseRecordingStart: never panics; what parses is a prefix of the input with a valid
// ServerInit at its end.
func FuzzParseRecordingStart(f *testing.F) {
	si := ServerInit{Width: 2, Height: 2, Format: Default32(), Name: "x"}
	for _, v := range []Version{V33, V37, V38} {
		f.Add(AppendRecordingStart(nil, v, si))
	}
	f.Add([]byte("RFB 003.003\n" + u32(2) + string(make([]byte, 16)) + u32(0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, got, n, err := ParseRecordingStart(b)
		if err == ErrShort && n <= len(b) {
			t.Fatalf("ErrShort asking for %d of %d", n, len(b))
		}
		if err != nil {
			return
		}
		if n > len(b) || v < V33 {
			t.Fatalf("n %d of %d, version %v", n, len(b), v)
		}
		if tail := got.Append(nil); !bytes.Equal(tail[:4], b[n-len(tail):n-len(tail)+4]) {
			t.Fatal("ServerInit not at the end of the parsed prefix")
		}
	})
}
