package rfb

import (
	"strings"
	"testing"
)

func TestVeNCryptMessages(t *testing.T) {
	if b := AppendVeNCryptVersion(nil, 0, 2); string(b) != "\x00\x02" {
		t.Fatal(b)
	}
	if maj, mnr, n, err := ParseVeNCryptVersion([]byte{0, 2, 9}); maj != 0 || mnr != 2 || n != 2 || err != nil {
		t.Fatal(maj, mnr, n, err)
	}
	if _, _, n, err := ParseVeNCryptVersion([]byte{0}); err != ErrShort || n != 2 {
		t.Fatal(n, err)
	}
	for _, ok := range []bool{true, false} {
		got, n, err := ParseVeNCryptAck(AppendVeNCryptAck(nil, ok))
		if got != ok || n != 1 || err != nil {
			t.Fatal(ok, got, err)
		}
		got, n, err = ParseVeNCryptTLSAck(AppendVeNCryptTLSAck(nil, ok))
		if got != ok || n != 1 || err != nil {
			t.Fatal(ok, got, err)
		}
	}
	if string(AppendVeNCryptAck(nil, true)) != "\x00" || string(AppendVeNCryptTLSAck(nil, true)) != "\x01" {
		t.Fatal("ack values")
	}
	if _, _, err := ParseVeNCryptAck(nil); err != ErrShort {
		t.Fatal(err)
	}
	if _, _, err := ParseVeNCryptTLSAck(nil); err != ErrShort {
		t.Fatal(err)
	}
	l, n, err := ParseVeNCryptSubtypes(AppendVeNCryptSubtypes(nil, VeNCryptX509Vnc, VeNCryptPlain))
	if err != nil || n != 9 || l.Len() != 2 || l.At(0) != VeNCryptX509Vnc || !l.Has(VeNCryptPlain) || l.Has(VeNCryptNone) {
		t.Fatal(l, n, err)
	}
	if _, n, err := ParseVeNCryptSubtypes([]byte{3, 0, 0}); err != ErrShort || n != 13 {
		t.Fatal(n, err)
	}
	if b := AppendVeNCryptSubtypes(nil, make([]uint32, 300)...); b[0] != 255 || len(b) != 1+255*4 {
		t.Fatal(len(b))
	}
	st, n, err := ParseVeNCryptChoice(AppendVeNCryptChoice(nil, VeNCryptTLSPlain))
	if st != VeNCryptTLSPlain || n != 4 || err != nil {
		t.Fatal(st, n, err)
	}
	if _, _, err := ParseVeNCryptChoice([]byte{1}); err != ErrShort {
		t.Fatal(err)
	}
	for st := uint32(0); st < 270; st++ {
		name := VeNCryptSubtypeName(st)
		known := st == 1 || st == 2 || st >= 256 && st <= 264
		if known == strings.HasPrefix(name, "sub-type") {
			t.Errorf("%d: %q", st, name)
		}
		if VeNCryptSubtypeTLS(st) != (st >= 257 && st <= 264) {
			t.Errorf("%d: TLS %v", st, VeNCryptSubtypeTLS(st))
		}
	}
}
