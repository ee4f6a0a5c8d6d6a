package rfb

import (
	"testing"
)

// BenchmarkScanNoVNC follows a typical noVNC input stream (setup, pointer movement, typing,
// clipboard, resize...), fed in the chunk sizes the engine sees: one WebSocket message per RFB
// message as noVNC sends them, and the whole stream at once.
func BenchmarkScanNoVNC(b *testing.B) {
	msgs := noVNCSession()
	stream := joinMsgs(msgs)
	b.Run("per-message", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		var s Scanner
		var n int
		observe := func(m Message) { n += int(m.Kind) }
		for b.Loop() {
			for _, m := range msgs {
				if err := s.Scan(m.b, observe); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(len(msgs)), "msgs/op")
	})
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		var s Scanner
		for b.Loop() {
			if err := s.Scan(stream, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFilterViewOnly is the view-only path: the same stream filtered in place with an
// audit observer. Filtering rewrites the buffer, so each round works on a fresh copy (copying
// is part of the measured time; it is what unmasking into the engine's buffer costs anyway).
func BenchmarkFilterViewOnly(b *testing.B) {
	msgs := noVNCSession()
	stream := joinMsgs(msgs)
	buf := make([]byte, len(stream))
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	var s Scanner
	var keys, kept int
	audit := func(m Message) {
		if InputEvents.Has(m.Kind) {
			keys++
		}
	}
	for b.Loop() {
		copy(buf, stream)
		carry, k, err := s.Filter(buf, ViewOnly, audit)
		if err != nil {
			b.Fatal(err)
		}
		kept += len(carry) + len(k)
	}
}

// BenchmarkScanCutText streams a 4 MiB ClientCutText in 64 KiB pieces, as a large paste
// arrives: the body is skipped, never copied.
func BenchmarkScanCutText(b *testing.B) {
	const size = 4 << 20
	msg := AppendClientCutText(nil, make([]byte, size))
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	var s Scanner
	for b.Loop() {
		for p := msg; len(p) > 0; {
			n := min(len(p), 64<<10)
			carry, kept, err := s.Filter(p[:n], ViewOnly, nil)
			if err != nil || len(carry)+len(kept) != 0 {
				b.Fatal(err)
			}
			p = p[n:]
		}
	}
}

// BenchmarkHandshakes is the per-session cost of the proxy's two handshakes.
func BenchmarkHandshakes(b *testing.B) {
	var ch [ChallengeLen]byte
	none := []byte("RFB 003.008\n\x01\x01\x00\x00\x00\x00")
	auth := append(append([]byte("RFB 003.008\n\x01\x02"), ch[:]...), 0, 0, 0, 0)
	client := []byte("RFB 003.008\n\x01")
	out := make([]byte, 0, 64)
	for _, c := range []struct {
		name     string
		in       []byte
		password []byte
	}{{"vm-none", none, nil}, {"vm-vncauth", auth, []byte("secret")}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h := NewVMHandshake(VMConfig{Password: c.password})
				if _, err := h.Feed(c.in); err != nil || !h.Done() {
					b.Fatal(err)
				}
				out = h.AppendOutput(out[:0])
			}
		})
	}
	b.Run("browser", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := NewBrowserHandshake()
			if _, err := h.Feed(client); err != nil || !h.Done() {
				b.Fatal(err)
			}
			out = h.AppendOutput(out[:0])
		}
	})
}

// BenchmarkFBS encodes and decodes 64 KiB blocks, the recorder's and the player's inner loops.
func BenchmarkFBS(b *testing.B) {
	data := make([]byte, 64<<10)
	file := AppendFBSBlock(AppendFBSHeader(nil), data, 1)
	buf := make([]byte, 0, FBSBlockLen(len(data)))
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			buf = AppendFBSBlock(buf[:0], data, 7)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var d FBSDecoder
			if _, _, err := d.Next(file); err != nil {
				b.Fatal(err)
			}
		}
	})
}
