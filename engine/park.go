package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Backpressure (DESIGN.md): gnet cannot pause reading a socket, so a
// socket whose peer is behind is taken off the loop. We keep a dup of its
// descriptor, let gnet close its copy (no FIN: the dup holds the socket
// open) and enroll the dup again once the other side caught up. Meanwhile
// the kernel buffer fills and the sender's TCP window closes: real
// backpressure, end to end.

// parkState is where one socket of a session is in that cycle.
type parkState uint8

const (
	parkActive   parkState = iota // on the loop, read as usual
	parkParking                   // gnet is closing its copy: that OnClose is the park, not an end
	parkParked                    // off the loop; only our dup holds the socket
	parkResuming                  // the dup is being enrolled again; OnOpen brings it back
)

// park is one socket's park cycle.
type park struct {
	state parkState
	fd    int   // the dup while parking or parked; -1 otherwise
	since int64 // when state was entered (coarse clock)
}

// closed reports whether an OnClose of the socket is its park completing
// rather than the socket ending, and records that it did.
func (p *park) closed() bool {
	if p.state != parkParking {
		return false
	}
	p.state = parkParked
	return true
}

// resumed records that the socket is back on the loop; false means it was
// not expected (the session gave up on it meanwhile).
func (p *park) resumed() bool {
	if p.state != parkResuming {
		return false
	}
	p.state = parkActive
	return true
}

// drop closes a parked socket for good (the session is ending).
func (p *park) drop() {
	if p.fd >= 0 {
		_ = syscall.Close(p.fd)
		p.fd = -1
	}
	p.state = parkActive
}

// park takes socket c off the loop. The caller makes sure gnet holds
// nothing for c that its close would drop (nothing queued to write,
// nothing unread); the returned action goes back to gnet.
func (s *session) park(c gnet.Conn, p *park) gnet.Action {
	fd, err := c.Dup()
	if err != nil {
		return gnet.None // the hard cap (MaxBuffered) still protects us
	}
	p.fd, p.state, p.since = fd, parkParking, s.srv.now()
	s.srv.met.backpressure.Inc()
	s.ls.wait(s)
	return gnet.Close
}

// pollBackpressure resumes what park or a full VM queue held back, and
// reports whether the session must keep waiting.
func (s *session) pollBackpressure() bool {
	low := s.srv.tune.lowWater
	if s.vmPark.state == parkParked && s.browser.c != nil && s.browser.c.OutboundBuffered() <= low {
		s.resume(&s.vmPark, &s.vmRef)
	}
	if s.browserPark.state == parkParked && (s.vm == nil || s.vm.OutboundBuffered() <= low) {
		s.resume(&s.browserPark, &s.browserRef)
	}
	if s.inputHeld && s.browser.c != nil && s.vm != nil && s.vm.OutboundBuffered() <= low {
		s.inputHeld = false
		_ = s.browser.c.Wake(nil)
	}
	if s.state != stRelaying {
		return false
	}
	return s.vmPark.state != parkActive || s.browserPark.state != parkActive || s.inputHeld
}

// resume enrolls a parked descriptor on this loop again; its OnOpen
// (onEnrolled) links it back to the session through ref. The descriptor
// is checked first: after a reset its peer address is gone, and gnet's
// enroll would panic in its worker pool on the address-less conn that
// net.FileConn makes of it, leaving the session waiting forever.
func (s *session) resume(p *park, ref *connRef) {
	if p.state != parkParked {
		return // not parked, or already resuming
	}
	if err := peerGone(p.fd); err != nil && !(ref.vm && errors.Is(err, io.EOF)) {
		s.parkedPeerGone(p, ref.vm, err)
		return
	}
	fd := p.fd
	p.fd = -1
	f := os.NewFile(uintptr(fd), "vncedge-parked")
	nc, err := net.FileConn(f) // dups fd; f's copy is closed below
	_ = f.Close()
	var ch <-chan gnet.RegisteredResult
	if err == nil {
		if ch, err = s.ls.el.Enroll(gnet.NewContext(context.Background(), ref), nc); err != nil {
			_ = nc.Close()
		}
	}
	if err != nil {
		p.state = parkActive
		s.resumeFailed(ref.vm, err)
		return
	}
	p.state, p.since = parkResuming, s.srv.now()
	s.srv.awaitEnroll(ch, s.ls.el, func(err error) {
		if p.state == parkResuming {
			p.state = parkActive
			s.resumeFailed(ref.vm, err)
		}
	})
}

// resumeFailed ends a session whose parked socket could not come back.
func (s *session) resumeFailed(vm bool, err error) {
	if vm {
		s.closeWith(ws.StatusInternalServerError, reasonVMError, "resume parked connection: "+errText(err))
		return
	}
	s.why = reasonBrowserGone
	s.finish() // the browser socket is lost: nobody to send a close frame to
}

