package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"vncedge/bench/load"
)

// TestMain lets the test binary stand in for the bench binary when a scenario re-executes
// itself as a worker process.
func TestMain(m *testing.M) {
	if os.Getenv("VNCEDGE_BENCH_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb); code != 0 {
		t.Fatalf("bench %v: exit %d\n%s", args, code, errb.String())
	}
	return out.String()
}

// Worker processes, JSON output and the report, end to end against --direct.
func TestSessionsWithWorkerProcessesAndReport(t *testing.T) {
	t.Setenv("VNCEDGE_BENCH_AS_MAIN", "1")
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	out := runOK(t, "sessions", "--direct", "--sessions", "40", "--per-worker", "25", "--per-vm", "10", "--vm-port", port,
		"--hold", "0", "--settle", "0", "--json", "--out", filepath.Join(dir, "s.json"))
	var set load.RunSet
	if err := json.Unmarshal([]byte(out), &set); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if len(set.Results) != 1 || set.Results[0].Workers != 2 || set.Results[0].Opened != 40 {
		t.Fatalf("results: %+v", set.Results)
	}
	runOK(t, "throughput", "--direct", "--in-process", "--sessions", "1", "--bytes", "1M", "--vm-port", port, "--out", filepath.Join(dir, "t.json"))
	rep := runOK(t, "report", "--out", filepath.Join(dir, "r"), filepath.Join(dir, "s.json"), filepath.Join(dir, "t.json"))
	if !strings.Contains(rep, "report.md") {
		t.Fatalf("report said %q", rep)
	}
	md, err := os.ReadFile(filepath.Join(dir, "r", "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| sessions, 40 | opened | higher | 40 |") {
		t.Fatalf("report.md:\n%s", md)
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"latency"}, // no target
		{"latency", "--url", "ws://127.0.0.1:1/fixed"},   // template without {ip}/{token}
		{"throughput", "--direct", "--bytes", "lots"},    // bad size
		{"throughput", "--direct", "--dirs", "sideways"}, // bad direction
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code == 0 {
			t.Errorf("bench %q succeeded", args)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"512": 512, "64K": 64 << 10, "256M": 256 << 20, "1G": 1 << 30, "2GiB": 2 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512", "64K", "1G", "2GiB", "", "-1", "9999999999G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseSize(s); err == nil && n < 1 {
			t.Fatalf("parseSize(%q) = %d without error", s, n)
		}
	})
}

// freePort returns a port free on the VM addresses of worker 0, so this
// package's runs do not collide with bench/load's tests running beside them.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", load.VMFor(0, 0).IP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
