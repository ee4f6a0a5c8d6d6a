package load

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"vncedge/bench/procstat"
)

// Result is one scenario run against one target.
type Result struct {
	Scenario string  `json:"scenario"`
	Kind     Kind    `json:"kind"`
	Target   Target  `json:"target"`
	Sessions int     `json:"sessions"`
	Workers  int     `json:"workers"`
	VMs      int     `json:"vms"`
	Bytes    int64   `json:"bytes_per_session,omitempty"`
	Rate     float64 `json:"rate_per_session,omitempty"`
	MsgSize  int     `json:"msg_size,omitempty"`
	Duration float64 `json:"duration_s,omitempty"`

	Opened      int64            `json:"opened"`
	OpenFailed  int64            `json:"open_failed"`
	SetupPerSec float64          `json:"setup_per_s"`
	Setup       Latency          `json:"setup"`
	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"error_kinds,omitempty"`

	TotalBytes int64   `json:"total_bytes,omitempty"`
	Seconds    float64 `json:"seconds,omitempty"`
	MBps       float64 `json:"mb_per_s,omitempty"` // 10^6 bytes per second
	Corrupt    int64   `json:"corrupt_sessions,omitempty"`

	Sent      int64    `json:"sent,omitempty"`
	Messages  int64    `json:"messages,omitempty"`
	MsgPerSec float64  `json:"messages_per_s,omitempty"`
	RTT       *Latency `json:"rtt,omitempty"`

	Churned     int64   `json:"churned,omitempty"`
	ChurnPerSec float64 `json:"churn_per_s,omitempty"`

	Proxy *ProxyMem `json:"proxy,omitempty"`
	// HostStealPct is the share of the machine's CPU time the hypervisor gave to other
	// guests from the start of the run to the end of its run phase (/proc/stat's steal):
	// above NoisySteal the figures say more about the host than about the proxy.
	HostStealPct float64 `json:"host_steal_pct,omitempty"`
	// GeneratorCPUSeconds is what the load generator (its workers and coordinator) spent
	// from the start of the run to the end of the ramp, RampSeconds long: beside the
	// proxy's CPU it shows which of the two was the limit.
	GeneratorCPUSeconds float64 `json:"generator_cpu_s,omitempty"`
	RampSeconds         float64 `json:"ramp_s,omitempty"`
	// Lookups are the proxy's token lookups during the ramp, per source, from its
	// vncedge_token_lookup_duration_seconds histogram (when it has one).
	Lookups []LookupStats `json:"lookups,omitempty"`
	// Syscalls is what strace counted in the proxy over a separate, traced ramp.
	Syscalls *SyscallStats  `json:"syscalls,omitempty"`
	Desktop  *DesktopResult `json:"desktop,omitempty"`
	Notes    []string       `json:"notes,omitempty"`
}

// SyscallStats are a traced ramp's system calls per session setup.
type SyscallStats struct {
	Setups   int64   `json:"setups"`
	Calls    int64   `json:"calls"`
	PerSetup float64 `json:"per_setup"`
	// Top lists the most frequent calls, "name calls" each.
	Top []string `json:"top,omitempty"`
}

// DesktopResult is the realistic scenario's figures: per-session throughput (KB/s) and how
// fairly it was shared, and the input round trips (in Result.RTT).
type DesktopResult struct {
	Load DesktopLoad `json:"load"`
	// Fairness is over every opened session's KB/s; nil when nothing streamed.
	Fairness  *Fairness `json:"fairness,omitempty"`
	Frames    int64     `json:"frames"`
	InputSent int64     `json:"input_sent"`
	InputLost int64     `json:"input_lost"`
}

// ProxyMem is the proxy's memory and descriptors around a run.
type ProxyMem struct {
	Before procstat.Sample `json:"before"`
	AtN    procstat.Sample `json:"at_n"`  // all sessions open (after the hold)
	Peak   procstat.Sample `json:"peak"`  // at the end of the run phase (not for hold)
	After  procstat.Sample `json:"after"` // closed and settled
	// PerSessionKiB is (AtN - Before) / sessions opened, of RSS (PSS for a process tree).
	PerSessionKiB float64 `json:"per_session_kib"`
	// ReturnedPct is how much of the growth went away after close (only when it grew:
	// Grew says so, since a share of no growth means nothing).
	ReturnedPct float64 `json:"returned_pct"`
	Grew        bool    `json:"grew,omitempty"`
	FDsLeaked   int     `json:"fds_leaked"`
	// Opened is the sample at the end of the ramp (every session set up, before the hold).
	Opened procstat.Sample `json:"opened"`
	// SetupCPUMicros is the proxy's CPU time (user+system) over the ramp per session set
	// up: (Opened - Before) / opened.
	SetupCPUMicros float64 `json:"setup_cpu_us,omitempty"`
	// RunCPUSeconds is its CPU time over the run phase ("go" to "ran"), and RunCPUPct that
	// as a share of one core.
	RunCPUSeconds float64 `json:"run_cpu_s,omitempty"`
	RunCPUPct     float64 `json:"run_cpu_pct,omitempty"`
}

func (r *Result) merge(parts []*Part) {
	r.ErrorKinds = map[string]int64{}
	var openStart, openEnd, first, last int64
	var seconds float64
	for _, p := range parts {
		if p == nil {
			continue
		}
		r.Opened += p.Opened
		r.OpenFailed += p.OpenFailed
		r.Errors += p.Errors
		r.TotalBytes += p.Bytes
		r.Sent += p.Sent
		r.Messages += p.Messages
		r.Churned += p.Churned
		r.Corrupt += p.Corrupt
		for k, v := range p.ErrorKinds {
			r.ErrorKinds[k] += v
		}
		if openStart == 0 || p.OpenStart < openStart {
			openStart = p.OpenStart
		}
		openEnd = max(openEnd, p.OpenEnd)
		if p.FirstByte != 0 && (first == 0 || p.FirstByte < first) {
			first = p.FirstByte
		}
		last = max(last, p.LastByte)
		seconds = max(seconds, p.Seconds)
	}
	if len(r.ErrorKinds) == 0 {
		r.ErrorKinds = nil
	}
	r.Setup = Summarize(mergeHist(parts, func(p *Part) *hdrhistogram.Snapshot { return p.Setup }))
	r.Setup.Buckets = nil
	switch r.Kind {
	case KindHold:
		if d := time.Duration(openEnd - openStart).Seconds(); d > 0 {
			r.SetupPerSec = float64(r.Opened) / d
		}
	case KindDown, KindUp:
		if last > first && first != 0 {
			r.Seconds = time.Duration(last - first).Seconds()
			r.MBps = float64(r.TotalBytes) / r.Seconds / 1e6
		}
		if r.Corrupt > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("%d sessions received bytes that differ from the VM's pattern", r.Corrupt))
		}
	case KindEcho:
		l := Summarize(mergeHist(parts, func(p *Part) *hdrhistogram.Snapshot { return p.RTT }))
		r.RTT = &l
		if seconds > 0 {
			r.MsgPerSec = float64(r.Messages) / r.Duration
		}
	case KindChurn:
		if r.Duration > 0 {
			r.ChurnPerSec = float64(r.Churned) / r.Duration
			r.SetupPerSec = float64(r.Opened) / r.Duration
		}
	case KindDesktop:
		l := Summarize(mergeHist(parts, func(p *Part) *hdrhistogram.Snapshot { return p.RTT }))
		r.RTT = &l
		d := r.Desktop
		if d == nil {
			d = &DesktopResult{}
			r.Desktop = d
		}
		var rates []float64
		for _, p := range parts {
			if p == nil {
				continue
			}
			for _, x := range p.SessionRates {
				rates = append(rates, x/1024)
			}
			d.Frames += p.Frames
			d.InputSent += p.InputSent
			d.InputLost += p.InputLost
		}
		if f, ok := FairnessOf(rates); ok {
			d.Fairness = &f
		}
		if r.Duration > 0 {
			r.MBps = float64(r.TotalBytes) / r.Duration / 1e6
		}
	}
	if r.Proxy != nil {
		p := r.Proxy
		// A forking proxy (websockify) shares pages between its processes: count them once.
		mem := func(s procstat.Sample) int64 {
			if s.Processes > 1 && s.PSSKiB > 0 {
				return s.PSSKiB
			}
			return s.RSSKiB
		}
		before, atN, after := mem(p.Before), mem(p.AtN), mem(p.After)
		if r.Opened > 0 && atN > 0 {
			p.PerSessionKiB = float64(atN-before) / float64(r.Opened)
		}
		if grow := atN - before; grow > 0 && after > 0 && r.Opened > 0 {
			p.ReturnedPct = 100 * float64(atN-after) / float64(grow)
			p.Grew = true
		}
		if r.Opened > 0 && !p.Opened.At.IsZero() && p.Opened.CPUSeconds >= p.Before.CPUSeconds {
			cpu := p.Opened.CPUSeconds - p.Before.CPUSeconds
			p.SetupCPUMicros = 1e6 * cpu / float64(r.Opened)
			if ticks := cpu * procstat.ClockTicks; r.Kind == KindHold && r.Target.Pid > 0 && ticks < 20 {
				r.Notes = append(r.Notes, fmt.Sprintf("proxy CPU per setup is coarse: %.0f clock ticks (10 ms each) over the ramp; open more sessions for a figure", ticks))
			}
		}
		if !p.Peak.At.IsZero() && !p.AtN.At.IsZero() {
			p.RunCPUSeconds = max(0, p.Peak.CPUSeconds-p.AtN.CPUSeconds)
			if wall := p.Peak.At.Sub(p.AtN.At).Seconds(); wall > 0 {
				p.RunCPUPct = 100 * p.RunCPUSeconds / wall
			}
		}
		if p.After.RSSKiB > 0 {
			p.FDsLeaked = p.After.FDs - p.Before.FDs
		}
		r.noteCeiling()
	}
	if r.HostStealPct > NoisySteal {
		r.Notes = append(r.Notes, fmt.Sprintf("the hypervisor took %.0f%% of the CPUs (steal) during the run: figures are noisy", r.HostStealPct))
	}
	for k := range r.ErrorKinds {
		if strings.HasPrefix(k, "EMFILE") {
			r.Notes = append(r.Notes, "the generator ran out of descriptors (EMFILE): lower --per-worker")
		}
	}
}

// noteCeiling says so when the proxy is at this machine's descriptor limit: failures there
// are the machine's, not the proxy's.
func (r *Result) noteCeiling() {
	p := r.Proxy
	lim := p.Before.FDLimit
	if lim <= 0 || p.AtN.Processes > 1 {
		// The limit is per process: a forking proxy spreads its descriptors.
		return
	}
	peak := max(p.AtN.FDs, p.Peak.FDs)
	need := int64(p.Before.FDs) + 2*int64(r.Sessions)
	if int64(peak) >= lim-16 || (need > lim && r.OpenFailed > 0) {
		r.Notes = append(r.Notes, fmt.Sprintf(
			"DESCRIPTOR CEILING: the proxy (pid %d) holds %d of its %d descriptors; %d sessions need about %d (2 each), "+
				"so one process on this machine tops out near %d sessions; failures beyond that are the machine's limit",
			r.Target.Pid, peak, lim, r.Sessions, need, (lim-int64(p.Before.FDs))/2))
	}
}

// NA is what a figure that could not be measured prints as.
const NA = "n/a"

// NoisySteal is the host steal (percent of the CPUs) above which a run is marked noisy: on
// this project's shared 2-core machines a quiet host shows under 1%, and at 25-35% the
// no-proxy baseline's own p99 grew from 5 to 28 ms.
const NoisySteal = 5.0

// ms prints a latency figure, or n/a when nothing was measured.
func ms(count int64, v float64) string {
	if count == 0 {
		return NA
	}
	return fmt.Sprintf("%.3f ms", v)
}

// Print writes a human summary of r. A figure that nothing measured (no session opened, no
// round trip, no growth to return) prints as n/a, never as a zero.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "%s %s [%s] sessions=%d workers=%d vms=%d\n", r.Scenario, r.Kind, r.Target.Name, r.Sessions, r.Workers, r.VMs)
	if r.Kind != KindChurn {
		fmt.Fprintf(w, "  opened %d, failed %d; setup p50 %s, p99 %s", r.Opened, r.OpenFailed, ms(r.Setup.Count, r.Setup.P50), ms(r.Setup.Count, r.Setup.P99))
		if r.SetupPerSec > 0 {
			fmt.Fprintf(w, "; %.0f sessions/s", r.SetupPerSec)
		}
		fmt.Fprintln(w)
	}
	switch r.Kind {
	case KindDown, KindUp:
		dir := "VM -> browser"
		if r.Kind == KindUp {
			dir = "browser -> VM"
		}
		if r.MBps > 0 {
			fmt.Fprintf(w, "  %s: %.1f MB in %.2f s = %.1f MB/s\n", dir, float64(r.TotalBytes)/1e6, r.Seconds, r.MBps)
		} else {
			fmt.Fprintf(w, "  %s: %s (%d bytes moved)\n", dir, NA, r.TotalBytes)
		}
	case KindEcho:
		l := r.RTT
		if l == nil || l.Count == 0 {
			fmt.Fprintf(w, "  %d/%d echoes; round trip %s\n", r.Messages, r.Sent, NA)
			break
		}
		fmt.Fprintf(w, "  %d/%d echoes, %.0f msg/s; round trip p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f ms\n",
			r.Messages, r.Sent, r.MsgPerSec, l.P50, l.P90, l.P99, l.P999, l.Max)
	case KindChurn:
		fmt.Fprintf(w, "  %d sessions opened, used and closed in %.1f s (%.0f/s), %d open failures; setup p50 %s, p99 %s\n",
			r.Churned, r.Duration, r.ChurnPerSec, r.OpenFailed, ms(r.Setup.Count, r.Setup.P50), ms(r.Setup.Count, r.Setup.P99))
	case KindDesktop:
		d := r.Desktop
		if d == nil {
			break
		}
		fmt.Fprintf(w, "  desktops at %g KB/s, %g fps, %g input events/s each: %d updates, %.1f MB/s in all\n",
			d.Load.KBps, d.Load.FPS, d.Load.InputRate, d.Frames, r.MBps)
		if f := d.Fairness; f != nil {
			fmt.Fprintf(w, "  per-session KB/s min %.1f median %.1f max %.1f (target %g); Jain's fairness index %.3f (1 is fair, higher is better)\n",
				f.Min, f.Median, f.Max, d.Load.KBps, f.Jain)
		} else {
			fmt.Fprintf(w, "  per-session KB/s %s; fairness %s\n", NA, NA)
		}
		if l := r.RTT; l != nil && l.Count > 0 {
			fmt.Fprintf(w, "  input round trip p50 %.3f p99 %.3f p99.9 %.3f max %.3f ms over %d events; %d of %d lost\n",
				l.P50, l.P99, l.P999, l.Max, l.Count, d.InputLost, d.InputSent)
		} else {
			fmt.Fprintf(w, "  input round trip %s (%d sent, %d lost)\n", NA, d.InputSent, d.InputLost)
		}
	}
	if r.Errors > 0 || len(r.ErrorKinds) > 0 {
		fmt.Fprintf(w, "  errors %d:", r.Errors)
		for _, k := range topKinds(r.ErrorKinds) {
			fmt.Fprintf(w, " %s x%d;", k, r.ErrorKinds[k])
		}
		fmt.Fprintln(w)
	}
	if p := r.Proxy; p != nil {
		what := fmt.Sprintf("pid %d", r.Target.Pid)
		if r.Target.Pid == 0 {
			what = r.Target.AdminURL + "/metrics"
		}
		fmt.Fprintf(w, "  proxy %s: RSS %s -> %s at N", what, kib(p.Before.RSSKiB), kib(p.AtN.RSSKiB))
		if p.Peak.RSSKiB > 0 {
			fmt.Fprintf(w, " -> %s at end of run", kib(p.Peak.RSSKiB))
		}
		fmt.Fprintf(w, " -> %s after close; fds %d -> %d -> %d", kib(p.After.RSSKiB), p.Before.FDs, max(p.AtN.FDs, p.Peak.FDs), p.After.FDs)
		if p.AtN.Processes > 1 {
			fmt.Fprintf(w, "; %d processes, PSS %s at N", p.AtN.Processes, kib(p.AtN.PSSKiB))
		}
		if r.Kind == KindHold {
			per, ret := NA+" KiB/session", NA+" returned"
			if r.Opened > 0 {
				per = fmt.Sprintf("%.2f KiB/session", p.PerSessionKiB)
			}
			if p.Grew && p.ReturnedPct >= 0 {
				ret = fmt.Sprintf("%.0f%% returned", p.ReturnedPct)
			} else if p.Grew {
				ret = fmt.Sprintf("none returned (RSS grew %s more after close)", kib(p.After.RSSKiB-p.AtN.RSSKiB))
			}
			fmt.Fprintf(w, "; %s, %s", per, ret)
		}
		fmt.Fprintln(w)
		var parts []string
		if r.Kind == KindHold {
			cpu := NA
			if r.Opened > 0 && !p.Opened.At.IsZero() {
				cpu = fmt.Sprintf("%.1f us", p.SetupCPUMicros)
			}
			parts = append(parts, cpu+" per session setup over the ramp")
		}
		if p.RunCPUSeconds > 0 {
			parts = append(parts, fmt.Sprintf("%.2f s in the run phase (%.0f%% of one core)", p.RunCPUSeconds, p.RunCPUPct))
		}
		if r.Kind == KindChurn && r.Churned > 0 && p.RunCPUSeconds > 0 {
			parts = append(parts, fmt.Sprintf("%.1f us per churned session (open, one update, close)", 1e6*p.RunCPUSeconds/float64(r.Churned)))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "  proxy CPU: %s\n", strings.Join(parts, "; "))
		}
	}
	if r.Kind == KindHold && r.RampSeconds > 0 {
		fmt.Fprintf(w, "  generator CPU: %.2f s over the first %.2f s (%.0f%% of one core)\n",
			r.GeneratorCPUSeconds, r.RampSeconds, 100*r.GeneratorCPUSeconds/r.RampSeconds)
	}
	for _, l := range r.Lookups {
		fmt.Fprintf(w, "  token lookups (%s): %.0f, p50 %.3f ms, p99 %.3f ms\n", l.Source, l.Count, l.P50Ms, l.P99Ms)
	}
	if sc := r.Syscalls; sc != nil {
		fmt.Fprintf(w, "  syscalls (strace, a separate traced ramp of %d setups): %.1f per setup; top: %s\n",
			sc.Setups, sc.PerSetup, strings.Join(sc.Top, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  NOTE: %s\n", n)
	}
}

// Failures lists what went wrong in r, one line each: sessions that failed to open or
// broke, corrupt streams, lost input, or nothing measured at all. An empty list is a clean
// run; a scenario exits non-zero otherwise.
func (r *Result) Failures() []string {
	var out []string
	name := fmt.Sprintf("%s %s [%s]", r.Scenario, r.Kind, r.Target.Name)
	if r.OpenFailed > 0 {
		out = append(out, fmt.Sprintf("%s: %d of %d sessions failed to open", name, r.OpenFailed, r.OpenFailed+r.Opened))
	}
	if r.Kind != KindChurn && r.Sessions > 0 && r.Opened == 0 {
		out = append(out, fmt.Sprintf("%s: no session opened, nothing was measured", name))
	}
	if r.Kind == KindChurn && r.Churned == 0 {
		out = append(out, fmt.Sprintf("%s: no session churned, nothing was measured", name))
	}
	if r.Errors > 0 {
		out = append(out, fmt.Sprintf("%s: %d errors in open sessions", name, r.Errors))
	}
	if r.Corrupt > 0 {
		out = append(out, fmt.Sprintf("%s: %d sessions received corrupt bytes", name, r.Corrupt))
	}
	if d := r.Desktop; d != nil && d.InputLost > 0 {
		out = append(out, fmt.Sprintf("%s: %d of %d input events never reached the VMs", name, d.InputLost, d.InputSent))
	}
	return out
}

func kib(k int64) string {
	if k >= 10*1024 {
		return fmt.Sprintf("%.1f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
}
