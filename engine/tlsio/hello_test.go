package tlsio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"
)

// captureHello returns the first flight of a crypto/tls client with cfg: its ClientHello.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	m := newMemConn()
	c := tls.Client(m, cfg)
	go c.Handshake()
	hello := <-m.toLoop
	m.Close()
	return hello
}

// refragment rewrites a one-record ClientHello as records carrying the given payload sizes in
// turn (the last size repeats), the way a client may spread a large hello.
func refragment(t testing.TB, hello []byte, sizes ...int) []byte {
	t.Helper()
	h, err := ParseRecordHeader(hello)
	if err != nil || len(hello) != RecordHeaderLen+h.Length {
		t.Fatalf("not one whole record: %v", err)
	}
	body := hello[RecordHeaderLen:]
	var out []byte
	for i := 0; len(body) > 0; i++ {
		n := min(sizes[min(i, len(sizes)-1)], len(body))
		out = append(out, TypeHandshake, hello[1], hello[2], byte(n>>8), byte(n))
		out = append(out, body[:n]...)
		body = body[n:]
	}
	return out
}

func TestParseRecordHeader(t *testing.T) {
	cases := []struct {
		in   []byte
		want RecordHeader
		err  error
	}{
		{[]byte{22, 3, 1, 0, 200}, RecordHeader{22, 0x0301, 200}, nil},
		{[]byte{23, 3, 3, 0x48, 0x00}, RecordHeader{23, 0x0303, MaxCiphertext}, nil},
		{[]byte{23, 3, 3, 0x48, 0x01}, RecordHeader{23, 0x0303, MaxCiphertext + 1}, ErrRecordOverflow},
		{[]byte{21, 3, 3, 0, 2, 1, 0}, RecordHeader{21, 0x0303, 2}, nil},
		{[]byte{24, 3, 3, 0, 1}, RecordHeader{24, 0x0303, 1}, ErrNotTLS},
		{[]byte{19, 3, 3, 0, 1}, RecordHeader{19, 0x0303, 1}, ErrNotTLS},
		{[]byte{22, 2, 0, 0, 1}, RecordHeader{22, 0x0200, 1}, ErrNotTLS},
		{[]byte{22, 3, 1, 0}, RecordHeader{}, ErrShort},
		{nil, RecordHeader{}, ErrShort},
	}
	for _, c := range cases {
		h, err := ParseRecordHeader(c.in)
		if h != c.want || err != c.err {
			t.Errorf("% x: %+v, %v; want %+v, %v", c.in, h, err, c.want, c.err)
		}
	}
}

func TestLooksLikeHTTP(t *testing.T) {
	yes := []string{"G", "GE", "GET", "GET ", "GET / HTTP/1.1\r\n", "POST /x", "OPTIONS * HTTP/1.1", "PRI * HTTP/2.0", "H", "DELETE /", "CONNECT h:1 HTTP/1.1"}
	no := []string{"", "\x16\x03\x01", "GETX", "get /", "GET/", "X", " GET", "\x00", "POSTX /"}
	for _, s := range yes {
		if !LooksLikeHTTP([]byte(s)) {
			t.Errorf("%q: not HTTP, want HTTP", s)
		}
	}
	for _, s := range no {
		if LooksLikeHTTP([]byte(s)) {
			t.Errorf("%q: HTTP, want not", s)
		}
	}
}

func TestScanClientHello(t *testing.T) {
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			hello := captureHello(t, &tls.Config{ServerName: testHost, MinVersion: v.v, MaxVersion: v.v, NextProtos: []string{"http/1.1"}})
			t.Logf("ClientHello: %d bytes", len(hello))
			for k := range len(hello) {
				if end, err := ScanClientHello(hello[:k], 0); err != ErrShort {
					t.Fatalf("prefix %d of %d: %d, %v; want ErrShort", k, len(hello), end, err)
				}
			}
			if end, err := ScanClientHello(hello, 0); end != len(hello) || err != nil {
				t.Fatalf("whole hello: %d, %v", end, err)
			}
			// Bytes after the hello are not part of it.
			if end, err := ScanClientHello(append(bytes.Clone(hello), 20, 3, 3, 0, 1, 1), 0); end != len(hello) || err != nil {
				t.Fatalf("hello and more: %d, %v", end, err)
			}
			// Spread over records, with the 4-byte message header itself cut in two.
			frag := refragment(t, hello, 2, 3, 100, 700)
			for k := range len(frag) {
				if end, err := ScanClientHello(frag[:k], 0); err != ErrShort {
					t.Fatalf("fragmented prefix %d of %d: %d, %v", k, len(frag), end, err)
				}
			}
			if end, err := ScanClientHello(frag, 0); end != len(frag) || err != nil {
				t.Fatalf("fragmented: %d, %v", end, err)
			}
			if _, err := ScanClientHello(hello, len(hello)-RecordHeaderLen-handshakeHeaderLen-1); err != ErrHelloTooLarge {
				t.Fatalf("limit one below: %v, want ErrHelloTooLarge", err)
			}
			if end, err := ScanClientHello(hello, len(hello)-RecordHeaderLen-handshakeHeaderLen); end != len(hello) || err != nil {
				t.Fatalf("limit exact: %d, %v", end, err)
			}
			tooMany := refragment(t, hello, 1) // more than 64 records
			if _, err := ScanClientHello(tooMany, 0); err != ErrHelloTooLarge {
				t.Fatalf("%d records: %v, want ErrHelloTooLarge", recordsIn(tooMany), err)
			}
		})
	}
}

