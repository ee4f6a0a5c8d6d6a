package engine

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// diagMessage builds one sock_diag answer as the kernel writes it.
func diagMessage(l diagListener, state uint8) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagMsgLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	m := b[nlmsgHdrLen:]
	m[0], m[1] = l.family, state
	binary.BigEndian.PutUint16(m[4:], l.port)
	copy(m[8:24], l.addr[:])
	ne.PutUint32(m[64:], l.uid)
	ne.PutUint32(m[68:], l.inode)
	return b
}

func nlDone() []byte {
	b := make([]byte, nlmsgHdrLen+4)
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.NLMSG_DONE)
	return b
}

func nlError(errno syscall.Errno) []byte {
	b := make([]byte, nlmsgHdrLen+4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], unix.NLMSG_ERROR)
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen:], uint32(-int32(errno)))
	return b
}

func TestParseDiag(t *testing.T) {
	a := diagListener{family: unix.AF_INET, port: 6080, uid: 1000, inode: 42}
	copy(a.addr[:], []byte{127, 0, 0, 1})
	b := diagListener{family: unix.AF_INET6, port: 6089, inode: 43}
	var got []diagListener
	collect := func(l diagListener) { got = append(got, l) }

	buf := append(append(diagMessage(a, tcpListenState), diagMessage(b, 1)...), nlDone()...)
	done, err := parseDiag(buf, collect)
	if err != nil || !done {
		t.Fatalf("parseDiag: done %v, err %v", done, err)
	}
	if len(got) != 1 || got[0] != a {
		t.Fatalf("got %+v, want only the listener %+v (an established socket is not one)", got, a)
	}

	got = nil
	if done, err := parseDiag(diagMessage(b, tcpListenState), collect); err != nil || done || len(got) != 1 {
		t.Errorf("a datagram without DONE: done %v, err %v, %d listeners", done, err, len(got))
	}
	if _, err := parseDiag(nlError(syscall.EPERM), collect); !errors.Is(err, syscall.EPERM) {
		t.Errorf("netlink error: %v, want EPERM", err)
	}
	for name, bad := range map[string][]byte{
		"short header":   make([]byte, 7),
		"length too big": diagMessage(a, tcpListenState)[:40],
		"length too small": func() []byte {
			m := diagMessage(a, tcpListenState)
			binary.NativeEndian.PutUint32(m, 3)
			return m
		}(),
		"short body": func() []byte {
			m := diagMessage(a, tcpListenState)[:nlmsgHdrLen+10]
			binary.NativeEndian.PutUint32(m, uint32(len(m)))
			return m
		}(),
	} {
		if _, err := parseDiag(bad, collect); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The real table: our own listener is in it, found by address and inode.
func TestListTCPListenersSeesOurs(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	id, err := identOf(ln)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	if err := listTCPListeners(id.family, func(l diagListener) {
		if l.addr == id.addr && l.port == id.port && l.inode == id.inode {
			found = true
		}
	}); err != nil {
		t.Skipf("sock_diag unavailable here: %v", err)
	}
	if !found {
		t.Fatalf("our listener %+v is not in the socket table", id)
	}
	if n, err := siblings(id); err != nil || n != 0 {
		t.Errorf("siblings of a lone listener: %d, %v", n, err)
	}
}

func FuzzParseDiag(f *testing.F) {
	a := diagListener{family: unix.AF_INET, port: 6080, inode: 7}
	f.Add(append(diagMessage(a, tcpListenState), nlDone()...))
	f.Add(append(diagMessage(a, 1), diagMessage(a, tcpListenState)...))
	f.Add(nlError(syscall.ENOENT))
	f.Add(nlDone())
	f.Add([]byte{})
	f.Add(make([]byte, nlmsgHdrLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		done, err := parseDiag(b, func(diagListener) { n++ })
		if done && err != nil {
			t.Fatalf("done and an error: %v", err)
		}
		if n*(nlmsgHdrLen+inetDiagMsgLen) > len(b) {
			t.Fatalf("%d listeners out of %d bytes", n, len(b))
		}
	})
}
