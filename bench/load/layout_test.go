package load

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseVMListenAndLayout(t *testing.T) {
	l, err := ParseVMListen("127.0.0.1:20000-20999", 160)
	if err != nil {
		t.Fatal(err)
	}
	if vm := l.VM(1, 5); vm.IP != "127.0.0.1" || vm.Port != 20000+160+5 || vm.Token != "vm-1-5" {
		t.Fatalf("VM(1, 5) = %+v", vm)
	}
	if err := l.Check(2, 160); err != nil {
		t.Fatalf("2 workers x 160 in 1,000 ports: %v", err)
	}
	if err := l.Check(7, 100); err == nil {
		t.Fatal("7 workers x 160 ports fit in 1,000")
	}
	if err := l.Check(1, 161); err == nil {
		t.Fatal("161 VMs fit in a stride of 160")
	}
	if !l.Loopback() {
		t.Fatal("127.0.0.1 not loopback")
	}
	one, err := ParseVMListen("[::1]:7000", 1)
	if err != nil || one.FirstPort != 7000 || one.LastPort != 7000 || one.IP != "::1" {
		t.Fatalf("single port: %+v %v", one, err)
	}
	for _, bad := range []string{"127.0.0.1", "0.0.0.0:1-2", "host:1-2", "127.0.0.1:5-1", "127.0.0.1:1-70000", "127.0.0.1:x"} {
		if _, err := ParseVMListen(bad, 10); err == nil {
			t.Errorf("ParseVMListen(%q) accepted", bad)
		}
	}
	// The alias layout keeps its addresses and takes the port.
	if vm := (Layout{Port: 7001}).VM(2, 251); vm.IP != "127.18.1.2" || vm.Port != 7001 {
		t.Fatalf("alias layout: %+v", vm)
	}
	// A token file follows the layout.
	path := filepath.Join(t.TempDir(), "tokens")
	if err := WriteTokenFile(path, 2, 2, l); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "vm-1-1: 127.0.0.1:20161\n") {
		t.Fatalf("token file:\n%s", b)
	}
}

func TestURLForTokens(t *testing.T) {
	vm := VMFor(0, 3)
	tg := Target{URL: "wss://edge.example/websockify?token={token}"}
	if got := tg.URLFor(vm, "a.b+c"); got != "wss://edge.example/websockify?token=a.b%2Bc" {
		t.Fatalf("URLFor = %q", got)
	}
	if err := CheckTemplate(tg.URL); err != nil {
		t.Fatalf("wss template refused: %v", err)
	}
	j := Job{Worker: 1, Target: Target{Token: TokenSession}}
	if tok, err := j.token(7, vm); err != nil || tok != "s-1-7" {
		t.Fatalf("session token %q %v", tok, err)
	}
	j.Target.Token = TokenJWT
	if _, err := j.token(7, vm); err == nil {
		t.Fatal("JWT without a secret signed")
	}
	j.TokenSecret = []byte(strings.Repeat("k", 32))
	tok, err := j.token(7, vm)
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Fatalf("jwt %q %v", tok, err)
	}
	// Two sessions to one VM in the same second still get tokens of their own.
	if other, _ := j.token(8, vm); other == tok {
		t.Fatal("two sessions signed the same token: the proxy's cache would answer the second")
	}
	j.Target.Token = "carrier-pigeon"
	if _, err := j.token(7, vm); err == nil {
		t.Fatal("unknown token scheme accepted")
	}
}

// A run with every VM on one address and its own port, as for a proxy on another host
// (here 127.15.0.1, outside the VM and client plans).
func TestDirectOnVMListenLayout(t *testing.T) {
	const host = "127.15.0.1"
	base := freeRange(t, host, 4)
	l, err := ParseVMListen(host+":"+itoa(base)+"-"+itoa(base+3), 2)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, Options{Scenario: "sessions", Kind: KindHold, Sessions: 6, PerWorker: 3, PerVM: 2, Layout: l})
	if r.Opened != 6 || r.Workers != 2 || r.VMs != 4 {
		t.Fatalf("vm-listen run: %+v", r)
	}
}

// freeRange finds n consecutive free ports on host.
func freeRange(t *testing.T, host string, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ok := base+n-1 <= 65535
		for p := base; ok && p < base+n; p++ {
			ok = portFree(host, p) == nil
		}
		if ok {
			return base
		}
	}
	t.Skip("no free port range on " + host)
	return 0
}
