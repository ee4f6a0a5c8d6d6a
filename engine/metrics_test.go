package engine

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"vncedge/routing"
)

// family is what an exposition says about one metric family.
type family struct {
	help, typ  string
	helpSeen   bool
	samples    []sample
	firstIndex int // line of the first sample, to check metadata comes first
	metaIndex  int // line of the TYPE line
}

type sample struct {
	name   string // with suffix (_bucket, _sum, _count) but without labels
	labels map[string]string
	value  float64
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// parseExposition reads Prometheus text format strictly enough to catch
// what Prometheus would store wrongly: a sample whose family has no TYPE
// before it, two TYPE lines for one family, a value that is not a number.
func parseExposition(t *testing.T, text string) map[string]*family {
	t.Helper()
	fams := map[string]*family{}
	get := func(name string) *family {
		f := fams[name]
		if f == nil {
			f = &family{firstIndex: -1, metaIndex: -1}
			fams[name] = f
		}
		return f
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			f := get(name)
			if f.helpSeen {
				t.Errorf("line %d: second HELP for %s", i+1, name)
			}
			f.help, f.helpSeen = help, true
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			f := get(name)
			if f.typ != "" {
				t.Errorf("line %d: second TYPE for %s", i+1, name)
			}
			f.typ, f.metaIndex = typ, i
		case strings.HasPrefix(line, "#") || line == "":
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: not a sample: %q", i+1, line)
				continue
			}
			v, err := strconv.ParseFloat(m[3], 64)
			if err != nil {
				t.Errorf("line %d: value %q: %v", i+1, m[3], err)
			}
			labels := map[string]string{}
			for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
				labels[p[1]] = p[2]
			}
			name := m[1]
			fam := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && fams[base] != nil && (fams[base].typ == "histogram" || fams[base].typ == "summary") {
					fam = base
				}
			}
			f := get(fam)
			if f.firstIndex < 0 {
				f.firstIndex = i
			}
			f.samples = append(f.samples, sample{name: name, labels: labels, value: v})
		}
	}
	return fams
}

// withMetadata turns on HELP and TYPE lines for one test, as cmd/vncedge's
// main does for the process, and back off afterwards so other tests see
// the library's default.
func withMetadata(t *testing.T) {
	metrics.ExposeMetadata(true)
	t.Cleanup(func() { metrics.ExposeMetadata(false) })
}

func TestMetricsExpositionHasMetadata(t *testing.T) {
	withMetadata(t)
	ts := startServer(t, func(c *Config, _ *routing.Config) {
		c.Build = Build{Version: "v1.2.3-4-gabcdef0-dirty", Commit: "abcdef0123456789abcdef0123456789abcdef01"}
		c.MaxSessions = 1234
		c.MaxSessionsPerVM = 7
		c.MaxFrame = 1 << 20
		c.MaxBuffered = 3 << 20
	})
	text := ts.metricsText()
	fams := parseExposition(t, text)

	var engineFamilies int
	for name, f := range fams {
		if len(f.samples) == 0 {
			t.Errorf("%s: metadata but no sample", name)
			continue
		}
		if !f.helpSeen || f.typ == "" {
			t.Errorf("%s: HELP seen %v, TYPE %q: Prometheus would store it untyped", name, f.helpSeen, f.typ)
			continue
		}
		if f.metaIndex > f.firstIndex {
			t.Errorf("%s: TYPE after the first sample", name)
		}
		if !strings.HasPrefix(name, "vncedge_") {
			continue
		}
		engineFamilies++
		if f.help == "" {
			t.Errorf("%s: empty HELP text (add it to metricHelp)", name)
		}
		switch want := familyType(name); {
		case f.typ != want:
			t.Errorf("%s: TYPE %s, want %s", name, f.typ, want)
		case f.typ == "histogram":
			var bucket, sum, count bool
			for _, s := range f.samples {
				bucket = bucket || s.name == name+"_bucket" && s.labels["le"] == "+Inf"
				sum = sum || s.name == name+"_sum"
				count = count || s.name == name+"_count"
			}
			if !bucket || !sum || !count {
				t.Errorf("%s: histogram lacks +Inf bucket (%v), _sum (%v) or _count (%v)", name, bucket, sum, count)
			}
		}
	}
	if engineFamilies < 20 {
		t.Errorf("only %d vncedge_ families; the exposition lost some", engineFamilies)
	}

	bi := fams["vncedge_build_info"]
	if bi == nil || len(bi.samples) != 1 {
		t.Fatalf("vncedge_build_info: %+v", bi)
	}
	want := map[string]string{"version": "v1.2.3-4-gabcdef0-dirty", "commit": "abcdef0123456789abcdef0123456789abcdef01", "go": runtime.Version()}
	for k, v := range want {
		if got := bi.samples[0].labels[k]; got != v {
			t.Errorf("vncedge_build_info{%s=%q}, want %q", k, got, v)
		}
	}
	if bi.samples[0].value != 1 {
		t.Errorf("vncedge_build_info = %v, want 1", bi.samples[0].value)
	}
	for name, v := range map[string]float64{
		"vncedge_limit_max_sessions":              1234,
		"vncedge_limit_max_sessions_per_upstream": 7,
		"vncedge_limit_max_frame_bytes":           1 << 20,
		"vncedge_limit_max_buffered_bytes":        3 << 20,
		"vncedge_limit_max_pending_setups":        float64(DefaultConfig().MaxPendingSetups),
	} {
		f := fams[name]
		if f == nil || len(f.samples) != 1 || f.samples[0].value != v {
			t.Errorf("%s: %+v, want one sample of %v", name, f, v)
		}
	}
	// The process's own families come with metadata too once it is on.
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if f := fams[name]; f == nil || f.typ == "" {
			t.Errorf("%s missing or untyped", name)
		}
	}
}

