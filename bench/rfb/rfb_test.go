package rfb

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// The expected response was computed outside Go: the key "password" with each byte's bits
// reversed (0e86ceceeef64e26) and `openssl enc -des-ecb -nopad` over bytes 00..0f.
func TestVNCAuthResponseKnownVector(t *testing.T) {
	var challenge [ChallengeLen]byte
	for i := range challenge {
		challenge[i] = byte(i)
	}
	got := VNCAuthResponse("password", challenge)
	want, _ := hex.DecodeString("b866924125c8eebb9debc1db61c538e2")
	if !bytes.Equal(got[:], want) {
		t.Fatalf("VNCAuthResponse = %x, want %x", got, want)
	}
	// Only the first 8 bytes of a password count.
	if VNCAuthResponse("password-and-more", challenge) != got {
		t.Fatal("password longer than 8 bytes changed the response")
	}
	if VNCAuthResponse("passwore", challenge) == got {
		t.Fatal("different password gave the same response")
	}
}

func TestPixelFormatRoundTrip(t *testing.T) {
	for _, pf := range []PixelFormat{Default32(), RGB565(), {BPP: 16, Depth: 16, BigEndian: true, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5}} {
		var b [PixelFormatLen]byte
		pf.Marshal(b[:])
		if got := UnmarshalPixelFormat(b[:]); got != pf {
			t.Errorf("round trip of %+v gave %+v", pf, got)
		}
	}
}

func TestPixelEncoding(t *testing.T) {
	tests := []struct {
		name string
		pf   PixelFormat
		want []byte
	}{
		{
			name: "32 little-endian",
			pf:   Default32(),
			want: []byte{0x56, 0x34, 0x12, 0},
		},
		{
			name: "32 big-endian",
			pf:   func() PixelFormat { pf := Default32(); pf.BigEndian = true; return pf }(),
			want: []byte{0, 0x12, 0x34, 0x56},
		},
		{
			// r=0x12*31/255=2, g=0x34*63/255=12, b=0x56*31/255=10: 2<<11|12<<5|10 = 0x118a
			name: "16 little-endian",
			pf:   RGB565(),
			want: []byte{0x8a, 0x11},
		},
		{
			name: "16 big-endian",
			pf:   func() PixelFormat { pf := RGB565(); pf.BigEndian = true; return pf }(),
			want: []byte{0x11, 0x8a},
		},
	}
	for _, tc := range tests {
		got := make([]byte, tc.pf.BytesPerPixel())
		tc.pf.Pixel(got, 0x12, 0x34, 0x56)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s: Pixel = %x, want %x", tc.name, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Default32().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := Default32()
	bad.BPP = 24
	if bad.Validate() == nil {
		t.Fatal("24 bpp accepted")
	}
	bad = Default32()
	bad.TrueColour = false
	if bad.Validate() == nil {
		t.Fatal("colour map accepted")
	}
}

func TestServerInitRoundTrip(t *testing.T) {
	si := ServerInit{Width: 800, Height: 600, Format: Default32(), Name: "vm-1"}
	got, err := ReadServerInit(bytes.NewReader(si.Append(nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got != si {
		t.Fatalf("got %+v, want %+v", got, si)
	}
}

func FuzzReadServerInit(f *testing.F) {
	f.Add(ServerInit{Width: 1, Height: 1, Format: Default32(), Name: "x"}.Append(nil))
	f.Add([]byte{0, 1, 0, 1, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		si, err := ReadServerInit(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := ReadServerInit(bytes.NewReader(si.Append(nil)))
		if err != nil || again != si {
			t.Fatalf("re-read %+v gave %+v, %v", si, again, err)
		}
	})
}
