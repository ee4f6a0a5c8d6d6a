package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The kernel's socket table, through sock_diag (what `ss -lt` reads): the
// TCP listeners of one address family, which tell a takeover whether a
// predecessor shares its address and a draining instance whether a
// successor does. Asking for listeners only keeps the answer small however
// many sessions the box holds, where /proc/net/tcp would list them all.

// diagListener is one listening socket from the table.
type diagListener struct {
	family uint8
	addr   [16]byte // IPv4 in the first 4 bytes
	port   uint16
	uid    uint32
	inode  uint32
}

// Sizes of the structures of linux/inet_diag.h and linux/netlink.h.
const (
	nlmsgHdrLen      = 16 // struct nlmsghdr
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	tcpListenState   = 10 // TCP_LISTEN
	diagRecvTimeout  = 2 * time.Second
	diagRecvBufBytes = 32 << 10
)

// listTCPListeners calls fn for every TCP listener of family (AF_INET or
// AF_INET6) in this network namespace.
func listTCPListeners(family uint8, fn func(diagListener)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("sock_diag: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	// A kernel that never answers must not hang a shutdown.
	tv := unix.NsecToTimeval(diagRecvTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("sock_diag: %w", os.NewSyscallError("setsockopt", err))
	}
	if err := unix.Sendto(fd, diagRequest(family), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag: %w", os.NewSyscallError("sendto", err))
	}
	buf := make([]byte, diagRecvBufBytes)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("sock_diag: %w", os.NewSyscallError("recvfrom", err))
		}
		done, err := parseDiag(buf[:n], fn)
		if err != nil {
			return fmt.Errorf("sock_diag: %w", err)
		}
		if done {
			return nil
		}
	}
}

// diagRequest is a dump request for the TCP sockets of family in state LISTEN.
func diagRequest(family uint8) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	b[nlmsgHdrLen] = family
	b[nlmsgHdrLen+1] = unix.IPPROTO_TCP
	ne.PutUint32(b[nlmsgHdrLen+4:], 1<<tcpListenState)
	return b
}

// errDiagTruncated is a message whose length disagrees with what came.
var errDiagTruncated = errors.New("truncated netlink message")

// parseDiag reads one datagram of a sock_diag dump: the listeners it holds
// go to fn; done reports the end of the dump. It is a pure function of b,
// so the fuzz target drives it.
func parseDiag(b []byte, fn func(diagListener)) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return false, errDiagTruncated
		}
		l := int(ne.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			return false, errDiagTruncated
		}
		body := b[nlmsgHdrLen:l]
		switch ne.Uint16(b[4:]) {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return false, errDiagTruncated
			}
			errno := int32(ne.Uint32(body)) // negative, as the kernel returns it
			if errno >= 0 {
				return false, errors.New("netlink error message without an error")
			}
			return false, syscall.Errno(-errno)
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(body) < inetDiagMsgLen {
				return false, errDiagTruncated
			}
			if body[1] == tcpListenState {
				var dl diagListener
				dl.family = body[0]
				dl.port = binary.BigEndian.Uint16(body[4:]) // idiag_sport, network order
				copy(dl.addr[:], body[8:24])                // idiag_src
				dl.uid = ne.Uint32(body[64:])
				dl.inode = ne.Uint32(body[68:])
				fn(dl)
			}
		}
		// Messages are padded to 4 bytes; the last one may lack its padding.
		b = b[min(len(b), (l+3)&^3):]
	}
	return false, nil
}
