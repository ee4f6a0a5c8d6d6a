package vncsim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vncedge/bench/rfbclient"
	"vncedge/rfb"
)

// rawUpdate is a FramebufferUpdate with one w x h Raw rectangle of 4-byte pixels all set to v.
func rawUpdate(w, h uint16, v byte) []byte {
	b := []byte{rfb.MsgFramebufferUpdate, 0, 0, 1}
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h)
	b = binary.BigEndian.AppendUint32(b, uint32(rfb.EncodingRaw))
	return append(b, bytes.Repeat([]byte{v}, int(w)*int(h)*4)...)
}

type recBlock struct {
	data []byte
	ms   uint32
}

func writeRecording(t *testing.T, blocks []recBlock) string {
	t.Helper()
	f := rfb.AppendFBSHeader(nil)
	for _, b := range blocks {
		f = rfb.AppendFBSBlock(f, b.data, b.ms)
	}
	path := filepath.Join(t.TempDir(), "session.fbs")
	if err := os.WriteFile(path, f, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var replaySI = rfb.ServerInit{Width: 16, Height: 8, Format: rfb.NoVNC32(), Name: "recorded desktop"}

func TestReplayTiming(t *testing.T) {
	start := rfb.AppendRecordingStart(nil, rfb.V38, replaySI)
	path := writeRecording(t, []recBlock{
		{start, 1000}, // timestamps count from the recording's start, not from zero
		{rawUpdate(16, 8, 1), 1000},
		{rawUpdate(16, 8, 2), 1150},
		{append(rawUpdate(16, 8, 3), rawUpdate(4, 4, 4)...), 1300},
	})
	s := start2(t, Config{Mode: ModeReplay, ReplayFile: path, Password: "pw"})
	if cfg := s.Config(); cfg.Width != 16 || cfg.Height != 8 || cfg.Name != "recorded desktop" {
		t.Fatalf("config from the recording: %+v", cfg)
	}
	c, br, si := openSession(t, s, "pw")
	if si != replaySI {
		t.Fatalf("ServerInit %+v, want the recording's %+v", si, replaySI)
	}
	t0 := time.Now()
	var got []byte
	for i := 0; i < 4; i++ {
		_, _, err := rfbclient.ReadUpdate(br, 4, func(_ rfbclient.Rect, p []byte) { got = append(got, p[0]) })
		if err != nil {
			t.Fatal(err)
		}
		// The recorded spacing is a lower bound: a block never leaves before its time.
		if min := []time.Duration{0, 150, 300, 300}[i] * time.Millisecond; time.Since(t0) < min-10*time.Millisecond {
			t.Fatalf("update %d after %v, recorded at %v", i, time.Since(t0), min)
		}
	}
	if string(got) != "\x01\x02\x03\x04" {
		t.Fatalf("pixels %x", got)
	}
	// The client's input is followed and counted during and after the replay.
	if err := rfbclient.KeyEvent(c, true, 'a'); err != nil {
		t.Fatal(err)
	}
	if err := rfbclient.PointerEvent(c, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { st := s.Stats(); return st.KeyEvents == 1 && st.PointerEvents == 1 })
	// The session stays open after the last block, showing the last frame.
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := br.ReadByte(); !isTimeout(err) {
		t.Fatalf("after the recording: %v, want a read timeout", err)
	}
	c.Close()
	waitFor(t, func() bool { return s.Stats().SessionsOpen == 0 })
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// start2 is start for configurations that may fail to load.
func start2(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestReplayFastOldRecording serves a recording in rfbproxy's style (RFB 3.3 with VNC
// authentication, the handshake spread over several blocks) as fast as possible: an hour of
// recorded time is over at once.
func TestReplayFastOldRecording(t *testing.T) {
	var challenge [16]byte
	hs := append([]byte("RFB 003.003\n\x00\x00\x00\x02"), challenge[:]...)
	hs = append(hs, 0, 0, 0, 0)
	hs = replaySI.Append(hs)
	upd := rawUpdate(2, 2, 9)
	path := writeRecording(t, []recBlock{
		{hs[:5], 0}, {hs[5:30], 3}, {append(hs[30:], upd[:7]...), 5}, {upd[7:], 3600_000},
	})
	s := start2(t, Config{Mode: ModeReplay, ReplayFile: path, ReplayFast: true})
	_, br, si := openSession(t, s, "")
	if si != replaySI {
		t.Fatalf("ServerInit %+v", si)
	}
	if rects, n, err := rfbclient.ReadUpdate(br, 4, nil); err != nil || rects != 1 || n != 16 {
		t.Fatalf("update: %d rects, %d bytes, %v", rects, n, err)
	}
}

func TestReplayBadRecordings(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"not fbs":          []byte("RFB 003.008\n"),
		"handshake cut":    rfb.AppendFBSBlock(rfb.AppendFBSHeader(nil), []byte("RFB 003.008\n\x01"), 0),
		"block cut":        rfb.AppendFBSBlock(rfb.AppendFBSHeader(nil), []byte("RFB 003.008\n\x01\x01"), 0)[:20],
		"two types":        rfb.AppendFBSBlock(rfb.AppendFBSHeader(nil), []byte("RFB 003.008\n\x02\x01\x02"), 0),
		"empty":            nil,
		"not rfb inside":   rfb.AppendFBSBlock(rfb.AppendFBSHeader(nil), []byte("HTTP/1.1 200 OK\r\n"), 0),
		"huge block claim": append(rfb.AppendFBSHeader(nil), 0x7f, 0, 0, 0),
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := Listen("127.0.0.1:0", Config{Mode: ModeReplay, ReplayFile: path}); err == nil {
			s.Close()
			t.Errorf("%s: recording accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := Listen("127.0.0.1:0", Config{Mode: ModeReplay}); err == nil {
		t.Error("replay mode without a file accepted")
	}
	if _, err := Listen("127.0.0.1:0", Config{ReplayFile: "x.fbs"}); err == nil {
		t.Error("a replay file without replay mode accepted")
	}
	if _, err := Listen("127.0.0.1:0", Config{Mode: ModeReplay, ReplayFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing file accepted")
	}
}

// TestReplayBrokenClient: a client message the scanner cannot follow ends a replay session
// and counts as a protocol error.
func TestReplayBrokenClient(t *testing.T) {
	path := writeRecording(t, []recBlock{{rfb.AppendRecordingStart(nil, rfb.V38, replaySI), 0}})
	s := start2(t, Config{Mode: ModeReplay, ReplayFile: path})
	c, br, _ := openSession(t, s, "")
	if _, err := c.Write([]byte{99}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Stats().ProtocolErrors == 1 && s.Stats().SessionsOpen == 0 })
}

// TestOlderVersions: a 3.3 or 3.7 simulated VM, with and without a password, serves the
// rfbclient (which follows the server down to its version).
func TestOlderVersions(t *testing.T) {
	for _, v := range []rfb.Version{rfb.V33, rfb.V37} {
		for _, pw := range []string{"", "pw"} {
			s := start(t, Config{Version: v, Password: pw, Width: 8, Height: 4})
			c, br, si := openSession(t, s, pw)
			if si.Width != 8 || si.Height != 4 {
				t.Fatalf("%v: ServerInit %+v", v, si)
			}
			if err := rfbclient.RequestUpdate(c, false, 0, 0, 8, 4); err != nil {
				t.Fatal(err)
			}
			if _, n, err := rfbclient.ReadUpdate(br, 4, nil); err != nil || n != 8*4*4 {
				t.Fatalf("%v: update %d %v", v, n, err)
			}
		}
		// A 3.8 client is refused by an older server with a reason (rfbclient follows the
		// server, so speak 3.8 by hand).
		s := start(t, Config{Version: v})
		c := dial(t, s)
		br := bufio.NewReader(c)
		var ver [12]byte
		if _, err := io.ReadFull(br, ver[:]); err != nil || string(ver[:]) != string(rfb.AppendVersion(nil, v)) {
			t.Fatalf("%v: announced %q %v", v, ver, err)
		}
		c.Write(rfb.AppendVersion(nil, rfb.V38))
		rest, _ := io.ReadAll(br)
		want := "vncsim speaks only " + strings.TrimSpace(string(rfb.AppendVersion(nil, v)))
		if !bytes.HasSuffix(rest, []byte(want)) {
			t.Fatalf("%v: refusal %q", v, rest)
		}
	}
	if _, err := Listen("127.0.0.1:0", Config{Version: rfb.MakeVersion(4, 0)}); err == nil {
		t.Fatal("version 4.0 accepted")
	}
}

// TestReplayWaitsForRequest: nothing follows ServerInit until the client asks for an update, as
// from a real VNC server (noVNC leaves bytes that share a message with ServerInit unread until
// the next message, so an eager replay showed it a blank screen).
func TestReplayWaitsForRequest(t *testing.T) {
	start := rfb.AppendRecordingStart(nil, rfb.V38, replaySI)
	path := writeRecording(t, []recBlock{{start, 0}, {rawUpdate(16, 8, 7), 0}})
	s := start2(t, Config{Mode: ModeReplay, ReplayFile: path, ReplayFast: true})
	c, br, _ := openSession(t, s, "")
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := br.ReadByte(); !isTimeout(err) {
		t.Fatalf("before any update request: %v, want a read timeout", err)
	}
	if err := rfbclient.RequestUpdate(c, false, 0, 0, 16, 8); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got byte
	if _, _, err := rfbclient.ReadUpdate(br, 4, func(_ rfbclient.Rect, p []byte) { got = p[0] }); err != nil || got != 7 {
		t.Fatalf("update after the request: pixel %d, %v", got, err)
	}
}
