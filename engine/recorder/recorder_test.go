package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vncedge/rfb"
)

// inputLine is one line of an input file.
type inputLine struct {
	T      *uint32 `json:"t_ms"`
	Type   string  `json:"type"`
	Down   *bool   `json:"down"`
	Keysym *uint32 `json:"keysym"`
	Mask   *uint16 `json:"mask"`
	Code   *uint32 `json:"keycode"`
	Drop   bool    `json:"dropped"`
	X, Y   *uint16
	Reason string `json:"reason"`
}

func readLines(t *testing.T, path string) []inputLine {
	t.Helper()
	var out []inputLine
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		var l inputLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("input line %q: %v", sc.Text(), err)
		}
		if l.T == nil || l.Type == "" {
			t.Fatalf("input line %q lacks t_ms or type", sc.Text())
		}
		out = append(out, l)
	}
	return out
}

// TestRecordSession records a synthetic session: ServerInit in pieces, the client's
// SetPixelFormat, chunks from a few bytes to several segments, input events; the file decodes
// into the client's format and exactly the relayed stream, with increasing timestamps, and the
// input lines parse.
func TestRecordSession(t *testing.T) {
	logs := &logBuffer{}
	r := newRecorder(t, Config{Logger: logs.logger()})
	begin := time.Now()
	rec := start(t, r, Session{ID: "4f", Target: "10.0.0.5:5901", Begin: begin, Input: true})
	now := begin
	tick := func(d time.Duration) time.Time { now = now.Add(d); return now }

	siWire := serverSI.Append(nil)
	rec.FromVM(siWire[:3], tick(time.Millisecond))
	rec.FromVM(siWire[3:30], tick(time.Millisecond))
	rec.FromVM(siWire[30:], tick(time.Millisecond))
	rec.SetPixelFormat(rfb.RGB565(), tick(2*time.Millisecond))
	rec.SetPixelFormat(rfb.RGB565(), tick(time.Millisecond)) // the same again: no change
	var want []byte
	chunks := [][]byte{
		{rfb.MsgBell},
		rawUpdate(64, 48, 2, 1),
		bytes.Repeat([]byte{7}, 64<<10),
		bytes.Repeat([]byte{8}, 3*segSize+5), // split into several blocks
		{rfb.MsgBell, rfb.MsgBell, rfb.MsgBell},
	}
	for i, c := range chunks {
		rec.FromVM(c, tick(time.Duration(10*i+5)*time.Millisecond))
		want = append(want, c...)
		rec.Key(i%2 == 0, uint32(65+i), tick(time.Millisecond))
		rec.Pointer(uint16(i), uint16(10*i), uint16(20*i), tick(time.Millisecond))
	}
	rec.End("browser closed", tick(time.Second))
	rec.FromVM([]byte{1, 2, 3}, tick(time.Millisecond)) // after End: ignored
	waitDone(t, rec)

	if rec.Failed() || rec.Err() != nil {
		t.Fatalf("recording failed: %v", rec.Err())
	}
	fbs, input := rec.Paths()
	d := decodeFBS(t, readFile(t, fbs))
	if d.err != nil {
		t.Fatalf("decode: %v", d.err)
	}
	wantSI := serverSI
	wantSI.Format = rfb.RGB565()
	if d.version != rfb.V38 || d.si != wantSI {
		t.Fatalf("recorded start %v %+v, want 3.8 with %+v", d.version, d.si, wantSI)
	}
	if !bytes.Equal(d.stream, want) {
		t.Fatalf("recorded stream of %d bytes differs from the %d relayed", len(d.stream), len(want))
	}
	for i := 1; i < len(d.times); i++ {
		if d.times[i] < d.times[i-1] {
			t.Fatalf("block %d at %d ms, before block %d at %d ms", i, d.times[i], i-1, d.times[i-1])
		}
	}
	// The start is stamped when ServerInit completed (3 ms); the first chunk 10 ms later.
	if d.times[0] != 3 || d.times[1] != 3+2+1+5 {
		t.Fatalf("first timestamps %v, want 3 and 11", d.times[:2])
	}
	if last := d.times[len(d.times)-1]; last <= d.times[1] || last >= 1000 {
		t.Fatalf("last block at %d ms", last)
	}
	for i, n := range d.sizes {
		if n > maxBlockData {
			t.Fatalf("block %d holds %d bytes, over %d", i, n, maxBlockData)
		}
	}

	lines := readLines(t, input)
	if len(lines) != 2*len(chunks)+1 {
		t.Fatalf("%d input lines, want %d", len(lines), 2*len(chunks)+1)
	}
	var prev uint32
	for i, l := range lines[:len(lines)-1] {
		if *l.T < prev {
			t.Fatalf("input line %d goes back in time", i)
		}
		prev = *l.T
		k := i / 2
		switch {
		case i%2 == 0 && (l.Type != "key" || *l.Down != (k%2 == 0) || *l.Keysym != uint32(65+k)):
			t.Fatalf("input line %d: %+v", i, l)
		case i%2 == 1 && (l.Type != "pointer" || *l.Mask != uint16(k) || *l.X != uint16(10*k) || *l.Y != uint16(20*k)):
			t.Fatalf("input line %d: %+v", i, l)
		}
	}
	if end := lines[len(lines)-1]; end.Type != "end" || end.Reason != "browser closed" || *end.T < prev {
		t.Fatalf("last input line %+v", end)
	}

	st := r.Stats()
	size := int64(len(readFile(t, fbs)) + len(readFile(t, input)))
	if st.Started.Get() != 1 || st.Completed.Get() != 1 || st.Truncated.Get() != 0 || st.Failed.Get() != 0 ||
		int64(st.BytesWritten.Get()) != size || st.Active() != 0 || st.QueuedBytes() != 0 || st.FormatChanges.Get() != 0 {
		t.Fatalf("stats: started %d completed %d truncated %d failed %d written %d (files %d) active %d queued %d changes %d",
			st.Started.Get(), st.Completed.Get(), st.Truncated.Get(), st.Failed.Get(), st.BytesWritten.Get(), size,
			st.Active(), st.QueuedBytes(), st.FormatChanges.Get())
	}
	if st.QueueHighWater() < segSize {
		t.Fatalf("queue high water %d", st.QueueHighWater())
	}
	if l := logs.String(); !strings.Contains(l, "recording started") || !strings.Contains(l, "recording closed") ||
		!strings.Contains(l, "session=4f") || !strings.Contains(l, "reason=\"browser closed\"") {
		t.Fatalf("log:\n%s", l)
	}
}

