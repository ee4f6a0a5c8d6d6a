package load

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// Verdict is one target of issue 14 checked against a run's figures.
type Verdict struct {
	Goal     string  `json:"goal"`     // what the issue asks, e.g. "VM->browser, 1 session: >= 0.6x direct"
	Measured string  `json:"measured"` // the figure that decides it
	Met      bool    `json:"met"`
	Value    float64 `json:"value"`
}

// subject is the target under test: of those compared with direct, the one compared with
// the most others.
func subject(results []*Result) string {
	best, n := "", 0
	for _, r := range results {
		toDirect := false
		for _, d := range r.Target.RatioTo {
			toDirect = toDirect || d == "direct"
		}
		if toDirect && len(r.Target.RatioTo) > n {
			best, n = r.Target.Name, len(r.Target.RatioTo)
		}
	}
	return best
}

// Verdicts checks the figures of results against issue 14's targets, for the rows the run
// has: throughput at least 0.6x direct and 1.2x the C relay, latency p99 at most 1.5x and
// p99.9 at most 2x direct with no failures, at most 100 us of proxy CPU per setup, at most
// 1.5 KiB per idle session at 9,000 sessions or more with at least 90% returned.
func Verdicts(results []*Result) []Verdict {
	sub := subject(results)
	if sub == "" {
		return nil
	}
	var out []Verdict
	ratio := func(r Row, other string, atLeast bool, bound float64, what string) {
		q := Ratio(r.Values, sub, other)
		if math.IsNaN(q) || math.IsInf(q, 0) { // one of the two was not measured
			return
		}
		op, met := "<=", q <= bound
		if atLeast {
			op, met = ">=", q >= bound
		}
		out = append(out, Verdict{
			Goal:     fmt.Sprintf("%s, %s: %s %s %gx %s", r.Case, r.Metric, sub, op, bound, what),
			Measured: fmt.Sprintf("%.2fx (%s vs %s)", q, Num(r.Values[sub]), Num(r.Values[other])),
			Met:      met, Value: q,
		})
	}
	abs := func(r Row, atLeast bool, bound float64, unit string) {
		v, ok := r.Values[sub]
		if !ok {
			return
		}
		op, met := "<=", v <= bound
		if atLeast {
			op, met = ">=", v >= bound
		}
		out = append(out, Verdict{Goal: fmt.Sprintf("%s, %s: %s %s %g%s", r.Case, r.Metric, sub, op, bound, unit),
			Measured: Num(v) + unit, Met: met, Value: v})
	}
	relay := ""
	for _, r := range results {
		if r.Target.Relay {
			relay = r.Target.Name
		}
	}
	for _, r := range Rows(results) {
		switch {
		case strings.HasPrefix(r.Case, "throughput") && r.Metric == "MB/s":
			ratio(r, "direct", true, 0.6, "direct")
			if relay != "" {
				ratio(r, relay, true, 1.2, "the C relay")
			}
		case strings.HasPrefix(r.Case, "latency") && r.Metric == "round trip p99 ms":
			ratio(r, "direct", false, 1.5, "direct")
		case strings.HasPrefix(r.Case, "latency") && r.Metric == "round trip p99.9 ms":
			ratio(r, "direct", false, 2, "direct")
		case strings.HasPrefix(r.Case, "latency") && (r.Metric == "failed sessions" || r.Metric == "errors"):
			abs(r, false, 0, "")
		case r.Metric == "proxy CPU us/setup":
			abs(r, false, 100, " us")
		case r.Metric == "KiB/session" && sessionsOf(r.Case) >= 9000:
			abs(r, false, 1.5, " KiB")
		case r.Metric == "% returned" && sessionsOf(r.Case) >= 9000:
			abs(r, true, 90, "%")
		}
	}
	return out
}

// sessionsOf reads N from a "sessions, N" case.
func sessionsOf(cs string) int {
	var name string
	var n int
	if _, err := fmt.Sscanf(strings.Replace(cs, ",", " ", 1), "%s %d", &name, &n); err != nil {
		return 0
	}
	return n
}

// PrintVerdicts writes the verdicts, one line each.
func PrintVerdicts(w io.Writer, vs []Verdict) {
	if len(vs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nissue 14 targets:")
	for _, v := range vs {
		mark := "MISSED"
		if v.Met {
			mark = "met   "
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, v.Goal, v.Measured)
	}
}
