package tlsio

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// needOpenSSL returns the openssl binary, or skips (loudly) when it is missing, except under
// CI=true, where a missing tool is a failure.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not installed (Debian package openssl); required under CI=true")
		}
		t.Skip("SKIPPED: openssl not installed (apt-get install openssl): the s_client interop test did not run")
	}
	return path
}

// httpsServer is the smallest server on this package: it answers one HTTP/1.1 request per
// connection with "ok", then sends close_notify and shuts its write side, as the engine will.
// Every connection's end is sent on ends.
func httpsServer(t *testing.T, st *Store) (addr string, ends chan error, subjects chan string) {
	t.Helper()
	ln := listen(t)
	p := NewPool(DefaultConfig())
	ends = make(chan error, 8)
	subjects = make(chan string, 8)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { raw.Close() })
			l := socketLoop(t, raw)
			var req []byte
			l.app = func(l *testLoop, b []byte) int {
				req = append(req, b...)
				if bytes.Contains(req, []byte("\r\n\r\n")) {
					subjects <- l.c.PeerSubject()
					l.c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
					l.c.CloseWrite()
					raw.(*net.TCPConn).CloseWrite()
					req = req[:0]
				}
				return len(b)
			}
			l.start(NewServer(p, st.ServerConfig(), raw, l.notify))
			go func() {
				select {
				case ends <- l.ending():
				default:
				}
			}()
		}
	}()
	return ln.Addr().String(), ends, subjects
}

// TestOpenSSLClient: openssl s_client negotiates TLS 1.3 (and 1.2) with ALPN http/1.1 and a
// verified chain against a server on this package, gets its answer, and, with --tls-client-ca,
// is accepted with a client certificate from the CA and refused without one.
func TestOpenSSLClient(t *testing.T) {
	openssl := needOpenSSL(t)
	ca := newCA(t, "openssl test CA")
	clientCA := newCA(t, "openssl client CA")
	dir := t.TempDir()
	caFile := ca.writeCA(t, dir, "ca.pem")
	cfg := DefaultConfig()
	cfg.Certs = []CertPair{ca.writePair(t, dir, "srv", certSpec{cn: testHost, dns: []string{testHost}})}
	plain := newStore(t, cfg)
	cfg.ClientCA = clientCA.writeCA(t, dir, "clients.pem")
	mtls := newStore(t, cfg)
	client := clientCA.writePair(t, dir, "client", certSpec{cn: "operator-1", client: true})

	run := func(t *testing.T, addr string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		defer cancel()
		args = append([]string{"s_client", "-connect", addr, "-servername", testHost, "-alpn", "http/1.1",
			"-CAfile", caFile, "-verify_return_error", "-ign_eof"}, args...)
		cmd := exec.CommandContext(ctx, openssl, args...)
		cmd.Stdin = strings.NewReader("GET / HTTP/1.1\r\nHost: " + testHost + "\r\n\r\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, v := range []struct{ flag, name string }{{"-tls1_3", "TLSv1.3"}, {"-tls1_2", "TLSv1.2"}} {
		t.Run(v.name, func(t *testing.T) {
			addr, ends, _ := httpsServer(t, plain)
			out, err := run(t, addr, v.flag)
			if err != nil {
				t.Fatalf("s_client: %v\n%s", err, out)
			}
			for _, want := range []string{"Protocol  : " + v.name, "ALPN protocol: http/1.1", "Verify return code: 0 (ok)", "HTTP/1.1 200 OK", "\r\n\r\nok"} {
				if !strings.Contains(out, want) {
					t.Errorf("s_client output lacks %q:\n%s", want, out)
				}
			}
			t.Logf("server end: %v", <-ends)
		})
	}
	t.Run("mTLS", func(t *testing.T) {
		addr, _, subjects := httpsServer(t, mtls)
		out, err := run(t, addr, "-tls1_3", "-cert", client.Cert, "-key", client.Key)
		if err != nil || !strings.Contains(out, "\r\n\r\nok") {
			t.Fatalf("with a client certificate: %v\n%s", err, out)
		}
		if s := <-subjects; !strings.Contains(s, "CN=operator-1") {
			t.Fatalf("subject %q", s)
		}
		out, err = run(t, addr, "-tls1_3")
		if err == nil && strings.Contains(out, "\r\n\r\nok") {
			t.Fatalf("without a client certificate the request was answered:\n%s", out)
		}
		if !strings.Contains(out, "alert certificate required") && !strings.Contains(out, "alert handshake failure") {
			t.Errorf("no refusal alert in:\n%s", out)
		}
	})
}
