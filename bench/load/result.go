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
	Notes []string  `json:"notes,omitempty"`
}

// ProxyMem is the proxy's memory and descriptors around a run.
type ProxyMem struct {
	Before procstat.Sample `json:"before"`
	AtN    procstat.Sample `json:"at_n"`  // all sessions open (after the hold)
	Peak   procstat.Sample `json:"peak"`  // at the end of the run phase (not for hold)
	After  procstat.Sample `json:"after"` // closed and settled
	// PerSessionKiB is (AtN - Before) / sessions opened, of RSS (PSS for a process tree).
	PerSessionKiB float64 `json:"per_session_kib"`
	// ReturnedPct is how much of the growth went away after close.
	ReturnedPct float64 `json:"returned_pct"`
	FDsLeaked   int     `json:"fds_leaked"`
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
		if grow := atN - before; grow > 0 && after > 0 {
			p.ReturnedPct = 100 * float64(atN-after) / float64(grow)
		}
		if p.After.RSSKiB > 0 {
			p.FDsLeaked = p.After.FDs - p.Before.FDs
		}
		r.noteCeiling()
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

// Print writes a human summary of r.
func (r *Result) Print(w io.Writer) {
	fmt.Fprintf(w, "%s %s [%s] sessions=%d workers=%d vms=%d\n", r.Scenario, r.Kind, r.Target.Name, r.Sessions, r.Workers, r.VMs)
	if r.Kind != KindChurn {
		fmt.Fprintf(w, "  opened %d, failed %d; setup p50 %.2f ms, p99 %.2f ms", r.Opened, r.OpenFailed, r.Setup.P50, r.Setup.P99)
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
		fmt.Fprintf(w, "  %s: %.1f MB in %.2f s = %.1f MB/s\n", dir, float64(r.TotalBytes)/1e6, r.Seconds, r.MBps)
	case KindEcho:
		l := r.RTT
		fmt.Fprintf(w, "  %d/%d echoes, %.0f msg/s; round trip p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f ms\n",
			r.Messages, r.Sent, r.MsgPerSec, l.P50, l.P90, l.P99, l.P999, l.Max)
	case KindChurn:
		fmt.Fprintf(w, "  %d sessions opened, used and closed in %.1f s (%.0f/s), %d open failures; setup p50 %.2f ms, p99 %.2f ms\n",
			r.Churned, r.Duration, r.ChurnPerSec, r.OpenFailed, r.Setup.P50, r.Setup.P99)
	}
	if r.Errors > 0 || len(r.ErrorKinds) > 0 {
		fmt.Fprintf(w, "  errors %d:", r.Errors)
		for _, k := range topKinds(r.ErrorKinds) {
			fmt.Fprintf(w, " %s x%d;", k, r.ErrorKinds[k])
		}
		fmt.Fprintln(w)
	}
	if p := r.Proxy; p != nil {
		fmt.Fprintf(w, "  proxy pid %d: RSS %s -> %s at N", r.Target.Pid, kib(p.Before.RSSKiB), kib(p.AtN.RSSKiB))
		if p.Peak.RSSKiB > 0 {
			fmt.Fprintf(w, " -> %s at end of run", kib(p.Peak.RSSKiB))
		}
		fmt.Fprintf(w, " -> %s after close; fds %d -> %d -> %d", kib(p.After.RSSKiB), p.Before.FDs, max(p.AtN.FDs, p.Peak.FDs), p.After.FDs)
		if p.AtN.Processes > 1 {
			fmt.Fprintf(w, "; %d processes, PSS %s at N", p.AtN.Processes, kib(p.AtN.PSSKiB))
		}
		if r.Kind == KindHold {
			fmt.Fprintf(w, "; %.2f KiB/session, %.0f%% returned", p.PerSessionKiB, p.ReturnedPct)
		}
		fmt.Fprintln(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  NOTE: %s\n", n)
	}
}

func kib(k int64) string {
	if k >= 10*1024 {
		return fmt.Sprintf("%.1f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
}
