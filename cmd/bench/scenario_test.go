package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Sessions that fail make the exit status 1, after the figures (n/a, not zeros) are printed
// and written.
func TestExitStatusWhenSessionsFail(t *testing.T) {
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	var out, errb bytes.Buffer
	// Nothing listens on port 1: every session is refused.
	code := run([]string{"sessions", "--in-process", "--direct", "--url", "ws://127.0.0.1:1/vnc/{ip}", "--sessions", "3",
		"--vm-port", port, "--hold", "0", "--settle", "0", "--out", filepath.Join(dir, "s.json")}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "FAILED") || !strings.Contains(errb.String(), "3 of 3 sessions failed to open") {
		t.Fatalf("stderr does not say what failed:\n%s", errb.String())
	}
	s := out.String()
	if !strings.Contains(s, "setup p50 n/a") || strings.Contains(s, "p50 0.00") || !strings.Contains(s, "n/a") {
		t.Fatalf("summary:\n%s", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "s.json")); err != nil {
		t.Fatalf("results not written on failure: %v", err)
	}
	// --vs-may-fail spares a comparison proxy, not the proxy under test.
	out.Reset()
	errb.Reset()
	code = run([]string{"sessions", "--in-process", "--direct", "--vs", "ws://127.0.0.1:1/vnc/{ip}", "--vs-may-fail", "--sessions", "2",
		"--vm-port", port, "--hold", "0", "--settle", "0"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "failures allowed by --vs-may-fail") {
		t.Fatalf("--vs-may-fail: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"sessions", "--sessions", "x"},
		{"latency"}, // no target
		{"throughput", "--direct", "--bytes", "lots"},
		{"desktops", "--direct", "--kbps", "0"},
		{"setup", "--direct", "--c-relay", "nginx"},
		{"setup", "--direct", "--strace", "maybe"},
		{"sessions", "--direct", "--vm-listen", "0.0.0.0:1-2"},
		{"sessions", "--direct", "--vm-listen", "127.0.0.1:20000-20999", "--c-relay", "haproxy"},
		{"token-sources", "--sources", "file,carrier-pigeon"},
		{"help", "nope"},
		{"nope"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("bench %q: exit %d, want 2\n%s", args, code, errb.String())
		}
	}
}

func TestScenarioHelp(t *testing.T) {
	for _, name := range scenarioNames() {
		var out, errb bytes.Buffer
		if code := run([]string{"help", name}, &out, &errb); code != 0 {
			t.Fatalf("bench help %s: exit %d %s", name, code, errb.String())
		}
		h := out.String()
		if !strings.Contains(h, "usage: bench "+name) || !strings.Contains(h, "Examples:\n  bench "+name) || !strings.Contains(h, "better") {
			t.Errorf("bench help %s:\n%s", name, h)
		}
		out.Reset()
		errb.Reset()
		if code := run([]string{name, "--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "Examples:") {
			t.Errorf("bench %s --help: exit %d\n%s", name, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	run([]string{"help"}, &out, &errb)
	for _, name := range scenarioNames() {
		if !strings.Contains(out.String(), "  "+name+" ") {
			t.Errorf("usage does not list %s:\n%s", name, out.String())
		}
	}
}

// The C-relay baseline through the command: HAProxy is started and stopped by bench, its
// column and ratios are in the table and in the Markdown report.
func TestCRelayColumn(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		if _, err2 := os.Stat("/usr/sbin/haproxy"); err2 != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("haproxy is missing under CI=true (Debian package haproxy)")
			}
			t.Skip("SKIPPED: haproxy is not installed (apt-get install haproxy): the C-relay column is untested here")
		}
	}
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	out := runOK(t, "throughput", "--in-process", "--direct", "--c-relay", "haproxy", "--sessions", "2", "--bytes", "2M",
		"--vm-port", port, "--settle", "0", "--out", filepath.Join(dir, "t.json"))
	for _, want := range []string{"throughput down [haproxy]", "haproxy/direct", "proxy CPU s/GB"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	runOK(t, "report", "--out", filepath.Join(dir, "r"), filepath.Join(dir, "t.json"))
	md, err := os.ReadFile(filepath.Join(dir, "r", "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| direct | haproxy | haproxy/direct |") {
		t.Fatalf("report.md has no HAProxy column:\n%s", md)
	}
}
