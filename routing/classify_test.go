package routing

import (
	"net/http"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	r := newRouter(t, Config{
		Allow:   []string{"192.168.100.0/24:5901,5902", "[fd00::/8]:5901", "10.0.0.0/8:5900-5999"},
		Sources: []TokenSource{&mapSource{name: "m"}},
	})
	type want struct {
		kind   Kind
		target string
		token  string
		status int
		err    error
	}
	path := func(target string) want { return want{kind: KindPath, target: target} }
	token := func(tok string) want { return want{kind: KindToken, token: tok} }
	fail := func(status int, err error) want { return want{status: status, err: err} }
	cases := []struct {
		uri  string
		want want
	}{
		// path routes
		{"/vnc/192.168.100.3:5901", path("192.168.100.3:5901")},
		{"/vnc/192.168.100.3", path("192.168.100.3:5901")},
		{"/vnc/192.168.100.3:5902?x=1", path("192.168.100.3:5902")},
		{"/vnc/192.168.100.3:5901/", path("192.168.100.3:5901")},
		{"/vnc/192.168.100.3/", path("192.168.100.3:5901")},
		{"/vnc/192.168.100.3:05902", path("192.168.100.3:5902")},
		{"/vnc/192.168.100.3%3A5902", path("192.168.100.3:5902")},
		{"/vnc%2F192.168.100.3", path("192.168.100.3:5901")},
		{"/vnc/10.1.2.3:5999#frag", path("10.1.2.3:5999")},
		{"http://proxy.example:6080/vnc/10.1.2.3:5950", path("10.1.2.3:5950")},
		{"/vnc/[fd00::1]:5901", path("[fd00::1]:5901")},
		{"/vnc/[fd00::1]", path("[fd00::1]:5901")},
		{"/vnc/%5Bfd00::1%5D:5901", path("[fd00::1]:5901")},
		{"/vnc/[::ffff:192.168.100.3]:5901", path("192.168.100.3:5901")},
		{"/vnc/192.168.100.3:5903", fail(403, ErrForbidden)},
		{"/vnc/192.168.101.3:5901", fail(403, ErrForbidden)},
		{"/vnc/127.0.0.1:5901", fail(403, ErrForbidden)},
		{"/vnc/[::ffff:127.0.0.1]:5901", fail(403, ErrForbidden)},
		{"/vnc/169.254.169.254:5901", fail(403, ErrForbidden)},
		{"/vnc/192.168.100.3:0", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:65536", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:99999999999999999999", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:+5901", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:-1", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:59 01", fail(400, ErrBadTarget)},
		{"/vnc/", fail(400, ErrBadTarget)},
		{"/vnc//", fail(400, ErrBadTarget)},
		{"/vnc/vm1.lan:5901", fail(400, ErrBadTarget)},
		{"/vnc/localhost", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.003", fail(400, ErrBadTarget)},
		{"/vnc/fd00::1", fail(400, ErrBadTarget)},
		{"/vnc/fd00::1:5901", fail(400, ErrBadTarget)},
		{"/vnc/[fd00::1", fail(400, ErrBadTarget)},
		{"/vnc/[fd00::1]x", fail(400, ErrBadTarget)},
		{"/vnc/[fd00::1]:", fail(400, ErrBadTarget)},
		{"/vnc/[192.168.100.3]:5901", fail(400, ErrBadTarget)},
		{"/vnc/[fe80::1%25eth0]:5901", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:5901/extra", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3:5901//", fail(400, ErrBadTarget)},
		{"/vnc/%zz", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3%", fail(400, ErrBadTarget)},
		// path traversal-ish
		{"/vnc/../websockify?token=a", fail(400, ErrBadTarget)},
		{"/vnc/%2e%2e/etc/passwd", fail(400, ErrBadTarget)},
		{"/vnc/192.168.100.3/../10.1.2.3", fail(400, ErrBadTarget)},
		{"/x/../vnc/192.168.100.3", fail(404, ErrNoRoute)},
		{"/./vnc/192.168.100.3", fail(404, ErrNoRoute)},
		{"//vnc/192.168.100.3", fail(404, ErrNoRoute)},
		{"/websockify/../vnc/192.168.100.3", fail(404, ErrNoRoute)},
		{"/VNC/192.168.100.3", fail(404, ErrNoRoute)},
		{"/vnc", fail(404, ErrNoRoute)},
		{"/", fail(404, ErrNoRoute)},
		{"", fail(404, ErrNoRoute)},
		{"*", fail(404, ErrNoRoute)},
		{"http://host", fail(404, ErrNoRoute)},
		// token routes
		{"/websockify?token=vm1", token("vm1")},
		{"/websockify/?token=vm1", token("vm1")},
		{"/websockify?token=vm1&other=x", token("vm1")},
		{"/websockify?a=1&token=vm1&b=2", token("vm1")},
		{"/websockify?token=vm1&token=vm2", token("vm1")},
		{"/websockify?token=&token=vm2", token("vm2")},
		{"/websockify?token=a%20b+c", token("a b c")},
		{"/websockify?to%6Ben=vm1", token("vm1")},
		{"/websockify?token=vm1%0A", token("vm1")},
		{"/websockify?token=vm1#x", token("vm1")},
		{"/websockify?tokens=vm1&token=vm2", token("vm2")},
		{"/web%73ockify?token=vm1", token("vm1")},
		{"HTTP://h/websockify?token=vm1", token("vm1")},
		{"/websockify", fail(400, ErrMissingToken)},
		{"/websockify?", fail(400, ErrMissingToken)},
		{"/websockify?token", fail(400, ErrMissingToken)},
		{"/websockify?token=", fail(400, ErrMissingToken)},
		{"/websockify?token=%0A", fail(400, ErrMissingToken)},
		{"/websockify?x=vm1", fail(400, ErrMissingToken)},
		{"/websockify?token=%zz", fail(400, ErrMissingToken)},
		{"/websockify?token=a%00b", fail(400, ErrMissingToken)},
		{"/websockify?token=a%0Db", fail(400, ErrMissingToken)},
		{"/websockify?token=" + strings.Repeat("a", maxTokenLen+1), fail(400, ErrMissingToken)},
		{"/websockify//?token=vm1", fail(404, ErrNoRoute)},
		{"/websockifyx?token=vm1", fail(404, ErrNoRoute)},
		{"/websockify/vm1", fail(404, ErrNoRoute)},
	}
	for _, c := range cases {
		rt, err := r.Classify([]byte(c.uri))
		if c.want.err != nil {
			if err == nil {
				t.Errorf("Classify(%q) = %+v, want %d %v", c.uri, rt, c.want.status, c.want.err)
				continue
			}
			t.Run("", func(t *testing.T) { wantError(t, err, c.want.status, c.want.err) })
			if rt != (Route{}) {
				t.Errorf("Classify(%q) returned %+v with an error", c.uri, rt)
			}
			continue
		}
		if err != nil {
			t.Errorf("Classify(%q): %v", c.uri, err)
			continue
		}
		if rt.Kind != c.want.kind || addrString(rt.Addr) != c.want.target || rt.Token != c.want.token {
			t.Errorf("Classify(%q) = %+v, want %+v", c.uri, rt, c.want)
		}
	}
}

func TestClassifyNoAllow(t *testing.T) {
	r := newRouter(t, Config{})
	for _, uri := range []string{"/vnc/192.168.1.1:5901", "/vnc/", "/vnc/garbage"} {
		_, err := r.Classify([]byte(uri))
		wantError(t, err, http.StatusForbidden, ErrForbidden)
	}
	// No token source: the token path leads nowhere.
	_, err := r.Classify([]byte("/websockify?token=vm1"))
	wantError(t, err, http.StatusNotFound, ErrNoRoute)
}

func TestClassifyCustomPaths(t *testing.T) {
	r := newRouter(t, Config{
		Allow:       []string{"10.0.0.0/8:5900"},
		PathPrefix:  "/proxy/vnc/",
		TokenPath:   "/ws/",
		TokenParam:  "t",
		DefaultPort: 5900,
		Sources:     []TokenSource{&mapSource{name: "m"}},
	})
	rt, err := r.Classify([]byte("/proxy/vnc/10.0.0.1"))
	if err != nil || rt.Addr.String() != "10.0.0.1:5900" {
		t.Fatalf("path route: %+v %v", rt, err)
	}
	for _, uri := range []string{"/ws?t=x", "/ws/?t=x"} {
		rt, err = r.Classify([]byte(uri))
		if err != nil || rt.Kind != KindToken || rt.Token != "x" {
			t.Fatalf("Classify(%q) = %+v %v", uri, rt, err)
		}
	}
	_, err = r.Classify([]byte("/ws?token=x"))
	wantError(t, err, http.StatusBadRequest, ErrMissingToken)
	_, err = r.Classify([]byte("/vnc/10.0.0.1"))
	wantError(t, err, http.StatusNotFound, ErrNoRoute)
}

func TestClassifyDoesNotAliasInput(t *testing.T) {
	r := newRouter(t, Config{Allow: []string{"10.0.0.0/8"}, Sources: []TokenSource{&mapSource{name: "m"}}})
	buf := []byte("/websockify?token=abcdef")
	rt, err := r.Classify(buf)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, strings.Repeat("X", len(buf)))
	if rt.Token != "abcdef" {
		t.Fatalf("token changed with the buffer: %q", rt.Token)
	}
	buf = []byte("/vnc/10.0.0.1:5901")
	rt, err = r.Classify(buf)
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, strings.Repeat("X", len(buf)))
	if rt.Addr.String() != "10.0.0.1:5901" {
		t.Fatalf("target changed with the buffer: %v", rt.Addr)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Allow: []string{"10.0.0.0/8", "300.0.0.0/8"}},
		{PathPrefix: "vnc/"},
		{PathPrefix: "/vnc"},
		{PathPrefix: "/"},
		{TokenPath: "/"},
		{TokenPath: "ws"},
		{PathPrefix: "/a/", TokenPath: "/a/b"},
		{Sources: []TokenSource{nil}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	_, err := New(Config{Allow: []string{"10.0.0.0/8", "300.0.0.0/8"}})
	if err == nil || !strings.Contains(err.Error(), `"300.0.0.0/8"`) {
		t.Errorf("error does not name the bad spec: %v", err)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindPath: "path", KindToken: "token", 0: "Kind(0)", 9: "Kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}
