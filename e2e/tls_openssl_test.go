package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTLSOpenSSL checks vncedge's --tls-listen with Debian's openssl s_client (issue 13): TLS
// 1.3 and ALPN http/1.1 with a certificate chain that verifies against the test's CA and
// names 127.0.0.1 and localhost, TLS 1.2 as well, and with --tls-client-ca and --tls-client-cn
// a client certificate from the CA with a matching name let in, while none, one with another
// name and one from another CA are refused. "Let in" means more than a finished handshake: in
// TLS 1.3 the server judges the client's certificate after its own Finished, so each case
// sends an HTTP request and only an answer counts.
func TestTLSOpenSSL(t *testing.T) {
	req := require(t)
	openssl := req.bin("openssl")
	req.check()

	tmp := t.TempDir()
	bin := buildVncedge(t, tmp)
	www := filepath.Join(tmp, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	const page = "vncedge over TLS"
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(tmp, "tokens")
	if err := os.WriteFile(tokenFile, []byte("# no VMs: these checks stop at TLS and HTTP\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	ca, otherCA := newTestCA(t, "vncedge e2e CA"), newTestCA(t, "someone else's CA")
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := ca.issueServer(t, "vncedge e2e").writeFiles(t, tmp, "server")
	client := func(ca *testCA, cn string) []string {
		c, k := ca.issueClient(t, cn).writeFiles(t, tmp, "client-"+cn)
		return []string{"-cert", c, "-key", k}
	}
	good, intruder, foreign := client(ca, "e2e-client-1"), client(ca, "intruder"), client(otherCA, "e2e-client-2")

	tlsAddr, mtlsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	plain := startEdge(t, bin, tmp, "vncedge-tls", www, tokenFile, []int{5901},
		"--tls-listen", tlsAddr, "--tls-cert", certFile, "--tls-key", keyFile)
	waitTCP(t, plain.p, tlsAddr, 10*time.Second)
	mtls := startEdge(t, bin, tmp, "vncedge-mtls", www, tokenFile, []int{5901},
		"--tls-listen", mtlsAddr, "--tls-cert", certFile, "--tls-key", keyFile,
		"--tls-client-ca", caFile, "--tls-client-cn", "e2e-client-*")
	waitTCP(t, mtls.p, mtlsAddr, 10*time.Second)

	sClient := func(t *testing.T, addr string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		argv := append([]string{"s_client", "-connect", addr, "-servername", "localhost", "-alpn", "http/1.1",
			"-CAfile", caFile, "-verify_return_error", "-verify_hostname", "localhost", "-verify_ip", "127.0.0.1",
			// wait for the server's answer after the request, not only for the request sent
			"-ign_eof"}, args...)
		cmd := exec.CommandContext(ctx, openssl, argv...)
		cmd.Stdin = strings.NewReader("GET /index.html HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("openssl %s did not finish within 15 s:\n%s", strings.Join(argv, " "), out)
		}
		t.Logf("openssl s_client: exit status %v; %s", err, lastLine(out))
		return string(out)
	}
	cases := []struct {
		name   string
		addr   string
		args   []string
		want   []string // every one in openssl's output
		refuse bool     // no HTTP answer, a TLS alert instead
	}{
		{name: "tls1.3-alpn", addr: tlsAddr,
			want: []string{"New, TLSv1.3,", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)", "HTTP/1.1 200", page}},
		{name: "tls1.2-alpn", addr: tlsAddr, args: []string{"-tls1_2"},
			want: []string{"New, TLSv1.2,", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)", "HTTP/1.1 200", page}},
		{name: "mtls-client-cert", addr: mtlsAddr, args: good,
			want: []string{"New, TLSv1.3,", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)", "HTTP/1.1 200", page}},
		{name: "mtls-no-cert", addr: mtlsAddr, refuse: true, want: []string{"alert certificate required"}},
		{name: "mtls-cn-not-allowed", addr: mtlsAddr, args: intruder, refuse: true, want: []string{"alert bad certificate"}},
		{name: "mtls-other-ca", addr: mtlsAddr, args: foreign, refuse: true, want: []string{"alert unknown ca"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := sClient(t, c.addr, c.args...)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("openssl s_client output lacks %q:\n%s", w, out)
				}
			}
			if c.refuse {
				if strings.Contains(out, "HTTP/1.1") || strings.Contains(out, page) {
					t.Errorf("refused client got an HTTP answer:\n%s", out)
				}
				if !strings.Contains(out, "alert") {
					t.Errorf("refused client saw no TLS alert:\n%s", out)
				}
			}
		})
	}
}

// lastLine is the last non-empty line of a tool's output, where openssl says how it ended.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
