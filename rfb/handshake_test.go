package rfb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// machine is what VMHandshake and BrowserHandshake have in common.
type machine interface {
	Feed([]byte) (int, error)
	AppendOutput([]byte) []byte
	Done() bool
}

// step is one turn of a scripted peer: the bytes it sends, and the bytes the machine must have
// answered once it has them all.
type step struct {
	send, expect string
}

// splitter cuts one step's bytes into the pieces that are fed.
type splitter func([]byte) [][]byte

func whole(b []byte) [][]byte { return [][]byte{b} }

func bytewise(b []byte) [][]byte {
	var out [][]byte
	for i := range b {
		out = append(out, b[i:i+1])
	}
	return out
}

func randomSplit(r *rand.Rand) splitter {
	return func(b []byte) [][]byte { return chunks(r, b, 1+r.IntN(8)) }
}

// play runs the script against m: after each step the output so far must be exactly what the
// steps up to it expect. It returns the first error and the bytes consumed of the last piece.
func play(t *testing.T, name string, m machine, initial string, steps []step, split splitter) error {
	t.Helper()
	out := m.AppendOutput(nil)
	want := initial
	if string(out) != want {
		t.Fatalf("%s: initial output %q, want %q", name, out, want)
	}
	for i, st := range steps {
		for _, p := range split([]byte(st.send)) {
			n, err := m.Feed(p)
			out = m.AppendOutput(out)
			if err != nil {
				return err
			}
			if n != len(p) {
				t.Fatalf("%s step %d: consumed %d of %d bytes", name, i, n, len(p))
			}
		}
		want += st.expect
		if string(out) != want {
			t.Fatalf("%s step %d: output %q, want %q", name, i, out, want)
		}
	}
	return nil
}

var testChallenge = func() (c [ChallengeLen]byte) {
	for i := range c {
		c[i] = byte(i * 7)
	}
	return c
}()

func resp(pw string) string {
	r := VNCAuthResponse([]byte(pw), testChallenge)
	return string(r[:])
}

func u32(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }

func reason(s string) string { return u32(uint32(len(s))) + s }

const v38 = "RFB 003.008\n"

// vmScripts are servers the VM handshake must complete with.
var vmScripts = []struct {
	name     string
	password string
	tls      bool
	steps    []step
	sec      SecurityType
	sub      uint32
	ver      Version
}{
	{"3.8 None", "", false, []step{{v38, v38}, {"\x01\x01", "\x01"}, {u32(0), ""}}, SecNone, 0, V38},
	{"3.8 None preferred to VNC auth", "pw", false, []step{{v38, v38}, {"\x02\x02\x01", "\x01"}, {u32(0), ""}}, SecNone, 0, V38},
	{"3.8 VNC auth", "secret", false, []step{{v38, v38}, {"\x02\x10\x02", "\x02"}, {string(testChallenge[:]), resp("secret")}, {u32(0), ""}}, SecVNCAuth, 0, V38},
	{"3.7 None", "", false, []step{{"RFB 003.007\n", "RFB 003.007\n"}, {"\x01\x01", "\x01"}}, SecNone, 0, V37},
	{"3.7 VNC auth", "pw", false, []step{{"RFB 003.007\n", "RFB 003.007\n"}, {"\x01\x02", "\x02"}, {string(testChallenge[:]), resp("pw")}, {u32(0), ""}}, SecVNCAuth, 0, V37},
	{"3.3 None", "", false, []step{{"RFB 003.003\n", "RFB 003.003\n"}, {u32(1), ""}}, SecNone, 0, V33},
	{"3.3 VNC auth", "pw", false, []step{{"RFB 003.003\n", "RFB 003.003\n"}, {u32(2), ""}, {string(testChallenge[:]), resp("pw")}, {u32(0), ""}}, SecVNCAuth, 0, V33},
	{"UltraVNC 3.6", "", false, []step{{"RFB 003.006\n", "RFB 003.003\n"}, {u32(1), ""}}, SecNone, 0, V33},
	{"Apple 3.889", "pw", false, []step{{"RFB 003.889\n", v38}, {"\x03\x1e\x23\x02", "\x02"}, {string(testChallenge[:]), resp("pw")}, {u32(0), ""}}, SecVNCAuth, 0, V38},
	{"RealVNC 5.0", "", false, []step{{"RFB 005.000\n", v38}, {"\x02\x05\x01", "\x01"}, {u32(0), ""}}, SecNone, 0, V38},
	{"VeNCrypt VncAuth", "pw", false, []step{{v38, v38}, {"\x01\x13", "\x13"}, {"\x00\x02", "\x00\x02"},
		{"\x00\x02" + u32(VeNCryptX509Vnc) + u32(VeNCryptVNCAuth), u32(VeNCryptVNCAuth)},
		{string(testChallenge[:]), resp("pw")}, {u32(0), ""}}, SecVeNCrypt, VeNCryptVNCAuth, V38},
	{"VeNCrypt None in 3.8", "", false, []step{{v38, v38}, {"\x01\x13", "\x13"}, {"\x00\x02", "\x00\x02"},
		{"\x00\x01" + u32(VeNCryptNone), u32(VeNCryptNone)}, {u32(0), ""}}, SecVeNCrypt, VeNCryptNone, V38},
	{"VeNCrypt None in 3.7", "", false, []step{{"RFB 003.007\n", "RFB 003.007\n"}, {"\x01\x13", "\x13"}, {"\x00\x03", "\x00\x02"},
		{"\x00\x01" + u32(VeNCryptNone), u32(VeNCryptNone)}}, SecVeNCrypt, VeNCryptNone, V37},
}

