package main

import (
	"net"
	"time"
)

// sdNotify tells the service manager about a change of state when it asked
// to be told: systemd sets NOTIFY_SOCKET for a Type=notify unit, and
// `systemctl start` then returns only once vncedge listens (READY=1), which
// is what a takeover recipe waits for. Elsewhere socket is "" and nothing
// is sent. The protocol (sd_notify(3)) is one datagram of KEY=VALUE lines
// on a unix socket ("@name" is in the abstract namespace, which Go's
// unixgram handles as it is).
func sdNotify(socket, state string) error {
	if socket == "" {
		return nil
	}
	c, err := net.DialTimeout("unixgram", socket, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = c.Write([]byte(state))
	return err
}
