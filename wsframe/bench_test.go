package wsframe

import (
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkParseHeader(b *testing.B) {
	for _, size := range []int{100, 1000, 70000} {
		frame := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, make([]byte, size))
		hl := HeaderLen(frame)
		b.Run(fmt.Sprintf("len=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(hl))
			var n int
			for b.Loop() {
				h, m, err := ParseHeader(frame)
				if err != nil {
					b.Fatal(err)
				}
				n += m + int(h.Length)
			}
			_ = n
		})
	}
}

func BenchmarkPutHeader(b *testing.B) {
	for _, size := range []int{100, 1000, 70000} {
		var dst [MaxHeaderSize]byte
		b.Run(fmt.Sprintf("len=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(PutHeader(dst[:], true, ws.OpBinary, size)))
			var n int
			for b.Loop() {
				n += PutHeader(dst[:], true, ws.OpBinary, size)
			}
			_ = n
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func BenchmarkUnmask(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		p := make([]byte, size)
		b.Run(sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			off := 0
			for b.Loop() {
				off = Unmask(p, testMask, off)
			}
		})
	}
}

func BenchmarkBase64Encode(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		src := make([]byte, size)
		dst := make([]byte, 0, Base64EncodedLen(size))
		b.Run(sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				dst = AppendBase64(dst[:0], src)
			}
		})
	}
}

// BenchmarkBase64Decode feeds each message in 1500-byte chunks (about one TCP segment), so the
// carry between chunks is part of the cost; SetBytes counts decoded bytes, as for Encode.
func BenchmarkBase64Decode(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		src := AppendBase64(nil, make([]byte, size))
		dst := make([]byte, 0, size+3)
		b.Run(sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			var d Base64Decoder
			for b.Loop() {
				out := dst[:0]
				var err error
				for i := 0; i < len(src); i += 1500 {
					out, err = d.Decode(out, src[i:min(i+1500, len(src))])
					if err != nil {
						b.Fatal(err)
					}
				}
				if err := d.End(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