func TestVMHandshake(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, sc := range vmScripts {
		for _, sp := range []struct {
			name  string
			split splitter
		}{{"whole", whole}, {"bytewise", bytewise}, {"random", randomSplit(r)}} {
			h := NewVMHandshake(VMConfig{Password: []byte(sc.password), VeNCryptTLS: sc.tls})
			if err := play(t, sc.name+"/"+sp.name, &h, "", sc.steps, sp.split); err != nil {
				t.Fatalf("%s/%s: %v", sc.name, sp.name, err)
			}
			if !h.Done() || h.Err() != nil || h.Pending() != 0 {
				t.Fatalf("%s/%s: done %v err %v pending %d", sc.name, sp.name, h.Done(), h.Err(), h.Pending())
			}
			if sec, sub := h.Security(); sec != sc.sec || sub != sc.sub || h.Version() != sc.ver {
				t.Fatalf("%s: security %v/%d version %v", sc.name, sec, sub, h.Version())
			}
			if h.key != [VNCAuthKeyLen]byte{} {
				t.Fatalf("%s: DES key not wiped", sc.name)
			}
			// After Done, nothing more is the handshake's: ServerInit is the caller's.
			if n, err := h.Feed([]byte("more")); n != 0 || err != nil {
				t.Fatalf("%s: fed after done: %d %v", sc.name, n, err)
			}
		}
		// All the server's bytes at once: it stops right after the handshake.
		var all, want strings.Builder
		for _, st := range sc.steps {
			all.WriteString(st.send)
			want.WriteString(st.expect)
		}
		h := NewVMHandshake(VMConfig{Password: []byte(sc.password), VeNCryptTLS: sc.tls})
		in := all.String() + "\x00\x01trailing"
		n, err := h.Feed([]byte(in))
		if err != nil || n != all.Len() || !h.Done() || string(h.AppendOutput(nil)) != want.String() {
			t.Fatalf("%s at once: n %d of %d, err %v", sc.name, n, all.Len(), err)
		}
	}
}

func TestVMHandshakeTLS(t *testing.T) {
	for _, tc := range []struct {
		name, password string
		sub            uint32
		after          []step
	}{
		{"X509Vnc", "pw", VeNCryptX509Vnc, []step{{string(testChallenge[:]), resp("pw")}, {u32(0), ""}}},
		{"X509None", "", VeNCryptX509None, []step{{u32(0), ""}}},
	} {
		h := NewVMHandshake(VMConfig{Password: []byte(tc.password), VeNCryptTLS: true})
		// VeNCrypt is preferred over None when TLS is allowed.
		steps := []step{{v38, v38}, {"\x02\x01\x13", "\x13"}, {"\x00\x02", "\x00\x02"},
			{"\x00\x04" + u32(VeNCryptTLSVnc) + u32(VeNCryptVNCAuth) + u32(VeNCryptX509Vnc) + u32(VeNCryptX509None), u32(tc.sub)}}
		if err := play(t, tc.name, &h, "", steps, bytewise); err != nil {
			t.Fatal(err)
		}
		// The TLS ack; what follows it is the TLS handshake, not for the machine.
		n, err := h.Feed([]byte("\x01\x16\x03\x01"))
		if err != nil || n != 1 || !h.NeedTLS() || h.Done() {
			t.Fatalf("%s: ack: n %d err %v needTLS %v", tc.name, n, err, h.NeedTLS())
		}
		if n, _ := h.Feed([]byte("\x16\x03")); n != 0 {
			t.Fatalf("%s: consumed %d TLS bytes", tc.name, n)
		}
		h.TLSStarted()
		if err := play(t, tc.name+" after TLS", &h, "", tc.after, whole); err != nil || !h.Done() {
			t.Fatalf("%s: %v done %v", tc.name, err, h.Done())
		}
	}
}

