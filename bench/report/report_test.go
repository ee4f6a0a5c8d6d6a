package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vncedge/bench/load"
	"vncedge/bench/procstat"
)

func sampleSets() []*load.RunSet {
	rec := load.NewRecorder()
	for i := 1; i <= 100; i++ {
		rec.Record(time.Duration(i) * 100 * time.Microsecond)
	}
	rtt := load.Summarize(load.MergeSnapshots(rec.Snapshot()))
	direct := load.Target{Name: "direct", Direct: true}
	edge := load.Target{Name: "vncedge", URL: "ws://127.0.0.1:6080/vnc/{ip}", Pid: 1}
	wsf := load.Target{Name: "web<sockify>", URL: "ws://127.0.0.1:6081/websockify?token={token}", Pid: 2}
	return []*load.RunSet{
		{Scenario: "throughput", Command: []string{"bench", "throughput"}, Results: []*load.Result{
			{Kind: load.KindDown, Target: direct, Sessions: 1, MBps: 2000},
			{Kind: load.KindDown, Target: edge, Sessions: 1, MBps: 1300},
			{Kind: load.KindDown, Target: wsf, Sessions: 1, MBps: 1000},
		}},
		{Scenario: "latency", Results: []*load.Result{
			{Kind: load.KindEcho, Target: direct, Sessions: 10, Rate: 10, RTT: &rtt},
			{Kind: load.KindEcho, Target: edge, Sessions: 10, Rate: 10, RTT: &rtt, ErrorKinds: map[string]int64{"timeout": 2}},
		}},
		{Scenario: "sessions", Results: []*load.Result{
			{Kind: load.KindHold, Target: edge, Sessions: 100, Opened: 100, SetupPerSec: 5000,
				Proxy: &load.ProxyMem{AtN: procstat.Sample{RSSKiB: 500}, PerSessionKiB: 3.5, ReturnedPct: 80}},
			{Kind: load.KindHold, Target: edge, Sessions: 1000, Opened: 1000, SetupPerSec: 6000,
				Proxy: &load.ProxyMem{AtN: procstat.Sample{RSSKiB: 4000}, PerSessionKiB: 3.1, ReturnedPct: 85}},
		}},
	}
}

// wellFormed parses b as XML to its end.
func wellFormed(t *testing.T, name string, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", name, root)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, sampleSets()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"throughput.svg", "latency.svg", "memory.svg", "setup.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		wellFormed(t, name, b)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"![Throughput (MB/s, higher is better)](throughput.svg)",
		"| throughput VM->browser, 1 session(s) | MB/s | higher | 2000 | 1300 | 1000 | 0.65x | 0.50x | 1.30x |",
		"vncedge/web<sockify>",
		"| sessions, 1000 | KiB/session | lower | 3.10 |",
		"echo [vncedge] x10: 2 x timeout",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
}

// A scenario run while the hypervisor took CPU time from the machine is marked noisy.
func TestStealMarked(t *testing.T) {
	sets := sampleSets()
	sets[0].Results[0].HostStealPct = 31
	dir := t.TempDir()
	if err := Write(dir, sets); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(md), "(steal) during these runs"); n != 1 {
		t.Errorf("report marks %d scenarios noisy from steal, want 1:\n%s", n, md)
	}
}

func TestChartsOmittedWithoutData(t *testing.T) {
	if LatencySVG(nil) != nil || MemorySVG(nil) != nil || ThroughputSVG(nil) != nil {
		t.Fatal("chart drawn without data")
	}
	// A special character in a target name stays escaped.
	svg := ThroughputSVG(sampleSets()[0].Results)
	if !bytes.Contains(svg, []byte("web&lt;sockify&gt;")) {
		t.Fatal("target name not escaped in SVG")
	}
}
