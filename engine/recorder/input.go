package recorder

import (
	"encoding/json"
	"strconv"
)

// The input file is JSON lines, one object per event, in the order the browser sent them:
//
//	{"t_ms":1520,"type":"key","down":true,"keysym":65}
//	{"t_ms":1533,"type":"pointer","mask":1,"x":10,"y":20}
//	{"t_ms":1540,"type":"key","down":false,"keysym":65,"keycode":30}
//	{"t_ms":1601,"type":"pointer","mask":0,"x":12,"y":20,"dropped":true}
//	{"t_ms":90210,"type":"end","reason":"browser closed"}
//
// t_ms counts from the session's start, like the FBS timestamps, so the two files line up.
// "keycode" is the XT scan code of a QEMU extended key event (noVNC sends those to QEMU VMs);
// "dropped" marks an event the proxy did not forward (a view-only session), so the file shows
// what the browser tried and, without those lines, what reached the VM.
// The last line says how the recording ended: "end" with the session's reason, or
// "truncated" with why it was cut. A file without either was cut by a crash.

// lineRoom is the most bytes one key or pointer line takes (every number at its widest, a
// keycode and the dropped flag).
const lineRoom = 112

// inputEvent is a key press or release, or a pointer position and button mask (16 bits:
// noVNC's extended form has 9 buttons).
type inputEvent struct {
	pointer         bool
	down            bool
	keysym, keycode uint32 // keycode is 0 but for a QEMU extended key event
	mask, x, y      uint16
	dropped         bool
}

// appendLine appends ev's line, stamped ms.
func (ev inputEvent) appendLine(b []byte, ms uint32) []byte {
	b = append(b, `{"t_ms":`...)
	b = strconv.AppendUint(b, uint64(ms), 10)
	if ev.pointer {
		b = append(b, `,"type":"pointer","mask":`...)
		b = strconv.AppendUint(b, uint64(ev.mask), 10)
		b = append(b, `,"x":`...)
		b = strconv.AppendUint(b, uint64(ev.x), 10)
		b = append(b, `,"y":`...)
		b = strconv.AppendUint(b, uint64(ev.y), 10)
	} else {
		b = append(b, `,"type":"key","down":`...)
		b = strconv.AppendBool(b, ev.down)
		b = append(b, `,"keysym":`...)
		b = strconv.AppendUint(b, uint64(ev.keysym), 10)
		if ev.keycode != 0 {
			b = append(b, `,"keycode":`...)
			b = strconv.AppendUint(b, uint64(ev.keycode), 10)
		}
	}
	if ev.dropped {
		b = append(b, `,"dropped":true`...)
	}
	return append(b, "}\n"...)
}

// lastLine is the line that closes an input file: kind "end" or "truncated". It is written once
// per recording, so encoding/json may allocate.
func lastLine(ms uint32, kind, reason string) []byte {
	b, _ := json.Marshal(struct {
		T      uint32 `json:"t_ms"`
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}{ms, kind, reason})
	return append(b, '\n')
}
