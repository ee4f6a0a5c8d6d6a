package engine

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

// Tests of the engine's side of issue 11: revocation, expiry, the
// live-session admin API, cookie tokens, lookup metrics, unix targets.

// tokenFile writes a token file and returns it as a source.
func tokenFile(t *testing.T, lines string) *routing.TokenFile {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := routing.NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return tf
}

// adminDo makes an admin request and returns status and body.
func (ts *testServer) adminDo(method, path, body, bearer string) (int, string) {
	ts.t.Helper()
	req, err := http.NewRequest(method, "http://"+ts.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (ts *testServer) listSessions(query string) []SessionInfo {
	ts.t.Helper()
	st, body := ts.adminDo("GET", "/sessions"+query, "", "")
	if st != 200 {
		ts.t.Fatalf("GET /sessions: %d %s", st, body)
	}
	var out struct{ Sessions []SessionInfo }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		ts.t.Fatalf("GET /sessions: %v: %s", err, body)
	}
	return out.Sessions
}

func TestRevocationClosesSessions(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	tf := tokenFile(t, "t1: "+echo.addr()+"\nt2: "+echo.addr()+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	a := mustDialWS(t, ts.url+"/websockify?token=t1")
	b := mustDialWS(t, ts.url+"/websockify?token=t1")
	other := mustDialWS(t, ts.url+"/websockify?token=t2")
	t0 := time.Now()
	if st, body := ts.adminDo("POST", "/tokens/revoke", "t1\n", ""); st != 200 || !strings.Contains(body, routing.TokenHash("t1")) {
		t.Fatalf("POST /tokens/revoke: %d %s", st, body)
	}
	for _, c := range []*wsClient{a, b} {
		if code, reason := c.expectClose(2 * time.Second); code != ws.StatusPolicyViolation || reason != "access revoked" {
			t.Fatalf("revoked session closed with %d %q", code, reason)
		}
	}
	t.Logf("revocation to close frames: %v", time.Since(t0))
	other.writeFrame(true, ws.OpBinary, []byte("alive"))
	if got := other.readData(5, 5*time.Second); string(got) != "alive" {
		t.Fatalf("the other token's session: %q", got)
	}
	if r := mustDialWS(t, ts.url+"/websockify?token=t1").rfbRefusal(); r != "unknown or expired link" {
		t.Fatalf("a revoked token's new session: refusal %q", r)
	}
	waitUntil(t, 5*time.Second, "revoked closes counted", func() bool {
		return ts.metricValue(`vncedge_sessions_closed_total{reason="revoked"}`) == "2"
	})
}

// A token file reload that removes a token revokes it.
func TestTokenRemovedOnReloadCloses(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte("gone: "+echo.addr()+"\nstays: "+echo.addr()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := routing.NewTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	gone := mustDialWS(t, ts.url+"/websockify?token=gone")
	stays := mustDialWS(t, ts.url+"/websockify?token=stays")
	if err := os.WriteFile(path, []byte("stays: "+echo.addr()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, reason := gone.expectClose(2 * time.Second); code != ws.StatusPolicyViolation || reason != "access revoked" {
		t.Fatalf("removed token's session: %d %q", code, reason)
	}
	stays.writeFrame(true, ws.OpBinary, []byte("x"))
	stays.readData(1, 5*time.Second)
}

// expiringSource grants every token for a while.
type expiringSource struct {
	target  string
	expires time.Time
}

func (e expiringSource) Name() string { return "test" }
func (e expiringSource) Lookup(context.Context, string) (routing.Grant, error) {
	return routing.Grant{Target: e.target, Expires: e.expires}, nil
}

func TestTokenExpiryCloses(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	src := expiringSource{target: echo.addr(), expires: time.Now().Add(1500 * time.Millisecond)}
	ts := startServer(t, func(c *Config, rc *routing.Config) {
		c.TokenExpiryCloses = true
		rc.Sources = []routing.TokenSource{src}
	})
	c := mustDialWS(t, ts.url+"/websockify?token=any")
	if code, reason := c.expectClose(5 * time.Second); code != ws.StatusPolicyViolation || reason != "access expired" {
		t.Fatalf("session past its grant's expiry: %d %q", code, reason)
	}
}

func TestAdminSessionsAPI(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	other := startEcho(t, "127.0.0.3:0", nil)
	tf := tokenFile(t, "vm1: "+echo.addr()+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	tok := mustDialWS(t, ts.url+"/websockify?token=vm1")
	path := mustDialWS(t, ts.url+"/vnc/"+other.addr())
	list := ts.listSessions("")
	if len(list) != 2 {
		t.Fatalf("GET /sessions: %d sessions, want 2: %+v", len(list), list)
	}
	byVM := ts.listSessions("?target=" + echo.addr())
	if len(byVM) != 1 || byVM[0].Token != routing.TokenHash("vm1") || byVM[0].State != "relaying" {
		t.Fatalf("filtered by target: %+v", byVM)
	}
	if got := ts.listSessions("?token=" + routing.TokenHash("vm1")); len(got) != 1 || got[0].ID != byVM[0].ID {
		t.Fatalf("filtered by token hash: %+v", got)
	}
	if st, _ := ts.adminDo("DELETE", "/sessions/no-such-id", "", ""); st != 404 {
		t.Fatalf("DELETE of an unknown session: %d", st)
	}
	var pathID string
	for _, s := range list {
		if s.Route == "path" {
			pathID = s.ID
		}
	}
	if st, body := ts.adminDo("DELETE", "/sessions/"+pathID, "", ""); st != 200 {
		t.Fatalf("DELETE /sessions/%s: %d %s", pathID, st, body)
	}
	if code, reason := path.expectClose(2 * time.Second); code != ws.StatusPolicyViolation || reason != "closed by operator" {
		t.Fatalf("operator close: %d %q", code, reason)
	}
	tok.writeFrame(true, ws.OpBinary, []byte("still"))
	tok.readData(5, 5*time.Second)
}

func TestAdminDrainVM(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	ts := startServer(t, nil)
	c := mustDialWS(t, ts.url+"/vnc/"+echo.addr())
	st, body := ts.adminDo("POST", "/targets/"+echo.addr()+"/drain", "", "")
	if st != 200 || !strings.Contains(body, `"sessions_ended": 1`) {
		t.Fatalf("drain: %d %s", st, body)
	}
	if code, _ := c.expectClose(2 * time.Second); code != ws.StatusGoingAway {
		t.Fatalf("a drained VM's session closed with %d, want 1001", code)
	}
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/vnc/"+echo.addr())); st != 503 {
		t.Fatalf("a new session to a drained VM: %d, want 503", st)
	}
	if st, _ := ts.adminDo("DELETE", "/targets/"+echo.addr()+"/drain", "", ""); st != 200 {
		t.Fatalf("undrain: %d", st)
	}
	mustDialWS(t, ts.url+"/vnc/"+echo.addr())
}

func TestAdminToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config, _ *routing.Config) { c.AdminTokenFile = file })
	for _, p := range []string{"/metrics", "/sessions"} {
		if st, _ := ts.adminDo("GET", p, "", ""); st != 401 {
			t.Errorf("GET %s without the token: %d, want 401", p, st)
		}
		if st, _ := ts.adminDo("GET", p, "", "wrong"); st != 401 {
			t.Errorf("GET %s with a wrong token: %d, want 401", p, st)
		}
		if st, _ := ts.adminDo("GET", p, "", "s3cret"); st != 200 {
			t.Errorf("GET %s with the token: %d, want 200", p, st)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, _ := ts.adminDo("GET", p, "", ""); st != 200 {
			t.Errorf("GET %s (a probe) without the token: %d, want 200", p, st)
		}
	}
	if err := os.WriteFile(file, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = ts.Reload()
	if st, _ := ts.adminDo("GET", "/sessions", "", "rotated"); st != 200 {
		t.Errorf("after a reload the new token: %d", st)
	}
}

func TestCookieToken(t *testing.T) {
	echo := startEcho(t, "127.0.0.2:0", nil)
	tf := tokenFile(t, "vm1: "+echo.addr()+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) {
		rc.Sources = []routing.TokenSource{tf}
		rc.TokenCookie = "token"
	})
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/websockify", "Cookie: lang=en; token=vm1\r\n")); st != 101 {
		t.Fatalf("a token in the cookie: %d, want 101", st)
	}
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/websockify", "Cookie: token=nope\r\n")); st != 101 {
		t.Fatalf("an unknown token in the cookie: %d, want 101 and an RFB refusal", st)
	}
	if st, _ := rawRequest(t, ts.Addr(), upgradeRequest("/websockify")); st != 400 {
		t.Fatalf("no token at all: %d, want 400", st)
	}
	if v := ts.metricValue(`vncedge_token_lookups_total{source="file",result="hit"}`); v != "1" {
		t.Errorf("file hits counted: %q, want 1", v)
	}
}

func TestUnixSocketTarget(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vm.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	tf := tokenFile(t, "vm1: unix:"+sock+"\n")
	ts := startServer(t, func(_ *Config, rc *routing.Config) { rc.Sources = []routing.TokenSource{tf} })
	c := mustDialWS(t, ts.url+"/websockify?token=vm1")
	c.writeFrame(true, ws.OpBinary, []byte("over a unix socket"))
	if got := c.readData(18, 5*time.Second); string(got) != "over a unix socket" {
		t.Fatalf("echo over a unix socket target: %q", got)
	}
	if got := ts.listSessions(""); len(got) != 1 || got[0].VM != "unix:"+sock {
		t.Fatalf("sessions: %+v", got)
	}
}
