package rfb

import (
	"errors"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		v    Version
		n    int
		want error
	}{
		{"RFB 003.008\n", V38, 12, nil},
		{"RFB 003.889\nmore", MakeVersion(3, 889), 12, nil},
		{"RFB 005.000\n", MakeVersion(5, 0), 12, nil},
		{"RFB 003.00", 0, 12, ErrShort},
		{"", 0, 12, ErrShort},
		{"RFB 003.008\r\n", 0, 0, ErrNotRFB},
		{"rfb 003.008\n", 0, 0, ErrNotRFB},
		{"RFB 3.8\n", 0, 0, ErrNotRFB},
		{"RFB 0x3.008\n", 0, 0, ErrNotRFB},
		{"X", 0, 0, ErrNotRFB},
	} {
		v, n, err := ParseVersion([]byte(tc.in))
		if v != tc.v || n != tc.n || !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("ParseVersion(%q) = %v, %d, %v; want %v, %d, %v", tc.in, v, n, err, tc.v, tc.n, tc.want)
		}
	}
}

func TestAppendVersion(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		want string
	}{{V33, "RFB 003.003\n"}, {V37, "RFB 003.007\n"}, {V38, "RFB 003.008\n"}, {MakeVersion(3, 889), "RFB 003.889\n"}, {MakeVersion(1003, 1), "RFB 003.001\n"}} {
		if got := string(AppendVersion(nil, tc.v)); got != tc.want {
			t.Errorf("AppendVersion(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	if V38.String() != "3.8" || (MakeVersion(0, 0)).String() != "0.0" || (MakeVersion(12, 345)).String() != "12.345" {
		t.Error("Version.String")
	}
}

func TestVersionOrder(t *testing.T) {
	order := []Version{0, MakeVersion(2, 999), V33, MakeVersion(3, 6), V37, V38, MakeVersion(3, 889), MakeVersion(4, 0), MakeVersion(5, 0)}
	for i := 1; i < len(order); i++ {
		if !(order[i-1] < order[i]) {
			t.Errorf("%v is not before %v", order[i-1], order[i])
		}
	}
	if v := MakeVersion(3, 889); v.Major() != 3 || v.Minor() != 889 {
		t.Fatal(v.Major(), v.Minor())
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		server, want Version
		ok           bool
	}{
		{V33, V33, true}, {MakeVersion(3, 4), V33, true}, {MakeVersion(3, 6), V33, true}, {V37, V37, true}, {V38, V38, true},
		{MakeVersion(3, 889), V38, true}, {MakeVersion(4, 0), V38, true}, {MakeVersion(4, 1), V38, true}, {MakeVersion(5, 0), V38, true},
		{MakeVersion(0, 0), 0, false}, {MakeVersion(3, 2), 0, false}, {MakeVersion(2, 9), 0, false},
	} {
		got, err := NegotiateServer(tc.server)
		if got != tc.want || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrUnsupportedVersion)) {
			t.Errorf("NegotiateServer(%v) = %v, %v", tc.server, got, err)
		}
	}
	for _, tc := range []struct {
		client, want Version
		ok           bool
	}{
		{V33, V33, true}, {MakeVersion(3, 5), V33, true}, {MakeVersion(3, 0), V33, true}, {V37, V37, true}, {V38, V38, true},
		{MakeVersion(3, 889), V38, true}, {MakeVersion(4, 0), 0, false}, {MakeVersion(2, 0), 0, false},
	} {
		got, err := NegotiateClient(tc.client)
		if got != tc.want || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrUnsupportedVersion)) {
			t.Errorf("NegotiateClient(%v) = %v, %v", tc.client, got, err)
		}
	}
}

func TestNotRFBGuesses(t *testing.T) {
	for in, want := range map[string]string{
		"HTTP/1.1 200":     "an HTTP response",
		"POST /x HTTP/1.1": "an HTTP request",
		"\x15\x03\x03\x00": "TLS",
		"SSH-2.0-x":        "an SSH banner",
		"220 mail ESMTP":   "an SMTP or FTP banner",
		"* OK IMAP":        "a mail server banner",
		"FBS 001.000\n":    "an FBS recording",
		"\x00\x00\x00\x00": "",
	} {
		if got := guessProtocol([]byte(in)); got != want {
			t.Errorf("guessProtocol(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseVersion: parse never panics, agrees with CheckVersionPrefix, and a parsed version
// formats back to the same bytes.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"RFB 003.008\n", "RFB 003.889\n", "RFB 000.000\n", "RFB 004.001\n", "HTTP/1.1 400", "RFB 003", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := ParseVersion(b)
		switch {
		case err == nil:
			if n != VersionLen || string(AppendVersion(nil, v)) != string(b[:VersionLen]) {
				t.Fatalf("%q parsed as %v", b, v)
			}
			if sv, err := NegotiateServer(v); err == nil && sv != V33 && sv != V37 && sv != V38 {
				t.Fatalf("negotiated %v", sv)
			}
		case err == ErrShort:
			if len(b) >= VersionLen || !CheckVersionPrefix(b) {
				t.Fatalf("%q short", b)
			}
		default:
			if !errors.Is(err, ErrNotRFB) || CheckVersionPrefix(b) {
				t.Fatalf("%q: %v", b, err)
			}
		}
	})
}
