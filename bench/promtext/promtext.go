// Package promtext reads the Prometheus text exposition format as vncedge's /metrics writes
// it: enough to sample a remote proxy's process_cpu_seconds_total, memory and descriptors,
// and to turn a histogram's buckets (Prometheus "le" or VictoriaMetrics "vmrange") into
// quantiles. It is a reader for a benchmark tool, not a full implementation: exemplars and
// timestamps are ignored, and any line it cannot read is an error naming the line.
package promtext

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// MaxLine bounds one line; a longer one is not a metrics page.
const MaxLine = 64 << 10

// Sample is one series' value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Label returns the value of label k ("" when absent).
func (s Sample) Label(k string) string { return s.Labels[k] }

// Parse reads every sample of a text page. Comments (# HELP, # TYPE) are skipped.
func Parse(page []byte) ([]Sample, error) {
	var out []Sample
	for n, rest := 1, string(page); len(rest) > 0; n++ {
		line, tail, _ := strings.Cut(rest, "\n")
		rest = tail
		line = strings.TrimRight(line, "\r")
		if len(line) > MaxLine {
			return nil, fmt.Errorf("promtext: line %d: longer than %d bytes", n, MaxLine)
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		s, err := parseLine(t)
		if err != nil {
			return nil, fmt.Errorf("promtext: line %d %q: %w", n, clip(t), err)
		}
		out = append(out, s)
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func parseLine(t string) (Sample, error) {
	var s Sample
	i := strings.IndexAny(t, "{ \t")
	if i <= 0 {
		return s, errors.New("no value")
	}
	s.Name = t[:i]
	if !validName(s.Name) {
		return s, fmt.Errorf("bad metric name %q", s.Name)
	}
	rest := t[i:]
	if rest[0] == '{' {
		labels, after, err := parseLabels(rest[1:])
		if err != nil {
			return s, err
		}
		s.Labels, rest = labels, after
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return s, errors.New("want a value and at most a timestamp")
	}
	v, err := parseValue(f[0])
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

func validName(n string) bool {
	for i, c := range n {
		ok := c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return n != ""
}

// parseLabels reads `k="v",k2="v2"}` and returns what follows the brace.
func parseLabels(t string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		t = strings.TrimLeft(t, " \t")
		if strings.HasPrefix(t, "}") {
			return labels, t[1:], nil
		}
		eq := strings.IndexByte(t, '=')
		if eq <= 0 {
			return nil, "", errors.New("label without '='")
		}
		k := strings.TrimSpace(t[:eq])
		if !validName(k) {
			return nil, "", fmt.Errorf("bad label name %q", k)
		}
		t = strings.TrimLeft(t[eq+1:], " \t")
		if !strings.HasPrefix(t, `"`) {
			return nil, "", fmt.Errorf("label %s: value not quoted", k)
		}
		var b strings.Builder
		j := 1
		for ; j < len(t) && t[j] != '"'; j++ {
			c := t[j]
			if c == '\\' && j+1 < len(t) {
				j++
				switch t[j] {
				case 'n':
					c = '\n'
				default:
					c = t[j]
				}
			}
			b.WriteByte(c)
		}
		if j >= len(t) {
			return nil, "", fmt.Errorf("label %s: unterminated value", k)
		}
		labels[k] = b.String()
		t = strings.TrimLeft(t[j+1:], " \t")
		switch {
		case strings.HasPrefix(t, ","):
			t = t[1:]
		case strings.HasPrefix(t, "}"):
		default:
			return nil, "", errors.New("labels: want ',' or '}'")
		}
	}
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return v, nil
}

// Find returns the first sample named name whose labels include every k=v pair of match,
// and whether there was one.
func Find(samples []Sample, name string, match map[string]string) (Sample, bool) {
	for _, s := range samples {
		if s.Name == name && has(s.Labels, match) {
			return s, true
		}
	}
	return Sample{}, false
}

func has(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Bucket is one histogram bucket: the count of observations at most UpTo (cumulative,
// Prometheus style, once normalised by Buckets).
type Bucket struct {
	UpTo  float64
	Count float64
}

// Buckets collects the buckets of histogram family (name without _bucket) whose labels
// include match, as cumulative counts in ascending order. It reads Prometheus buckets
// ("le") and VictoriaMetrics ones ("vmrange", per-range counts, summed here); ok is false
// when the family has no buckets.
func Buckets(samples []Sample, family string, match map[string]string) (bs []Bucket, ok bool) {
	name := family + "_bucket"
	var le, vm []Bucket
	for _, s := range samples {
		if s.Name != name || !has(s.Labels, match) {
			continue
		}
		if v, found := s.Labels["le"]; found {
			up, err := parseValue(v)
			if err != nil || math.IsNaN(up) {
				continue
			}
			le = append(le, Bucket{up, s.Value})
		} else if r, found := s.Labels["vmrange"]; found {
			_, hi, ok := strings.Cut(r, "...")
			if !ok {
				continue
			}
			up, err := parseValue(hi)
			if err != nil || math.IsNaN(up) {
				continue
			}
			vm = append(vm, Bucket{up, s.Value})
		}
	}
	switch {
	case len(le) > 0:
		sort.Slice(le, func(i, j int) bool { return le[i].UpTo < le[j].UpTo })
		return le, true
	case len(vm) > 0:
		sort.Slice(vm, func(i, j int) bool { return vm[i].UpTo < vm[j].UpTo })
		var sum float64
		for i := range vm {
			sum += vm[i].Count
			vm[i].Count = sum
		}
		return vm, true
	}
	return nil, false
}

// Sub is after minus before, bucket by bucket (both from Buckets of one family): the
// observations made between two scrapes. Buckets missing before count from zero.
func Sub(after, before []Bucket) []Bucket {
	prev := map[float64]float64{}
	for _, b := range before {
		prev[b.UpTo] = b.Count
	}
	out := make([]Bucket, len(after))
	for i, b := range after {
		out[i] = Bucket{b.UpTo, max(0, b.Count-prev[b.UpTo])}
	}
	return out
}

// Quantile estimates quantile q (0..1) of cumulative buckets by linear interpolation inside
// the bucket that holds it, as Prometheus' histogram_quantile does. It is NaN when the
// buckets hold no observation; a quantile in the +Inf bucket is the highest finite bound.
func Quantile(bs []Bucket, q float64) float64 {
	if len(bs) == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	total := bs[len(bs)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	rank := min(max(q, 0), 1) * total
	lowBound, lowCount := 0.0, 0.0
	for _, b := range bs {
		if b.Count >= rank && b.Count > lowCount {
			if math.IsInf(b.UpTo, 1) {
				return lowBound
			}
			return lowBound + (b.UpTo-lowBound)*(rank-lowCount)/(b.Count-lowCount)
		}
		if !math.IsInf(b.UpTo, 1) {
			lowBound = b.UpTo
		}
		lowCount = b.Count
	}
	return lowBound
}

// Total is the observation count of cumulative buckets.
func Total(bs []Bucket) float64 {
	if len(bs) == 0 {
		return 0
	}
	return bs[len(bs)-1].Count
}
