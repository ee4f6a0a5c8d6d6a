package load

import (
	"math"
	"testing"
	"time"
)

func TestDesktopWidth(t *testing.T) {
	// 256 KB/s at 20 fps: 13,107 bytes per update, 32 rows x 4 bytes a column: 102 columns.
	w, err := DesktopLoad{KBps: 256, FPS: 20}.Width()
	if err != nil || w != 102 {
		t.Fatalf("Width = %d, %v", w, err)
	}
	for _, bad := range []DesktopLoad{{KBps: 0, FPS: 20}, {KBps: 1, FPS: 0}, {KBps: 0.01, FPS: 60}, {KBps: 1 << 20, FPS: 1}} {
		if _, err := bad.Width(); err == nil {
			t.Errorf("Width(%+v) accepted", bad)
		}
	}
}

func TestFairness(t *testing.T) {
	f, ok := FairnessOf([]float64{10, 10, 10, 10})
	if !ok || f.Jain != 1 || f.Min != 10 || f.Median != 10 || f.Max != 10 {
		t.Fatalf("equal shares: %+v", f)
	}
	// One session got everything: 1/n.
	f, ok = FairnessOf([]float64{0, 0, 0, 8})
	if !ok || math.Abs(f.Jain-0.25) > 1e-12 || f.Median != 0 || f.Max != 8 {
		t.Fatalf("one takes all: %+v", f)
	}
	// (1+2+3)^2 / (3 * (1+4+9)) = 36/42.
	f, _ = FairnessOf([]float64{3, 1, 2})
	if math.Abs(f.Jain-36.0/42) > 1e-12 || f.Median != 2 || f.Mean != 2 {
		t.Fatalf("1,2,3: %+v", f)
	}
	f, _ = FairnessOf([]float64{4, 1, 2, 3})
	if f.Median != 2.5 {
		t.Fatalf("even median %v", f.Median)
	}
	for _, none := range [][]float64{nil, {0, 0}, {1, math.NaN()}, {-1, 2}} {
		if _, ok := FairnessOf(none); ok {
			t.Errorf("FairnessOf(%v) ok", none)
		}
	}
}

// Desktops end to end against --direct: every session streams near its rate, every input
// event is answered and counted by the VMs.
func TestDirectDesktops(t *testing.T) {
	d := DesktopLoad{KBps: 64, FPS: 20, InputRate: 20}
	r := run(t, Options{Scenario: "desktops", Kind: KindDesktop, Sessions: 6, PerVM: 3, Desktop: d, Duration: time.Second})
	dr := r.Desktop
	if dr == nil || dr.Fairness == nil || dr.Fairness.Sessions != 6 {
		t.Fatalf("desktop result %+v", dr)
	}
	if dr.InputSent != 6*20 || dr.InputLost != 0 || r.RTT == nil || r.RTT.Count != dr.InputSent {
		t.Fatalf("input: sent %d lost %d, rtt %+v", dr.InputSent, dr.InputLost, r.RTT)
	}
	// Each desktop asks 20 times a second; on a busy machine some requests wait for the
	// previous answer, so only the order of magnitude is checked.
	if dr.Fairness.Median < 64/4 || dr.Fairness.Max > 64*1.5 || dr.Frames < 6*5 {
		t.Fatalf("rates %+v, %d frames", dr.Fairness, dr.Frames)
	}
	if len(r.Failures()) != 0 {
		t.Fatalf("failures %v", r.Failures())
	}
}
