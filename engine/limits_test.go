package engine

import (
	"testing"
	"time"
)

func TestCapacityLimits(t *testing.T) {
	c := newCapacity(2, 1)
	if !c.acquireSession() || !c.acquireSession() || c.acquireSession() {
		t.Fatal("global limit of 2 not enforced")
	}
	c.releaseSession()
	if !c.acquireSession() {
		t.Fatal("released slot not reusable")
	}
	if !c.acquireVM("a:1") || c.acquireVM("a:1") || !c.acquireVM("b:1") {
		t.Fatal("per-upstream limit of 1 not enforced")
	}
	c.releaseVM("a:1")
	if c.vms() != 1 || !c.acquireVM("a:1") {
		t.Fatal("released upstream slot not reusable")
	}
	unlimited := newCapacity(0, 0)
	for range 1000 {
		if !unlimited.acquireSession() || !unlimited.acquireVM("x") {
			t.Fatal("0 must mean unlimited")
		}
	}
}

// TestTrimMemoryTrigger: a large drop from the peak starts exactly one trim;
// small drops and growth do not.
func TestTrimMemoryTrigger(t *testing.T) {
	srv := fuzzServer(t)
	for range 300 {
		srv.limits.acquireSession()
	}
	srv.trimMemory()
	if srv.peakSessions != 300 {
		t.Fatalf("peak %d, want 300", srv.peakSessions)
	}
	for range 100 {
		srv.limits.releaseSession()
	}
	srv.trimMemory() // 200 of 300: not half, not 256 fewer
	if srv.trimming.Load() || srv.peakSessions != 300 {
		t.Fatal("trimmed after a small drop")
	}
	for range 200 {
		srv.limits.releaseSession()
	}
	srv.trimMemory()
	if srv.peakSessions != 0 {
		t.Fatalf("peak %d after trim, want reset to 0", srv.peakSessions)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.trimming.Load() {
		if time.Now().After(deadline) {
			t.Fatal("trim did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTrimAfterBurstSettles: a burst of new sessions that then holds still
// for settleTicks trims once (the setups' garbage goes back to the kernel);
// a count that keeps moving does not.
func TestTrimAfterBurstSettles(t *testing.T) {
	srv := fuzzServer(t)
	for range 300 {
		srv.limits.acquireSession()
	}
	for range settleTicks {
		srv.trimMemory()
		if srv.trimming.Load() {
			t.Fatal("trimmed before the count settled")
		}
	}
	srv.trimMemory()
	if !srv.trimming.Load() && srv.settleBase != 300 {
		t.Fatal("a settled burst of 300 sessions was not trimmed")
	}
	for deadline := time.Now().Add(10 * time.Second); srv.trimming.Load(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("trim did not finish")
		}
	}
	for range 3 * settleTicks {
		srv.trimMemory()
	}
	if srv.trimming.Load() || srv.settleBase != 300 {
		t.Fatal("trimmed again without a new burst")
	}
}
