package rfb

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestSecurityTypesRoundTrip(t *testing.T) {
	b := AppendSecurityTypes(nil, SecNone, SecVNCAuth, SecVeNCrypt)
	if string(b) != "\x03\x01\x02\x13" {
		t.Fatalf("%q", b)
	}
	types, n, err := ParseSecurityTypes(append(b, 9))
	if err != nil || n != 4 || string(types) != "\x01\x02\x13" {
		t.Fatalf("%q %d %v", types, n, err)
	}
	if _, n, err := ParseSecurityTypes(b[:2]); err != ErrShort || n != 4 {
		t.Fatalf("short: %d %v", n, err)
	}
	if _, n, err := ParseSecurityTypes(nil); err != ErrShort || n != 1 {
		t.Fatalf("empty: %d %v", n, err)
	}
	many := make([]SecurityType, 300)
	if b := AppendSecurityTypes(nil, many...); b[0] != 255 || len(b) != 256 {
		t.Fatalf("300 types: count %d len %d", b[0], len(b))
	}
}

func TestSecurityResult(t *testing.T) {
	ok := AppendSecurityResultOK(nil)
	if r, reason, n, err := ParseSecurityResult(ok, V38); r != ResultOK || reason != nil || n != 4 || err != nil {
		t.Fatal(r, reason, n, err)
	}
	fail38 := AppendSecurityResultFailed(nil, V38, "bad password")
	if r, reason, n, err := ParseSecurityResult(fail38, V38); r != ResultFailed || string(reason) != "bad password" || n != len(fail38) || err != nil {
		t.Fatal(r, reason, n, err)
	}
	if _, _, n, err := ParseSecurityResult(fail38[:6], V38); err != ErrShort || n != 8 {
		t.Fatal(n, err)
	}
	if _, _, n, err := ParseSecurityResult(fail38[:10], V38); err != ErrShort || n != len(fail38) {
		t.Fatal(n, err)
	}
	fail37 := AppendSecurityResultFailed(nil, V37, "ignored")
	if len(fail37) != 4 {
		t.Fatalf("3.7 failure has a reason: %q", fail37)
	}
	if r, reason, n, err := ParseSecurityResult(fail37, V37); r != ResultFailed || reason != nil || n != 4 || err != nil {
		t.Fatal(r, reason, n, err)
	}
	huge := []byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}
	if _, _, _, err := ParseSecurityResult(huge, V38); !errors.Is(err, ErrProtocol) {
		t.Fatalf("huge reason: %v", err)
	}
}

func TestSecurityFailureForms(t *testing.T) {
	if got := AppendSecurityFailure(nil, V38, "why"); string(got) != "\x00\x00\x00\x00\x03why" {
		t.Fatalf("3.8: %q", got)
	}
	if got := AppendSecurityFailure(nil, V37, "why"); string(got) != "\x00\x00\x00\x00\x03why" {
		t.Fatalf("3.7: %q", got)
	}
	if got := AppendSecurityFailure(nil, V33, "why"); string(got) != "\x00\x00\x00\x00\x00\x00\x00\x03why" {
		t.Fatalf("3.3: %q", got)
	}
	if got := AppendSecurityType33(nil, SecVNCAuth); string(got) != "\x00\x00\x00\x02" {
		t.Fatalf("3.3 type: %q", got)
	}
	if v, n, err := ParseSecurityType33([]byte{0, 0, 0, 2}); v != 2 || n != 4 || err != nil {
		t.Fatal(v, n, err)
	}
	if _, n, err := ParseSecurityType33([]byte{0}); err != ErrShort || n != 4 {
		t.Fatal(n, err)
	}
}

func TestSecurityTypeNames(t *testing.T) {
	if SecVNCAuth.String() != "VNC Authentication (2)" || SecurityType(77).String() != "type 77" {
		t.Fatal(SecVNCAuth.String(), SecurityType(77).String())
	}
	for _, ty := range []SecurityType{SecInvalid, SecNone, SecRA2, SecRA2ne, SecTight, SecUltra, SecTLS, SecVeNCrypt,
		SecSASL, SecMD5, SecXVP, SecARD, SecMSLogonII, SecRA2_256, SecRA2ne_256, SecUltraMSLgn} {
		if strings.HasPrefix(ty.String(), "type ") {
			t.Errorf("%d has no name", ty)
		}
	}
}

func TestTypeSet(t *testing.T) {
	var s typeSet
	for _, ty := range []SecurityType{255, 0, 64, 63, 2} {
		s.add(ty)
	}
	if got := s.list(); !equalTypes(got, []SecurityType{0, 2, 63, 64, 255}) {
		t.Fatal(got)
	}
	if s.choose(false, false) != SecInvalid || s.choose(true, false) != SecVNCAuth {
		t.Fatal("choose")
	}
	s.add(SecNone)
	if s.choose(true, true) != SecNone {
		t.Fatal("None first")
	}
}

// FuzzSecurityMessages: the security parsers never panic, ErrShort always asks for more than it
// got, and what parses re-encodes to the same bytes.
func FuzzSecurityMessages(f *testing.F) {
	f.Add(AppendSecurityTypes(nil, SecNone, SecVNCAuth))
	f.Add(AppendSecurityResultFailed(nil, V38, "Authentication failure"))
	f.Add(AppendSecurityFailure(nil, V33, "x"))
	f.Add(AppendVeNCryptSubtypes(nil, VeNCryptX509Vnc, VeNCryptVNCAuth))
	f.Add([]byte{0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		short := func(what string, n int, err error) bool {
			if err == ErrShort && n <= len(b) {
				t.Fatalf("%s: ErrShort asking for %d of %d bytes", what, n, len(b))
			}
			return err != nil
		}
		if types, n, err := ParseSecurityTypes(b); !short("types", n, err) {
			list := make([]SecurityType, len(types))
			for i, ty := range types {
				list[i] = SecurityType(ty)
			}
			if !bytes.Equal(AppendSecurityTypes(nil, list...), b[:n]) {
				t.Fatal("types round trip")
			}
		}
		if reason, n, err := ParseReason(b); !short("reason", n, err) {
			if !bytes.Equal(AppendReason(nil, string(reason)), b[:n]) {
				t.Fatal("reason round trip")
			}
		}
		for _, v := range []Version{V37, V38} {
			if r, reason, n, err := ParseSecurityResult(b, v); !short("result", n, err) {
				var again []byte
				if r == ResultOK || v == V37 {
					again = b[:4]
				} else {
					again = AppendReason(append([]byte(nil), b[:4]...), string(reason))
				}
				if !bytes.Equal(again, b[:n]) {
					t.Fatal("result round trip")
				}
			}
		}
		if l, n, err := ParseVeNCryptSubtypes(b); !short("subtypes", n, err) {
			sub := make([]uint32, l.Len())
			for i := range sub {
				sub[i] = l.At(i)
				if !l.Has(sub[i]) {
					t.Fatal("Has")
				}
			}
			if !bytes.Equal(AppendVeNCryptSubtypes(nil, sub...), b[:n]) {
				t.Fatal("subtypes round trip")
			}
		}
		if _, n, err := ParseSecurityType33(b); !short("type33", n, err) && n != 4 {
			t.Fatal("type33")
		}
	})
}