// TestServerFormat: a client that never sends SetPixelFormat gets the server's format; the
// ServerInit and the first chunk may come in one piece.
func TestServerFormat(t *testing.T) {
	r := newRecorder(t, Config{})
	rec := start(t, r, Session{ID: "1", Target: "vm", Version: rfb.V37})
	upd := rawUpdate(64, 48, 4, 9)
	rec.FromVM(append(serverSI.Append(nil), upd[:100]...), time.Now())
	rec.FromVM(upd[100:], time.Now())
	rec.SetPixelFormat(rfb.NoVNC32(), time.Now()) // too late: a change, counted
	rec.End("done", time.Now())
	waitDone(t, rec)
	fbs, input := rec.Paths()
	if input != "" {
		t.Fatalf("an input file %q without Session.Input", input)
	}
	d := decodeFBS(t, readFile(t, fbs))
	if d.err != nil || d.version != rfb.V37 || d.si != serverSI || !bytes.Equal(d.stream, upd) {
		t.Fatalf("decoded %v %+v, %d bytes, %v", d.version, d.si, len(d.stream), d.err)
	}
	if n := r.Stats().FormatChanges.Get(); n != 1 {
		t.Fatalf("%d format changes counted, want 1", n)
	}
}

// TestByteAtATime feeds ServerInit and what follows one byte per call, with the client's
// SetPixelFormat arriving before ServerInit was complete.
func TestByteAtATime(t *testing.T) {
	r := newRecorder(t, Config{})
	rec := start(t, r, Session{ID: "2", Target: "vm", Version: rfb.V33})
	stream := append(serverSI.Append(nil), rawUpdate(3, 3, 1, 5)...)
	for i := range stream {
		if i == 10 {
			rec.SetPixelFormat(rfb.RGB565(), time.Now())
			rec.SetPixelFormat(rfb.NoVNC32(), time.Now()) // the last before ServerInit wins
		}
		rec.FromVM(stream[i:i+1], time.Now())
	}
	rec.End("done", time.Now())
	waitDone(t, rec)
	fbs, _ := rec.Paths()
	d := decodeFBS(t, readFile(t, fbs))
	want := serverSI
	want.Format = rfb.NoVNC32()
	if d.err != nil || d.version != rfb.V33 || d.si != want || !bytes.Equal(d.stream, stream[len(serverSI.Append(nil)):]) {
		t.Fatalf("decoded %v %+v %q, %v", d.version, d.si, d.stream, d.err)
	}
	if n := r.Stats().FormatChanges.Get(); n != 0 {
		t.Fatalf("%d format changes counted, want 0", n)
	}
}

