// Package vncsim is a simulated VM: a small RFB 3.8 (RFC 6143) server that the demo, the
// tests and the load generator point vncedge at. It speaks the real handshake (security None,
// or VNC authentication when a password is set), answers framebuffer update requests with a
// moving test pattern in Raw encoding, and offers raw echo, sink and source modes after the
// handshake for measurements. It can also be served as WebSocket itself, the baseline a proxy
// is compared with. A goroutine per connection is fine: this is a fixture, not the proxy.
package vncsim

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"vncedge/bench/wsstream"
	"vncedge/rfb"
)

// Mode selects what a listener does after the RFB handshake.
type Mode int

const (
	// ModeDesktop serves the RFB protocol with a moving test pattern.
	ModeDesktop Mode = iota
	// ModeEcho echoes every byte it receives (latency measurements).
	ModeEcho
	// ModeSink reads and discards, counting bytes (browser -> VM throughput).
	ModeSink
	// ModeSource writes Pattern as fast as the socket takes it (VM -> browser throughput).
	ModeSource
	// ModeReplay serves an FBS recording (Config.ReplayFile): a fresh handshake with the
	// recording's ServerInit, then, from the client's first update request on, the recorded
	// server messages with their original timing.
	ModeReplay
)

var modeNames = [...]string{"desktop", "echo", "sink", "source", "replay"}

func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode is the inverse of Mode.String.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("vncsim: unknown mode %q (want desktop, echo, sink, source or replay)", s)
}

// Config describes one listener. The zero value is a 1024x768 desktop without a password.
type Config struct {
	Mode          Mode
	Width, Height int    // framebuffer size; 0 means 1024x768
	Name          string // desktop name; "" means "vncsim"
	Password      string // offers VNC authentication (type 2) instead of None when set
	// SourceBytes makes ModeSource close the session after that many bytes (0: never).
	SourceBytes int64
	// WebSocket makes the listener accept an RFC 6455 upgrade (any path, subprotocol
	// "binary" or none) and carry RFB inside binary frames, like a proxy would deliver it.
	WebSocket bool
	// FrameInterval is the least time between two incremental updates, so a noVNC client
	// that asks again at once does not spin a core: 0 means 40ms, negative means no wait.
	FrameInterval time.Duration
	// HandshakeTimeout bounds the WebSocket upgrade and RFB handshake; 0 means 10s.
	HandshakeTimeout time.Duration
	// Version is the RFB version announced, and the only one accepted back: 3.3, 3.7 or 3.8
	// (the zero value), so tests can meet the older handshakes too.
	Version rfb.Version
	// ReplayFile is the FBS recording ModeReplay serves. Its ServerInit replaces Width,
	// Height and Name; its pixel format is the one announced (the recorded pixels are in it,
	// so a client's SetPixelFormat cannot change them).
	ReplayFile string
	// ReplayFast sends the recording as fast as the socket takes it instead of with its
	// recorded timing.
	ReplayFast bool
}

const (
	defaultWidth, defaultHeight = 1024, 768
	maxDimension                = 8192
	defaultFrameInterval        = 40 * time.Millisecond
	defaultHandshakeTimeout     = 10 * time.Second
	// bandRows is the height of the band an incremental update repaints.
	bandRows = 32
	// maxCutText bounds ClientCutText; longer text is a broken or hostile client.
	maxCutText = 16 << 20
	// closeGrace is how long a closing session waits for its peer's close before cutting.
	closeGrace = 5 * time.Second
)

func (c Config) withDefaults() (Config, error) {
	if c.Width == 0 {
		c.Width = defaultWidth
	}
	if c.Height == 0 {
		c.Height = defaultHeight
	}
	if c.Width < 1 || c.Height < 1 || c.Width > maxDimension || c.Height > maxDimension {
		return c, fmt.Errorf("vncsim: framebuffer %dx%d outside 1..%d", c.Width, c.Height, maxDimension)
	}
	if c.Name == "" {
		c.Name = "vncsim"
	}
	if c.Mode < ModeDesktop || c.Mode > ModeReplay {
		return c, fmt.Errorf("vncsim: unknown mode %d", int(c.Mode))
	}
	switch c.Version {
	case 0:
		c.Version = rfb.V38
	case rfb.V33, rfb.V37, rfb.V38:
	default:
		return c, fmt.Errorf("vncsim: RFB version %v is not 3.3, 3.7 or 3.8", c.Version)
	}
	if (c.Mode == ModeReplay) != (c.ReplayFile != "") {
		return c, errors.New("vncsim: a replay file goes with replay mode, and only with it")
	}
	if c.SourceBytes < 0 {
		return c, fmt.Errorf("vncsim: negative SourceBytes %d", c.SourceBytes)
	}
	if c.FrameInterval == 0 {
		c.FrameInterval = defaultFrameInterval
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = defaultHandshakeTimeout
	}
	return c, nil
}

