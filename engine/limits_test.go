package engine

import (
	"runtime"
	"runtime/metrics"
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

// TestTrimWhenQuietHeapGrew: a few sessions end (far fewer than trimAfter)
// and the count holds still: a heap grown by trimSpare since the last trim
// (heavy sessions' buffers, kept in pools after they end) is trimmed; what
// the trim cannot free becomes the next baseline, so it is not retried. A
// heap grown under sessions that still run is left alone.
func TestTrimWhenQuietHeapGrew(t *testing.T) {
	srv := fuzzServer(t)
	var m [2]metrics.Sample
	srv.trimHeap.Store(srv.heapHeld(m[:]))
	for range 8 {
		srv.limits.acquireSession()
	}
	held := make([][]byte, 0, 64) // stands in for buffers a pool keeps
	for range 64 {
		held = append(held, make([]byte, 1<<20))
	}
	for range 3 * settleTicks {
		srv.trimMemory()
	}
	if srv.trimming.Load() {
		t.Fatal("trimmed while the sessions that grew the heap still run")
	}
	for range 8 {
		srv.limits.releaseSession()
	}
	for range settleTicks + 1 {
		srv.trimMemory()
	}
	if !srv.trimming.Load() {
		t.Fatalf("a quiet heap grown by 64 MiB was not trimmed (held %d, baseline %d)", srv.heapHeld(m[:]), srv.trimHeap.Load())
	}
	for deadline := time.Now().Add(10 * time.Second); srv.trimming.Load(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("trim did not finish")
		}
	}
	if srv.trimHeap.Load() < 64<<20 {
		t.Fatalf("baseline after the trim %d: the 64 MiB still in use belong to it", srv.trimHeap.Load())
	}
	for range 3 * settleTicks {
		srv.trimMemory()
	}
	if srv.trimming.Load() {
		t.Fatal("trimmed again though nothing grew")
	}
	runtime.KeepAlive(held)
}

// Connections that never became sessions (a slowloris, a flood of idle
// handshakes) grow the heap too: once they are gone it is trimmed.
func TestTrimAfterHandshakesEnded(t *testing.T) {
	srv := fuzzServer(t)
	wait := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); srv.trimming.Load(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("trim did not finish")
			}
		}
	}
	srv.handshakes.Add(2000)
	for range 3 * settleTicks {
		srv.trimMemory() // the burst settles: one trim, as for sessions
	}
	wait()
	held := make([][]byte, 0, 32) // what the connections' buffers left behind
	for range 32 {
		held = append(held, make([]byte, 1<<20))
	}
	srv.handshakes.Add(-2000)
	srv.trimMemory()
	if !srv.trimming.Load() {
		t.Fatal("the heap was not trimmed after 2,000 handshakes ended")
	}
	wait()
	runtime.KeepAlive(held)
}
