package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vncedge/bench/rfbclient"
	"vncedge/rfb"
)

// TestVMReplay runs `bench vm --replay FILE` as its own process, connects to it as a VNC client
// and stops it with SIGINT, as an operator would.
func TestVMReplay(t *testing.T) {
	si := rfb.ServerInit{Width: 4, Height: 2, Format: rfb.NoVNC32(), Name: "replayed"}
	update := []byte{rfb.MsgFramebufferUpdate, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 0}
	update = append(update, bytes.Repeat([]byte{0x5a}, 4*2*4)...)
	file := rfb.AppendFBSHeader(nil)
	file = rfb.AppendFBSBlock(file, rfb.AppendRecordingStart(nil, rfb.V38, si), 0)
	file = rfb.AppendFBSBlock(file, update, 20)
	path := filepath.Join(t.TempDir(), "rec.fbs")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "vm", "--replay", path, "--listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "VNCEDGE_BENCH_AS_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })

	var first string
	select {
	case first = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatalf("no start line; stderr:\n%s", stderr.String())
	}
	// "vncsim: replay rfb on 127.0.0.1:PORT (4x2)"
	f := strings.Fields(first)
	if len(f) != 6 || f[1] != "replay" || f[5] != "(4x2)" {
		t.Fatalf("start line %q", first)
	}
	c, err := net.DialTimeout("tcp", f[4], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	got, err := rfbclient.Handshake(struct {
		io.Reader
		io.Writer
	}{br, c}, "")
	if err != nil || got != si {
		t.Fatalf("ServerInit %+v, %v", got, err)
	}
	if rects, n, err := rfbclient.ReadUpdate(br, 4, nil); err != nil || rects != 1 || n != 32 {
		t.Fatalf("update: %d rects, %d bytes, %v", rects, n, err)
	}
	if err := rfbclient.KeyEvent(c, true, 'x'); err != nil {
		t.Fatal(err)
	}
	// Half-close and read to the end: the server closes once it has read (and counted)
	// everything we sent.
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("bench vm exited with %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bench vm did not stop on SIGINT")
	}
	if len(rest) != 1 || !strings.Contains(rest[0], "1 sessions") || !strings.Contains(rest[0], "1 keys") {
		t.Fatalf("stats %q", rest)
	}
}

func TestVMReplayBadFile(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"vm", "--replay", filepath.Join(t.TempDir(), "missing.fbs"), "--listen", "127.0.0.1:0"}, &out, &errb); code == 0 {
		t.Fatal("a missing recording was served")
	}
	if !strings.Contains(errb.String(), "missing.fbs") {
		t.Fatalf("error does not name the file: %q", errb.String())
	}
}
