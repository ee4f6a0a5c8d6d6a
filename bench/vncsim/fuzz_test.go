package vncsim

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"vncedge/rfb"
)

// FuzzClientMessages feeds arbitrary bytes to the desktop's client-message parser as if they
// followed the handshake: it must never panic and must end when the input does.
func FuzzClientMessages(f *testing.F) {
	pf := make([]byte, 20)
	rfb.RGB565().Put(pf[4:])
	fbur := []byte{rfb.MsgFramebufferUpdateRequest, 0, 0, 0, 0, 0, 0, 64, 0, 48}
	incr := []byte{rfb.MsgFramebufferUpdateRequest, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	key := []byte{rfb.MsgKeyEvent, 1, 0, 0, 0, 0, 0, 'a'}
	ptr := []byte{rfb.MsgPointerEvent, 1, 0, 5, 0, 6}
	cut := append([]byte{rfb.MsgClientCutText, 0, 0, 0, 0, 0, 0, 3}, "abc"...)
	enc := []byte{rfb.MsgSetEncodings, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21}
	fence := []byte{rfb.MsgClientFence, 0, 0, 0, 0, 0, 0, 1, 2, 9, 9}
	qemu := []byte{rfb.MsgQEMU, 0, 0, 1, 0, 0, 0, 'a', 0, 0, 0, 30}
	f.Add(bytes.Join([][]byte{pf, enc, fbur, incr, key, ptr, cut}, nil))
	f.Add(bytes.Join([][]byte{fence, qemu, {rfb.MsgXvp, 0, 1, 2}}, nil))
	f.Add([]byte{rfb.MsgClientCutText, 0, 0, 0, 0xff, 0xff, 0xff, 0xfd, 1, 2, 3})
	f.Add([]byte{rfb.MsgSetDesktopSize, 0, 0, 64, 0, 48, 1, 0})
	f.Add([]byte{77})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var st counters
		d := newDesktop(Config{Width: 64, Height: 48, FrameInterval: -1}, &st, nil)
		var out countingWriter
		out.w, out.n = io.Discard, &st.out
		err := d.run(bufio.NewReader(bytes.NewReader(data)), &out)
		if err == nil && st.updates.Load() > int64(len(data)/10) {
			t.Fatalf("%d updates from %d bytes", st.updates.Load(), len(data))
		}
		// Each update carries at most the whole 64x48 framebuffer at 4 bytes a pixel.
		if max := st.updates.Load() * (16 + 64*48*4); st.out.Load() > max {
			t.Fatalf("%d bytes out for %d updates", st.out.Load(), st.updates.Load())
		}
	})
}
