package wsframe

import (
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

// TestZeroAllocs holds the engine's per-message path to zero allocations.
func TestZeroAllocs(t *testing.T) {
	frame := AppendMaskedFrame(nil, true, ws.OpBinary, testMask, make([]byte, 70000))
	payload := make([]byte, 4096)
	raw := make([]byte, 3000)
	encoded := AppendBase64(nil, raw)
	encodedDst := make([]byte, 0, Base64EncodedLen(len(raw)))
	decodedDst := make([]byte, 0, len(raw)+3)
	var hdr [MaxHeaderSize]byte
	closeDst := make([]byte, 0, 2+MaxControlPayload)
	var d Base64Decoder
	var sink int

	checks := []struct {
		name string
		f    func()
	}{
		{
			name: "HeaderLen",
			f:    func() { sink += HeaderLen(frame) },
		},
		{
			name: "ParseHeader",
			f: func() {
				h, n, err := ParseHeader(frame)
				if err != nil {
					panic(err)
				}
				sink += n + int(h.Length)
			},
		},
		{
			name: "ParseHeader short",
			f: func() {
				_, n, err := ParseHeader(frame[:5])
				if err != ErrShort {
					panic(err)
				}
				sink += n
			},
		},
		{
			name: "CheckClient",
			f: func() {
				h, _, _ := ParseHeader(frame)
				if err := CheckClient(h, false); err != nil {
					panic(err)
				}
			},
		},
		{
			name: "PutHeader",
			f:    func() { sink += PutHeader(hdr[:], true, ws.OpBinary, 70000) },
		},
		{
			name: "Unmask",
			f:    func() { sink += Unmask(payload[1:], testMask, 3) },
		},
		{
			name: "ParseClose",
			f: func() {
				code, _, err := ParseClose([]byte{0x03, 0xe8, 'o', 'k'})
				if err != nil {
					panic(err)
				}
				sink += int(code)
			},
		},
		{
			name: "AppendClose",
			f:    func() { sink += len(AppendClose(closeDst[:0], 1000, "bye")) },
		},
		{
			name: "AppendBase64",
			f:    func() { sink += len(AppendBase64(encodedDst[:0], raw)) },
		},
		{
			name: "Base64Decoder.Decode",
			f: func() {
				out := decodedDst[:0]
				var err error
				for i := 0; i < len(encoded); i += 1000 {
					out, err = d.Decode(out, encoded[i:min(i+1000, len(encoded))])
					if err != nil {
						panic(err)
					}
				}
				if err := d.End(); err != nil {
					panic(err)
				}
				sink += len(out)
			},
		},
	}
	for _, c := range checks {
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, n)
		}
	}
	// The sink keeps the calls from being optimised away.
	_ = fmt.Sprint(sink)
}
