package routing

import (
	"strings"
	"testing"
	"time"
)

func TestParseGrantValue(t *testing.T) {
	exp := time.Unix(1900000000, 0)
	good := []struct {
		in   string
		want Grant
	}{
		{"10.0.0.1:5901", Grant{Target: "10.0.0.1:5901"}},
		{"  vm1.lan:05901 \n", Grant{Target: "vm1.lan:5901"}},
		{"[fd00::1]:5901", Grant{Target: "[fd00::1]:5901"}},
		{"fd00::1:5901", Grant{Target: "[fd00::1]:5901"}}, // plain: websockify's last-colon rule
		{"unix:/run/vnc/vm1.sock", Grant{Target: "unix:/run/vnc/vm1.sock"}},
		{`{"host": "10.0.0.1:5901"}`, Grant{Target: "10.0.0.1:5901"}},
		{`{"host": "10.0.0.1", "port": 5901}`, Grant{Target: "10.0.0.1:5901"}},
		{`{"host": "10.0.0.1", "port": "5901"}`, Grant{Target: "10.0.0.1:5901"}},
		{`{"host": "fd00::1", "port": 5901}`, Grant{Target: "[fd00::1]:5901"}},
		{`{"host": "[fd00::1]", "port": 5901}`, Grant{Target: "[fd00::1]:5901"}},
		{`{"host": "vm1.lan", "port": 5901, "port2": 1}`, Grant{Target: "vm1.lan:5901"}},
		{`{"host": "unix:/run/vm.sock", "view_only": true}`, Grant{Target: "unix:/run/vm.sock", ViewOnly: true}},
		{`{"host": "h:1", "view_only": true, "record": true, "tls": true, "vnc_password": "pw", "expires": 1900000000}`,
			Grant{Target: "h:1", ViewOnly: true, Record: true, TLS: true, Password: "pw", Expires: exp}},
		{`{"host": "h:1", "view_only": false, "expires": null, "port": null}`, Grant{Target: "h:1"}},
		{`{"host": "h:1", "vencrypt": true}`, Grant{Target: "h:1", VeNCrypt: true}},
		{`{"host": "h:1", "expires": 1900000000.5}`, Grant{Target: "h:1", Expires: exp.Add(500 * time.Millisecond)}},
		{`{"host": "h:1", "extra": {"nested": [1, 2]}}`, Grant{Target: "h:1"}},
	}
	for _, c := range good {
		g, err := ParseGrantValue([]byte(c.in))
		if err != nil || g != c.want {
			t.Errorf("ParseGrantValue(%q) = %+v, %v; want %+v", c.in, g, err, c.want)
		}
	}
	bad := []struct{ in, reason string }{
		{"", "empty"},
		{"   ", "empty"},
		{"10.0.0.1", "no port"},
		{"10.0.0.1:0", "port"},
		{"10.0.0.1:5901 extra", "white space"},
		{"bad_host!:5901", "neither"},
		{"unix:relative.sock", "absolute"},
		{"unix:/a/../b", "clean"},
		{`{"host": 5}`, "host"},
		{`{"port": 5901}`, `without "host"`},
		{`{"host": ""}`, "empty"},
		{`{"host": "10.0.0.1"}`, "no port"},
		{`{"host": "fd00::1:5901"}`, "brackets"},
		{`{"host": "h:1", "port": 2}`, `carries a port`},
		{`{"host": "h", "port": 0}`, "port"},
		{`{"host": "h", "port": 70000}`, "port"},
		{`{"host": "h", "port": -1}`, "port"},
		{`{"host": "h", "port": 59.5}`, "port"},
		{`{"host": "h", "port": "x"}`, "port"},
		{`{"host": "h", "port": true}`, "port"},
		{`{"host": "unix:/a.sock", "port": 1}`, "unix"},
		{`{"host": "h:1", "view_only": "yes"}`, "view_only"},
		{`{"host": "h:1", "expires": "soon"}`, "expires"},
		{`{"host": "h:1", "expires": -5}`, "expires"},
		{`{"host": "h:1", "expires": 1e300}`, "expires"},
		{`{"host": "h:1", "vnc_password": 1234}`, "vnc_password"},
		{`{"host": "h:1"`, "JSON"},
		{`{"host": "h:1"} trailing`, "JSON"},
		{"{" + strings.Repeat(" ", maxGrantValue) + "}", "larger"},
	}
	for _, c := range bad {
		_, err := ParseGrantValue([]byte(c.in))
		if err == nil {
			t.Errorf("ParseGrantValue(%q) accepted", c.in)
			continue
		}
		if !strings.Contains(err.Error(), c.reason) {
			t.Errorf("ParseGrantValue(%q) = %v, want a reason with %q", c.in, err, c.reason)
		}
	}
	// Errors never quote the value: it can hold a password.
	_, err := ParseGrantValue([]byte(`{"host": "h:1", "vnc_password": ["s3cret"]}`))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error quotes the value: %v", err)
	}
}

func TestNormaliseTarget(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:5901":      "10.0.0.1:5901",
		"10.0.0.1:005901":    "10.0.0.1:5901",
		"fd00::1:5901":       "[fd00::1]:5901",
		"[fd00::1]:5901":     "[fd00::1]:5901",
		"vm1.example.:5901":  "vm1.example.:5901",
		"unix:/run/a.sock":   "unix:/run/a.sock",
		"unix:/":             "unix:/",
		"[::ffff:1.2.3.4]:1": "[::ffff:1.2.3.4]:1",
	} {
		if got, err := normaliseTarget(in); err != nil || got != want {
			t.Errorf("normaliseTarget(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":5901", "unix:", "unix:a", "unix:/a//b", "unix:/a/", "unix:/a\x00b",
		"unix:/" + strings.Repeat("x", maxUnixPath), "[1.2.3.4]:1", "h:65536", "h:", "-h:1"} {
		if got, err := normaliseTarget(in); err == nil {
			t.Errorf("normaliseTarget(%q) = %q, want an error", in, got)
		}
	}
}