// TestEndWhileHeld: a session that ends right after ServerInit still leaves a playable start.
func TestEndWhileHeld(t *testing.T) {
	r := newRecorder(t, Config{})
	rec := start(t, r, Session{ID: "3", Target: "vm"})
	rec.FromVM(serverSI.Append(nil), time.Now())
	rec.End("vm closed", time.Now())
	waitDone(t, rec)
	fbs, _ := rec.Paths()
	if d := decodeFBS(t, readFile(t, fbs)); d.err != nil || d.si != serverSI || len(d.stream) != 0 {
		t.Fatalf("decoded %+v %d, %v", d.si, len(d.stream), d.err)
	}
}

// TestNoServerInit: a session that ends before ServerInit leaves just the FBS header.
func TestNoServerInit(t *testing.T) {
	r := newRecorder(t, Config{})
	rec := start(t, r, Session{ID: "4", Target: "vm"})
	rec.FromVM(serverSI.Append(nil)[:10], time.Now())
	rec.End("vm closed", time.Now())
	waitDone(t, rec)
	fbs, _ := rec.Paths()
	if b := readFile(t, fbs); string(b) != rfb.FBSHeader || rec.Failed() {
		t.Fatalf("file %q, failed %v", b, rec.Failed())
	}
}

// TestPixelFormatChange: a second, different SetPixelFormat is counted and logged once, and the
// recording goes on with the stream unchanged.
func TestPixelFormatChange(t *testing.T) {
	logs := &logBuffer{}
	r := newRecorder(t, Config{Logger: logs.logger()})
	rec := start(t, r, Session{ID: "5", Target: "vm"})
	rec.FromVM(serverSI.Append(nil), time.Now())
	rec.SetPixelFormat(rfb.NoVNC32(), time.Now())
	rec.FromVM([]byte{rfb.MsgBell}, time.Now())
	rec.SetPixelFormat(rfb.RGB565(), time.Now())
	rec.FromVM([]byte{rfb.MsgBell}, time.Now())
	rec.SetPixelFormat(rfb.NoVNC32(), time.Now())
	rec.SetPixelFormat(rfb.NoVNC32(), time.Now())
	rec.FromVM([]byte{rfb.MsgBell}, time.Now())
	rec.End("done", time.Now())
	waitDone(t, rec)
	if n := r.Stats().FormatChanges.Get(); n != 2 {
		t.Fatalf("%d format changes, want 2", n)
	}
	fbs, _ := rec.Paths()
	d := decodeFBS(t, readFile(t, fbs))
	if d.err != nil || d.si.Format != rfb.NoVNC32() || string(d.stream) != "\x02\x02\x02" || rec.Failed() {
		t.Fatalf("decoded %+v %q %v", d.si, d.stream, d.err)
	}
	l := logs.String()
	if strings.Count(l, "changed its pixel format") != 1 || !strings.Contains(l, "pixel_format_changes=2") {
		t.Fatalf("log:\n%s", l)
	}
}

// TestTimestamps: block times are milliseconds since Begin; a clock that steps back (the
// engine's coarse clock read on two loops) never makes them go back.
func TestTimestamps(t *testing.T) {
	r := newRecorder(t, Config{})
	begin := time.Now()
	rec := start(t, r, Session{ID: "6", Target: "vm", Begin: begin})
	rec.FromVM(serverSI.Append(nil), begin.Add(-time.Second)) // before Begin: 0
	for _, ms := range []int{5, 250, 249, 1000, 999, 70000} {
		rec.FromVM([]byte{rfb.MsgBell}, begin.Add(time.Duration(ms)*time.Millisecond))
	}
	rec.End("done", begin.Add(time.Hour))
	waitDone(t, rec)
	fbs, _ := rec.Paths()
	d := decodeFBS(t, readFile(t, fbs))
	if d.err != nil {
		t.Fatal(d.err)
	}
	want := []uint32{0, 5, 250, 250, 1000, 1000, 70000}
	if len(d.times) != len(want) {
		t.Fatalf("times %v, want %v", d.times, want)
	}
	for i := range want {
		if d.times[i] != want[i] {
			t.Fatalf("times %v, want %v", d.times, want)
		}
	}
	if msSince(begin.Add(60*24*time.Hour), begin) != 1<<32-1 {
		t.Fatal("a session over 49 days does not keep the last timestamp")
	}
}

