package load

import (
	"fmt"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Round trips are recorded in microseconds from 1µs to 5 minutes with 3 significant digits:
// 0.1% resolution everywhere, which is what p99.9 needs.
const (
	histMinMicros = 1
	histMaxMicros = int64(5 * time.Minute / time.Microsecond)
	histDigits    = 3
)

// Recorder collects round-trip times from many goroutines.
type Recorder struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{h: hdrhistogram.New(histMinMicros, histMaxMicros, histDigits)}
}

// Record adds one round trip; values beyond the range are clamped so they still count.
func (r *Recorder) Record(d time.Duration) {
	us := max(min(d.Microseconds(), histMaxMicros), histMinMicros)
	r.mu.Lock()
	_ = r.h.RecordValue(us)
	r.mu.Unlock()
}

// Snapshot exports the histogram for merging across processes.
func (r *Recorder) Snapshot() *hdrhistogram.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.h.Export()
}

// MergeSnapshots merges exported histograms (nil entries are skipped).
func MergeSnapshots(snaps ...*hdrhistogram.Snapshot) *hdrhistogram.Histogram {
	h := hdrhistogram.New(histMinMicros, histMaxMicros, histDigits)
	for _, s := range snaps {
		if s != nil {
			h.Merge(hdrhistogram.Import(s))
		}
	}
	return h
}

// Latency is the summary of a round-trip distribution, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	// Buckets is the distribution for charts: upper bound (ms) and count, log-spaced.
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket is one bar of a latency distribution chart.
type Bucket struct {
	UpToMs float64 `json:"le_ms"`
	Count  int64   `json:"count"`
}

// Summarize computes the percentiles of h.
func Summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	l := Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
	if l.Count == 0 {
		return l
	}
	// Log-spaced buckets, four per decade, from 10µs up to the maximum.
	edges := []float64{}
	for e := 0.01; ; e *= 1.7782794100389228 { // 10^(1/4)
		edges = append(edges, e)
		if e >= l.Max {
			break
		}
	}
	counts := make([]int64, len(edges))
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		v := ms(b.To)
		i := 0
		for i < len(edges)-1 && edges[i] < v {
			i++
		}
		counts[i] += b.Count
	}
	for i, e := range edges {
		l.Buckets = append(l.Buckets, Bucket{UpToMs: roundSig(e), Count: counts[i]})
	}
	return l
}

func roundSig(v float64) float64 {
	var f float64
	fmt.Sscanf(fmt.Sprintf("%.3g", v), "%g", &f)
	return f
}