func TestVMHandshakeErrors(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		name     string
		password string
		in       string
		want     error
		reason   string
		offered  []SecurityType
		detail   string
		errText  string
	}{
		{name: "HTTP", in: "HTTP/1.1 400 Bad Request\r\n", want: ErrNotRFB, errText: "looks like an HTTP response"},
		{name: "TLS", in: "\x16\x03\x01\x00\xa5\x01", want: ErrNotRFB, errText: "looks like TLS"},
		{name: "SSH", in: "SSH-2.0-OpenSSH_9.2\r\n", want: ErrNotRFB, errText: "looks like an SSH banner"},
		{name: "bad digit", in: "RFB 003.00x\n", want: ErrNotRFB},
		{name: "no newline", in: "RFB 003.008\r", want: ErrNotRFB},
		{name: "repeater", in: "RFB 000.000\n", want: ErrUnsupportedVersion, errText: "server version 0.0"},
		{name: "3.2", in: "RFB 003.002\n", want: ErrUnsupportedVersion},
		{name: "refused 3.8", in: v38 + "\x00" + reason("Too many security failures"), want: ErrRefused, reason: "Too many security failures"},
		{name: "refused no reason", in: v38 + "\x00" + u32(0), want: ErrRefused},
		{name: "refused 3.3", in: "RFB 003.003\n" + u32(0) + reason("go away"), want: ErrRefused, reason: "go away"},
		{name: "wrong password 3.8", password: "pw", in: v38 + "\x01\x02" + string(testChallenge[:]) + u32(1) + reason("Authentication failure"),
			want: ErrAuthFailed, reason: "Authentication failure"},
		{name: "wrong password 3.7", password: "pw", in: "RFB 003.007\n\x01\x02" + string(testChallenge[:]) + u32(1), want: ErrAuthFailed},
		{name: "wrong password 3.3", password: "pw", in: "RFB 003.003\n" + u32(2) + string(testChallenge[:]) + u32(1), want: ErrAuthFailed},
		{name: "too many attempts", password: "pw", in: v38 + "\x01\x02" + string(testChallenge[:]) + u32(2) + reason("later"), want: ErrAuthFailed, reason: "later"},
		{name: "long reason", password: "pw", in: v38 + "\x01\x02" + string(testChallenge[:]) + u32(1) + reason(long),
			want: ErrAuthFailed, reason: long[:MaxKeptReason] + "..."},
		{name: "no password", in: v38 + "\x01\x02", want: ErrNoUsableType, offered: []SecurityType{SecVNCAuth}, detail: "none is configured"},
		{name: "no password 3.3", in: "RFB 003.003\n" + u32(2), want: ErrNoUsableType, offered: []SecurityType{SecVNCAuth}, detail: "none is configured"},
		{name: "unknown types", password: "pw", in: v38 + "\x03\x10\x1e\x71", want: ErrNoUsableType,
			offered: []SecurityType{SecTight, SecARD, SecMSLogonII}, errText: "Tight (16), Apple Remote Desktop (30), MS Logon II (113)"},
		{name: "3.3 unknown type", in: "RFB 003.003\n" + u32(0x10000), want: ErrNoUsableType, detail: "65536"},
		{name: "VeNCrypt 0.1", in: v38 + "\x01\x13\x00\x01", want: ErrVeNCrypt, detail: "VeNCrypt 0.1"},
		{name: "VeNCrypt nack", in: v38 + "\x01\x13\x00\x02\x01", want: ErrVeNCrypt},
		{name: "VeNCrypt TLS only", password: "pw", in: v38 + "\x01\x13\x00\x02\x00\x02" + u32(VeNCryptTLSVnc) + u32(VeNCryptX509Vnc),
			want: ErrNoUsableType, detail: "TLS, which is not enabled", errText: "TLSVnc (258), X509Vnc (261)"},
		{name: "VeNCrypt anonymous TLS", password: "pw", in: v38 + "\x01\x13\x00\x02\x00\x01" + u32(VeNCryptTLSVnc),
			want: ErrNoUsableType, detail: "anonymous TLS"},
		{name: "VeNCrypt empty", in: v38 + "\x01\x13\x00\x02\x00\x00", want: ErrNoUsableType},
		{name: "VeNCrypt no password", in: v38 + "\x01\x13\x00\x02\x00\x01" + u32(VeNCryptVNCAuth), want: ErrNoUsableType, detail: "none is configured"},
	} {
		for i, split := range []splitter{whole, bytewise} {
			h := NewVMHandshake(VMConfig{Password: []byte(tc.password)})
			var err error
			for _, p := range split([]byte(tc.in)) {
				if _, err = h.Feed(p); err != nil {
					break
				}
			}
			var he *HandshakeError
			if !errors.Is(err, tc.want) || !errors.As(err, &he) {
				t.Fatalf("%s: err %v, want %v", tc.name, err, tc.want)
			}
			// Fed one byte at a time, a peer that is not RFB shows only its first byte.
			if he.Reason != tc.reason || !strings.Contains(he.Detail, tc.detail) || i == 0 && !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("%s: reason %q detail %q text %q", tc.name, he.Reason, he.Detail, err)
			}
			if tc.offered != nil && !equalTypes(he.Offered, tc.offered) {
				t.Fatalf("%s: offered %v", tc.name, he.Offered)
			}
			if _, err2 := h.Feed([]byte("x")); err2 != err || h.Err() != err || h.Done() {
				t.Fatalf("%s: error not sticky", tc.name)
			}
			if h.key != [VNCAuthKeyLen]byte{} {
				t.Fatalf("%s: DES key not wiped", tc.name)
			}
		}
	}
	// A long reason is read only as far as it is kept.
	h := NewVMHandshake(VMConfig{Password: []byte("pw")})
	in := v38 + "\x01\x02" + string(testChallenge[:]) + u32(1) + reason(long)
	n, _ := h.Feed([]byte(in))
	if want := len(v38) + 2 + ChallengeLen + 4 + 4 + MaxKeptReason; n != want {
		t.Fatalf("consumed %d, want %d", n, want)
	}
	// A refused TLS sub-type.
	h = NewVMHandshake(VMConfig{VeNCryptTLS: true})
	_, err := h.Feed([]byte(v38 + "\x01\x13\x00\x02\x00\x01" + u32(VeNCryptX509None) + "\x00"))
	if !errors.Is(err, ErrVeNCrypt) || !strings.Contains(err.Error(), "X509None") {
		t.Fatalf("refused TLS sub-type: %v", err)
	}
}

