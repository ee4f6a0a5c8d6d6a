package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every listener binds with SO_REUSEPORT, so that a successor started with
// --takeover can bind the same address beside a running instance and take
// new connections while the old one keeps its sessions. SO_REUSEPORT alone
// would also let a second instance started by mistake share the port
// silently, with another configuration, and the kernel would split new
// connections between the two. So without --takeover a probe comes first:
// a bind of the same address without SO_REUSEPORT fails with EADDRINUSE
// when anyone holds it, whatever options the holder set.

// AddrInUseError is a listen address someone else holds at start.
type AddrInUseError struct {
	Addr string
	// Shared: the holder binds with SO_REUSEPORT as the same user, as a
	// running vncedge does, so --takeover could bind beside it. Otherwise
	// it is another program, or another user's: --takeover cannot help.
	Shared bool
}

func (e *AddrInUseError) Error() string {
	if e.Shared {
		return fmt.Sprintf("another vncedge listens on %s; start with --takeover to take over its listener", e.Addr)
	}
	return fmt.Sprintf("%s is in use by a program that does not share it (not a vncedge running as this user): --takeover cannot take it over", e.Addr)
}

// bindTCP binds and listens on addr with SO_REUSEPORT. Without takeover an
// address already held is refused with *AddrInUseError; with it, the
// socket joins the holder's (when the holder allows it).
func bindTCP(addr string, takeover bool) (*net.TCPListener, error) {
	if !takeover {
		if err := probeFree(addr); err != nil {
			return nil, err
		}
	}
	// No TCP keepalive on browser sockets: the engine's own ping and pong
	// deadline find dead browsers, and Go's default (15 s) costs four
	// setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return os.NewSyscallError("setsockopt SO_REUSEPORT", serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, &AddrInUseError{Addr: addr}
		}
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// probeFree reports whether addr is held, by binding (never listening: a
// listening probe would join a holder's SO_REUSEPORT group and could be
// handed a client's connection) a socket without SO_REUSEPORT, then one
// with it to tell a vncedge from another program.
func probeFree(addr string) error {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return err
	}
	if ta.Port == 0 {
		return nil // the kernel picks a free port
	}
	err = probeBind(ta, false)
	if !errors.Is(err, unix.EADDRINUSE) {
		return nil // free, or a failure the real bind will report as it is
	}
	return &AddrInUseError{Addr: addr, Shared: probeBind(ta, true) == nil}
}

// probeBind binds a throw-away socket to a as Go's listeners would (the
// same family, SO_REUSEADDR, a dual-stack [::] for a wildcard) and closes it.
func probeBind(a *net.TCPAddr, reuseport bool) error {
	family, sa := sockaddrFor(a)
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil && family == unix.AF_INET6 && a.IP.To4() != nil {
		// No IPv6 here: Go listens on IPv4 alone then, and so does the probe.
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: a.Port, Addr: [4]byte(a.IP.To4())}
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	}
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if reuseport {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	return os.NewSyscallError("bind", unix.Bind(fd, sa))
}

// sockaddrFor follows Go's choice for a "tcp" listener: a wildcard address
// (none, 0.0.0.0 or ::) listens dual-stack on [::], an IPv4 address on
// AF_INET, anything else on AF_INET6.
func sockaddrFor(a *net.TCPAddr) (int, unix.Sockaddr) {
	switch ip4 := a.IP.To4(); {
	case a.IP == nil || a.IP.IsUnspecified():
		return unix.AF_INET6, &unix.SockaddrInet6{Port: a.Port}
	case ip4 != nil:
		return unix.AF_INET, &unix.SockaddrInet4{Port: a.Port, Addr: [4]byte(ip4)}
	default:
		sa := &unix.SockaddrInet6{Port: a.Port, Addr: [16]byte(a.IP.To16())}
		if a.Zone != "" {
			if ifi, err := net.InterfaceByName(a.Zone); err == nil {
				sa.ZoneId = uint32(ifi.Index)
			}
		}
		return unix.AF_INET6, sa
	}
}

// sockIdent is what the kernel's socket table says about one of our
// listeners: its family and local address as bound, and its inode, which
// tells it from a successor's socket on the same address.
type sockIdent struct {
	family uint8
	addr   [16]byte // IPv4 in the first 4 bytes
	port   uint16
	inode  uint32
}

func identOf(ln *net.TCPListener) (sockIdent, error) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return sockIdent{}, err
	}
	var id sockIdent
	var serr error
	if err := rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if serr = unix.Fstat(int(fd), &st); serr != nil {
			return
		}
		id.inode = uint32(st.Ino)
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr != nil {
			return
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			id.family, id.port = unix.AF_INET, uint16(sa.Port)
			copy(id.addr[:], sa.Addr[:])
		case *unix.SockaddrInet6:
			id.family, id.port = unix.AF_INET6, uint16(sa.Port)
			id.addr = sa.Addr
		default:
			serr = fmt.Errorf("listener of unexpected address family %T", sa)
		}
	}); err != nil {
		return sockIdent{}, err
	}
	return id, serr
}

// siblings counts the other listening sockets on exactly id's address:
// with SO_REUSEPORT only the same user can bind there, so they are a
// predecessor's or a successor's listeners.
func siblings(id sockIdent) (int, error) {
	n := 0
	err := listTCPListeners(id.family, func(l diagListener) {
		if l.addr == id.addr && l.port == id.port && l.inode != id.inode {
			n++
		}
	})
	return n, err
}

// migrateReqPath is the switch that makes the kernel hand the connections
// queued on a closing listener (accepted or half open) to another member
// of its SO_REUSEPORT group instead of resetting them (Linux 5.14).
const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// migrateReq reports net.ipv4.tcp_migrate_req: "1", "0", or "" when the
// kernel has no such switch.
func migrateReq() string {
	b, err := os.ReadFile(migrateReqPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// drainAccept accepts, without waiting, every connection queued on the
// listening socket fd, then shuts the socket down, at once, so that the
// kernel takes it out of its SO_REUSEPORT group: from then on every new
// connection reaches the other members. Between the last accept (which
// found the queue empty) and the shutdown only one system call passes;
// what the kernel queues in that instant, and handshakes not yet complete,
// are reset unless net.ipv4.tcp_migrate_req hands them to a successor.
// At most limit connections are taken, so a flood cannot keep it going.
func drainAccept(fd, limit int) ([]int, error) {
	var fds []int
	var err error
	for len(fds) < limit {
		nfd, _, aerr := unix.Accept4(fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if aerr == nil {
			fds = append(fds, nfd)
			continue
		}
		if aerr == unix.EINTR || aerr == unix.ECONNABORTED {
			continue
		}
		if aerr != unix.EAGAIN {
			err = os.NewSyscallError("accept4", aerr)
		}
		break
	}
	if serr := unix.Shutdown(fd, unix.SHUT_RD); serr != nil {
		err = errors.Join(err, os.NewSyscallError("shutdown", serr))
	}
	return fds, err
}