// TestNames: names carry time, id and target, sanitised; the same id in the same millisecond
// gets a number; a name someone else holds is never touched; files are 0600.
func TestNames(t *testing.T) {
	dir := t.TempDir()
	r := newRecorder(t, Config{Dir: dir})
	begin := time.Date(2026, 3, 12, 11, 15, 30, 123456789, time.FixedZone("CET", 3600))
	base := "20260312T101530.123Z_7_etc_passwd"
	// Someone else's file under the first name: the recorder must pick another.
	if err := os.WriteFile(filepath.Join(dir, base+".input.jsonl"), []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	var recs []*Recording
	for range 3 {
		rec := start(t, r, Session{ID: "7", Target: "../../etc/passwd", Begin: begin, Input: true})
		rec.End("done", begin)
		recs = append(recs, rec)
	}
	seen := map[string]bool{}
	for _, rec := range recs {
		waitDone(t, rec)
		fbs, input := rec.Paths()
		for _, p := range []string{fbs, input} {
			if filepath.Dir(p) != dir || seen[p] {
				t.Fatalf("path %q: outside %s or used twice", p, dir)
			}
			seen[p] = true
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v", p, fi.Mode())
			}
		}
		if !regexp.MustCompile(`^20260312T101530\.123Z_7_etc_passwd-[234]\.fbs$`).MatchString(filepath.Base(fbs)) ||
			strings.TrimSuffix(fbs, ".fbs")+".input.jsonl" != input {
			t.Fatalf("names %q %q", fbs, input)
		}
	}
	if b := readFile(t, filepath.Join(dir, base+".input.jsonl")); string(b) != "theirs" {
		t.Fatalf("someone else's file was changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, base+".fbs")); !os.IsNotExist(err) {
		t.Fatalf("the twin of a taken name was left behind: %v", err)
	}

	for _, c := range []struct{ id, target, want string }{
		{"1", "10.0.0.5:5901", "_1_10.0.0.5_5901"},
		{"a/b", "unix:/run/vnc/vm1.sock", "_a_b_unix_run_vnc_vm1.sock"},
		{"", "[fe80::1%eth0]:5901", "_none_fe80_1_eth0_5901"},
		{"..", "..", "_none_none"},
		{"x", strings.Repeat("y", 500), "_x_" + strings.Repeat("y", maxTargetLen)},
		{"x", "vm\n\x00é.", "_x_vm"},
	} {
		got := strings.TrimPrefix(baseName(begin, c.id, c.target, 0), "20260312T101530.123Z")
		if got != c.want {
			t.Errorf("name of %q %q: %q, want %q", c.id, c.target, got, c.want)
		}
	}
}

// TestMalformedServerInit: a ServerInit the codec refuses fails the recording, not the caller.
func TestMalformedServerInit(t *testing.T) {
	r := newRecorder(t, Config{})
	rec := start(t, r, Session{ID: "8", Target: "vm"})
	bad := serverSI.Append(nil)[:20]
	bad = append(bad, 0x7f, 0, 0, 0) // a name of 2 GiB
	rec.FromVM(bad, time.Now())
	if !rec.Failed() {
		t.Fatal("not failed")
	}
	rec.FromVM([]byte{1}, time.Now())
	rec.End("done", time.Now())
	waitDone(t, rec)
	fbs, _ := rec.Paths()
	if !strings.HasSuffix(fbs, ".truncated.fbs") || r.Stats().Failed.Get() != 1 || !strings.Contains(rec.Err().Error(), "ServerInit") {
		t.Fatalf("path %q, failed %d, err %v", fbs, r.Stats().Failed.Get(), rec.Err())
	}
	if b := readFile(t, fbs); string(b) != rfb.FBSHeader {
		t.Fatalf("file %q", b)
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"no dir":          {},
		"missing dir":     {Dir: filepath.Join(dir, "missing")},
		"not a dir":       {Dir: file},
		"tiny queue":      {Dir: dir, QueueBytes: 1000},
		"negative total":  {Dir: dir, TotalQueueBytes: -1},
		"total under one": {Dir: dir, QueueBytes: 1 << 20, TotalQueueBytes: 1 << 19},
		"writers":         {Dir: dir, MaxWriters: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	r := newRecorder(t, Config{Dir: dir})
	if _, err := r.Start(Session{Version: rfb.MakeVersion(4, 0)}); err == nil {
		t.Error("RFB 4.0 accepted")
	}
}

// TestShutdown: Shutdown waits for ended recordings, refuses new ones, and ends the ones still
// live when its context ends.
func TestShutdown(t *testing.T) {
	r, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := r.Start(Session{ID: "a", Target: "vm", Input: true})
	b, _ := r.Start(Session{ID: "b", Target: "vm", Input: true})
	a.FromVM(serverSI.Append(nil), time.Now())
	a.End("done", time.Now())
	waitDone(t, a)
	b.FromVM(serverSI.Append(nil), time.Now())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := r.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), "1 recordings") {
		t.Fatalf("Shutdown with a live recording: %v", err)
	}
	waitDone(t, b)
	if err := r.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown once all are done: %v", err)
	}
	if _, err := r.Start(Session{}); err != ErrClosed {
		t.Fatalf("Start after Shutdown: %v", err)
	}
	_, input := b.Paths()
	lines := readLines(t, input)
	if len(lines) != 1 || lines[0].Type != "end" || lines[0].Reason != "vncedge shutting down" {
		t.Fatalf("input of the aborted recording: %+v", lines)
	}
	b.FromVM([]byte{1}, time.Now()) // the loop's later calls are harmless
	b.End("late", time.Now())
	if n := r.Stats().Completed.Get(); n != 2 {
		t.Fatalf("%d completed", n)
	}
}