func equalTypes(a, b []SecurityType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

const noVNCHello = v38 // what noVNC answers to a 3.8 server

func TestBrowserHandshake(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tc := range []struct {
		name  string
		steps []step
		ver   Version
	}{
		{"noVNC 3.8", []step{{noVNCHello, "\x01\x01"}, {"\x01", u32(0)}}, V38},
		{"3.7", []step{{"RFB 003.007\n", "\x01\x01"}, {"\x01", ""}}, V37},
		{"3.3", []step{{"RFB 003.003\n", u32(1)}}, V33},
		{"3.5 is 3.3", []step{{"RFB 003.005\n", u32(1)}}, V33},
		{"3.889 is 3.8", []step{{"RFB 003.889\n", "\x01\x01"}, {"\x01", u32(0)}}, V38},
	} {
		for _, split := range []splitter{whole, bytewise, randomSplit(r)} {
			h := NewBrowserHandshake()
			if err := play(t, tc.name, &h, v38, tc.steps, split); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if !h.Done() || h.Version() != tc.ver || h.Refusing() || h.Pending() != 0 {
				t.Fatalf("%s: done %v version %v", tc.name, h.Done(), h.Version())
			}
		}
	}
	// A client that sends its version, choice and ClientInit in one piece: the ClientInit and
	// what follows stay the caller's.
	h := NewBrowserHandshake()
	h.AppendOutput(nil)
	in := []byte(noVNCHello + "\x01" + "\x00" + "\x03\x00")
	n, err := h.Feed(in)
	if err != nil || n != 13 || !h.Done() || string(h.AppendOutput(nil)) != "\x01\x01"+u32(0) {
		t.Fatalf("pipelined: n %d err %v", n, err)
	}
	if !ForceShared(in[n:]) || in[n] != 1 {
		t.Fatal("ForceShared on the ClientInit")
	}
}

func TestBrowserFailure(t *testing.T) {
	const why = "unknown or expired link"
	for _, tc := range []struct {
		name, client, want string
	}{
		{"3.8", noVNCHello, "\x00" + reason(why)},
		{"3.7", "RFB 003.007\n", "\x00" + reason(why)},
		{"3.3", "RFB 003.003\n", u32(0) + reason(why)},
	} {
		for _, split := range []splitter{whole, bytewise} {
			h := NewBrowserFailure(why)
			if err := play(t, tc.name, &h, v38, []step{{tc.client, tc.want}}, split); err != nil {
				t.Fatal(err)
			}
			if !h.Done() || !h.Refusing() {
				t.Fatalf("%s: done %v", tc.name, h.Done())
			}
		}
	}
	// The refusal a 3.8 client reads is what ParseSecurityTypes and ParseReason decode.
	h := NewBrowserFailure(why)
	h.AppendOutput(nil)
	h.Feed([]byte(noVNCHello))
	if h.Pending() != 1+4+len(why) {
		t.Fatalf("pending %d", h.Pending())
	}
	out := h.AppendOutput(nil)
	types, n, err := ParseSecurityTypes(out)
	if err != nil || len(types) != 0 {
		t.Fatal(types, err)
	}
	if r, _, err := ParseReason(out[n:]); err != nil || string(r) != why {
		t.Fatalf("reason %q %v", r, err)
	}
}

func TestBrowserHandshakeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
		output   string // sent after the server's version
		errText  string
	}{
		{"HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", ErrNotRFB, "", "looks like an HTTP request"},
		{"TLS", "\x16\x03\x01\x02\x00", ErrNotRFB, "", "looks like TLS"},
		{"version 4", "RFB 004.000\n", ErrUnsupportedVersion, "", "client version 4.0"},
		{"wrong type 3.8", noVNCHello + "\x02", ErrProtocol, "\x01\x01" + u32(1) + reason("security type not offered"), "chose security type 2"},
		{"wrong type 3.7", "RFB 003.007\n\x10", ErrProtocol, "\x01\x01" + u32(1), ""},
	} {
		for i, split := range []splitter{whole, bytewise} {
			h := NewBrowserHandshake()
			out := h.AppendOutput(nil)
			var err error
			for _, p := range split([]byte(tc.in)) {
				_, err = h.Feed(p)
				out = h.AppendOutput(out)
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) || i == 0 && !strings.Contains(err.Error(), tc.errText) {
				t.Fatalf("%s: err %v", tc.name, err)
			}
			if string(out) != v38+tc.output {
				t.Fatalf("%s: output %q", tc.name, out)
			}
			if _, err2 := h.Feed([]byte("x")); err2 != err || h.Err() != err || h.Done() {
				t.Fatalf("%s: not sticky", tc.name)
			}
		}
	}
}

