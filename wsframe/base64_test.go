package wsframe

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"testing"
)

// decodeChunks decodes msg through a Base64Decoder cut at the given increasing offsets.
func decodeChunks(msg []byte, cuts []int) ([]byte, error) {
	var d Base64Decoder
	var out []byte
	prev := 0
	var err error
	for _, c := range append(cuts, len(msg)) {
		out, err = d.Decode(out, msg[prev:c])
		if err != nil {
			_ = d.End()
			return nil, err
		}
		prev = c
	}
	if err := d.End(); err != nil {
		return nil, err
	}
	return out, nil
}

// stdDecode is the reference: encoding/base64, except that it skips CR and LF, which the
// subprotocol does not allow.
func stdDecode(msg []byte) ([]byte, bool) {
	if bytes.ContainsAny(msg, "\r\n") {
		return nil, false
	}
	out, err := base64.StdEncoding.DecodeString(string(msg))
	return out, err == nil
}

func TestBase64EncodedLen(t *testing.T) {
	for n, want := range []int{0, 4, 4, 4, 8, 8, 8, 12} {
		if got := Base64EncodedLen(n); got != want {
			t.Fatalf("Base64EncodedLen(%d) = %d, want %d", n, got, want)
		}
		if got := len(AppendBase64(nil, make([]byte, n))); got != want {
			t.Fatalf("len(AppendBase64(%d bytes)) = %d, want %d", n, got, want)
		}
	}
}

func TestAppendBase64(t *testing.T) {
	out := AppendBase64([]byte("x:"), []byte("any carnal pleas"))
	if string(out) != "x:YW55IGNhcm5hbCBwbGVhcw==" {
		t.Fatalf("got %q", out)
	}
}

// TestBase64EverySplit decodes messages cut at every single split point and every pair of split
// points.
func TestBase64EverySplit(t *testing.T) {
	msgs := []string{"", "QQ==", "QUI=", "QUJD", "YW55IGNhcm5hbCBwbGVhcw==", "YW55IGNhcm5hbCBwbGVhc3U=", "YW55IGNhcm5hbCBwbGVhc3Vy"}
	for _, m := range msgs {
		msg := []byte(m)
		want, _ := base64.StdEncoding.DecodeString(m)
		for i := 0; i <= len(msg); i++ {
			for j := i; j <= len(msg); j++ {
				got, err := decodeChunks(msg, []int{i, j})
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("%q cut at %d,%d: %q %v, want %q", m, i, j, got, err, want)
				}
			}
		}
	}
}

func TestBase64Errors(t *testing.T) {
	cases := []struct {
		name string
		msg  string
	}{
		{
			name: "bad char",
			msg:  "QU*D",
		},
		{
			name: "url alphabet",
			msg:  "QU-_",
		},
		{
			name: "space",
			msg:  "QUJD QUJD",
		},
		{
			name: "LF",
			msg:  "QUJD\nQUJD",
		},
		{
			name: "CR LF at the end",
			msg:  "QUJD\r\n",
		},
		{
			name: "padding in the middle",
			msg:  "QQ==QUJD",
		},
		{
			name: "padding then padding",
			msg:  "QQ==QQ==",
		},
		{
			name: "padding inside a quantum",
			msg:  "Q=JD",
		},
		{
			name: "three padding bytes",
			msg:  "Q===",
		},
		{
			name: "only padding",
			msg:  "====",
		},
		{
			name: "missing padding",
			msg:  "QQ",
		},
		{
			name: "partial quantum of 1",
			msg:  "QUJDQ",
		},
		{
			name: "partial quantum of 3",
			msg:  "QUJDQUJ",
		},
		{
			name: "half padding",
			msg:  "QQ=",
		},
		{
			name: "byte after padding",
			msg:  "QUI=Q",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := []byte(c.msg)
			for i := 0; i <= len(msg); i++ {
				_, err := decodeChunks(msg, []int{i})
				if err == nil {
					t.Fatalf("%q cut at %d: no error", c.msg, i)
				}
				if !errors.Is(err, ErrBase64) || CloseCodeFor(err) != 1007 {
					t.Fatalf("%q cut at %d: %v", c.msg, i, err)
				}
			}
		})
	}
}

func TestBase64DecoderReuse(t *testing.T) {
	var d Base64Decoder
	// A failed message keeps failing until End, which reports it and resets.
	if _, err := d.Decode(nil, []byte("QQ==QQ")); err == nil {
		t.Fatal("no error")
	}
	if out, err := d.Decode(nil, []byte("QUJD")); err == nil || len(out) != 0 {
		t.Fatalf("Decode after a failure: %q %v", out, err)
	}
	if err := d.End(); !errors.Is(err, ErrBase64) {
		t.Fatalf("End after a failed Decode: %v", err)
	}
	if out, err := d.Decode(nil, []byte("QUJD")); err != nil || string(out) != "ABC" {
		t.Fatalf("next message: %q %v", out, err)
	}
	if err := d.End(); err != nil {
		t.Fatal(err)
	}
	// A partial quantum fails End, and End still resets.
	if _, err := d.Decode(nil, []byte("QUJ")); err != nil {
		t.Fatal(err)
	}
	if err := d.End(); err == nil {
		t.Fatal("End accepted a partial quantum")
	}
	// Padding ends a message, not the decoder.
	for range 3 {
		out, err := d.Decode(nil, []byte("QQ=="))
		if err != nil || string(out) != "A" {
			t.Fatalf("%q %v", out, err)
		}
		if err := d.End(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBase64RandomChunks is the property test: random data, random chunking, same bytes as the
// standard library.
func TestBase64RandomChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		data := make([]byte, r.IntN(300))
		for i := range data {
			data[i] = byte(r.UintN(256))
		}
		msg := AppendBase64(nil, data)
		var cuts []int
		for c := 0; c < len(msg); {
			c += r.IntN(9)
			if c <= len(msg) {
				cuts = append(cuts, c)
			}
		}
		got, err := decodeChunks(msg, cuts)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%q cut at %v: %v", msg, cuts, err)
		}
	}
}

func FuzzBase64Decoder(f *testing.F) {
	f.Add([]byte("QUJD"), uint64(0))
	f.Add([]byte("YW55IGNhcm5hbCBwbGVhcw=="), uint64(0x0102030405))
	f.Add([]byte("QQ==QQ=="), uint64(3))
	f.Add([]byte("QQ"), uint64(1))
	f.Add([]byte("QU\nJD"), uint64(2))
	f.Add([]byte("QR=="), uint64(9))
	f.Fuzz(func(t *testing.T, msg []byte, seed uint64) {
		// The seed picks the cut points, so the fuzzer explores chunkings too.
		r := rand.New(rand.NewPCG(seed, seed>>32))
		var cuts []int
		for c := 0; c < len(msg); {
			c += r.IntN(6)
			if c <= len(msg) {
				cuts = append(cuts, c)
			}
		}
		got, err := decodeChunks(msg, cuts)
		want, ok := stdDecode(msg)
		if (err == nil) != ok {
			t.Fatalf("%q cut at %v: error %v, stdlib ok %v", msg, cuts, err, ok)
		}
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("%q cut at %v: %q, stdlib %q", msg, cuts, got, want)
		}
	})
}