// TestLineRoom: the longest key and pointer lines fit the room reserved for one line.
func TestLineRoom(t *testing.T) {
	for _, l := range [][]byte{
		inputEvent{down: false, keysym: 1<<32 - 1, keycode: 1<<32 - 1, dropped: true}.appendLine(nil, 1<<32-1),
		inputEvent{pointer: true, mask: 65535, x: 65535, y: 65535, dropped: true}.appendLine(nil, 1<<32-1),
	} {
		if len(l) > lineRoom {
			t.Errorf("%q is %d bytes, over %d", l, len(l), lineRoom)
		}
		var v map[string]any
		if err := json.Unmarshal(l, &v); err != nil {
			t.Errorf("%q: %v", l, err)
		}
	}
	if l := lastLine(7, "end", "bad \x00 \"reason\"\n"); !json.Valid(bytes.TrimSpace(l)) {
		t.Errorf("%q is not JSON", l)
	}
}

// TestObserve: the messages an rfb.Scanner reports drive the recording: SetPixelFormat sets the
// recorded format, key (plain and QEMU) and pointer events become lines, and events a
// view-only filter dropped are marked.
func TestObserve(t *testing.T) {
	r := newRecorder(t, Config{})
	rec := start(t, r, Session{ID: "o", Target: "vm", Input: true})
	rec.FromVM(serverSI.Append(nil), time.Now())
	var stream []byte
	stream = rfb.AppendSetPixelFormat(stream, rfb.RGB565())
	stream = rfb.AppendSetEncodings(stream, rfb.EncodingRaw)
	stream = rfb.AppendFramebufferUpdateRequest(stream, false, 0, 0, 64, 48)
	stream = rfb.AppendKeyEvent(stream, true, 'a')
	stream = rfb.AppendQEMUKeyEvent(stream, false, 'a', 30)
	stream = rfb.AppendPointerEvent(stream, 4, 7, 9)
	var sc rfb.Scanner
	observe := func(m rfb.Message) { rec.Observe(m, time.Now()) }
	if err := sc.Scan(stream, observe); err != nil {
		t.Fatal(err)
	}
	var vo rfb.Scanner
	buf := bytes.Clone(stream)
	if _, _, err := vo.Filter(buf, rfb.ViewOnly, observe); err != nil {
		t.Fatal(err)
	}
	rec.FromVM([]byte{rfb.MsgBell}, time.Now())
	rec.End("done", time.Now())
	waitDone(t, rec)
	fbs, input := rec.Paths()
	if d := decodeFBS(t, readFile(t, fbs)); d.err != nil || d.si.Format != rfb.RGB565() {
		t.Fatalf("decoded %+v, %v", d.si, d.err)
	}
	lines := readLines(t, input)
	var got []string
	for _, l := range lines {
		s := l.Type
		switch l.Type {
		case "key":
			s += fmt.Sprintf(" %v %d", *l.Down, *l.Keysym)
			if l.Code != nil {
				s += fmt.Sprintf(" code %d", *l.Code)
			}
		case "pointer":
			s += fmt.Sprintf(" %d %d,%d", *l.Mask, *l.X, *l.Y)
		}
		if l.Drop {
			s += " dropped"
		}
		got = append(got, s)
	}
	want := []string{"key true 97", "key false 97 code 30", "pointer 4 7,9",
		"key true 97 dropped", "key false 97 code 30 dropped", "pointer 4 7,9 dropped", "end"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := r.Stats().FormatChanges.Get(); n != 0 {
		t.Fatalf("%d format changes: the same SetPixelFormat twice is none", n)
	}
}
