package load

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"

	"vncedge/bench/rfbclient"
	"vncedge/bench/vncsim"
	"vncedge/bench/wsstream"
)

// Kind is what a worker does between "go" and "close".
type Kind string

const (
	KindHold  Kind = "hold"  // open sessions past the RFB greeting and hold them idle
	KindDown  Kind = "down"  // VM -> browser: VMs stream Bytes per session
	KindUp    Kind = "up"    // browser -> VM: clients send Bytes per session
	KindEcho  Kind = "echo"  // small messages at Rate per session, echoed; round trips
	KindChurn Kind = "churn" // Concurrency loops open and close sessions for Duration
	// KindDesktop is noVNC's pattern: each session asks for incremental updates at FPS
	// (the VMs answer with KBps worth of pixels) and sends InputRate key and pointer
	// events per second, each followed by a one-pixel update request whose answer times
	// the input's round trip.
	KindDesktop Kind = "desktop"
)

// Job is one worker's share of a scenario run.
type Job struct {
	Kind     Kind   `json:"kind"`
	Worker   int    `json:"worker"`
	Target   Target `json:"target"`
	Sessions int    `json:"sessions"`
	VMs      int    `json:"vms"`
	// Concurrency bounds sessions being opened at once (and churn loops).
	Concurrency int `json:"concurrency"`
	// OpenRate bounds session opens per second for this worker (0: unbounded).
	OpenRate float64       `json:"open_rate,omitempty"`
	Bytes    int64         `json:"bytes,omitempty"`
	Rate     float64       `json:"rate,omitempty"`
	MsgSize  int           `json:"msg_size,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	// Timeout bounds one session's upgrade plus RFB handshake.
	Timeout time.Duration `json:"timeout"`
	// Layout places the VMs (tests pick a free port so concurrent runs do not collide).
	Layout Layout `json:"layout"`
	// Desktop shapes KindDesktop sessions.
	Desktop DesktopLoad `json:"desktop,omitempty"`
	// TLS configures wss:// targets.
	TLS TLSOptions `json:"tls,omitempty"`
	// TokenSecret signs TokenJWT tokens (HS256). It travels only to worker processes,
	// never into results (Target is what results keep).
	TokenSecret []byte `json:"token_secret,omitempty"`
}

// TLSOptions are the client side of wss:// targets.
type TLSOptions struct {
	// Insecure accepts any certificate (a self-signed test proxy).
	Insecure bool `json:"insecure,omitempty"`
	// CAFile is a PEM bundle to trust instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// ServerName overrides the name checked against the certificate (and sent as SNI).
	ServerName string `json:"server_name,omitempty"`
}

// Config builds the crypto/tls client configuration.
func (o TLSOptions) Config() (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: o.Insecure, ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// vm is the address of this job's VM i.
func (j *Job) vm(i int) VMAddr { return j.Layout.VM(j.Worker, i) }

// token is what session j's URL carries as {token} ("" for the VM's own).
func (j *Job) token(jj int, vm VMAddr) (string, error) {
	switch j.Target.Token {
	case "":
		return "", nil
	case TokenSession:
		return SessionToken(j.Worker, jj), nil
	case TokenJWT:
		return SignJWT(j.TokenSecret, vm, SessionToken(j.Worker, jj), time.Now().Add(time.Hour))
	}
	return "", fmt.Errorf("unknown token scheme %q", j.Target.Token)
}

// Part is one worker's figures.
type Part struct {
	Worker     int                    `json:"worker"`
	Opened     int64                  `json:"opened"`
	OpenFailed int64                  `json:"open_failed"`
	OpenStart  int64                  `json:"open_start_ns"` // unix ns
	OpenEnd    int64                  `json:"open_end_ns"`
	Setup      *hdrhistogram.Snapshot `json:"setup,omitempty"`
	Bytes      int64                  `json:"bytes"`
	FirstByte  int64                  `json:"first_byte_ns,omitempty"`
	LastByte   int64                  `json:"last_byte_ns,omitempty"`
	Seconds    float64                `json:"seconds"`
	Messages   int64                  `json:"messages"`
	Sent       int64                  `json:"sent"`
	RTT        *hdrhistogram.Snapshot `json:"rtt,omitempty"`
	Errors     int64                  `json:"errors"`
	ErrorKinds map[string]int64       `json:"error_kinds,omitempty"`
	Churned    int64                  `json:"churned"`
	VMSessions int64                  `json:"vm_sessions"` // sessions the VMs saw complete the handshake
	Corrupt    int64                  `json:"corrupt"`     // sessions whose bytes differed from the pattern
	// Desktop sessions: each one's update bytes per second over the run, updates received,
	// input events sent and the ones the VMs never saw.
	SessionRates []float64 `json:"session_rates,omitempty"`
	Frames       int64     `json:"frames,omitempty"`
	InputSent    int64     `json:"input_sent,omitempty"`
	InputLost    int64     `json:"input_lost,omitempty"`
}

// Progress is a worker's running count, sent while it works.
type Progress struct {
	Worker   int   `json:"worker"`
	Opened   int64 `json:"opened"`
	Failed   int64 `json:"failed"`
	Bytes    int64 `json:"bytes"`
	Messages int64 `json:"messages"`
	Churned  int64 `json:"churned"`
}

// Event is what a worker reports to its coordinator.
type Event struct {
	Type     string    `json:"type"` // "progress", "opened", "ran", "done", "error"
	Progress *Progress `json:"progress,omitempty"`
	Part     *Part     `json:"part,omitempty"`
	Err      string    `json:"error,omitempty"`
}

// Control connects a worker to its coordinator.
type Control interface {
	Emit(Event) error
	// Wait blocks until the coordinator sends cmd ("go", "close").
	Wait(cmd string) error
}

// worker is the state of one RunWorker.
type worker struct {
	job     Job
	ctl     Control
	tls     *tls.Config
	fleet   []*vncsim.Server
	setup   *Recorder
	rtt     *Recorder
	opened  atomic.Int64
	failed  atomic.Int64
	bytes   atomic.Int64
	msgs    atomic.Int64
	sent    atomic.Int64
	churned atomic.Int64
	errs    atomic.Int64
	corrupt atomic.Int64

	mu    sync.Mutex
	kinds map[string]int64
}

// RunWorker does one job: start its VMs, open its sessions, report "opened", wait for "go",
// run, report "ran", wait for "close", close everything and report "done".
func RunWorker(job Job, ctl Control) error {
	w := &worker{job: job, ctl: ctl, setup: NewRecorder(), rtt: NewRecorder(), kinds: map[string]int64{}}
	err := w.run()
	w.stopFleet()
	if err != nil {
		_ = ctl.Emit(Event{Type: "error", Err: err.Error()})
	}
	return err
}

func (w *worker) run() error {
	if strings.HasPrefix(w.job.Target.URL, "wss://") && !w.job.Target.Direct {
		cfg, err := w.job.TLS.Config()
		if err != nil {
			return err
		}
		w.tls = cfg
	}
	if err := w.startFleet(); err != nil {
		return err
	}
	stopProgress := w.progress()
	defer stopProgress()
	part := &Part{Worker: w.job.Worker}
	var sessions []*client
	if w.job.Kind != KindChurn {
		sessions = w.openAll(part)
	}
	defer func() {
		for _, c := range sessions {
			if c != nil {
				c.close()
			}
		}
	}()
	w.fill(part)
	if err := w.ctl.Emit(Event{Type: "opened", Part: part}); err != nil {
		return err
	}
	if err := w.ctl.Wait("go"); err != nil {
		return err
	}
	t0 := time.Now()
	switch w.job.Kind {
	case KindDown:
		w.down(sessions, part)
	case KindUp:
		w.up(sessions, part)
	case KindEcho:
		w.echo(sessions)
	case KindChurn:
		w.churn()
	case KindDesktop:
		w.desktops(sessions, part)
	}
	part.Seconds = time.Since(t0).Seconds()
	w.fill(part)
	if err := w.ctl.Emit(Event{Type: "ran", Part: part}); err != nil {
		return err
	}
	if err := w.ctl.Wait("close"); err != nil {
		return err
	}
	for i, c := range sessions {
		if c != nil {
			c.close()
			sessions[i] = nil
		}
	}
	w.stopFleet()
	return w.ctl.Emit(Event{Type: "done", Part: part})
}

// fill copies the counters into part.
func (w *worker) fill(p *Part) {
	p.Opened, p.OpenFailed = w.opened.Load(), w.failed.Load()
	p.Bytes = max(p.Bytes, w.bytes.Load())
	p.Messages, p.Sent, p.Churned = w.msgs.Load(), w.sent.Load(), w.churned.Load()
	p.Errors, p.Corrupt = w.errs.Load(), w.corrupt.Load()
	p.Setup = w.setup.Snapshot()
	if w.job.Kind == KindEcho || w.job.Kind == KindDesktop {
		p.RTT = w.rtt.Snapshot()
	}
	w.mu.Lock()
	p.ErrorKinds = make(map[string]int64, len(w.kinds))
	for k, v := range w.kinds {
		p.ErrorKinds[k] = v
	}
	w.mu.Unlock()
	var vmSessions int64
	for _, s := range w.fleet {
		vmSessions += s.Stats().Handshakes
	}
	p.VMSessions = vmSessions
}

func (w *worker) progress() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = w.ctl.Emit(Event{Type: "progress", Progress: &Progress{
					Worker: w.job.Worker, Opened: w.opened.Load(), Failed: w.failed.Load(),
					Bytes: w.bytes.Load(), Messages: w.msgs.Load(), Churned: w.churned.Load(),
				}})
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (w *worker) startFleet() error {
	if w.job.VMs < 1 || w.job.VMs > maxVMsPerWorker {
		return fmt.Errorf("worker %d: %d VMs outside 1..%d", w.job.Worker, w.job.VMs, maxVMsPerWorker)
	}
	if err := w.job.Layout.Check(w.job.Worker+1, w.job.VMs); err != nil {
		return fmt.Errorf("worker %d: %w", w.job.Worker, err)
	}
	cfg := vncsim.Config{WebSocket: w.job.Target.VMWebSocket(), Width: 1024, Height: 768}
	switch w.job.Kind {
	case KindHold, KindChurn:
		cfg.Mode = vncsim.ModeDesktop
	case KindDown:
		cfg.Mode, cfg.SourceBytes = vncsim.ModeSource, w.job.Bytes
	case KindUp:
		cfg.Mode = vncsim.ModeSink
	case KindEcho:
		cfg.Mode = vncsim.ModeEcho
	case KindDesktop:
		width, err := w.job.Desktop.Width()
		if err != nil {
			return err
		}
		// The clients pace their requests as noVNC would be paced by a desktop's changes,
		// so the VM answers at once: its own pacing would also hold back the input probes.
		cfg.Mode, cfg.Width, cfg.FrameInterval = vncsim.ModeDesktop, width, -1
	default:
		return fmt.Errorf("worker %d: unknown kind %q", w.job.Worker, w.job.Kind)
	}
	for i := 0; i < w.job.VMs; i++ {
		vm := w.job.vm(i)
		s, err := vncsim.Listen(net.JoinHostPort(vm.IP, fmt.Sprint(vm.Port)), cfg)
		if err != nil {
			return fmt.Errorf("worker %d: start VM %d: %w", w.job.Worker, i, err)
		}
		w.fleet = append(w.fleet, s)
	}
	return nil
}

func (w *worker) stopFleet() {
	for _, s := range w.fleet {
		s.Close()
	}
	w.fleet = nil
}

// noteErr counts an error by kind.
func (w *worker) noteErr(err error) {
	k := ErrorKind(err)
	w.mu.Lock()
	w.kinds[k]++
	w.mu.Unlock()
}

// ErrorKind names an error briefly for the report: descriptor exhaustion, an HTTP status
// before the upgrade, refused, reset, timeout, or the message itself.
func ErrorKind(err error) string {
	var st ws.StatusError
	var ne net.Error
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "EMFILE (descriptor limit)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "EADDRNOTAVAIL (ephemeral ports)"
	case errors.As(err, &st):
		return fmt.Sprintf("HTTP %d", int(st))
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "closed by peer"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// client is one browser-side session.
type client struct {
	conn net.Conn
	st   *wsstream.Stream
	r    io.Reader // RFB bytes
}

func (c *client) close() {
	// A close frame first, as noVNC sends, so proxies log a clean close.
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.st.SendClose(ws.StatusNormalClosure, "")
	_ = c.conn.Close()
}

// openCounted opens session j and records the outcome: the setup time and
// an open count, or a failure with its error.
func (w *worker) openCounted(j int) (*client, bool) {
	vm := w.job.vm(j % w.job.VMs)
	token, err := w.job.token(j, vm)
	if err != nil {
		w.failed.Add(1)
		w.noteErr(err)
		return nil, false
	}
	t := time.Now()
	c, err := w.open(j, vm, token)
	if err != nil {
		w.failed.Add(1)
		w.noteErr(err)
		return nil, false
	}
	w.setup.Record(time.Since(t))
	w.opened.Add(1)
	return c, true
}

// open dials vm on the job's target and completes the WebSocket upgrade and the RFB
// handshake. On loopback the session comes from the worker's j-th source address (one
// address pair has only ~28,000 ephemeral ports); elsewhere the kernel picks.
func (w *worker) open(j int, vm VMAddr, token string) (*client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.job.Timeout)
	defer cancel()
	var nd net.Dialer
	d := ws.Dialer{
		Protocols: []string{"binary"},
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && ip.To4() != nil {
					nd.LocalAddr = ClientAddr(w.job.Worker, j)
				}
			}
			return nd.DialContext(ctx, network, addr)
		},
		TLSConfig: w.tls,
	}
	conn, br, _, err := d.Dial(ctx, w.job.Target.URLFor(vm, token))
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	} else if tc, ok := conn.(*tls.Conn); ok {
		if raw, ok := tc.NetConn().(*net.TCPConn); ok {
			_ = raw.SetNoDelay(true)
		}
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	st := wsstream.NewClient(r, conn)
	c := &client{conn: conn, st: st, r: st}
	_ = conn.SetDeadline(time.Now().Add(w.job.Timeout))
	// A small buffer keeps the handshake's dozen tiny reads from being a dozen syscalls; it
	// holds nothing afterwards (the server says nothing until asked), so it is dropped.
	hb := bufio.NewReaderSize(st, 512)
	if _, err := rfbclient.Handshake(struct {
		io.Reader
		io.Writer
	}{hb, st}, ""); err != nil {
		conn.Close()
		return nil, err
	}
	if hb.Buffered() > 0 {
		c.r = io.MultiReader(hb, st)
	}
	_ = conn.SetDeadline(time.Time{})
	return c, nil
}

// openAll opens the job's sessions with at most Concurrency in flight and at most OpenRate
// starts per second.
func (w *worker) openAll(part *Part) []*client {
	n := w.job.Sessions
	out := make([]*client, n)
	next := make(chan int)
	var wg sync.WaitGroup
	conc := max(1, min(w.job.Concurrency, n))
	part.OpenStart = time.Now().UnixNano()
	for g := 0; g < conc; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				if c, ok := w.openCounted(j); ok {
					out[j] = c
				}
			}
		}()
	}
	start := time.Now()
	for j := 0; j < n; j++ {
		if w.job.OpenRate > 0 {
			due := start.Add(time.Duration(float64(j) / w.job.OpenRate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		next <- j
	}
	close(next)
	wg.Wait()
	part.OpenEnd = time.Now().UnixNano()
	return out
}

// readChunk is the client's read size in the throughput scenarios.
const readChunk = 256 << 10

// down reads every session's stream to its end, checking it against the VM's pattern.
func (w *worker) down(sessions []*client, part *Part) {
	var first, last atomic.Int64
	first.Store(1<<63 - 1)
	ref := make([]byte, readChunk+vncsim.PatternPeriod)
	vncsim.Pattern(0, ref)
	var wg sync.WaitGroup
	for _, c := range sessions {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readChunk)
			var off int64
			deadline := time.Now().Add(w.job.Timeout + w.job.Duration)
			_ = c.conn.SetReadDeadline(deadline)
			corrupt := false
			for off < w.job.Bytes {
				n, err := c.r.Read(buf)
				if n > 0 {
					if off == 0 {
						casMin(&first, time.Now().UnixNano())
					}
					phase := off % vncsim.PatternPeriod
					if !corrupt && string(buf[:n]) != string(ref[phase:phase+int64(n)]) {
						corrupt = true
						w.corrupt.Add(1)
					}
					off += int64(n)
					w.bytes.Add(int64(n))
				}
				if err != nil {
					if off < w.job.Bytes {
						w.errs.Add(1)
						w.noteErr(fmt.Errorf("after %d of %d bytes: %w", off, w.job.Bytes, err))
					}
					break
				}
			}
			casMax(&last, time.Now().UnixNano())
		}()
	}
	wg.Wait()
	if f := first.Load(); f != 1<<63-1 {
		part.FirstByte, part.LastByte = f, last.Load()
	}
}

// up sends Bytes on every session at once and waits until the VMs have counted them all.
func (w *worker) up(sessions []*client, part *Part) {
	var base int64
	for _, s := range w.fleet {
		base += s.Stats().BytesIn
	}
	t0 := time.Now()
	part.FirstByte = t0.UnixNano()
	var want int64
	var wg sync.WaitGroup
	for _, c := range sessions {
		if c == nil {
			continue
		}
		want += w.job.Bytes
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readChunk)
			_ = c.conn.SetWriteDeadline(t0.Add(w.job.Timeout + w.job.Duration))
			for sent := int64(0); sent < w.job.Bytes; {
				n := min(int64(len(buf)), w.job.Bytes-sent)
				if _, err := c.st.Write(buf[:n]); err != nil {
					w.errs.Add(1)
					w.noteErr(err)
					return
				}
				sent += n
			}
		}()
	}
	wg.Wait()
	deadline := t0.Add(w.job.Timeout + w.job.Duration)
	for {
		var got int64
		for _, s := range w.fleet {
			got += s.Stats().BytesIn
		}
		got -= base
		w.bytes.Store(got)
		if got >= want || time.Now().After(deadline) {
			part.Bytes = got
			break
		}
		time.Sleep(time.Millisecond)
	}
	part.LastByte = time.Now().UnixNano()
}

// echoHeader is the part of an echo message that carries its scheduled send time.
const echoHeader = 8

// echo sends MsgSize-byte messages at Rate per session for Duration, each stamped with its
// scheduled send time, and records the round trip from that time (not from when the send
// happened), so a stalled sender shows up as latency instead of hiding it.
func (w *worker) echo(sessions []*client) {
	interval := time.Duration(float64(time.Second) / w.job.Rate)
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(w.job.Duration)
	var wg sync.WaitGroup
	for _, c := range sessions {
		if c == nil {
			continue
		}
		// Each session starts at its own phase within the interval, so sends are spread.
		phase := time.Duration(rand.Int64N(int64(interval)))
		expected := int64(w.job.Duration / interval)
		if w.job.Duration%interval > phase {
			expected++
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			msg := make([]byte, w.job.MsgSize)
			for k := int64(0); ; k++ {
				due := start.Add(phase + time.Duration(k)*interval)
				if !due.Before(end) {
					return
				}
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				putInt64(msg, due.UnixNano())
				if _, err := c.st.Write(msg); err != nil {
					w.errs.Add(1)
					w.noteErr(err)
					return
				}
				w.sent.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			msg := make([]byte, w.job.MsgSize)
			_ = c.conn.SetReadDeadline(end.Add(w.job.Timeout))
			for got := int64(0); got < expected; got++ {
				if _, err := io.ReadFull(c.r, msg); err != nil {
					w.errs.Add(1)
					w.noteErr(fmt.Errorf("echo %d of %d: %w", got, expected, err))
					return
				}
				w.rtt.Record(time.Since(time.Unix(0, getInt64(msg))))
				w.msgs.Add(1)
			}
		}()
	}
	wg.Wait()
}

// churn runs Concurrency loops that open a session, ask for one framebuffer update, read it
// and close, until Duration is over.
func (w *worker) churn() {
	end := time.Now().Add(w.job.Duration)
	var seq atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < max(1, w.job.Concurrency); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				// Every session from a new source port, spread over many source addresses:
				// each closed one leaves a TIME_WAIT socket behind for a minute.
				j := int(seq.Add(1) - 1)
				c, ok := w.openCounted(j)
				if !ok {
					continue
				}
				_ = c.conn.SetDeadline(time.Now().Add(w.job.Timeout))
				err := rfbclient.RequestUpdate(c.st, false, 0, 0, 64, 64)
				if err == nil {
					_, _, err = rfbclient.ReadUpdate(c.r, 4, nil)
				}
				c.close()
				if err != nil {
					w.errs.Add(1)
					w.noteErr(err)
					continue
				}
				w.churned.Add(1)
			}
		}()
	}
	wg.Wait()
}

func putInt64(b []byte, v int64) {
	for i := 0; i < echoHeader; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

func getInt64(b []byte) int64 {
	var v int64
	for i := 0; i < echoHeader; i++ {
		v |= int64(b[i]) << (8 * i)
	}
	return v
}

func casMin(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v >= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func casMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// topKinds lists error kinds by count, most frequent first.
func topKinds(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return m[ks[i]] > m[ks[j]] || m[ks[i]] == m[ks[j]] && ks[i] < ks[j] })
	return ks
}