// TestHandshakesTogether runs the VM handshake (no password) as the client of the browser
// handshake: the proxy's own two halves agree with each other in every version.
func TestHandshakesTogether(t *testing.T) {
	for _, fail := range []bool{false, true} {
		srv := NewBrowserHandshake()
		if fail {
			srv = NewBrowserFailure("this VM is not reachable right now")
		}
		cli := NewVMHandshake(VMConfig{})
		var toCli, toSrv []byte
		toCli = srv.AppendOutput(toCli)
		for range 10 {
			n, cerr := cli.Feed(toCli)
			toCli = toCli[n:]
			toSrv = cli.AppendOutput(toSrv)
			m, serr := srv.Feed(toSrv)
			toSrv = toSrv[m:]
			toCli = srv.AppendOutput(toCli)
			if cerr != nil || serr != nil {
				if !fail || !errors.Is(cerr, ErrRefused) || !strings.Contains(cerr.Error(), "not reachable") {
					t.Fatalf("fail=%v: client %v, server %v", fail, cerr, serr)
				}
				return
			}
			if cli.Done() && srv.Done() && !fail {
				break
			}
		}
		if fail || !cli.Done() || !srv.Done() || len(toCli)+len(toSrv) != 0 {
			t.Fatalf("fail=%v: client done %v server done %v", fail, cli.Done(), srv.Done())
		}
	}
}

