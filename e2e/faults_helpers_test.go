package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"vncedge/wsframe"
)

// The fault suite's tools: a vncedge binary (built, or VNCEDGE_BIN to measure an older one), the
// proxy process watched from outside (/proc, its admin /metrics, its log), raw WebSocket clients
// that can misbehave on purpose, and VMs simulated in this process that echo, stream, stall, reset,
// half-close or never speak. Every wait is bounded; everything started is stopped at cleanup.

// faultSuite is one vncedge binary and what its --help says it supports.
type faultSuite struct {
	bin   string
	dir   string
	flags map[string]bool
}

// newFaultSuite builds vncedge once for all the fault tests, or takes VNCEDGE_BIN, so the same
// tests measure an older binary (which lacks the newer flags: those are given only where a
// binary names them in --help).
func newFaultSuite(t *testing.T) *faultSuite {
	t.Helper()
	require(t)
	if runtime.GOOS != "linux" {
		t.Skip("FAULTS SKIPPED: the fault suite reads /proc and needs Linux")
	}
	raiseNoFile(t)
	s := &faultSuite{dir: t.TempDir(), flags: map[string]bool{}}
	if s.bin = os.Getenv("VNCEDGE_BIN"); s.bin == "" {
		s.bin = buildVncedge(t, s.dir)
	} else {
		t.Logf("fault suite against VNCEDGE_BIN=%s", s.bin)
	}
	out, err := exec.Command(s.bin, "--help").Output()
	if err != nil {
		t.Fatalf("%s --help: %v", s.bin, err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+(--[a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		s.flags[m[1]] = true
	}
	return s
}

// has reports whether the binary knows a flag.
func (s *faultSuite) has(flag string) bool { return s.flags[flag] }

// raiseNoFile lifts this process's soft descriptor limit to its hard limit: the floods hold
// thousands of client sockets here too.
func raiseNoFile(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Logf("raise RLIMIT_NOFILE: %v", err)
		}
	}
}

// noFileLimit is this process's soft descriptor limit.
func noFileLimit(t *testing.T) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	return int(rl.Cur)
}

// edgeOpts are what one fault test asks of its proxy.
type edgeOpts struct {
	flags []string // extra flags, given as they are
	// newFlags are flag/value pairs given only when the binary names the flag.
	newFlags []string
	// nofile runs the proxy with this RLIMIT_NOFILE (soft and hard); 0 inherits ours.
	nofile int
	// clientLimits keeps the per-address limits at their defaults; otherwise they are lifted
	// (every client here is 127.x, and most tests open sessions faster than a person would).
	clientLimits bool
	web          string
	tokenFile    string
	logLevel     string
}

// faultEdge is one running vncedge, watched from outside.
type faultEdge struct {
	t     *testing.T
	p     *proc
	pid   int
	addr  string // 127.0.0.1:PORT
	admin string
	http  *http.Client
}

