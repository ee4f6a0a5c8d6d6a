package tokensrc

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"vncedge/bench/load"
)

func TestLookupService(t *testing.T) {
	srv := httptest.NewServer(NewLookup(map[string]string{"s-0-1": "127.16.0.2:5901"}))
	defer srv.Close()
	for path, want := range map[string]int{"/s-0-1": 200, "/nope": 404, "/": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && b.String() != "127.16.0.2:5901" {
			t.Errorf("GET %s: %d %q", path, resp.StatusCode, b.String())
		}
	}
	resp, err := http.Post(srv.URL+"/s-0-1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestFileAndJWTSources(t *testing.T) {
	dir := t.TempDir()
	fleet := Fleet{Workers: 2, Sessions: 3, VMs: 2}
	f, err := Start(File, fleet, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Flags[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "s-1-2: 127.17.0.1:5901\n") || strings.Count(string(b), "\n") != 1+6 {
		t.Fatalf("token file:\n%s", b)
	}
	j, err := Start(JWT, fleet, dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(j.Flags[1])
	if len(key) != 64 || !bytes.Equal(key, j.Secret) || j.Token != load.TokenJWT {
		t.Fatalf("jwt key %q", key)
	}
	if _, err := Start("carrier-pigeon", fleet, dir); err == nil {
		t.Fatal("unknown source accepted")
	}
}

// vncedgeBin builds the real proxy once for the end-to-end test.
func vncedgeBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vncedge")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "build", "-o", bin, "vncedge/cmd/vncedge").CombinedOutput()
	if err != nil {
		t.Fatalf("build vncedge: %v\n%s", err, out)
	}
	return bin
}

// Every source end to end through the real vncedge: each session its own token, every one
// opened, and the proxy's CPU and the lookup figures read.
func TestRunEverySourceThroughVncedge(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs vncedge")
	}
	sources := Names()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is missing under CI=true (Debian package redis-server)")
		}
		t.Log("SKIPPED the Redis source: redis-server is not installed (apt-get install redis-server)")
		sources = []string{File, JWT, HTTP}
	}
	ln, err := net.Listen("tcp", load.VMFor(0, 0).IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results, err := Run(ctx, RunOptions{
		Vncedge: vncedgeBin(t), Sources: sources, Dir: t.TempDir(),
		Options: load.Options{Scenario: "token-sources", Sessions: 30, PerVM: 10, Concurrency: 30,
			Layout: load.Layout{Port: port}, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(sources) {
		t.Fatalf("%d results for %d sources", len(results), len(sources))
	}
	for i, r := range results {
		var out bytes.Buffer
		r.Print(&out)
		t.Log(out.String())
		if f := r.Failures(); len(f) > 0 {
			t.Errorf("%s: %v", sources[i], f)
		}
		if r.Target.Name != sources[i] || r.Opened != 30 || r.Proxy == nil || r.Proxy.Opened.At.IsZero() {
			t.Errorf("%s: %+v", sources[i], r)
		}
		if i > 0 && (len(r.Target.RatioTo) != 1 || r.Target.RatioTo[0] != File) {
			t.Errorf("%s: ratio to %v, want the token file", sources[i], r.Target.RatioTo)
		}
	}
}
