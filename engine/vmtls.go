package engine

import (
	"context"
	"net"

	"github.com/panjf2000/gnet/v2"

	"vncedge/engine/tlsio"
)

// TLS towards the VM (a grant's tls option; websockify's --ssl-target):
// the dial goroutine runs the client handshake over the socket it dialled
// (tlsio.Client, bounded by the connect timeout and verified against
// --upstream-ca or the system roots), then the socket is enrolled like a
// plain one and the record layer runs on the loop. These helpers are the
// VM side's reads and writes, plain or through that layer.

// vmHandshakeTLS wraps the dialled socket nc in TLS; on error nc is closed.
func (srv *Server) vmHandshakeTLS(ctx context.Context, nc net.Conn, host string) (*tlsio.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, srv.cfg.ConnectTimeout+setupSlack)
	defer cancel()
	return tlsio.Client(ctx, srv.tlsPool, nc, srv.tlsStore.UpstreamConfig(host))
}

// vmOpened finishes the VM side's set-up on its loop: the TLS layer (if
// any) writes to the enrolled socket and may already hold the VM's first
// bytes (read past the handshake by crypto/tls).
func (s *session) vmOpened(c gnet.Conn) {
	if t := s.pendingVMTLS.Swap(nil); t != nil {
		s.vmTLS = t
		_ = t.SetSink(c)
		if _, err := t.Input(nil); err == nil && t.Buffered() > 0 {
			_ = c.Wake(nil)
		}
	}
}

// vmIn decrypts what gnet read from a TLS VM; false means its TLS layer
// ended (the VM's close_notify or a bad record).
func (s *session) vmIn(c gnet.Conn) bool {
	if s.vmTLS == nil {
		return true
	}
	in, _ := c.Peek(-1)
	used, err := s.vmTLS.Input(in)
	if used > 0 {
		_, _ = c.Discard(used)
	}
	return err == nil || s.vmTLS.Buffered() > 0
}

// vmInbound, vmPeek and vmDiscard read the VM's bytes.
func (s *session) vmInbound(c gnet.Conn) int {
	if s.vmTLS == nil {
		return c.InboundBuffered()
	}
	if s.vmTLS.Buffered() == 0 {
		s.vmIn(c)
	}
	return s.vmTLS.Buffered()
}

func (s *session) vmPeek(c gnet.Conn, n int) []byte {
	if s.vmTLS == nil {
		p, _ := c.Peek(n)
		return p
	}
	p := s.vmTLS.Peek()
	if n > 0 && n < len(p) {
		p = p[:n]
	}
	return p
}

func (s *session) vmDiscard(c gnet.Conn, n int) {
	if n <= 0 {
		return
	}
	if s.vmTLS == nil {
		_, _ = c.Discard(n)
		return
	}
	s.vmTLS.Discard(n)
}

// vmWrite writes to the VM.
func (s *session) vmWrite(p []byte) {
	if s.vmTLS != nil {
		_, _ = s.vmTLS.Write(p)
		return
	}
	_, _ = s.vm.Write(p)
}

// releaseVMTLS drops the VM's TLS layer with its socket.
func (s *session) releaseVMTLS() {
	if t := s.pendingVMTLS.Swap(nil); t != nil {
		_ = t.Close()
	}
	if s.vmTLS != nil {
		_ = s.vmTLS.SetSink(nil)
		_ = s.vmTLS.Close()
		s.vmTLS = nil
	}
}