// Stats are a listener's counters since it started.
type Stats struct {
	SessionsOpen   int64 // sessions past accept and not yet closed
	SessionsTotal  int64 // sessions accepted
	Handshakes     int64 // sessions that completed the RFB handshake (ClientInit received)
	AuthFailures   int64
	BytesIn        int64 // RFB bytes received (inside WebSocket frames in WebSocket mode)
	BytesOut       int64 // RFB bytes sent
	KeyEvents      int64
	PointerEvents  int64
	Updates        int64 // FramebufferUpdate messages sent
	ProtocolErrors int64 // sessions ended by a malformed or unknown client message
}

type counters struct {
	open, total, handshakes, authFail, in, out, keys, pointers, updates, protoErr atomic.Int64
}

// Server is one listener of simulated VMs.
type Server struct {
	cfg  Config
	rec  *recording // ModeReplay
	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup
	st   counters

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen starts a simulated VM on addr ("127.0.1.1:5901", or port 0 for any).
func Listen(addr string, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("vncsim: listen %s: %w", addr, err)
	}
	return Serve(ln, cfg)
}

// Serve runs a simulated VM on an existing listener, which the Server then owns.
func Serve(ln net.Listener, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		ln.Close()
		return nil, err
	}
	var rec *recording
	if cfg.Mode == ModeReplay {
		if rec, err = openRecording(cfg.ReplayFile); err != nil {
			ln.Close()
			return nil, err
		}
		cfg.Width, cfg.Height, cfg.Name = int(rec.si.Width), int(rec.si.Height), rec.si.Name
	}
	s := &Server{cfg: cfg, rec: rec, ln: ln, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Config is the listener's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		SessionsOpen: s.st.open.Load(), SessionsTotal: s.st.total.Load(),
		Handshakes: s.st.handshakes.Load(), AuthFailures: s.st.authFail.Load(),
		BytesIn: s.st.in.Load(), BytesOut: s.st.out.Load(),
		KeyEvents: s.st.keys.Load(), PointerEvents: s.st.pointers.Load(),
		Updates: s.st.updates.Load(), ProtocolErrors: s.st.protoErr.Load(),
	}
}

// Close stops the listener, closes every live session and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("vncsim: close listener: %w", err)
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	backoff := time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off instead of spinning, as net/http does.
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = time.Millisecond
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.st.open.Add(1)
	s.st.total.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.st.open.Add(-1)
}

// session is one client connection.
type session struct {
	srv  *Server
	conn net.Conn
	ws   *wsstream.Stream // nil on plain TCP
	r    *bufio.Reader    // RFB bytes in (unwrapped from frames in WebSocket mode)
	w    io.Writer        // RFB bytes out
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer s.untrack(c)
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		// RFB messages are small and latency matters more than packet count.
		_ = tc.SetNoDelay(true)
	}
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sess := &session{srv: s, conn: c}
	var raw io.ReadWriter = c
	if s.cfg.WebSocket {
		u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == "binary" }}
		if _, err := u.Upgrade(c); err != nil {
			return
		}
		sess.ws = wsstream.NewServer(c, c)
		raw = sess.ws
	}
	cr := &countingReader{r: raw, n: &s.st.in}
	sess.r = bufio.NewReaderSize(cr, 4096)
	sess.w = &countingWriter{w: raw, n: &s.st.out}
	err := sess.handshake()
	if err != nil {
		return
	}
	_ = c.SetDeadline(time.Time{})
	s.st.handshakes.Add(1)
	switch s.cfg.Mode {
	case ModeDesktop:
		d := newDesktop(s.cfg, &s.st, s.done)
		err = d.run(sess.r, sess.w)
		if errors.Is(err, errProtocol) {
			s.st.protoErr.Add(1)
		}
	case ModeEcho:
		_, err = io.Copy(sess.w, sess.r)
	case ModeSink:
		_, err = io.Copy(io.Discard, sess.r)
	case ModeSource:
		_ = sess.source()
		return
	case ModeReplay:
		if err := sess.replay(); errors.Is(err, errProtocol) {
			s.st.protoErr.Add(1)
		}
		return
	}
	sess.finish(err)
}

// finish tells a WebSocket peer why the session ends; on plain TCP the close says it all.
// Only ModeSource and ModeReplay end sessions on their own with data in flight, and they have
// their own endings.
func (sess *session) finish(err error) {
	if sess.ws == nil {
		return
	}
	code, reason := ws.StatusNormalClosure, ""
	if errors.Is(err, errProtocol) {
		code, reason = ws.StatusProtocolError, "RFB protocol error"
	}
	_ = sess.ws.SendClose(code, reason)
}

