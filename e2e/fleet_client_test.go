package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/pires/go-proxyproto"
)

// The fleet test's simulated VMs and browsers. A VM is a plain TCP echo
// server: what the fleet test proves (where sessions land, who closes them,
// what the logs say) does not depend on RFB, and an echo shows a session
// carries bytes both ways. A browser is a WebSocket client bound to a source
// address of its own, so every proxy in the chain sees a distinct client.

// fleetVM is one simulated VM: a TCP echo server on its own 127.x address.
type fleetVM struct {
	ln       net.Listener
	accepted atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startFleetVM(t *testing.T, addr string) *fleetVM {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("VM on %s: %v", addr, err)
	}
	vm := &fleetVM{ln: ln, conns: map[net.Conn]struct{}{}}
	vm.wg.Go(vm.serve)
	t.Cleanup(vm.close)
	return vm
}

func (vm *fleetVM) addr() string { return vm.ln.Addr().String() }

func (vm *fleetVM) port() int { return vm.ln.Addr().(*net.TCPAddr).Port }

func (vm *fleetVM) serve() {
	for {
		c, err := vm.ln.Accept()
		if err != nil {
			return
		}
		vm.mu.Lock()
		if vm.closed {
			vm.mu.Unlock()
			c.Close()
			return
		}
		vm.conns[c] = struct{}{}
		vm.mu.Unlock()
		vm.accepted.Add(1)
		vm.wg.Go(func() {
			_, _ = io.Copy(c, c)
			c.Close()
			vm.mu.Lock()
			delete(vm.conns, c)
			vm.mu.Unlock()
		})
	}
}

func (vm *fleetVM) close() {
	vm.mu.Lock()
	vm.closed = true
	for c := range vm.conns {
		c.Close()
	}
	vm.mu.Unlock()
	vm.ln.Close()
	vm.wg.Wait()
}

// fleetAddrs hands out client source addresses, 127.10.0.1 upwards: each
// names one simulated browser host.
type fleetAddrs struct {
	mu   sync.Mutex
	next uint32
}

func (a *fleetAddrs) take() netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.next++
	n := a.next
	return netip.AddrFrom4([4]byte{127, 10, byte(n / 250), byte(n%250 + 1)})
}

// fleetClient is one browser's session: a WebSocket through the load
// balancer from a source address of its own. A goroutine reads every frame:
// data goes to the data channel, pings are answered, and a close frame is
// recorded with the time it arrived, answered, and ends the stream.
type fleetClient struct {
	token string
	src   netip.Addr
	local string // "ip:port" of our end: what the proxy must name as the client

	conn net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex
	data chan []byte
	done chan struct{}

	// Written by the reader before done is closed.
	closeCode   ws.StatusCode
	closeReason string
	closedAt    time.Time
	endErr      error
}

// fleetDialError is a refused or failed upgrade; status is the HTTP status
// when the proxy answered the upgrade with one (0 otherwise).
type fleetDialError struct {
	status int
	err    error
}

func (e *fleetDialError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("upgrade answered HTTP %d", e.status)
	}
	return e.err.Error()
}

// dialFleet opens a session through front (host:port) from src with token.
func dialFleet(ctx context.Context, front string, src netip.Addr, token string) (*fleetClient, error) {
	return dialFleetVia(ctx, front, src, token, func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: 5 * time.Second}
		return nd.DialContext(ctx, network, addr)
	})
}

// dialEdgeDirect opens a session on one instance, bypassing the load
// balancer: it connects from 127.0.0.1 (a trusted proxy) and, as HAProxy
// would, names src as the client in a PROXY v2 header.
func dialEdgeDirect(ctx context.Context, listen string, src netip.Addr, token string) (*fleetClient, error) {
	return dialFleetVia(ctx, listen, src, token, func(ctx context.Context, network, addr string) (net.Conn, error) {
		nd := net.Dialer{Timeout: 5 * time.Second}
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		client := net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 40000))
		if _, err := proxyproto.HeaderProxyFromAddrs(2, client, c.RemoteAddr()).WriteTo(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
}

func dialFleetVia(ctx context.Context, addr string, src netip.Addr, token string, netDial func(context.Context, string, string) (net.Conn, error)) (*fleetClient, error) {
	var status int
	d := ws.Dialer{
		Protocols:     []string{"binary"},
		Timeout:       10 * time.Second,
		NetDial:       netDial,
		OnStatusError: func(s int, _ []byte, _ io.Reader) { status = s },
	}
	conn, br, _, err := d.Dial(ctx, "ws://"+addr+"/websockify?token="+token)
	if err != nil {
		return nil, &fleetDialError{status: status, err: err}
	}
	var src2 io.Reader = conn
	if br != nil {
		src2 = io.MultiReader(br, conn)
	}
	c := &fleetClient{
		token: token, src: src, local: conn.LocalAddr().String(),
		conn: conn, r: bufio.NewReader(src2),
		data: make(chan []byte, 64), done: make(chan struct{}),
	}
	go c.read()
	return c, nil
}

func (c *fleetClient) read() {
	defer close(c.done)
	for {
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			c.endErr = err
			return
		}
		if h.Length > 1<<20 {
			c.endErr = fmt.Errorf("frame of %d bytes", h.Length)
			return
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, p); err != nil {
			c.endErr = err
			return
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			c.closedAt = time.Now()
			c.closeCode, c.closeReason = ws.ParseCloseFrameData(p)
			_ = c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(c.closeCode, ""))
			c.conn.Close()
			return
		case ws.OpPing:
			_ = c.writeFrame(ws.OpPong, p)
		case ws.OpBinary, ws.OpContinuation:
			if len(p) == 0 {
				continue
			}
			select {
			case c.data <- p:
			default:
				// Only echoes of what we sent arrive, a few at a time.
				c.endErr = errors.New("more data than the test asked for")
				c.conn.Close()
				return
			}
		case ws.OpText:
			c.endErr = errors.New("text frame on a binary session")
			return
		}
	}
}

