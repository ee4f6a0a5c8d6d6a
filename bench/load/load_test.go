package load

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExpandAndCheckTemplate(t *testing.T) {
	vm := VMFor(2, 251)
	if vm.IP != "127.18.1.2" || vm.Port != 5901 || vm.Token != "vm-2-251" {
		t.Fatalf("VMFor(2, 251) = %+v", vm)
	}
	tests := []struct {
		tmpl string
		want string
	}{
		{
			tmpl: "ws://127.0.0.1:6080/vnc/{ip}",
			want: "ws://127.0.0.1:6080/vnc/127.18.1.2",
		},
		{
			tmpl: "ws://127.0.0.1:6080/vnc/{ip}:{port}",
			want: "ws://127.0.0.1:6080/vnc/127.18.1.2:5901",
		},
		{
			tmpl: "ws://127.0.0.1:6081/websockify?token={token}",
			want: "ws://127.0.0.1:6081/websockify?token=vm-2-251",
		},
	}
	for _, tc := range tests {
		if err := CheckTemplate(tc.tmpl); err != nil {
			t.Errorf("CheckTemplate(%q): %v", tc.tmpl, err)
		}
		if got := (Target{URL: tc.tmpl}).URLFor(vm, ""); got != tc.want {
			t.Errorf("URLFor(%q) = %q, want %q", tc.tmpl, got, tc.want)
		}
	}
	if got := (Target{Direct: true}).URLFor(vm, ""); got != "ws://127.18.1.2:5901/" {
		t.Errorf("direct URL %q", got)
	}
	for _, bad := range []string{"http://x/{ip}", "ws://127.0.0.1:6080/vnc/fixed", "ws://x/{ip}/{nope}"} {
		if CheckTemplate(bad) == nil {
			t.Errorf("CheckTemplate(%q) accepted", bad)
		}
	}
}

func TestClientAddrSpread(t *testing.T) {
	a, b := ClientAddr(1, 0), ClientAddr(1, clientsPerAddr)
	if a.IP.Equal(b.IP) || !a.IP.IsLoopback() || !b.IP.IsLoopback() {
		t.Fatalf("client addresses %v %v", a, b)
	}
	if !ClientAddr(1, 5).IP.Equal(a.IP) {
		t.Fatal("clients of one block differ in address")
	}
}

func TestWriteTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := WriteTokenFile(path, 2, 3, Layout{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 1+6 || lines[1] != "vm-0-0: 127.16.0.1:5901" || lines[6] != "vm-1-2: 127.17.0.3:5901" {
		t.Fatalf("token file:\n%s", b)
	}
}

func run(t *testing.T, o Options) *Result {
	t.Helper()
	o.Target = Target{Name: "direct", Direct: true, Pid: os.Getpid()}
	o.Timeout = 10 * time.Second
	if o.Layout.IP == "" {
		o.Layout.Port = freePort(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.Print(&out)
	t.Log(out.String())
	if r.OpenFailed != 0 || r.Errors != 0 || r.Corrupt != 0 {
		t.Fatalf("failures: %+v", r)
	}
	if r.Proxy == nil || r.Proxy.AtN.RSSKiB == 0 || r.Proxy.After.RSSKiB == 0 {
		t.Fatalf("no memory samples: %+v", r.Proxy)
	}
	return r
}

func TestDirectHold(t *testing.T) {
	// Two in-process workers, so the split and merge are exercised too.
	r := run(t, Options{Scenario: "sessions", Kind: KindHold, Sessions: 30, PerWorker: 20, PerVM: 4})
	if r.Workers != 2 || r.Opened != 30 || r.SetupPerSec <= 0 || r.Setup.Count != 30 {
		t.Fatalf("hold: %+v", r)
	}
}

func TestDirectDown(t *testing.T) {
	const n = 4 << 20
	r := run(t, Options{Scenario: "throughput", Kind: KindDown, Sessions: 2, Bytes: n})
	if r.TotalBytes != 2*n || r.MBps <= 0 {
		t.Fatalf("down: %d bytes, %v MB/s", r.TotalBytes, r.MBps)
	}
}

func TestDirectUp(t *testing.T) {
	const n = 4 << 20
	r := run(t, Options{Scenario: "throughput", Kind: KindUp, Sessions: 2, Bytes: n})
	if r.TotalBytes != 2*n || r.MBps <= 0 {
		t.Fatalf("up: %d bytes, %v MB/s", r.TotalBytes, r.MBps)
	}
}

func TestDirectEcho(t *testing.T) {
	r := run(t, Options{Scenario: "latency", Kind: KindEcho, Sessions: 20, Rate: 40, Duration: 500 * time.Millisecond})
	// 20 sessions x 40/s x 0.5 s = 400 messages, each echoed once.
	if r.Sent != 400 || r.Messages != r.Sent || r.RTT == nil || r.RTT.Count != r.Messages {
		t.Fatalf("echo: sent %d, echoed %d, rtt %+v", r.Sent, r.Messages, r.RTT)
	}
	if r.RTT.P50 <= 0 || r.RTT.P50 > r.RTT.P99 || r.RTT.P99 > r.RTT.Max {
		t.Fatalf("rtt percentiles out of order: %+v", r.RTT)
	}
}

func TestDirectChurn(t *testing.T) {
	r := run(t, Options{Scenario: "churn", Kind: KindChurn, Concurrency: 4, Duration: 300 * time.Millisecond})
	if r.Churned == 0 || r.Churned != r.Opened {
		t.Fatalf("churn: churned %d of %d opened", r.Churned, r.Opened)
	}
}

// freePort returns a port free on the VM addresses of worker 0, so these
// runs do not collide with cmd/bench's tests or a bench run beside them.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", VMFor(0, 0).IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func itoa(n int) string { return strconv.Itoa(n) }

func portFree(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}
