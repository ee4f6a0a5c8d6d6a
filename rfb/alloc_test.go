package rfb

import (
	"fmt"
	"testing"
)

// TestZeroAllocs holds the calls doc.go lists as allocation-free to zero allocations.
func TestZeroAllocs(t *testing.T) {
	msgs := noVNCSession()
	stream := joinMsgs(msgs)
	buf := make([]byte, len(stream))
	dst := make([]byte, 0, 256)
	si := ServerInit{Width: 800, Height: 600, Format: Default32(), Name: "vm"}
	siWire := si.Append(nil)
	types := AppendSecurityTypes(nil, SecNone, SecVNCAuth)
	result := AppendSecurityResultFailed(nil, V38, "no")
	subtypes := AppendVeNCryptSubtypes(nil, VeNCryptX509Vnc, VeNCryptVNCAuth)
	fbs := AppendFBSBlock(AppendFBSHeader(nil), stream[:37], 5)
	vmScript := []byte("RFB 003.008\n\x01\x01\x00\x00\x00\x00")
	clientScript := []byte("RFB 003.008\n\x01")
	pix := make([]byte, 4)
	var sink int
	var s Scanner
	observe := func(m Message) {
		d, k := m.Key()
		b, x, y := m.Pointer()
		l, _ := m.CutText()
		sink += int(m.Kind) + int(k) + int(b) + int(x) + int(y) + int(l) + int(m.PixelFormat().BPP) + m.HeaderLen()
		if d {
			sink++
		}
	}

	checks := []struct {
		name string
		f    func()
	}{
		{"Scanner.Scan", func() {
			if err := s.Scan(stream, observe); err != nil {
				panic(err)
			}
		}},
		{"Scanner.Scan per message", func() {
			for _, m := range msgs {
				if err := s.Scan(m.b, observe); err != nil {
					panic(err)
				}
			}
		}},
		{"Scanner.Filter", func() {
			copy(buf, stream)
			c, k, err := s.Filter(buf, ViewOnly, observe)
			if err != nil {
				panic(err)
			}
			sink += len(c) + len(k)
		}},
		{"Scanner.Filter split", func() {
			copy(buf, stream)
			for i := 0; i < len(buf); i += 5 {
				c, k, err := s.Filter(buf[i:min(i+5, len(buf))], ViewOnly, nil)
				if err != nil {
					panic(err)
				}
				sink += len(c) + len(k)
			}
		}},
		{"ParseVersion", func() {
			v, n, err := ParseVersion(vmScript)
			if err != nil {
				panic(err)
			}
			sink += int(v.Minor()) + n
		}},
		{"CheckVersionPrefix", func() {
			if !CheckVersionPrefix(vmScript[:7]) {
				panic("prefix")
			}
		}},
		{"AppendVersion", func() { sink += len(AppendVersion(dst[:0], V38)) }},
		{"ParseSecurityTypes", func() {
			l, n, err := ParseSecurityTypes(types)
			if err != nil {
				panic(err)
			}
			sink += len(l) + n
		}},
		{"ParseSecurityType33", func() {
			v, n, _ := ParseSecurityType33(result)
			sink += int(v) + n
		}},
		{"ParseReason", func() {
			r, n, err := ParseReason(result[4:])
			if err != nil {
				panic(err)
			}
			sink += len(r) + n
		}},
		{"ParseSecurityResult", func() {
			r, reason, n, err := ParseSecurityResult(result, V38)
			if err != nil {
				panic(err)
			}
			sink += int(r) + len(reason) + n
		}},
		{"ParseVeNCryptSubtypes", func() {
			l, n, err := ParseVeNCryptSubtypes(subtypes)
			if err != nil {
				panic(err)
			}
			sink += int(l.At(1)) + n
		}},
		{"ParseClientInit", func() {
			sh, n, _ := ParseClientInit(buf)
			if sh {
				sink++
			}
			sink += n
		}},
		{"ForceShared", func() {
			b := buf[:1]
			b[0] = 0
			if !ForceShared(b) {
				panic("not forced")
			}
		}},
		{"ParseSetPixelFormat", func() {
			pf, n, err := ParseSetPixelFormat(stream)
			if err != nil {
				panic(err)
			}
			sink += int(pf.BPP) + n
		}},
		{"GetPixelFormat", func() { sink += int(GetPixelFormat(siWire[4:]).BPP) }},
		{"PixelFormat.Put", func() { si.Format.Put(buf) }},
		{"PixelFormat.Pixel", func() { si.Format.Pixel(pix, 1, 2, 3) }},
		{"FBSDecoder.Next", func() {
			var d FBSDecoder
			blk, n, err := d.Next(fbs)
			if err != nil {
				panic(err)
			}
			sink += len(blk.Data) + n
		}},
		{"AppendFBSBlock", func() { sink += len(AppendFBSBlock(dst[:0], stream[:37], 9)) }},
		{"AppendFBSBlockHead+Tail", func() {
			sink += len(AppendFBSBlockTail(AppendFBSBlockHead(dst[:0], 37), 37, 9))
		}},
		{"VMHandshake.Feed None", func() {
			h := NewVMHandshake(VMConfig{})
			n, err := h.Feed(vmScript)
			if err != nil || !h.Done() {
				panic(fmt.Sprint(n, err))
			}
			sink += len(h.AppendOutput(dst[:0]))
		}},
		{"BrowserHandshake.Feed", func() {
			h := NewBrowserHandshake()
			sink += len(h.AppendOutput(dst[:0]))
			n, err := h.Feed(clientScript)
			if err != nil || !h.Done() {
				panic(fmt.Sprint(n, err))
			}
			sink += len(h.AppendOutput(dst[:0]))
		}},
		{"BrowserHandshake failure", func() {
			h := NewBrowserFailure("unknown or expired link")
			if _, err := h.Feed(clientScript[:12]); err != nil || !h.Done() {
				panic(err)
			}
			sink += len(h.AppendOutput(dst[:0]))
		}},
	}
	for _, c := range checks {
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", c.name, n)
		}
	}
	// The sink keeps the calls from being optimised away.
	_ = fmt.Sprint(sink)
}
