package engine

import (
	"context"
	"net"
	"os"
	"syscall"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
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
// (onEnrolled) links it back to the session through ref.
func (s *session) resume(p *park, ref *connRef) {
	if p.state != parkParked {
		return // not parked, or already resuming
	}
	fd := p.fd
	p.fd = -1
	f := os.NewFile(uintptr(fd), "vncedge-parked")
	nc, err := net.FileConn(f) // dups fd; f's copy is closed below
	_ = f.Close()
	if err == nil {
		if _, err = s.ls.el.Enroll(gnet.NewContext(context.Background(), ref), nc); err != nil {
			_ = nc.Close()
		}
	}
	if err != nil {
		p.state = parkActive
		s.closeWith(ws.StatusInternalServerError, reasonVMError, "resume parked connection: "+errText(err))
		return
	}
	p.state, p.since = parkResuming, s.srv.now()
}

// vmResumed links the VM socket back after a park.
func (s *session) vmResumed(c gnet.Conn) gnet.Action {
	if !s.vmPark.resumed() || s.state != stRelaying {
		return gnet.Close
	}
	s.vm = c
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
		s.browser.c = c
		s.sendClose()
		return gnet.None
	default:
		return gnet.Close
	}
	s.browser.c = c
	s.inputHeld = false
	s.lastRecv = s.srv.now()
	s.deliverVMEnd()
	if s.state == stRelaying && s.vm != nil && s.vm.InboundBuffered() > 0 {
		_ = s.vm.Wake(nil) // what the VM sent while the browser was parked
	}
	return gnet.None
}