func (s *faultSuite) start(t *testing.T, o edgeOpts) *faultEdge {
	t.Helper()
	port, admin := freePort(t), freePort(t)
	e := &faultEdge{t: t, addr: fmt.Sprintf("127.0.0.1:%d", port), admin: fmt.Sprintf("127.0.0.1:%d", admin),
		// No keep-alive: an idle admin connection would come and go in the descriptor counts.
		http: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	level := o.logLevel
	if level == "" {
		level = "info"
	}
	argv := []string{s.bin, "--listen", e.addr, "--admin", e.admin, "--pprof",
		"--allow", "127.0.0.0/8:1024-65535", "--max-sessions-per-upstream", "0", "--log-level", level}
	if !o.clientLimits {
		for _, f := range []string{"--max-sessions-per-ip", "--max-upgrades-per-ip", "--max-handshakes-per-ip"} {
			if s.has(f) {
				argv = append(argv, f, "0")
			}
		}
	}
	for i := 0; i+1 < len(o.newFlags); i += 2 {
		if s.has(o.newFlags[i]) {
			argv = append(argv, o.newFlags[i], o.newFlags[i+1])
		} else {
			t.Logf("this binary has no %s: not given", o.newFlags[i])
		}
	}
	if o.web != "" {
		argv = append(argv, "--web", o.web)
	}
	if o.tokenFile != "" {
		argv = append(argv, "--token-file", o.tokenFile)
	}
	argv = append(argv, o.flags...)
	if o.nofile > 0 {
		if pl, err := exec.LookPath("prlimit"); err == nil {
			argv = append([]string{pl, fmt.Sprintf("--nofile=%d:%d", o.nofile, o.nofile), "--"}, argv...)
		} else {
			// prlimit and sh exec the proxy, so the PID we hold is the proxy's either way.
			argv = append([]string{"/bin/sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, o.nofile)}, argv...)
		}
	}
	e.p = startProc(t, s.dir, fmt.Sprintf("vncedge-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), port), argv...)
	e.pid = e.p.cmd.Process.Pid
	waitTCP(t, e.p, e.addr, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := e.http.Get("http://" + e.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if e.p.exited() || time.Now().After(deadline) {
			t.Fatalf("vncedge not ready (%v): %s", err, e.p.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return e
}

// alive fails the test when the proxy has exited, with its exit status and log.
func (e *faultEdge) alive(t *testing.T, when string) {
	t.Helper()
	if e.p.exited() {
		t.Fatalf("vncedge exited %s (%v, exit status %d):\n%s", when, e.p.err, e.p.cmd.ProcessState.ExitCode(), e.p.tail(3000))
	}
}

// rss is the proxy's resident memory in bytes.
func (e *faultEdge) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.pid))
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// fds is how many descriptors the proxy holds open.
func (e *faultEdge) fds() int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", e.pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// baseFDs is the proxy's descriptor count at rest: the least of a few samples, so that an
// admin request just answered is not counted.
func (e *faultEdge) baseFDs() int {
	n := e.fds()
	for range 5 {
		time.Sleep(20 * time.Millisecond)
		n = min(n, e.fds())
	}
	return n
}

// metrics reads the proxy's /metrics: series name (with labels) -> value. nil when the admin
// listener does not answer.
func (e *faultEdge) metrics() map[string]float64 {
	resp, err := e.http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// metric is one series, or -1 when it or the admin listener is missing.
func (e *faultEdge) metric(name string) float64 {
	if v, ok := e.metrics()[name]; ok {
		return v
	}
	return -1
}

// metricSum adds every series of a family (all label sets).
func (e *faultEdge) metricSum(family string) float64 {
	var n float64
	for k, v := range e.metrics() {
		if k == family || strings.HasPrefix(k, family+"{") {
			n += v
		}
	}
	return n
}

// eventually polls cond until it holds or within passes.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settled waits until no session is active any more and the proxy holds at most fds
// descriptors, and fails the test otherwise: the fault left nothing behind.
func (e *faultEdge) settled(t *testing.T, fds int, within time.Duration) {
	t.Helper()
	var active float64
	var open int
	ok := eventually(within, func() bool {
		active, open = e.metric("vncedge_sessions_active"), e.fds()
		return active == 0 && open <= fds
	})
	if !ok {
		t.Errorf("not settled after %v: vncedge_sessions_active %v, %d descriptors open (started with %d)", within, active, open, fds)
	}
}

// figures is one line of what the proxy holds, for the closing note.
func (e *faultEdge) figures() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds", float64(e.rss())/(1<<20), e.fds())
}

// rssPeak samples the proxy's RSS every few milliseconds until stop, and returns the highest.
type rssPeak struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func (e *faultEdge) watchRSS() *rssPeak {
	r := &rssPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := e.rss(); v > r.peak.Load() {
				r.peak.Store(v)
			}
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return r
}

// end stops sampling and returns the peak in bytes.
func (r *rssPeak) end() int64 {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
	return r.peak.Load()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// logHas reports whether the proxy's log contains s.
func (e *faultEdge) logHas(s string) bool {
	b, _ := os.ReadFile(e.p.log)
	return bytes.Contains(b, []byte(s))
}

// ---- clients ----

// dialOpts shape one client socket.
type dialOpts struct {
	local   string // source address (127.x.y.z); "" lets the kernel pick
	rcvbuf  int    // SO_RCVBUF before connecting (a small one makes a slow reader); 0 default
	timeout time.Duration
}

func dialTCP(addr string, o dialOpts) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Second
	}
	if o.local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.local)}
	}
	if o.rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// wsPeer is a browser as a test wants it: it can speak WebSocket properly, or not at all.
type wsPeer struct {
	c    *net.TCPConn
	br   *bufio.Reader
	mask [4]byte
}

// upgradeRequest is a noVNC-like upgrade of path.
func upgradeRequest(host, path string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n")
}

// tryUpgrade opens a WebSocket on path and returns the client on a 101, else the status (and
// the client is closed). Everything is bounded by within.
func (e *faultEdge) tryUpgrade(path string, o dialOpts, within time.Duration) (*wsPeer, int, error) {
	o.timeout = within
	c, err := dialTCP(e.addr, o)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(within))
	if _, err := c.Write(upgradeRequest(e.addr, path)); err != nil {
		c.Close()
		return nil, 0, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		c.Close()
		return nil, resp.StatusCode, nil
	}
	_ = c.SetDeadline(time.Time{})
	return &wsPeer{c: c, br: br, mask: [4]byte{0x5a, 0x17, 0xc3, 0x08}}, resp.StatusCode, nil
}

// open is tryUpgrade for a session that must open.
func (e *faultEdge) open(t *testing.T, path string, o dialOpts) *wsPeer {
	t.Helper()
	w, status, err := e.tryUpgrade(path, o, 10*time.Second)
	if err != nil || w == nil {
		t.Fatalf("upgrade %s: status %d, %v", path, status, err)
	}
	t.Cleanup(w.close)
	return w
}

func (w *wsPeer) close() { _ = w.c.Close() }

// reset closes with a TCP reset (SO_LINGER 0), as a crashed peer or a middlebox would.
func (w *wsPeer) reset() {
	_ = w.c.SetLinger(0)
	_ = w.c.Close()
}

// frame is one client frame, masked as RFC 6455 wants.
func (w *wsPeer) frame(fin bool, op ws.OpCode, payload []byte) []byte {
	return wsframe.AppendMaskedFrame(nil, fin, op, w.mask, payload)
}

func (w *wsPeer) send(op ws.OpCode, payload []byte) error {
	_, err := w.c.Write(w.frame(true, op, payload))
	return err
}

func (w *wsPeer) writeRaw(b []byte) error {
	_ = w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := w.c.Write(b)
	_ = w.c.SetWriteDeadline(time.Time{})
	return err
}

// readFrame reads one server frame; payloads of data frames are read but kept only up to keep
// bytes (a stream's frames may be large).
func (w *wsPeer) readFrame(deadline time.Time, keep int) (ws.Header, []byte, error) {
	_ = w.c.SetReadDeadline(deadline)
	h, err := ws.ReadHeader(w.br)
	if err != nil {
		return h, nil, err
	}
	if h.Length > 1<<30 {
		return h, nil, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	n := int(h.Length)
	if h.OpCode.IsData() || h.OpCode == ws.OpContinuation {
		n = min(n, keep)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return h, nil, err
	}
	if rest := h.Length - int64(n); rest > 0 {
		if _, err := io.CopyN(io.Discard, w.br, rest); err != nil {
			return h, nil, err
		}
	}
	if h.Masked {
		return h, p, errors.New("server frame is masked")
	}
	return h, p, nil
}

// echo sends msg as one binary frame and reads it back from an echoing VM, answering the
// proxy's pings meanwhile.
func (w *wsPeer) echo(msg []byte, within time.Duration) error {
	if err := w.send(ws.OpBinary, msg); err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	var got []byte
	for len(got) < len(msg) {
		h, p, err := w.readFrame(deadline, 1<<20)
		if err != nil {
			return fmt.Errorf("echo: %d of %d bytes back: %w", len(got), len(msg), err)
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = w.send(ws.OpPong, p)
		case ws.OpBinary, ws.OpContinuation:
			got = append(got, p...)
		case ws.OpClose:
			code, reason := closePayload(p)
			return fmt.Errorf("echo: closed with %d %q", code, reason)
		}
	}
	if !bytes.Equal(got, msg) {
		return &echoMismatch{got: got}
	}
	return nil
}

// echoMismatch is an echo that came back different: what came is kept, since a proxy refusing
// a session readably (--rfb-errors) answers with an RFB greeting instead.
type echoMismatch struct{ got []byte }

func (e *echoMismatch) Error() string {
	return fmt.Sprintf("echo: bytes differ (got %q)", e.got[:min(len(e.got), 32)])
}

// wsData reads the payloads of a peer's data frames as one stream, answering pings; a close
// frame ends it (io.EOF) and is kept in closed.
type wsData struct {
	w        *wsPeer
	deadline time.Time
	buf      []byte
	closed   closeResult
}

func (d *wsData) Read(p []byte) (int, error) {
	for len(d.buf) == 0 {
		if d.closed.code != 0 {
			return 0, io.EOF
		}
		h, b, err := d.w.readFrame(d.deadline, 1<<20)
		if err != nil {
			return 0, err
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = d.w.send(ws.OpPong, b)
		case ws.OpClose:
			d.closed.code, d.closed.reason = closePayload(b)
		case ws.OpBinary, ws.OpText, ws.OpContinuation:
			d.buf = b
		}
	}
	n := copy(p, d.buf)
	d.buf = d.buf[n:]
	return n, nil
}

// refusal reads how a session that must not reach its VM ends after its 101: a close frame,
// or an RFB security failure (answered like noVNC would), and describes it.
func (w *wsPeer) refusal(within time.Duration) string {
	d := &wsData{w: w, deadline: time.Now().Add(within)}
	version := make([]byte, 12)
	if _, err := io.ReadFull(d, version); err != nil {
		if d.closed.code != 0 {
			return d.closed.String()
		}
		return err.Error()
	}
	if !bytes.HasPrefix(version, []byte("RFB 003.")) {
		return fmt.Sprintf("data %q", version)
	}
	reason, err := rfbRefusal(d, version)
	if err != nil {
		return "RFB: " + err.Error()
	}
	return fmt.Sprintf("RFB security failure %q", reason)
}

// rfbRefusal plays noVNC's part when the proxy refuses a session readably (an RFB 3.8
// security failure, --rfb-errors): it answers the version and returns the failure's reason.
func rfbRefusal(d *wsData, version []byte) (string, error) {
	if err := d.w.send(ws.OpBinary, []byte("RFB 003.008\n")); err != nil {
		return "", err
	}
	var n [1]byte
	if _, err := io.ReadFull(d, n[:]); err != nil {
		return "", fmt.Errorf("after version %q: %w", version, err)
	}
	if n[0] != 0 {
		return "", fmt.Errorf("the proxy offered %d security types, not a failure", n[0])
	}
	var l [4]byte
	if _, err := io.ReadFull(d, l[:]); err != nil {
		return "", err
	}
	reason := make([]byte, min(binary.BigEndian.Uint32(l[:]), 4096))
	if _, err := io.ReadFull(d, reason); err != nil {
		return "", err
	}
	return string(reason), nil
}

// closeResult is how a session ended, seen by the browser.
type closeResult struct {
	code   ws.StatusCode // 0: no close frame
	reason string
	data   int64 // data payload bytes read before the close
	err    error // why no close frame came
}

func (r closeResult) String() string {
	if r.code == 0 {
		return fmt.Sprintf("no close frame after %d data bytes (%v)", r.data, r.err)
	}
	return fmt.Sprintf("close %d %q after %d data bytes", r.code, r.reason, r.data)
}

// waitClose reads (and drops) data until the server's close frame, answers it, and returns
// what came.
func (w *wsPeer) waitClose(within time.Duration) closeResult {
	deadline := time.Now().Add(within)
	var r closeResult
	for {
		h, p, err := w.readFrame(deadline, 0)
		if err != nil {
			r.err = err
			return r
		}
		switch h.OpCode {
		case ws.OpPing:
			_ = w.send(ws.OpPong, p)
		case ws.OpClose:
			r.code, r.reason = closePayload(p)
			_ = w.send(ws.OpClose, p[:min(len(p), 2)])
			return r
		default:
			r.data += h.Length
		}
	}
}

func closePayload(p []byte) (ws.StatusCode, string) {
	if len(p) < 2 {
		return ws.StatusNoStatusRcvd, ""
	}
	return ws.StatusCode(binary.BigEndian.Uint16(p)), string(p[2:])
}

// eof waits for the server to end the TCP connection (EOF or a reset) and discards what comes.
func (w *wsPeer) eof(within time.Duration) error {
	_ = w.c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, w.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("connection still open after %v", within)
	}
	return nil
}

// rtts measures n echo round trips of a small message, paced by gap; a failed one ends it.
func (w *wsPeer) rtts(n int, gap time.Duration) ([]time.Duration, error) {
	msg := make([]byte, 64)
	out := make([]time.Duration, 0, n)
	for i := range n {
		binary.BigEndian.PutUint64(msg, uint64(i))
		t0 := time.Now()
		if err := w.echo(msg, 5*time.Second); err != nil {
			return out, err
		}
		out = append(out, time.Since(t0))
		time.Sleep(gap)
	}
	return out, nil
}

// pct is the p-th percentile (0-100) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- simulated VMs ----

// fakeVM is a TCP server in this process that plays a VM with one behaviour.
type fakeVM struct {
	ln       *net.TCPListener
	port     int
	accepted chan *net.TCPConn // every connection, as it is accepted
	done     chan struct{}     // closed at cleanup: stalled handlers return
	mu       sync.Mutex
	conns    []*net.TCPConn
	wg       sync.WaitGroup
	bytesIn  atomic.Int64
}

func startVM(t *testing.T, handle func(vm *fakeVM, c *net.TCPConn)) *fakeVM {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	vm := &fakeVM{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, accepted: make(chan *net.TCPConn, 1024),
		done: make(chan struct{})}
	vm.wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			vm.mu.Lock()
			vm.conns = append(vm.conns, c)
			vm.mu.Unlock()
			select {
			case vm.accepted <- c:
			default:
			}
			vm.wg.Go(func() { handle(vm, c) })
		}
	})
	t.Cleanup(func() {
		close(vm.done)
		ln.Close()
		vm.mu.Lock()
		for _, c := range vm.conns {
			c.Close()
		}
		vm.mu.Unlock()
		ch := make(chan struct{})
		go func() { vm.wg.Wait(); close(ch) }()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Errorf("simulated VM handlers still running 10 s after cleanup")
		}
	})
	return vm
}

