// Package report turns load generator results into a Markdown report with SVG charts
// (latency distribution, throughput, memory per session), so a person can look rather
// than read.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"vncedge/bench/load"
)

// Write writes report.md and its charts into dir.
func Write(dir string, sets []*load.RunSet) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var results []*load.Result
	for _, s := range sets {
		results = append(results, s.Results...)
	}
	charts := map[string][]byte{
		"throughput.svg": ThroughputSVG(results),
		"latency.svg":    LatencySVG(results),
		"memory.svg":     MemorySVG(results),
		"setup.svg":      SetupSVG(results),
	}
	var present []string
	for name, svg := range charts {
		if svg == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), svg, 0o644); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		present = append(present, name)
	}
	sort.Strings(present)
	md := Markdown(sets, present)
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Markdown renders the runs as a report that links the named charts.
func Markdown(sets []*load.RunSet, charts []string) string {
	var b strings.Builder
	b.WriteString("# vncedge benchmark report\n\n")
	if len(sets) > 0 {
		m := sets[0].Machine
		fmt.Fprintf(&b, "Machine: %d CPUs, %s, kernel %s, %d descriptors per process.\n\n", m.CPUs, m.Go, m.Kernel, m.FDLimit)
	}
	titles := map[string]string{
		"throughput.svg": "Throughput (MB/s, higher is better)",
		"latency.svg":    "Round-trip latency distribution",
		"memory.svg":     "Proxy resident memory per idle session",
		"setup.svg":      "Session setup rate (sessions/s, higher is better)",
	}
	for _, c := range charts {
		fmt.Fprintf(&b, "![%s](%s)\n\n", titles[c], c)
	}
	for _, s := range sets {
		fmt.Fprintf(&b, "## %s\n\n", s.Scenario)
		fmt.Fprintf(&b, "Command: `%s` (started %s, %s)\n\n", strings.Join(s.Command, " "),
			s.Started.Format("2006-01-02 15:04 MST"), s.Machine.Busyness())
		b.WriteString("Ratio columns a/b are a's figure over b's; the better column says whether higher or lower figures (and ratios) are better. n/a: not measured (nothing opened, nothing streamed).\n\n")
		if s.Machine.Busy() {
			b.WriteString("**The machine was busy when this ran (more than half of its CPU time busy as it started): the figures are noisy.**\n\n")
		}
		steal, lo := 0.0, 100.0
		for _, r := range s.Results {
			steal, lo = max(steal, r.HostStealPct), min(lo, r.HostStealPct)
		}
		if steal > load.NoisySteal {
			fmt.Fprintf(&b, "**The hypervisor took %.0f-%.0f%% of the CPUs (steal) during these runs: the figures are noisy.**\n\n", lo, steal)
		}
		names := load.Targets(s.Results)
		pairs := load.RatioPairs(s.Results)
		b.WriteString("| case | metric | better |")
		for _, n := range names {
			fmt.Fprintf(&b, " %s |", n)
		}
		for _, p := range pairs {
			fmt.Fprintf(&b, " %s/%s |", p[0], p[1])
		}
		b.WriteString("\n|---|---|---|" + strings.Repeat("---:|", len(names)+len(pairs)) + "\n")
		for _, r := range load.Rows(s.Results) {
			fmt.Fprintf(&b, "| %s | %s | %s |", r.Case, r.Metric, r.Better())
			for _, n := range names {
				fmt.Fprintf(&b, " %s |", load.Cell(r, n))
			}
			for _, p := range pairs {
				fmt.Fprintf(&b, " %s |", load.RatioCell(r, p))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
		if vs := load.Verdicts(s.Results); len(vs) > 0 {
			b.WriteString("Against the targets of issue 14:\n\n| target | measured | verdict |\n|---|---|---|\n")
			for _, v := range vs {
				verdict := "**missed**"
				if v.Met {
					verdict = "met"
				}
				fmt.Fprintf(&b, "| %s | %s | %s |\n", v.Goal, v.Measured, verdict)
			}
			b.WriteString("\n")
		}
		var notes []string
		for _, r := range s.Results {
			for _, n := range r.Notes {
				notes = append(notes, fmt.Sprintf("%s [%s]: %s", r.Kind, r.Target.Name, n))
			}
			for k, v := range r.ErrorKinds {
				notes = append(notes, fmt.Sprintf("%s [%s] x%d: %d x %s", r.Kind, r.Target.Name, r.Sessions, v, k))
			}
		}
		sort.Strings(notes)
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if len(notes) > 0 {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// ThroughputSVG is a grouped bar chart: one group per throughput case, one bar per target.
func ThroughputSVG(results []*load.Result) []byte {
	return barChart(results, "Throughput", "MB/s", func(r load.Row) bool { return r.Metric == "MB/s" })
}

// SetupSVG is a grouped bar chart of session setup rates.
func SetupSVG(results []*load.Result) []byte {
	return barChart(results, "Session setup", "sessions/s", func(r load.Row) bool { return r.Metric == "setup/s" || r.Metric == "sessions/s" })
}

func barChart(results []*load.Result, title, unit string, keep func(load.Row) bool) []byte {
	var rows []load.Row
	for _, r := range load.Rows(results) {
		if keep(r) {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	c := chart{title: title, yLabel: unit, series: load.Targets(results)}
	for _, r := range rows {
		g := group{label: r.Case}
		for _, n := range c.series {
			g.values = append(g.values, r.Values[n])
		}
		c.groups = append(c.groups, g)
	}
	return c.bars()
}

// LatencySVG plots each latency run's round-trip distribution: the share of messages per
// log-spaced bucket, one line per target and run.
func LatencySVG(results []*load.Result) []byte {
	var ls []line
	for _, r := range results {
		if r.Kind != load.KindEcho || r.RTT == nil || r.RTT.Count == 0 {
			continue
		}
		l := line{name: fmt.Sprintf("%s, %d sessions (p99 %s ms)", r.Target.Name, r.Sessions, load.Num(r.RTT.P99))}
		for _, bk := range r.RTT.Buckets {
			l.points = append(l.points, [2]float64{bk.UpToMs, 100 * float64(bk.Count) / float64(r.RTT.Count)})
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil
	}
	return lineChart("Round-trip latency distribution", "round trip (ms, log scale)", "% of messages", ls, true)
}

// MemorySVG plots the proxy's resident memory per idle session against the session count.
func MemorySVG(results []*load.Result) []byte {
	byTarget := map[string]*line{}
	var order []string
	for _, r := range results {
		if r.Kind != load.KindHold || r.Proxy == nil || r.Opened == 0 {
			continue
		}
		l, ok := byTarget[r.Target.Name]
		if !ok {
			l = &line{name: r.Target.Name}
			byTarget[r.Target.Name] = l
			order = append(order, r.Target.Name)
		}
		l.points = append(l.points, [2]float64{float64(r.Opened), r.Proxy.PerSessionKiB})
	}
	if len(order) == 0 {
		return nil
	}
	var ls []line
	for _, n := range order {
		l := byTarget[n]
		sort.Slice(l.points, func(i, j int) bool { return l.points[i][0] < l.points[j][0] })
		ls = append(ls, *l)
	}
	return lineChart("Proxy memory per idle session", "sessions open", "KiB resident per session", ls, false)
}
