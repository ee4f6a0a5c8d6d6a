package engine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// TestNoTCPKeepalive: the engine's pings find dead browsers and VMs, so
// neither socket pays for kernel keepalive (Go turns it on by default, four
// setsockopt calls per connection).
func TestNoTCPKeepalive(t *testing.T) {
	echo := startEcho(t, "127.0.0.1:0", nil)
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	c.writeFrame(true, ws.OpBinary, []byte("ping"))
	if got := c.readData(4, 5*time.Second); string(got) != "ping" {
		t.Fatalf("echo %q", got)
	}
	type opts struct{ browser, vm int }
	var got []opts
	var mu sync.Mutex
	if err := ts.onLoops(context.Background(), 2*time.Second, func(ls *loopState) {
		ls.sessions.each(func(s *session) {
			b, _ := unix.GetsockoptInt(s.browser.c.Fd(), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			v, _ := unix.GetsockoptInt(s.vm.Fd(), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
			mu.Lock()
			got = append(got, opts{b, v})
			mu.Unlock()
		})
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != (opts{}) {
		t.Fatalf("SO_KEEPALIVE (browser, vm) per session: %v; want one session with both 0", got)
	}
}