// path is the route to this VM.
func (vm *fakeVM) path() string { return fmt.Sprintf("/vnc/127.0.0.1:%d", vm.port) }

// next waits for the next connection the proxy makes to this VM.
func (vm *fakeVM) next(t *testing.T, within time.Duration) *net.TCPConn {
	t.Helper()
	select {
	case c := <-vm.accepted:
		return c
	case <-time.After(within):
		t.Fatalf("the proxy did not connect to the VM within %v", within)
		return nil
	}
}

// vmEcho sends back whatever it reads.
func vmEcho(vm *fakeVM, c *net.TCPConn) {
	n, _ := io.Copy(c, c)
	vm.bytesIn.Add(n)
}

// vmSilent reads and drops, never speaks.
func vmSilent(vm *fakeVM, c *net.TCPConn) {
	n, _ := io.Copy(io.Discard, c)
	vm.bytesIn.Add(n)
}

// vmStall neither reads nor writes until cleanup: its receive window closes.
func vmStall(vm *fakeVM, c *net.TCPConn) { <-vm.done }

// vmStream writes n bytes (a counting pattern) as fast as the connection takes them, then
// waits for the other side to go.
func vmStream(n int64) func(*fakeVM, *net.TCPConn) {
	return func(vm *fakeVM, c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for sent := int64(0); sent < n; {
			k, err := c.Write(buf[:min(int64(len(buf)), n-sent)])
			sent += int64(k)
			if err != nil {
				return
			}
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

// resetTCP ends c with a TCP reset (SO_LINGER 0).
func resetTCP(c *net.TCPConn) {
	_ = c.SetLinger(0)
	_ = c.Close()
}

// sendQueue is how many bytes c has written that its peer has not acknowledged (SIOCOUTQ).
func sendQueue(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}

// idleFlood holds plain TCP connections to addr that never send a byte, from several source
// addresses. Connections the proxy refuses (closes, or answers with a 503) are counted, not kept.
type idleFlood struct {
	mu       sync.Mutex
	conns    []*net.TCPConn
	refused  atomic.Int64 // closed or answered by the proxy at once
	failed   atomic.Int64 // connect failed or timed out
	answered atomic.Int64 // of refused: got an HTTP status line (503)
}

// grow opens n more connections, at most 64 connecting at once, each bounded by 3 s; a
// connection counts as held once it has stayed open and silent for hold.
func (f *idleFlood) grow(addr string, n int, firstAddr int, hold time.Duration) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			k := firstAddr + i
			src := fmt.Sprintf("127.%d.%d.%d", 40+k/60000, k/250%240, 1+k%250)
			c, err := dialTCP(addr, dialOpts{local: src, timeout: 3 * time.Second})
			if err != nil {
				f.failed.Add(1)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(hold))
			var b [16]byte
			m, err := c.Read(b[:])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && m == 0 {
				_ = c.SetReadDeadline(time.Time{})
				f.mu.Lock()
				f.conns = append(f.conns, c)
				f.mu.Unlock()
				return
			}
			f.refused.Add(1)
			if bytes.HasPrefix(b[:m], []byte("HTTP/1.1 ")) {
				f.answered.Add(1)
			}
			c.Close()
		})
	}
	wg.Wait()
}

func (f *idleFlood) held() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// shrink closes the newest k connections.
func (f *idleFlood) shrink(k int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k = min(k, len(f.conns))
	for _, c := range f.conns[len(f.conns)-k:] {
		c.Close()
	}
	f.conns = f.conns[:len(f.conns)-k]
}

func (f *idleFlood) closeAll() { f.shrink(1 << 30) }

// writeBinaryFile puts n random-looking bytes in dir/name.
func writeBinaryFile(t *testing.T, dir, name string, n int) {
	t.Helper()
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// withTimeout runs f and fails the test if it does not return within d (a hang).
func withTimeout(t *testing.T, what string, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v", what, d)
	}
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// firstErr keeps the first error reported from several goroutines.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