// parkedPeerGone handles a parked socket whose peer closed or reset it. A
// VM that closed may have left bytes for the browser in the socket: they
// and its end are read when the browser catches up, as usual. A VM reset
// ends the session now; a browser that ended takes the session with it.
func (s *session) parkedPeerGone(p *park, vm bool, err error) {
	if vm && errors.Is(err, io.EOF) {
		return
	}
	p.drop()
	if vm {
		s.endForVM(err)
		return
	}
	if s.state == stRelaying {
		s.why = reasonBrowserGone
	}
	s.finish()
}

// checkParks is the parks' share of the sweep: a parked socket whose peer
// went away ends the session now (it is not read, so nothing else would
// notice), and no park, resume or held input lasts forever.
func (s *session) checkParks(now int64) {
	cfg := &s.srv.cfg
	for _, side := range [2]struct {
		p  *park
		vm bool
	}{{&s.browserPark, false}, {&s.vmPark, true}} {
		if s.state != stRelaying {
			return
		}
		p := side.p
		switch p.state {
		case parkParked:
			if err := peerGone(p.fd); err != nil {
				s.parkedPeerGone(p, side.vm, err)
			} else if cfg.ParkTimeout > 0 && now-p.since > int64(cfg.ParkTimeout) {
				s.parkTimedOut(side.vm)
			}
		case parkResuming:
			if now-p.since > int64(resumeTimeout) {
				p.state = parkActive
				s.resumeFailed(side.vm, errEnrollTimeout)
			}
		}
	}
	if s.state == stRelaying && s.inputHeld && cfg.ParkTimeout > 0 && now-s.heldSince > int64(cfg.ParkTimeout) {
		s.parkTimedOut(false)
	}
}

// parkTimedOut ends a session whose one side has not taken the other's
// bytes for ParkTimeout: the side that stopped reading is stuck.
func (s *session) parkTimedOut(vmParked bool) {
	if vmParked {
		s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "browser is not reading")
		return
	}
	s.closeWith(ws.StatusPolicyViolation, reasonSlowConsumer, "VNC server is not reading")
}

// resumeTimeout bounds an enroll of a parked socket: it is a local
// operation that takes microseconds when it works at all.
const resumeTimeout = 5 * time.Second

// errEnrollTimeout ends a setup or resume whose enroll never reported.
var errEnrollTimeout = errors.New("the event loop did not take the connection in time")

// peerGone reports whether the peer of socket fd closed (io.EOF: it sent
// FIN) or reset it, without reading from it.
func peerGone(fd int) error {
	if soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
		return err
	} else if soErr != 0 {
		return syscall.Errno(soErr)
	}
	if _, err := unix.Getpeername(fd); err != nil {
		return err // ENOTCONN after a reset
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return nil // not TCP (a unix socket VM): nothing more to learn
	}
	switch info.State {
	case tcpCloseWait, tcpLastAck, tcpClosing:
		return io.EOF
	case tcpClose:
		return syscall.ECONNRESET
	}
	return nil
}

// TCP states from the kernel's include/net/tcp_states.h.
const (
	tcpClose     = 7
	tcpCloseWait = 8
	tcpLastAck   = 9
	tcpClosing   = 11
)

// vmResumed links the VM socket back after a park.
func (s *session) vmResumed(c gnet.Conn) gnet.Action {
	if !s.vmPark.resumed() || s.state != stRelaying {
		return gnet.Close
	}
	s.vm = c
	if s.vmTLS != nil {
		_ = s.vmTLS.SetSink(c)
		if s.vmTLS.Buffered() > 0 {
			_ = c.Wake(nil) // decrypted before the park
		}
	}
	if s.inputHeld && s.browser.c != nil {
		_ = s.browser.c.Wake(nil)
	}
	return gnet.None
}

// browserResumed links the browser socket back after a park, and delivers
// what happened while it was away: the session ending, or the VM ending.
func (s *session) browserResumed(c gnet.Conn) gnet.Action {
	if !s.browserPark.resumed() {
		return gnet.Close
	}
	switch s.state {
	case stRelaying:
	case stClosing: // the session ended while the browser was parked
		s.browser.resumed(c)
		s.sendClose()
		return gnet.None
	default:
		return gnet.Close
	}
	s.browser.resumed(c)
	// Back because the VM had bytes for it, maybe: its input still waits
	// until the VM has taken its backlog (the low mark), else every VM
	// read would let another read's worth of upload in.
	s.inputHeld = s.vm != nil && s.vm.OutboundBuffered() > s.srv.tune.lowWater
	if s.inputHeld {
		s.heldSince = s.srv.now()
		s.ls.wait(s)
	}
	s.deliverVMEnd()
	if s.state == stRelaying && s.vm != nil && s.vm.InboundBuffered() > 0 {
		_ = s.vm.Wake(nil) // what the VM sent while the browser was parked
	}
	if s.state == stRelaying && !s.inputHeld && s.browser.tls != nil && s.browser.tls.Buffered() > 0 {
		_ = c.Wake(nil) // input decrypted before the park
	}
	return gnet.None
}
