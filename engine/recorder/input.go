package recorder

import (
	"encoding/json"
	"strconv"
)

// The input file is JSON lines, one object per event, in the order the browser sent them:
//
//	{"t_ms":1520,"type":"key","down":true,"keysym":65}
//	{"t_ms":1533,"type":"pointer","mask":1,"x":10,"y":20}
//	{"t_ms":90210,"type":"end","reason":"browser closed"}
//
// t_ms counts from the session's start, like the FBS timestamps, so the two files line up.
// The last line says how the recording ended: "end" with the session's reason, or
// "truncated" with why it was cut. A file without either was cut by a crash.

// lineRoom is the most bytes one key or pointer line takes (with a 10-digit time and keysym).
const lineRoom = 80

func appendKeyLine(b []byte, ms uint32, down bool, keysym uint32) []byte {
	b = append(b, `{"t_ms":`...)
	b = strconv.AppendUint(b, uint64(ms), 10)
	b = append(b, `,"type":"key","down":`...)
	b = strconv.AppendBool(b, down)
	b = append(b, `,"keysym":`...)
	b = strconv.AppendUint(b, uint64(keysym), 10)
	return append(b, "}\n"...)
}

func appendPointerLine(b []byte, ms uint32, mask uint8, x, y uint16) []byte {
	b = append(b, `{"t_ms":`...)
	b = strconv.AppendUint(b, uint64(ms), 10)
	b = append(b, `,"type":"pointer","mask":`...)
	b = strconv.AppendUint(b, uint64(mask), 10)
	b = append(b, `,"x":`...)
	b = strconv.AppendUint(b, uint64(x), 10)
	b = append(b, `,"y":`...)
	b = strconv.AppendUint(b, uint64(y), 10)
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
