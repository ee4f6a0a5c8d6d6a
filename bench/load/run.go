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
	// BusyPct is the share of the CPUs' time not idle over the half second before the run,
	// from /proc/stat (nil: not measured, as in results older than the field). The load
	// average remembers the last minute, so right after a heavy scenario it warns of work
	// that has already stopped.
	BusyPct *float64 `json:"busy_pct,omitempty"`
}

// Busy says whether other work competed for the cores when the run started: more than half
// of them busy just before it (the load average above the core count where that was not
// measured).
func (m Machine) Busy() bool {
	if m.BusyPct != nil {
		return *m.BusyPct > 50
	}
	return m.CPUs > 0 && m.Load > float64(m.CPUs)
}

// busyPct samples /proc/stat over d: the share of CPU time not idle (steal counts as busy:
// the cores were not ours), or nil.
func busyPct(d time.Duration) *float64 {
	a, err := procstat.ReadHostCPU("/proc")
	if err != nil {
		return nil
	}
	time.Sleep(d)
	b, err := procstat.ReadHostCPU("/proc")
	if err != nil || b.Total <= a.Total {
		return nil
	}
	v := procstat.BusyPct(a, b)
	return &v
}

// Busyness says how busy the machine was as the run started, for the warnings and the report.
func (m Machine) Busyness() string {
	if m.BusyPct != nil {
		return fmt.Sprintf("%.0f%% of %d CPUs busy just before, load %.1f", *m.BusyPct, m.CPUs, m.Load)
	}
	return fmt.Sprintf("load %.1f on %d CPUs", m.Load, m.CPUs)
}

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
	m.BusyPct = busyPct(500 * time.Millisecond)
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
// A figure nothing measured (no session opened, no round trip) is left out, so tables print
// n/a for it instead of a zero.
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
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			rows[i].Values[r.Target.Name] = v
		}
	}
	// measured is v when something was measured, else NaN (left out).
	measured := func(ok bool, v float64) float64 {
		if !ok {
			return math.NaN()
		}
		return v
	}
	rtt := func(r *Result, cs, what string) {
		ok := r.RTT != nil && r.RTT.Count > 0
		var l Latency
		if ok {
			l = *r.RTT
		}
		add(r, cs, what+" p50 ms", false, measured(ok, l.P50))
		add(r, cs, what+" p99 ms", false, measured(ok, l.P99))
		add(r, cs, what+" p99.9 ms", false, measured(ok, l.P999))
	}
	cpu := func(r *Result, cs string) {
		p := r.Proxy
		if p == nil || r.Target.Direct {
			return
		}
		switch r.Kind {
		case KindHold:
			add(r, cs, "proxy CPU us/setup", false, measured(r.Opened > 0 && !p.Opened.At.IsZero(), p.SetupCPUMicros))
		case KindDown, KindUp:
			add(r, cs, "proxy CPU s/GB", false, measured(r.TotalBytes > 0 && p.RunCPUSeconds > 0, p.RunCPUSeconds/(float64(r.TotalBytes)/1e9)))
		case KindEcho, KindDesktop:
			add(r, cs, "proxy CPU % of a core", false, measured(r.Opened > 0 && p.RunCPUSeconds > 0, p.RunCPUPct))
		}
	}
	for _, r := range results {
		opened := r.Opened > 0
		switch r.Kind {
		case KindDown, KindUp:
			dir := "VM->browser"
			if r.Kind == KindUp {
				dir = "browser->VM"
			}
			cs := fmt.Sprintf("throughput %s, %d session(s)", dir, r.Sessions)
			add(r, cs, "MB/s", true, measured(r.MBps > 0, r.MBps))
			cpu(r, cs)
		case KindEcho:
			cs := fmt.Sprintf("latency, %d sessions x %g msg/s", r.Sessions, r.Rate)
			rtt(r, cs, "round trip")
			add(r, cs, "msg/s", true, measured(opened, r.MsgPerSec))
			add(r, cs, "failed sessions", false, float64(r.OpenFailed))
			add(r, cs, "errors", false, float64(r.Errors))
			cpu(r, cs)
		case KindHold:
			scen := r.Scenario
			if scen == "" {
				scen = "sessions"
			}
			cs := fmt.Sprintf("%s, %d", scen, r.Sessions)
			add(r, cs, "opened", true, float64(r.Opened))
			add(r, cs, "failed", false, float64(r.OpenFailed))
			add(r, cs, "setup/s", true, measured(opened && r.SetupPerSec > 0, r.SetupPerSec))
			add(r, cs, "setup p99 ms", false, measured(r.Setup.Count > 0, r.Setup.P99))
			if r.Proxy != nil && !r.Target.Direct {
				add(r, cs, "KiB/session", false, measured(opened, r.Proxy.PerSessionKiB))
				add(r, cs, "% returned", true, measured(r.Proxy.Grew, max(0, r.Proxy.ReturnedPct)))
			}
			cpu(r, cs)
			// A proxy per source (token-sources) has one: one row, so the ratios line up.
			for _, l := range r.Lookups {
				metric := "lookup p99 ms"
				if len(r.Lookups) > 1 {
					metric += " (" + l.Source + ")"
				}
				add(r, cs, metric, false, l.P99Ms)
			}
			if sc := r.Syscalls; sc != nil {
				add(r, cs, "syscalls/setup", false, sc.PerSetup)
			}
		case KindChurn:
			cs := fmt.Sprintf("churn, %.0f s", r.Duration)
			add(r, cs, "sessions/s", true, measured(r.Churned > 0, r.ChurnPerSec))
			add(r, cs, "failed", false, float64(r.OpenFailed+r.Errors))
			if r.Proxy != nil && !r.Target.Direct {
				add(r, cs, "fds leaked", false, float64(r.Proxy.FDsLeaked))
				add(r, cs, "RSS growth KiB", false, float64(r.Proxy.After.RSSKiB-r.Proxy.Before.RSSKiB))
				add(r, cs, "proxy CPU us/session", false, measured(r.Churned > 0 && r.Proxy.RunCPUSeconds > 0, 1e6*r.Proxy.RunCPUSeconds/float64(r.Churned)))
			}
		case KindDesktop:
			d := r.Desktop
			if d == nil {
				continue
			}
			cs := fmt.Sprintf("desktops, %d x %g KB/s, %g input/s", r.Sessions, d.Load.KBps, d.Load.InputRate)
			f := d.Fairness
			ok := f != nil
			if f == nil {
				f = &Fairness{}
			}
			add(r, cs, "median KB/s", true, measured(ok, f.Median))
			add(r, cs, "min KB/s", true, measured(ok, f.Min))
			add(r, cs, "max KB/s", true, measured(ok, f.Max))
			add(r, cs, "Jain's index", true, measured(ok, f.Jain))
			rtt(r, cs, "input round trip")
			add(r, cs, "failed", false, float64(r.OpenFailed+r.Errors+d.InputLost))
			cpu(r, cs)
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

// RatioPairs lists the ratios worth printing for the targets of results, in order: each
// target over every name in its RatioTo. Results written before RatioTo existed fall back
// to every target over the first (the baseline), then the second over each later one.
func RatioPairs(results []*Result) [][2]string {
	names := Targets(results)
	present := map[string]bool{}
	for _, n := range names {
		present[n] = true
	}
	var pairs [][2]string
	seen := map[[2]string]bool{}
	explicit := false
	for _, r := range results {
		for _, d := range r.Target.RatioTo {
			explicit = true
			p := [2]string{r.Target.Name, d}
			if present[d] && d != r.Target.Name && !seen[p] {
				seen[p] = true
				pairs = append(pairs, p)
			}
		}
	}
	if explicit {
		return pairs
	}
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

// Better says which way a row's figures and ratios are better.
func (r Row) Better() string {
	if r.Higher {
		return "higher"
	}
	return "lower"
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

// PrintTable writes the rows as an aligned table with each target's ratio to the others and
// which way is better; a figure that was not measured prints as n/a.
func PrintTable(w io.Writer, results []*Result) {
	names := Targets(results)
	rows := Rows(results)
	if len(rows) == 0 {
		return
	}
	header := []string{"case", "metric", "better"}
	header = append(header, names...)
	ratios := RatioPairs(results)
	for _, p := range ratios {
		header = append(header, p[0]+"/"+p[1])
	}
	table := [][]string{header}
	for _, r := range rows {
		line := []string{r.Case, r.Metric, r.Better()}
		for _, n := range names {
			line = append(line, Cell(r, n))
		}
		for _, p := range ratios {
			line = append(line, RatioCell(r, p))
		}
		table = append(table, line)
	}
	widths := make([]int, len(header))
	for _, l := range table {
		for i, c := range l {
			widths[i] = max(widths[i], len(c))
		}
	}
	fmt.Fprintln(w, "(a/b columns: a's figure over b's; \"better\" says whether higher or lower figures and ratios are better)")
	for _, l := range table {
		for i, c := range l {
			if i < 3 {
				fmt.Fprintf(w, "%-*s  ", widths[i], c)
			} else {
				fmt.Fprintf(w, "%*s  ", widths[i], c)
			}
		}
		fmt.Fprintln(w)
	}
	PrintVerdicts(w, Verdicts(results))
}

// Cell is target n's figure in row r, n/a when it was not measured and "-" when the target
// has no such figure at all.
func Cell(r Row, n string) string {
	if v, ok := r.Values[n]; ok {
		return Num(v)
	}
	return NA
}

// RatioCell is p[0]/p[1] in row r, or n/a.
func RatioCell(r Row, p [2]string) string {
	if q := Ratio(r.Values, p[0], p[1]); !math.IsNaN(q) && !math.IsInf(q, 0) {
		return fmt.Sprintf("%.2fx", q)
	}
	return NA
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