// FuzzVMHandshake: any server bytes, split anyhow, never panic; a split feed behaves exactly as
// a whole one (same output, same consumption, same outcome); the output stays bounded.
func FuzzVMHandshake(f *testing.F) {
	for _, sc := range vmScripts {
		var b strings.Builder
		for _, st := range sc.steps {
			b.WriteString(st.send)
		}
		f.Add([]byte(b.String()), []byte(sc.password), sc.tls, uint64(len(sc.name)))
	}
	f.Add([]byte(v38+"\x00"+reason("no")), []byte{}, false, uint64(1))
	f.Add([]byte("HTTP/1.0 200 OK\r\n"), []byte("x"), false, uint64(2))
	f.Add([]byte(v38+"\x01\x13\x00\x02\x00\x01"+u32(VeNCryptX509Vnc)+"\x01"), []byte("pw"), true, uint64(3))
	f.Fuzz(func(t *testing.T, data, password []byte, tls bool, seed uint64) {
		cfg := VMConfig{Password: password, VeNCryptTLS: tls}
		a := NewVMHandshake(cfg)
		na, erra := a.Feed(data)
		outa := a.AppendOutput(nil)
		b := NewVMHandshake(cfg)
		r := rand.New(rand.NewPCG(seed, 1))
		var nb int
		var errb error
		var outb []byte
		for _, p := range chunks(r, data, 1+r.IntN(16)) {
			var k int
			k, errb = b.Feed(p)
			nb += k
			outb = b.AppendOutput(outb)
			if errb != nil || k < len(p) {
				break
			}
		}
		if !bytes.Equal(outa, outb) || (erra == nil) != (errb == nil) || a.Done() != b.Done() || a.NeedTLS() != b.NeedTLS() {
			t.Fatalf("whole: %q %v done %v; split: %q %v done %v", outa, erra, a.Done(), outb, errb, b.Done())
		}
		if erra == nil && na != nb {
			t.Fatalf("consumed %d whole, %d split", na, nb)
		}
		if len(outa) > 12+1+2+4+ChallengeLen {
			t.Fatalf("output of %d bytes", len(outa))
		}
		if erra != nil && erra.Error() == "" {
			t.Fatal("empty error text")
		}
	})
}

// FuzzBrowserHandshake: any client bytes never panic, are consumed 13 at most, and split and
// whole feeds agree.
func FuzzBrowserHandshake(f *testing.F) {
	f.Add([]byte(noVNCHello+"\x01\x01"), false, uint64(1))
	f.Add([]byte("RFB 003.003\n"), true, uint64(2))
	f.Add([]byte("RFB 003.007\n\x02"), false, uint64(3))
	f.Add([]byte("GET /websockify HTTP/1.1\r\n"), false, uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, fail bool, seed uint64) {
		mk := func() BrowserHandshake {
			if fail {
				return NewBrowserFailure("nope")
			}
			return NewBrowserHandshake()
		}
		a := mk()
		na, erra := a.Feed(data)
		outa := a.AppendOutput(nil)
		b := mk()
		r := rand.New(rand.NewPCG(seed, 2))
		var nb int
		var errb error
		outb := b.AppendOutput(nil)
		for _, p := range chunks(r, data, 1+r.IntN(16)) {
			var k int
			k, errb = b.Feed(p)
			nb += k
			outb = b.AppendOutput(outb)
			if errb != nil || k < len(p) {
				break
			}
		}
		if !bytes.Equal(outa, outb) || (erra == nil) != (errb == nil) || a.Done() != b.Done() {
			t.Fatalf("whole: %q %v; split: %q %v", outa, erra, outb, errb)
		}
		if erra == nil && (na != nb || na > 13) {
			t.Fatalf("consumed %d whole, %d split", na, nb)
		}
		if len(outa) > 12+2+4+4+len("security type not offered") {
			t.Fatalf("output of %d bytes", len(outa))
		}
	})
}
