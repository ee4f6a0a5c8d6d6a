package tlsio

import (
	"bytes"
	"crypto/tls"
	"io"
	"testing"
)

// handPair is a Conn server and a crypto/tls client over memory, handshake done, with the
// test goroutine as the loop: nothing runs behind the test's back, so allocations are the
// Conn's own.
type handPair struct {
	c  *Conn
	cl *tls.Conn
	m  *memConn
	sw *switchSink
}

// switchSink lets a test swap where the server's records go after the handshake.
type switchSink struct{ w io.Writer }

func (s *switchSink) Write(p []byte) (int, error) { return s.w.Write(p) }

// countSink counts bytes and records and keeps nothing.
// countSink counts the sink writes and the TLS records in them (a write may carry several).
type countSink struct {
	bytes, writes, records int
	hdr                    [5]byte // a record header split over writes
	hn                     int
	skip                   int // bytes left in the current record's body
}

func (s *countSink) Write(p []byte) (int, error) {
	s.bytes += len(p)
	s.writes++
	for b := p; len(b) > 0; {
		if s.skip > 0 {
			k := min(s.skip, len(b))
			s.skip -= k
			b = b[k:]
			continue
		}
		k := copy(s.hdr[s.hn:], b)
		s.hn += k
		b = b[k:]
		if s.hn == len(s.hdr) {
			s.records++
			s.skip, s.hn = int(s.hdr[3])<<8|int(s.hdr[4]), 0
		}
	}
	return len(p), nil
}

func newHandPair(t testing.TB, scfg *tls.Config, ccfg *tls.Config) *handPair {
	t.Helper()
	m := newMemConn()
	l := newTestLoop(t, nil)
	sw := &switchSink{w: m.sink()}
	c := NewServer(testPool(), scfg, sw, l.notify)
	t.Cleanup(func() { c.Close() })
	cl := tls.Client(m, ccfg)
	hs := make(chan error, 1)
	go func() { hs <- cl.Handshake() }()
	var in []byte
	for done := false; !done; {
		select {
		case b := <-m.toLoop:
			in = append(in, b...)
			used, err := c.Input(in)
			if err != nil {
				t.Fatal(err)
			}
			in = in[used:]
		case <-l.wake:
			var err error
			if done, err = c.Progress(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-hs; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Input(in); err != nil {
		t.Fatal(err)
	}
	return &handPair{c: c, cl: cl, m: m, sw: sw}
}

// records has the client encrypt n messages and returns the records, one per message (the
// messages are at most one record long).
func (h *handPair) records(t testing.TB, n int, msg []byte) [][]byte {
	t.Helper()
	recs := make([][]byte, 0, n)
	for range n {
		if _, err := h.cl.Write(msg); err != nil {
			t.Fatal(err)
		}
		var rec []byte
		for len(rec) == 0 || recordsIn(rec) == 0 {
			rec = append(rec, <-h.m.toLoop...)
		}
		recs = append(recs, rec)
	}
	return recs
}

// stream has the client encrypt msg once and returns every byte it wrote.
func (h *handPair) stream(t testing.TB, msg []byte) []byte {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := h.cl.Write(msg); errc <- err }()
	var out []byte
	for {
		select {
		case b := <-h.m.toLoop:
			out = append(out, b...)
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			for {
				select {
				case b := <-h.m.toLoop:
					out = append(out, b...)
				default:
					return out
				}
			}
		}
	}
}

// recordsIn counts the whole records at the start of b.
func recordsIn(b []byte) int {
	n := 0
	for {
		h, err := ParseRecordHeader(b)
		if err != nil || len(b) < RecordHeaderLen+h.Length {
			return n
		}
		b = b[RecordHeaderLen+h.Length:]
		n++
	}
}

// TestSteadyStateAllocs holds the per-message path to its allocation budget: Write and Writev
// allocate nothing; Input allocates exactly once per call that brings crypto/tls new records,
// inside crypto/tls (readFromUntil's &atLeastReader{} escapes through bytes.Buffer.ReadFrom;
// no caller of crypto/tls can avoid it), and nothing when no whole record is waiting.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race (sync.Pool drops items on purpose); run without -race")
	}
	ca, scfg := testServerConfig(t)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			h := newHandPair(t, scfg, clientConfig(ca, v.v))
			sink := &countSink{}
			h.sw.w = sink
			small := bytes.Repeat([]byte{'x'}, 200)
			big := bytes.Repeat([]byte{'y'}, 64<<10)
			hdr := []byte{0x82, 0x7e, 0x00, 0xc8}
			// Warm crypto/tls's record size up to full records, as on a long-running session.
			for range 10 {
				h.c.Write(big)
			}
			check := func(name string, want float64, f func()) {
				t.Helper()
				if got := testing.AllocsPerRun(200, f); got != want {
					t.Errorf("%s: %v allocations per run, want %v", name, got, want)
				}
			}
			check("Write 200 B", 0, func() { h.c.Write(small) })
			check("Write 64 KiB", 0, func() { h.c.Write(big) })
			check("Writev header+200 B", 0, func() { h.c.Writev([][]byte{hdr, small}) })
			check("Writev header+64 KiB", 0, func() { h.c.Writev([][]byte{hdr, big}) })

			recs := h.records(t, 202, small)
			i := 0
			check("Input one 200 B record", 1, func() {
				used, err := h.c.Input(recs[i])
				if err != nil || used != len(recs[i]) || h.c.Buffered() != len(small) {
					t.Fatalf("Input: used %d of %d, %d plaintext bytes, %v", used, len(recs[i]), h.c.Buffered(), err)
				}
				h.c.Discard(h.c.Buffered())
				i++
			})
			half := recs[201][:len(recs[201])/2]
			check("Input half a record", 0, func() {
				if used, err := h.c.Input(half); used != 0 || err != nil {
					t.Fatalf("Input of a partial record: used %d, %v", used, err)
				}
			})
			check("Input nothing", 0, func() { h.c.Input(nil) })
		})
	}
}
