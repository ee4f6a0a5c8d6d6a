package load

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 0.002*math.Max(math.Abs(a), math.Abs(b))+1e-9 }

func TestPercentiles(t *testing.T) {
	r := NewRecorder()
	// 1..1000 ms, one each: p50 is 500ms, p90 900ms, p99 990ms, p99.9 999ms, max 1000ms.
	for i := 1; i <= 1000; i++ {
		r.Record(time.Duration(i) * time.Millisecond)
	}
	l := Summarize(MergeSnapshots(r.Snapshot()))
	checks := []struct {
		name      string
		got, want float64
	}{
		{"p50", l.P50, 500},
		{"p90", l.P90, 900},
		{"p99", l.P99, 990},
		{"p99.9", l.P999, 999},
		{"max", l.Max, 1000},
		{"mean", l.Mean, 500.5},
	}
	for _, c := range checks {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v ms, want %v", c.name, c.got, c.want)
		}
	}
	if l.Count != 1000 {
		t.Fatalf("count %d", l.Count)
	}
	var sum int64
	for _, b := range l.Buckets {
		sum += b.Count
	}
	if sum != 1000 {
		t.Fatalf("buckets hold %d values, want 1000", sum)
	}
	if last := l.Buckets[len(l.Buckets)-1]; last.UpToMs < 1000 {
		t.Fatalf("last bucket ends at %v ms, below the max", last.UpToMs)
	}
}

func TestMergeAcrossRecorders(t *testing.T) {
	a, b := NewRecorder(), NewRecorder()
	for i := 0; i < 99; i++ {
		a.Record(time.Millisecond)
	}
	b.Record(2 * time.Second)
	l := Summarize(MergeSnapshots(a.Snapshot(), nil, b.Snapshot()))
	if l.Count != 100 || !near(l.P50, 1) || !near(l.Max, 2000) {
		t.Fatalf("merged: %+v", l)
	}
	// p99 of 99 x 1ms and 1 x 2s is still 1ms; p99.9 is the outlier.
	if !near(l.P99, 1) || !near(l.P999, 2000) {
		t.Fatalf("p99 %v p99.9 %v", l.P99, l.P999)
	}
}

func TestRecordClamps(t *testing.T) {
	r := NewRecorder()
	r.Record(0)
	r.Record(time.Hour)
	l := Summarize(MergeSnapshots(r.Snapshot()))
	if l.Count != 2 {
		t.Fatalf("count %d, want 2 (out-of-range values clamped, not dropped)", l.Count)
	}
}

func TestSummarizeEmpty(t *testing.T) {
	if l := Summarize(MergeSnapshots()); l.Count != 0 || l.Buckets != nil {
		t.Fatalf("empty: %+v", l)
	}
}