// familyType is the type a family's name promises (CONTRACT.md: _total
// for counters, _seconds histograms here).
func familyType(name string) string {
	switch {
	case strings.HasSuffix(name, "_total"):
		return "counter"
	case strings.HasSuffix(name, "_duration_seconds"):
		return "histogram"
	}
	return "gauge"
}

// TestMetricsDocumented keeps docs/metrics.md in step with the code: every
// family on /metrics has a row there naming its type and its labels, and
// the doc names no family the engine does not export.
func TestMetricsDocumented(t *testing.T) {
	withMetadata(t)
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, func(_ *Config, rc *routing.Config) {
		rc.Sources = []routing.TokenSource{tokenFile(t, "t: "+echo.addr()+"\n")}
	})
	// The token lookup series appear with the first lookup.
	rawRequest(t, ts.Addr(), upgradeRequest("/websockify?token=t"))
	fams := parseExposition(t, ts.metricsText())
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // family -> its table row
	for _, line := range strings.Split(string(doc), "\n") {
		if m := regexp.MustCompile("^\\| `(vncedge_[a-z_]+)(\\{[^`]*\\})?`").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	var names []string
	for name := range fams {
		if strings.HasPrefix(name, "vncedge_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		row, ok := rows[name]
		if !ok {
			t.Errorf("docs/metrics.md has no row for %s (a row starts with | `%s`)", name, name)
			continue
		}
		if !strings.Contains(row, "| "+fams[name].typ+" |") {
			t.Errorf("docs/metrics.md: %s row does not say its type %q: %s", name, fams[name].typ, row)
		}
		for label := range fams[name].samples[0].labels {
			if label != "le" && !strings.Contains(row, label) {
				t.Errorf("docs/metrics.md: %s row does not name its label %q", name, label)
			}
		}
		delete(rows, name)
	}
	for name := range rows {
		t.Errorf("docs/metrics.md documents %s, which the engine does not export", name)
	}
}

// TestMetricsPassPromtool runs Prometheus's own linter over the exposition
// when promtool is installed (Debian's prometheus package; make test
// installs it): it parses the format as Prometheus does and flags naming
// mistakes (counters without _total, units, missing HELP).
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing under CI=true (apt-get install prometheus)")
		}
		t.Skip("SKIPPED: promtool is not installed (apt-get install prometheus); the exposition was not linted")
	}
	withMetadata(t)
	ts := startServer(t, nil)
	text := ts.metricsText()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	// promtool exits 3 for lint findings, anything else non-zero for a file
	// it cannot parse. The findings it has about the library's own go_ and
	// process_ families (no HELP text, odd suffixes) are not ours to fix.
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 3) {
		t.Fatalf("promtool check metrics could not parse the exposition: %v\n%s", err, out)
	}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("vncedge_")) {
			t.Errorf("promtool check metrics: %s", line)
		}
	}
}
