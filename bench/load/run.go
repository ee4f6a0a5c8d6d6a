package load

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"vncedge/bench/procstat"
)

// RunSet is one invocation of a scenario: every target's results and the machine they ran on.
type RunSet struct {
	Scenario string    `json:"scenario"`
	Started  time.Time `json:"started"`
	Command  []string  `json:"command"`
	Machine  Machine   `json:"machine"`
	Results  []*Result `json:"results"`
}

// Machine describes where a run happened.
type Machine struct {
	CPUs    int    `json:"cpus"`
	Go      string `json:"go"`
	Kernel  string `json:"kernel"`
	FDLimit int64  `json:"fd_limit"`
	// Load is /proc/loadavg's 1-minute figure when the run started: above CPUs, something
	// else was competing for the cores and the figures are noisy.
	Load float64 `json:"load1"`
}

// Busy says whether the machine was loaded beyond its cores when the run started.
func (m Machine) Busy() bool { return m.CPUs > 0 && m.Load > float64(m.CPUs) }

// ThisMachine describes the machine the generator runs on.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if s, err := procstat.Read("/proc", os.Getpid()); err == nil {
		m.FDLimit = s.FDLimit
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscanf(string(b), "%g", &m.Load)
	}
	return m
}

// Row is one figure of a case across targets.
type Row struct {
	Case   string             `json:"case"`
	Metric string             `json:"metric"`
	Higher bool               `json:"higher_is_better"`
	Values map[string]float64 `json:"values"` // by target name
}

// Rows extracts the headline figures of results, one row per case and metric, in order.
func Rows(results []*Result) []Row {
	var rows []Row
	index := map[string]int{}
	add := func(r *Result, cs, metric string, higher bool, v float64) {
		key := cs + "\x00" + metric
		i, ok := index[key]
		if !ok {
			i = len(rows)
			index[key] = i
			rows = append(rows, Row{Case: cs, Metric: metric, Higher: higher, Values: map[string]float64{}})
		}
		rows[i].Values[r.Target.Name] = v
	}
	for _, r := range results {
		switch r.Kind {
		case KindDown, KindUp:
			dir := "VM->browser"
			if r.Kind == KindUp {
				dir = "browser->VM"
			}
			cs := fmt.Sprintf("throughput %s, %d session(s)", dir, r.Sessions)
			add(r, cs, "MB/s", true, r.MBps)
		case KindEcho:
			cs := fmt.Sprintf("latency, %d sessions x %g msg/s", r.Sessions, r.Rate)
			add(r, cs, "p50 ms", false, r.RTT.P50)
			add(r, cs, "p99 ms", false, r.RTT.P99)
			add(r, cs, "p99.9 ms", false, r.RTT.P999)
			add(r, cs, "msg/s", true, r.MsgPerSec)
			add(r, cs, "failed sessions", false, float64(r.OpenFailed))
			add(r, cs, "errors", false, float64(r.Errors))
		case KindHold:
			cs := fmt.Sprintf("sessions, %d", r.Sessions)
			add(r, cs, "opened", true, float64(r.Opened))
			add(r, cs, "failed", false, float64(r.OpenFailed))
			add(r, cs, "setup/s", true, r.SetupPerSec)
			if r.Proxy != nil && !r.Target.Direct {
				add(r, cs, "KiB/session", false, r.Proxy.PerSessionKiB)
				add(r, cs, "% returned", true, r.Proxy.ReturnedPct)
			}
		case KindChurn:
			cs := fmt.Sprintf("churn, %.0f s", r.Duration)
			add(r, cs, "sessions/s", true, r.ChurnPerSec)
			add(r, cs, "failed", false, float64(r.OpenFailed+r.Errors))
			if r.Proxy != nil && !r.Target.Direct {
				add(r, cs, "fds leaked", false, float64(r.Proxy.FDsLeaked))
				add(r, cs, "RSS growth KiB", false, float64(r.Proxy.After.RSSKiB-r.Proxy.Before.RSSKiB))
			}
		}
	}
	return rows
}

// Targets lists the target names of results in first-seen order.
func Targets(results []*Result) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range results {
		if !seen[r.Target.Name] {
			seen[r.Target.Name] = true
			names = append(names, r.Target.Name)
		}
	}
	return names
}

// RatioPairs lists the ratios worth printing for targets in run order (the baseline first,
// then the proxy under test, then the others): every target over the first, and the second
// over each later one (vncedge/websockify).
func RatioPairs(names []string) [][2]string {
	var pairs [][2]string
	for _, n := range names[min(1, len(names)):] {
		pairs = append(pairs, [2]string{n, names[0]})
	}
	if len(names) > 2 {
		for _, n := range names[2:] {
			pairs = append(pairs, [2]string{names[1], n})
		}
	}
	return pairs
}

// Ratio is a/b, NaN when either is missing or b is zero.
func Ratio(vals map[string]float64, a, b string) float64 {
	va, oka := vals[a]
	vb, okb := vals[b]
	if !oka || !okb || vb == 0 {
		return math.NaN()
	}
	return va / vb
}

// PrintTable writes the rows as an aligned table with each target's ratio to the others.
func PrintTable(w io.Writer, results []*Result) {
	names := Targets(results)
	rows := Rows(results)
	if len(rows) == 0 {
		return
	}
	header := []string{"case", "metric"}
	header = append(header, names...)
	ratios := RatioPairs(names)
	for _, p := range ratios {
		header = append(header, p[0]+"/"+p[1])
	}
	table := [][]string{header}
	for _, r := range rows {
		line := []string{r.Case, r.Metric}
		for _, n := range names {
			if v, ok := r.Values[n]; ok {
				line = append(line, Num(v))
			} else {
				line = append(line, "-")
			}
		}
		for _, p := range ratios {
			if q := Ratio(r.Values, p[0], p[1]); !math.IsNaN(q) {
				line = append(line, fmt.Sprintf("%.2fx", q))
			} else {
				line = append(line, "-")
			}
		}
		table = append(table, line)
	}
	widths := make([]int, len(header))
	for _, l := range table {
		for i, c := range l {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, l := range table {
		for i, c := range l {
			if i < 2 {
				fmt.Fprintf(w, "%-*s  ", widths[i], c)
			} else {
				fmt.Fprintf(w, "%*s  ", widths[i], c)
			}
		}
		fmt.Fprintln(w)
	}
}

// Num formats a figure with sensible precision.
func Num(v float64) string {
	switch a := math.Abs(v); {
	case v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
