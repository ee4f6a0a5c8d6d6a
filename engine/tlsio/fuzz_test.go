package tlsio

import (
	"bytes"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func FuzzParseRecordHeader(f *testing.F) {
	f.Add([]byte{22, 3, 1, 0, 200})
	f.Add([]byte{23, 3, 3, 0x48, 0x01})
	f.Add([]byte{0x80, 0x2e, 0x01, 0x03, 0x01})
	f.Add([]byte("GET /"))
	f.Add([]byte{21, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseRecordHeader(b)
		if len(b) < RecordHeaderLen {
			if err != ErrShort || h != (RecordHeader{}) {
				t.Fatalf("% x: %+v, %v; want ErrShort", b, h, err)
			}
			return
		}
		want := RecordHeader{Type: b[0], Version: uint16(b[1])<<8 | uint16(b[2]), Length: int(b[3])<<8 | int(b[4])}
		if h != want {
			t.Fatalf("% x: %+v, want %+v", b, h, want)
		}
		valid := b[0] >= 20 && b[0] <= 23 && b[1] == 3
		switch {
		case !valid && err != ErrNotTLS,
			valid && h.Length > MaxCiphertext && err != ErrRecordOverflow,
			valid && h.Length <= MaxCiphertext && err != nil:
			t.Fatalf("% x: %v", b, err)
		}
	})
}

// addHellos seeds a fuzz target with real ClientHellos, whole, spread over records and cut.
func addHellos(f *testing.F, add func(b []byte)) {
	for _, v := range versions {
		hello := captureHello(f, &tls.Config{ServerName: testHost, MinVersion: v.v, MaxVersion: v.v, NextProtos: []string{"http/1.1"}})
		add(hello)
		add(hello[:len(hello)-1])
		add(refragment(f, hello, 3, 100))
		add(append(bytes.Clone(hello), 23, 3, 3, 0, 1, 0))
	}
	add([]byte("GET / HTTP/1.1\r\n\r\n"))
	add([]byte{0x80, 0x2e, 0x01})
	add([]byte{22, 3, 1, 0, 0})
	add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
}

func FuzzScanClientHello(f *testing.F) {
	addHellos(f, func(b []byte) { f.Add(b, uint16(0)) })
	f.Fuzz(func(t *testing.T, b []byte, limit uint16) {
		max := int(limit)
		end, err := ScanClientHello(b, max)
		if end < 0 || end > len(b) || (err == nil) != (end > 0) {
			t.Fatalf("end %d of %d with %v", end, len(b), err)
		}
		switch err {
		case nil:
			// The hello ends where its last record does: exactly that prefix is complete,
			// one byte less is not.
			if e2, err2 := ScanClientHello(b[:end], max); e2 != end || err2 != nil {
				t.Fatalf("prefix %d: %d, %v", end, e2, err2)
			}
			if _, err2 := ScanClientHello(b[:end-1], max); err2 != ErrShort {
				t.Fatalf("prefix %d: %v, want ErrShort", end-1, err2)
			}
		case ErrShort:
			if _, err2 := ScanClientHello(b[:len(b)/2], max); err2 != ErrShort {
				t.Fatalf("half of an incomplete hello: %v", err2)
			}
		default:
			// A refusal depends only on bytes already seen: more bytes never undo it. (Which
			// kind of not-TLS it is may sharpen: "G" looks like HTTP, "G\x16" does not.)
			_, err2 := ScanClientHello(append(bytes.Clone(b), 22, 3, 3, 0, 1, 1), max)
			if err2 != err && !(errors.Is(err, ErrNotTLS) && errors.Is(err2, ErrNotTLS)) {
				t.Fatalf("refusal %v changed to %v with more bytes", err, err2)
			}
			if !errors.Is(err, ErrNotTLS) && err != ErrBadHello && err != ErrHelloTooLarge && err != ErrRecordOverflow {
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}

func FuzzRecordStream(f *testing.F) {
	f.Add([]byte{23, 3, 3, 0, 2, 1, 2, 23, 3, 3, 0, 0, 21, 3, 3, 0, 2}, uint16(3))
	f.Add([]byte{23, 3, 3, 0xff, 0xff, 1, 2, 3}, uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		k := int(cut) % (len(b) + 1)
		var whole, parts recordStream
		whole.scan(b)
		parts.scan(b[:k])
		parts.scan(b[k:])
		if whole != parts {
			t.Fatalf("whole %+v, cut at %d %+v", whole, k, parts)
		}
		if whole.end > whole.pos || whole.pos != int64(len(b)) || whole.complete > int64(len(b)/RecordHeaderLen) {
			t.Fatalf("inconsistent: %+v for %d bytes", whole, len(b))
		}
		if !whole.broken && whole.complete != int64(recordsIn(b)) {
			t.Fatalf("%d complete records, recordsIn says %d", whole.complete, recordsIn(b))
		}
	})
}

// FuzzServerInput feeds arbitrary bytes, cut into arbitrary reads, to a server Conn before
// and after a handshake: it must never panic, never hold more than its bounds, and always end
// with an error or a clean state.
func FuzzServerInput(f *testing.F) {
	addHellos(f, func(b []byte) { f.Add(b, false, uint16(7)) })
	f.Add([]byte{23, 3, 3, 0, 30, 1, 2, 3}, true, uint16(2))
	f.Add(bytes.Repeat([]byte{23, 3, 3, 0, 0}, 40), true, uint16(5))
	f.Add([]byte{21, 3, 3, 0, 2, 1, 0}, true, uint16(1))
	ca, scfg := testServerConfig(f)
	cfg := DefaultConfig()
	cfg.HandshakeWorkers, cfg.HandshakeQueue = 2, 2
	cfg.HandshakeTimeout = 2 * time.Second
	cfg.MaxHandshakeInput = MaxRecord
	f.Fuzz(func(t *testing.T, data []byte, established bool, step uint16) {
		p := NewPool(cfg)
		var c *Conn
		if established {
			h := newHandPair(t, scfg, clientConfig(ca, tls.VersionTLS13))
			h.sw.w = &countSink{}
			c = h.c
		} else {
			c = NewServer(p, scfg, &countSink{}, func() {})
		}
		defer c.Close()
		var in []byte
		n := 1 + int(step)%97
		for len(data) > 0 {
			k := min(n, len(data))
			in = append(in, data[:k]...)
			data = data[k:]
			used, err := c.Input(in)
			if used < 0 || used > len(in) {
				t.Fatalf("used %d of %d", used, len(in))
			}
			in = in[used:]
			c.w.mu.Lock()
			held := c.w.inLen()
			c.w.mu.Unlock()
			if c.Buffered() > bufSize || held > cfg.MaxHandshakeInput {
				t.Fatalf("holds %d plaintext and %d input bytes", c.Buffered(), held)
			}
			c.Discard(c.Buffered())
			if err != nil {
				if _, again := c.Input(in); again == nil {
					t.Fatalf("error %v not sticky", err)
				}
				break
			}
		}
		c.EOF()
		c.Close()
		// A hello that happened to be complete started a worker: it must end now.
		deadline := time.Now().Add(testWait)
		for p.Stats().Running > 0 {
			if time.Now().After(deadline) {
				t.Fatal("a handshake worker outlived its connection")
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// FuzzReadSchedule drives an established Conn the way a loop may: messages of any size from the
// peer, arriving in any cuts, offered whole, in part or not at all (Input(nil)), and taken by
// the application a little at a time. Every byte must come out once, in order, and the Conn's
// record accounting must never overshoot (which would strand records inside crypto/tls).
func FuzzReadSchedule(f *testing.F) {
	f.Add(uint64(1), uint8(20), false)
	f.Add(uint64(2), uint8(60), true)
	f.Add(uint64(3), uint8(5), false)
	ca, scfg := testServerConfig(f)
	f.Fuzz(func(t *testing.T, seed uint64, steps uint8, tls12 bool) {
		r := rand.New(rand.NewPCG(seed, seed>>7|1))
		v := uint16(tls.VersionTLS13)
		if tls12 {
			v = tls.VersionTLS12
		}
		h := newHandPair(t, scfg, clientConfig(ca, v))
		var want, got, flight, buffered []byte // sent, received, in flight, arrived (gnet's buffer)
		counter := byte(0)
		check := func() {
			h.c.w.mu.Lock()
			defer h.c.w.mu.Unlock()
			if h.c.consumed > h.c.w.rs.complete {
				t.Fatalf("consumed %d of %d records", h.c.consumed, h.c.w.rs.complete)
			}
		}
		input := func(offer []byte) {
			used, err := h.c.Input(offer)
			if err != nil {
				t.Fatal(err)
			}
			buffered = buffered[used:]
			check()
		}
		take := func(n int) {
			n = min(n, h.c.Buffered())
			got = append(got, h.c.Peek()[:n]...)
			h.c.Discard(n)
		}
		for range int(steps) {
			switch r.IntN(6) {
			case 0: // the peer sends a message
				msg := make([]byte, 1+r.IntN(40000))
				for i := range msg {
					msg[i] = counter
					counter++
				}
				want = append(want, msg...)
				flight = append(flight, h.stream(t, msg)...)
			case 1: // some bytes arrive
				k := r.IntN(len(flight) + 1)
				buffered = append(buffered, flight[:k]...)
				flight = flight[k:]
				input(buffered)
			case 2:
				input(nil)
			case 3:
				input(buffered[:r.IntN(len(buffered)+1)])
			case 4:
				take(r.IntN(20000))
			case 5:
				input(buffered)
			}
		}
		buffered = append(buffered, flight...)
		for range 1000 {
			left, had := len(buffered), len(got)
			input(buffered)
			take(h.c.Buffered())
			if len(buffered) == left && len(got) == had {
				break
			}
		}
		if len(buffered) != 0 || !bytes.Equal(got, want) {
			t.Fatalf("got %d of %d bytes (equal prefix: %v), %d ciphertext bytes unused", len(got), len(want), bytes.HasPrefix(want, got), len(buffered))
		}
	})
}
