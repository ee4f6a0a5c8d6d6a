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
