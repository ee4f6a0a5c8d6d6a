package recorder

import (
	"strconv"
	"testing"
	"time"

	"vncedge/rfb"
)

// BenchmarkFromVM is the loop-side cost of recording one VM chunk (the copy into the queue and
// the writer's wake-up), with a writer at memory speed so the disk does not enter the figure.
// Every MiB the timer stops until the writer has caught up: on a loaded machine the writer
// goroutine may not run for milliseconds, and the loop would then be measured taking fresh
// segments from the heap instead of the steady state where the disk keeps up.
func BenchmarkFromVM(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 10, 64} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			r, err := New(Config{Dir: b.TempDir(), QueueBytes: 256 << 20,
				Create: func(string) (File, error) { return &discardFile{}, nil }})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Shutdown(b.Context())
			rec, err := r.Start(Session{ID: "b", Target: "vm"})
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			rec.FromVM(serverSI.Append(nil), now)
			rec.SetPixelFormat(rfb.NoVNC32(), now)
			chunk := make([]byte, size)
			every := max(1, (1<<20)/size)
			for range 4 * every { // warm the free list
				rec.FromVM(chunk, now)
			}
			drain(rec)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				rec.FromVM(chunk, now)
				if i%every == every-1 {
					b.StopTimer()
					drain(rec)
					b.StartTimer()
				}
			}
			b.StopTimer()
			if rec.Failed() {
				b.Fatalf("the writer fell behind and the recording was cut (an overloaded machine?): %v", rec.Err())
			}
			rec.End("done", now)
			<-rec.Done()
		})
	}
}

// BenchmarkInput is the loop-side cost of recording one key or pointer event.
func BenchmarkInput(b *testing.B) {
	r, err := New(Config{Dir: b.TempDir(), QueueBytes: 64 << 20,
		Create: func(string) (File, error) { return &discardFile{}, nil }})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Shutdown(b.Context())
	rec, err := r.Start(Session{ID: "b", Target: "vm", Input: true})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i&1 == 0 {
			rec.Key(true, 65, now)
		} else {
			rec.Pointer(1, 100, 200, now)
		}
		if i%8192 == 8191 { // about 500 KiB of lines: see BenchmarkFromVM
			b.StopTimer()
			drain(rec)
			b.StartTimer()
		}
	}
	b.StopTimer()
	if rec.Failed() {
		b.Fatalf("cut: %v", rec.Err())
	}
	rec.End("done", now)
	<-rec.Done()
}
