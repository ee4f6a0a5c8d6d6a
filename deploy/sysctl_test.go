package deploy_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sysctlEntry is one setting of a sysctl.d file with the comment block
// right above it.
type sysctlEntry struct {
	line     int
	key      string
	values   []uint64
	optional bool
	comment  string
}

func parseSysctl(t *testing.T, path string) []sysctlEntry {
	t.Helper()
	var entries []sysctlEntry
	var comment []string
	for i, line := range strings.Split(read(t, path), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			comment = nil
			continue
		case line[0] == '#' || line[0] == ';':
			comment = append(comment, strings.TrimSpace(line[1:]))
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: no '=': %q", path, i+1, line)
		}
		e := sysctlEntry{line: i + 1, key: strings.TrimSpace(key), comment: strings.Join(comment, "\n")}
		e.optional = strings.HasPrefix(e.key, "-")
		e.key = strings.TrimPrefix(e.key, "-")
		e.values = numbers(t, value)
		entries = append(entries, e)
		comment = nil
	}
	return entries
}

// numbers splits a sysctl value ("4096 131072 4194304", "6080,6089").
func numbers(t *testing.T, s string) []uint64 {
	t.Helper()
	var out []uint64
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == ',' }) {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("sysctl value %q is not numeric", s)
		}
		out = append(out, n)
	}
	return out
}

// TestSysctlNeverLowersALimit compares every key of 99-vncedge.conf with
// the running kernel's value: a setting lower than the kernel's (in any of
// its fields) must be marked "intended lowering:" with the reason in the
// comment right above it. Ranges compare by width, lists not at all.
func TestSysctlNeverLowersALimit(t *testing.T) {
	var compared int
	for _, e := range parseSysctl(t, "sysctl/99-vncedge.conf") {
		raw, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(e.key, ".", "/")))
		if err != nil {
			if e.optional {
				t.Logf("%s is absent here (its module is not loaded): not compared", e.key)
				continue
			}
			t.Errorf("line %d: %s: %v", e.line, e.key, err)
			continue
		}
		kernel := numbers(t, string(raw))
		ours := e.values
		switch e.key {
		case "net.ipv4.ip_local_reserved_ports":
			continue // a list of ports kept out of the ephemeral range, not a limit
		case "net.ipv4.ip_local_port_range":
			if len(kernel) != 2 || len(ours) != 2 {
				t.Errorf("line %d: %s: not a range (ours %v, kernel %v)", e.line, e.key, ours, kernel)
				continue
			}
			kernel, ours = []uint64{kernel[1] - kernel[0]}, []uint64{ours[1] - ours[0]}
		}
		if len(kernel) != len(ours) {
			t.Errorf("line %d: %s has %d fields, the kernel's %d", e.line, e.key, len(ours), len(kernel))
			continue
		}
		compared++
		marked := strings.Contains(strings.ToLower(e.comment), "intended lowering:")
		for i := range ours {
			if ours[i] < kernel[i] && !marked {
				t.Errorf("line %d: %s field %d is %d, below this kernel's %d, and not marked \"intended lowering:\" with a reason",
					e.line, e.key, i+1, ours[i], kernel[i])
			}
		}
	}
	if compared < 8 {
		t.Errorf("only %d keys compared", compared)
	}
}

// TestSysctlLeavesDescriptorLimitsAlone: systemd raises fs.nr_open and
// fs.file-max to the kernel's maximum at boot, so any fixed value in a
// sysctl.d file can only lower them on a real host.
func TestSysctlLeavesDescriptorLimitsAlone(t *testing.T) {
	for _, e := range parseSysctl(t, "sysctl/99-vncedge.conf") {
		if e.key == "fs.nr_open" || e.key == "fs.file-max" {
			t.Errorf("line %d sets %s, which systemd already raises to its maximum", e.line, e.key)
		}
	}
}
