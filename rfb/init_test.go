package rfb

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"
)

func TestPixelFormatRoundTrip(t *testing.T) {
	be := RGB565()
	be.BigEndian = true
	for _, pf := range []PixelFormat{Default32(), NoVNC32(), RGB565(), be} {
		b := pf.Append(nil)
		if len(b) != PixelFormatLen {
			t.Fatal(len(b))
		}
		if got := GetPixelFormat(b); got != pf {
			t.Errorf("round trip of %+v gave %+v", pf, got)
		}
		if err := pf.Validate(); err != nil {
			t.Errorf("%+v: %v", pf, err)
		}
	}
	// Padding is written as zero, whatever was in the buffer.
	b := bytes.Repeat([]byte{0xff}, PixelFormatLen)
	Default32().Put(b)
	if b[13]|b[14]|b[15] != 0 {
		t.Fatal("padding not zeroed")
	}
}

func TestPixelEncoding(t *testing.T) {
	be32 := Default32()
	be32.BigEndian = true
	be16 := RGB565()
	be16.BigEndian = true
	for _, tc := range []struct {
		name string
		pf   PixelFormat
		want []byte
	}{
		{"32 little-endian", Default32(), []byte{0x56, 0x34, 0x12, 0}},
		{"32 big-endian", be32, []byte{0, 0x12, 0x34, 0x56}},
		{"noVNC", NoVNC32(), []byte{0x12, 0x34, 0x56, 0}},
		// r=0x12*31/255=2, g=0x34*63/255=12, b=0x56*31/255=10: 2<<11|12<<5|10 = 0x118a
		{"16 little-endian", RGB565(), []byte{0x8a, 0x11}},
		{"16 big-endian", be16, []byte{0x11, 0x8a}},
		{"8 bgr233", PixelFormat{BPP: 8, Depth: 8, TrueColour: true, RedMax: 7, GreenMax: 7, BlueMax: 3, GreenShift: 3, BlueShift: 6},
			[]byte{0<<0 | 1<<3 | 1<<6}},
	} {
		got := make([]byte, tc.pf.BytesPerPixel())
		tc.pf.Pixel(got, 0x12, 0x34, 0x56)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: Pixel = %x, want %x", tc.name, got, tc.want)
		}
	}
}

func TestPixelFormatValidate(t *testing.T) {
	for name, mod := range map[string]func(*PixelFormat){
		"24 bpp":          func(p *PixelFormat) { p.BPP = 24 },
		"colour map":      func(p *PixelFormat) { p.TrueColour = false },
		"zero max":        func(p *PixelFormat) { p.GreenMax = 0 },
		"shift too far":   func(p *PixelFormat) { p.RedShift = 30 },
		"max too large 8": func(p *PixelFormat) { p.BPP = 8 },
	} {
		pf := Default32()
		mod(&pf)
		if pf.Validate() == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestServerInit(t *testing.T) {
	si := ServerInit{Width: 800, Height: 600, Format: Default32(), Name: "vm-1"}
	b := si.Append(nil)
	if len(b) != 24+4 {
		t.Fatal(len(b))
	}
	got, n, err := ParseServerInit(append(b, 0xaa))
	if err != nil || n != len(b) || got != si {
		t.Fatalf("%+v %d %v", got, n, err)
	}
	if _, n, err := ParseServerInit(b[:10]); err != ErrShort || n != 24 {
		t.Fatal(n, err)
	}
	if _, n, err := ParseServerInit(b[:25]); err != ErrShort || n != 28 {
		t.Fatal(n, err)
	}
	bad := bytes.Clone(b)
	bad[20], bad[21] = 0x7f, 0xff
	if _, _, err := ParseServerInit(bad); !errors.Is(err, ErrProtocol) {
		t.Fatal(err)
	}
}

func TestClientInit(t *testing.T) {
	for _, shared := range []bool{true, false} {
		got, n, err := ParseClientInit(AppendClientInit(nil, shared))
		if got != shared || n != 1 || err != nil {
			t.Fatal(shared, got, n, err)
		}
	}
	if _, n, err := ParseClientInit(nil); err != ErrShort || n != 1 {
		t.Fatal(n, err)
	}
	p := []byte{0, 5}
	if !ForceShared(p) || p[0] != 1 || p[1] != 5 {
		t.Fatal("ForceShared exclusive")
	}
	if ForceShared(p) || ForceShared(nil) {
		t.Fatal("ForceShared changed a shared or empty ClientInit")
	}
	p[0] = 7 // any non-zero flag is shared
	if ForceShared(p) || p[0] != 7 {
		t.Fatal("ForceShared rewrote a non-zero flag")
	}
}

// FuzzParseServerInit: never panics, never asks for fewer bytes than it has, and what parses
// re-encodes to the same bytes (the pixel format's padding aside).
func FuzzParseServerInit(f *testing.F) {
	f.Add(ServerInit{Width: 1, Height: 1, Format: Default32(), Name: "x"}.Append(nil))
	f.Add([]byte{0, 1, 0, 1, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		si, n, err := ParseServerInit(data)
		if err == ErrShort {
			if n <= len(data) {
				t.Fatalf("ErrShort asking for %d of %d", n, len(data))
			}
			return
		}
		if err != nil {
			return
		}
		again := si.Append(nil)
		want := bytes.Clone(data[:n])
		want[4+13], want[4+14], want[4+15] = 0, 0, 0
		for i := 2; i <= 3; i++ { // flags read as bool
			if want[4+i] != 0 {
				want[4+i] = 1
			}
		}
		if !bytes.Equal(again, want) {
			t.Fatalf("re-encoded %x, want %x", again, want)
		}
	})
}

func TestParseSetPixelFormat(t *testing.T) {
	msg := AppendSetPixelFormat(nil, NoVNC32())
	pf, n, err := ParseSetPixelFormat(append(msg, 3))
	if err != nil || n != SetPixelFormatLen || pf != NoVNC32() {
		t.Fatal(pf, n, err)
	}
	if _, n, err := ParseSetPixelFormat(msg[:7]); err != ErrShort || n != SetPixelFormatLen {
		t.Fatal(n, err)
	}
	if _, _, err := ParseSetPixelFormat([]byte{MsgKeyEvent}); !errors.Is(err, ErrProtocol) {
		t.Fatal(err)
	}
}

// TestStateSizes keeps the per-session state small: the engine holds a Scanner for every
// scanned session and the handshake machines while a session starts.
func TestStateSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"Scanner", unsafe.Sizeof(Scanner{}), 96},
		{"BrowserHandshake", unsafe.Sizeof(BrowserHandshake{}), 128},
		{"VMHandshake", unsafe.Sizeof(VMHandshake{}), 384},
		{"FBSDecoder", unsafe.Sizeof(FBSDecoder{}), 32},
	} {
		t.Logf("%s: %d bytes", c.name, c.size)
		if c.size > c.max {
			t.Errorf("%s is %d bytes, over %d", c.name, c.size, c.max)
		}
	}
}
