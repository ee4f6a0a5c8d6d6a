package engine

import (
	"time"
)

// A restart that keeps sessions (--takeover, docs/operations.md): the new
// instance binds the same addresses beside the old one (both with
// SO_REUSEPORT, reuseport.go), and from then on the kernel spreads new
// connections over both. The old one, once stopped, sees that a successor
// listens on each of its WebSocket addresses and hands its listeners over:
// it takes what is queued on them, leaves the addresses to the successor
// and closes them, so every new connection reaches the successor; it keeps
// its sessions until they end or the drain timeout, then exits. Stopped
// with no successor it drains as it always has: it keeps accepting and
// answers new upgrades with 503 (a load balancer has left it already,
// since /readyz fails), and hands over the moment a successor binds.

const (
	// successorPoll is how often a draining instance that has no
	// successor yet looks for one.
	successorPoll = 250 * time.Millisecond
	// predecessorPoll is how often a successor looks whether the instance
	// it took over from has let go of the addresses, to say so.
	predecessorPoll = time.Second
)

// hasSuccessor reports whether another listener shares every WebSocket
// address of this server. When the kernel's socket table cannot be read
// (no sock_diag: a sandbox without AF_NETLINK), the answer is no, and the
// drain refuses new upgrades as it would without a successor.
func (s *Server) hasSuccessor() bool {
	if len(s.lns) == 0 {
		return false
	}
	for _, l := range s.lns {
		n, err := l.sock.siblings()
		if err != nil {
			if s.diagWarned.CompareAndSwap(false, true) {
				s.log.Warn("cannot read the socket table to look for a successor; draining as if there were none "+
					"(systemd: RestrictAddressFamilies= needs AF_NETLINK)", "error", err.Error())
			}
			return false
		}
		if n == 0 {
			return false
		}
	}
	return true
}

// handOver gives the WebSocket listeners to the successor, and the admin
// listener too when the successor shares its address (otherwise it stays,
// and /readyz keeps saying this instance is draining). The connections
// taken from the queues are served like any other: their clients reached
// the port while it was still this instance's.
func (s *Server) handOver() {
	if !s.handedOver.CompareAndSwap(false, true) {
		return
	}
	s.refusing.Store(false)
	taken := 0
	for _, l := range s.lns {
		n, err := l.sock.handOver()
		taken += n
		if err != nil {
			s.log.Warn("handover of a listener incomplete", "listen", l.sock.addr, "error", err.Error())
		}
	}
	admin := "kept"
	if s.adminSock != nil {
		if n, err := s.adminSock.siblings(); err == nil && n > 0 {
			// Keep-alive clients (a scraper, a health check) go to the
			// successor with their next connection.
			if s.admin != nil {
				s.admin.SetKeepAlivesEnabled(false)
			}
			if _, err := s.adminSock.handOver(); err != nil {
				s.log.Warn("handover of the admin listener incomplete", "admin", s.adminSock.addr, "error", err.Error())
			}
			admin = "handed over"
		}
	}
	s.log.Info("listeners handed over to the successor; sessions stay until they end or the drain timeout",
		"listen", s.Addr(), "tls_listen", s.TLSAddr(), "admin", admin,
		"taken_from_queues", taken, "sessions", s.limits.sessions())
	s.warnMigrateReq("the handover")
}

// warnMigrateReq says when the kernel resets, rather than hands over, the
// connections that reach a closing listener in its last instant.
func (s *Server) warnMigrateReq(during string) {
	switch migrateReq() {
	case "1":
	case "":
		s.log.Warn("this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+): a connection that reaches the old instance's "+
			"listener in the instant it closes is reset", "during", during)
	default:
		s.log.Warn("net.ipv4.tcp_migrate_req is 0: a connection that reaches the old instance's listener in the instant "+
			"it closes is reset instead of handed to the successor; set it to 1 (deploy/sysctl/99-vncedge.conf)", "during", during)
	}
}

// watchTakeover runs in a server started with Takeover: it says whether
// it shares its addresses with a running instance and, once that one has
// handed its listeners over, that the takeover is complete.
func (s *Server) watchTakeover() {
	count := func() (int, error) {
		total := 0
		for _, l := range s.lns {
			n, err := l.sock.siblings()
			if err != nil {
				return 0, err
			}
			total += n
		}
		return total, nil
	}
	n, err := count()
	switch {
	case err != nil:
		s.log.Warn("takeover: cannot read the socket table to see the running instance", "error", err.Error())
		return
	case n == 0:
		s.log.Info("takeover: no other listener on these addresses; serving alone")
		return
	}
	s.log.Info("takeover: listening beside the running instance; stop it (SIGTERM) and it hands its listeners over "+
		"and keeps its sessions until they end", "shared_listeners", n)
	s.warnMigrateReq("the takeover")
	t := time.NewTicker(predecessorPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if n, err := count(); err == nil && n == 0 {
			s.log.Info("takeover complete: the previous instance let go of its listeners")
			return
		}
	}
}
