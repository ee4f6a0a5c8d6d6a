package recorder

import (
	"testing"
	"time"

	"vncedge/rfb"
)

// TestZeroAllocs holds the loop-side calls to zero allocations per call in steady state: the
// disk keeps up (drain waits for the writer, which allocates nothing either: AllocsPerRun counts
// every goroutine's allocations).
func TestZeroAllocs(t *testing.T) {
	f := &discardFile{}
	r := newRecorder(t, Config{Create: func(string) (File, error) { return f, nil }})
	rec := start(t, r, Session{ID: "z", Target: "vm", Input: true})
	now := time.Now()
	rec.FromVM(serverSI.Append(nil), now)
	rec.SetPixelFormat(rfb.NoVNC32(), now)
	big := make([]byte, 64<<10)
	huge := make([]byte, 3*segSize) // split into blocks
	small := make([]byte, 40)
	var sc rfb.Scanner
	observe := func(m rfb.Message) { rec.Observe(m, now) }
	input := rfb.AppendPointerEvent(rfb.AppendQEMUKeyEvent(rfb.AppendKeyEvent(nil, true, 'a'), true, 'a', 30), 1, 2, 3)
	checks := []struct {
		name string
		f    func()
	}{
		{"FromVM 64 KiB", func() { rec.FromVM(big, now) }},
		{"FromVM 216 KiB", func() { rec.FromVM(huge, now) }},
		{"FromVM 40 B", func() { rec.FromVM(small, now) }},
		{"FromVM 40 B x 100", func() {
			for range 100 {
				rec.FromVM(small, now)
			}
		}},
		{"Key", func() { rec.Key(true, 0xff0d, now) }},
		{"Pointer", func() { rec.Pointer(1, 640, 480, now) }},
		{"SetPixelFormat unchanged", func() { rec.SetPixelFormat(rfb.NoVNC32(), now) }},
		{"Observe from a Scanner", func() {
			if err := sc.Scan(input, observe); err != nil {
				panic(err)
			}
		}},
	}
	for range 20 { // warm up: the free list and the queue's slices reach their size
		for _, c := range checks {
			c.f()
		}
		drain(rec)
	}
	for _, c := range checks {
		if n := testing.AllocsPerRun(100, func() { c.f(); drain(rec) }); n != 0 {
			t.Errorf("%s: %.1f allocations per call", c.name, n)
		}
	}
	if rec.Failed() {
		t.Fatalf("the recording was cut: %v", rec.Err())
	}
	rec.End("done", now)
	waitDone(t, rec)
	// Every call above reached the file: a cut recording would allocate nothing too.
	if min := int64(120 * (64<<10 + 3*segSize + 101*40)); f.n < min {
		t.Fatalf("%d bytes written, want at least %d", f.n, min)
	}
}