func (sess *session) handshake() error {
	cfg := sess.srv.cfg
	if _, err := sess.w.Write(rfb.AppendVersion(nil, cfg.Version)); err != nil {
		return fmt.Errorf("send version: %w", err)
	}
	var ver [rfb.VersionLen]byte
	if _, err := io.ReadFull(sess.r, ver[:]); err != nil {
		return fmt.Errorf("read client version: %w", err)
	}
	if v, _, err := rfb.ParseVersion(ver[:]); err != nil || v != cfg.Version {
		// A 3.7/3.8 client reads this as "no security types, reason follows" (RFC 6143 7.1.2).
		reason := "vncsim speaks only RFB " + strings.TrimSpace(string(rfb.AppendVersion(nil, cfg.Version)[4:]))
		_, _ = sess.w.Write(rfb.AppendSecurityFailure(nil, rfb.V38, reason))
		return fmt.Errorf("client version %q", ver[:])
	}
	v := cfg.Version
	secType := rfb.SecNone
	if cfg.Password != "" {
		secType = rfb.SecVNCAuth
	}
	if v == rfb.V33 {
		// The server decides in 3.3.
		if _, err := sess.w.Write(rfb.AppendSecurityType33(nil, secType)); err != nil {
			return fmt.Errorf("send security type: %w", err)
		}
	} else {
		if _, err := sess.w.Write(rfb.AppendSecurityTypes(nil, secType)); err != nil {
			return fmt.Errorf("send security types: %w", err)
		}
		chosen, err := sess.r.ReadByte()
		if err != nil {
			return fmt.Errorf("read security type: %w", err)
		}
		if rfb.SecurityType(chosen) != secType {
			_, _ = sess.w.Write(rfb.AppendSecurityResultFailed(nil, v, "security type not offered"))
			return fmt.Errorf("client chose security type %d", chosen)
		}
	}
	if secType == rfb.SecVNCAuth {
		var challenge, response [rfb.ChallengeLen]byte
		_, _ = rand.Read(challenge[:])
		if _, err := sess.w.Write(challenge[:]); err != nil {
			return fmt.Errorf("send challenge: %w", err)
		}
		if _, err := io.ReadFull(sess.r, response[:]); err != nil {
			return fmt.Errorf("read challenge response: %w", err)
		}
		if !rfb.VNCAuthCheck([]byte(cfg.Password), challenge, response) {
			sess.srv.st.authFail.Add(1)
			_, _ = sess.w.Write(rfb.AppendSecurityResultFailed(nil, v, "authentication failed"))
			return errors.New("wrong password")
		}
	}
	// Before 3.8 a server sends no SecurityResult for None.
	if secType == rfb.SecVNCAuth || v == rfb.V38 {
		if _, err := sess.w.Write(rfb.AppendSecurityResultOK(nil)); err != nil {
			return fmt.Errorf("send security result: %w", err)
		}
	}
	if _, err := sess.r.ReadByte(); err != nil { // ClientInit shared-flag: every client shares
		return fmt.Errorf("read ClientInit: %w", err)
	}
	si := sess.srv.serverInit()
	if _, err := sess.w.Write(si.Append(nil)); err != nil {
		return fmt.Errorf("send ServerInit: %w", err)
	}
	return nil
}

// serverInit is what the listener announces: the recording's for ModeReplay, else the
// configured desktop in the default 32 bpp format.
func (s *Server) serverInit() rfb.ServerInit {
	if s.rec != nil {
		return s.rec.si
	}
	return rfb.ServerInit{Width: uint16(s.cfg.Width), Height: uint16(s.cfg.Height), Format: rfb.Default32(), Name: s.cfg.Name}
}

// PatternPeriod is the period of the ModeSource byte pattern; a prime, so it never lines up
// with buffer or frame sizes and a lost or duplicated chunk shows.
const PatternPeriod = 251

// Pattern fills p with the ModeSource stream starting at stream offset off (counted from the
// first byte after ServerInit).
func Pattern(off int64, p []byte) {
	v := byte(off % PatternPeriod)
	for i := range p {
		p[i] = v
		v++
		if v == PatternPeriod {
			v = 0
		}
	}
}

const sourceChunk = 64 << 10

// source streams Pattern until the limit, then closes politely. It reads (and drops) what
// the client sends on a second goroutine, so the client's writes never block and its close is
// seen; that goroutine is the only reader, hence the own ending instead of finish.
func (sess *session) source() error {
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		_, _ = io.Copy(io.Discard, sess.r)
	}()
	err := sess.stream()
	if sess.ws != nil {
		_ = sess.ws.SendClose(ws.StatusNormalClosure, "")
	} else if tc, ok := sess.conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = sess.conn.SetReadDeadline(time.Now().Add(closeGrace))
	<-readerDone
	return err
}

func (sess *session) stream() error {
	limit := sess.srv.cfg.SourceBytes
	buf := make([]byte, sourceChunk+PatternPeriod)
	Pattern(0, buf)
	var off int64
	for limit == 0 || off < limit {
		n := int64(sourceChunk)
		if limit > 0 {
			n = min(n, limit-off)
		}
		phase := off % PatternPeriod
		if _, err := sess.w.Write(buf[phase : phase+n]); err != nil {
			return fmt.Errorf("source write: %w", err)
		}
		off += n
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