func (c *fleetClient) writeFrame(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return wsutil.WriteClientMessage(c.conn, op, p)
}

// ended reports whether the stream has ended (close frame or error).
func (c *fleetClient) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// end describes how the stream ended.
func (c *fleetClient) end() string {
	switch {
	case !c.ended():
		return "still open"
	case !c.closedAt.IsZero():
		return fmt.Sprintf("close %d %q", c.closeCode, c.closeReason)
	default:
		return fmt.Sprintf("ended without a close frame: %v", c.endErr)
	}
}

// echo sends msg and waits (bounded) for the VM's echo of it.
func (c *fleetClient) echo(msg []byte, within time.Duration) error {
	if err := c.writeFrame(ws.OpBinary, msg); err != nil {
		return fmt.Errorf("%s: write: %w", c.local, err)
	}
	timer := time.NewTimer(within)
	defer timer.Stop()
	var got []byte
	for len(got) < len(msg) {
		select {
		case p := <-c.data:
			got = append(got, p...)
		case <-c.done:
			return fmt.Errorf("%s: session ended before the echo (%s)", c.local, c.end())
		case <-timer.C:
			return fmt.Errorf("%s: no echo within %v (%d of %d bytes)", c.local, within, len(got), len(msg))
		}
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("%s: echo %q, sent %q", c.local, got, msg)
	}
	return nil
}

// waitEnd waits (bounded) for the stream to end.
func (c *fleetClient) waitEnd(within time.Duration) bool {
	if c.ended() {
		return true // however late the caller asks
	}
	select {
	case <-c.done:
		return true
	case <-time.After(within):
		return false
	}
}

// hangUp ends the session the way a browser tab does (close 1000) without
// waiting for the answer.
func (c *fleetClient) hangUp() {
	if !c.ended() {
		_ = c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))
	}
	c.conn.Close()
	<-c.done
}

// fleetOpen opens n sessions through front with up to par at a time;
// spec(i) names session i's source address and token. The error names every
// session that failed; the ones that opened are returned all the same.
func fleetOpen(front string, n, par int, spec func(i int) (netip.Addr, string)) ([]*fleetClient, error) {
	out := make([]*fleetClient, n)
	errs := make([]error, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i := range n {
		src, token := spec(i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := dialFleet(ctx, front, src, token)
			if err != nil {
				errs[i] = fmt.Errorf("session %d from %s: %w", i, src, err)
				return
			}
			out[i] = c
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// fleetEchoAll checks every client still carries bytes both ways.
func fleetEchoAll(clients []*fleetClient, tag string) error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.echo([]byte(fmt.Sprintf("%s-%d", tag, i)), 10*time.Second) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// rfbRefusal plays noVNC's part when the proxy answers as an RFB server
// that refuses (--rfb-errors): it reads the server's version, sends its
// own, and returns the reason of the empty security type list.
func (c *fleetClient) rfbRefusal(within time.Duration) (string, error) {
	var got []byte
	next := func(n int) ([]byte, error) {
		deadline := time.After(within)
		for len(got) < n {
			select {
			case p := <-c.data:
				got = append(got, p...)
			case <-c.done:
				return nil, fmt.Errorf("ended before the refusal: %s", c.end())
			case <-deadline:
				return nil, errors.New("no RFB refusal in time")
			}
		}
		out := got[:n]
		got = got[n:]
		return out, nil
	}
	v, err := next(12)
	if err != nil {
		return "", err
	}
	if string(v) != "RFB 003.008\n" {
		return "", fmt.Errorf("the session spoke %q, not an RFB refusal", v)
	}
	if err := c.writeFrame(ws.OpBinary, []byte("RFB 003.008\n")); err != nil {
		return "", err
	}
	n, err := next(1)
	if err != nil {
		return "", err
	}
	if n[0] != 0 {
		return "", fmt.Errorf("%d security types offered, not a refusal", n[0])
	}
	l, err := next(4)
	if err != nil {
		return "", err
	}
	reason, err := next(int(binary.BigEndian.Uint32(l)))
	return string(reason), err
}