func TestScanClientHelloRefuses(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: testHost})
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(hello)) }
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"plain HTTP", []byte("GET /websockify HTTP/1.1\r\nHost: x\r\n\r\n"), ErrPlainHTTP},
		{"HTTP first byte", []byte("P"), ErrPlainHTTP},
		{"SSLv2", []byte{0x80, 0x2e, 0x01, 0x00, 0x02}, ErrSSLv2},
		{"SSLv2 first byte", []byte{0x80}, ErrSSLv2},
		{"zeros", []byte{0, 0, 0, 0, 0, 0}, ErrNotTLS},
		{"SSH", []byte("SSH-2.0-OpenSSH_9.6\r\n"), ErrNotTLS},
		{"RFB", []byte("RFB 003.008\n"), ErrNotTLS},
		{"handshake, bad major version", []byte{22, 4}, ErrNotTLS},
		{"application data first", []byte{23, 3, 3, 0, 1, 0}, ErrNotTLS},
		{"alert first", []byte{21, 3, 3, 0, 2, 2, 40}, ErrNotTLS},
		{"oversized record", []byte{22, 3, 1, 0x40, 0x01}, ErrRecordOverflow},
		{"empty record", []byte{22, 3, 1, 0, 0, 22, 3, 1, 0, 1, 1}, ErrBadHello},
		{"ServerHello", with(func(b []byte) []byte { b[5] = 2; return b }), ErrBadHello},
		{"alert in the middle", append(refragment(t, hello, 10)[:15], 21, 3, 3, 0, 2, 2, 40), ErrBadHello},
		{"garbage second record", append(refragment(t, hello, 10)[:15], 0xff, 0, 0, 0, 1), ErrBadHello},
		{"announced 16 MiB", []byte{22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}, ErrHelloTooLarge},
	}
	for _, c := range cases {
		if end, err := ScanClientHello(c.in, 0); !errors.Is(err, c.want) || end != 0 {
			t.Errorf("%s: %d, %v; want %v", c.name, end, err, c.want)
		}
	}
	if !errors.Is(ErrPlainHTTP, ErrNotTLS) || !errors.Is(ErrSSLv2, ErrNotTLS) {
		t.Error("ErrPlainHTTP and ErrSSLv2 must match ErrNotTLS")
	}
}

// TestRecordStream checks that the boundary tracker agrees with itself however its input is
// cut, zero-length records and a broken header included.
func TestRecordStream(t *testing.T) {
	var b []byte
	for _, n := range []int{0, 1, 300, 0, 17000, 2} {
		b = append(b, 23, 3, 3, byte(n>>8), byte(n))
		b = append(b, make([]byte, n)...)
	}
	var whole recordStream
	whole.scan(b)
	if whole.complete != 6 || whole.end != int64(len(b)) || whole.broken {
		t.Fatalf("whole: %+v", whole)
	}
	for k := range len(b) + 1 {
		var s recordStream
		s.scan(b[:k])
		if s.end > int64(k) {
			t.Fatalf("cut %d: end %d past the bytes seen", k, s.end)
		}
		s.scan(b[k:])
		if s.complete != whole.complete || s.end != whole.end {
			t.Fatalf("cut %d: %+v, want %+v", k, s, whole)
		}
	}
	var one recordStream
	for i := range b {
		one.scan(b[i : i+1])
	}
	if one.complete != whole.complete || one.end != whole.end {
		t.Fatalf("byte by byte: %+v", one)
	}
	bad := append(bytes.Clone(b[:5]), 23, 3, 3, 0xff, 0xff, 1, 2, 3)
	var s recordStream
	s.scan(bad)
	if !s.broken || s.end != int64(len(bad)) || s.complete != 1 {
		t.Fatalf("broken header: %+v", s)
	}
}
