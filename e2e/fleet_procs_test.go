package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The fleet test's real servers: one redis-server, two vncedge instances
// and HAProxy in front of them, each a child process the test starts, waits
// for within a bound, and stops at cleanup.

// fleetRedis is a redis-server on a free loopback port, password protected
// like a production store, with keyspace notifications on so a deleted or
// expired token key ends its sessions.
type fleetRedis struct {
	addr, password string
	p              *proc
	client         *redis.Client
}

func startFleetRedis(t *testing.T, bin, dir string) *fleetRedis {
	t.Helper()
	data := filepath.Join(dir, "redis")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &fleetRedis{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), password: "fleet-redis-secret-4711"}
	_, port, _ := net.SplitHostPort(r.addr)
	r.p = startProc(t, dir, "redis-server", bin,
		"--port", port, "--bind", "127.0.0.1", "--dir", data, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--protected-mode", "yes", "--requirepass", r.password,
		"--notify-keyspace-events", "Kgx", "--loglevel", "notice")
	r.client = redis.NewClient(&redis.Options{Addr: r.addr, Password: r.password})
	t.Cleanup(func() { r.client.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := r.client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r
		}
		if r.p.exited() || time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer PING within 10s: %v\n%s", err, r.p.tail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// url is what vncedge's --token-redis gets: password and db included.
func (r *fleetRedis) url() string {
	return (&url.URL{Scheme: "redis", User: url.UserPassword("", r.password), Host: r.addr, Path: "/0"}).String()
}

// waitSubscribers waits until n clients each listen on the revoke channel
// and on a keyspace pattern (CLIENT LIST's sub and psub): only then does a
// revocation reach every instance.
func (r *fleetRedis) waitSubscribers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := r.client.ClientList(context.Background()).Result()
		both := 0
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(" "+line, " sub=1 ") && strings.Contains(" "+line, " psub=1 ") {
				both++
			}
		}
		if err == nil && both >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, %d Redis clients subscribe to a channel and a pattern (err %v), want %d:\n%s", both, err, n, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fleetEdge is one vncedge instance of the fleet.
type fleetEdge struct {
	name        string
	listen      string // host:port of the WebSocket listener
	admin       string // host:port of the admin listener
	adminToken  string
	logPath     string
	p           *proc
	adminClient *http.Client
}

// fleetEdgeFlags are the flags every instance shares; listen and admin
// differ per instance.
type fleetEdgeFlags struct {
	redisURL, revokeChannel, prefix string
	allow                           string
	adminTokenFile, adminToken      string
	drainTimeout                    time.Duration
}

func startFleetEdge(t *testing.T, bin, dir, name string, f fleetEdgeFlags) *fleetEdge {
	t.Helper()
	e := &fleetEdge{
		name:   name,
		listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		adminToken:  f.adminToken,
		adminClient: &http.Client{Timeout: 5 * time.Second},
	}
	e.p = startProc(t, dir, name, bin,
		"--listen", e.listen, "--admin", e.admin, "--admin-token-file", f.adminTokenFile,
		"--token-redis", f.redisURL, "--token-redis-prefix", f.prefix,
		"--token-redis-revoke-channel", f.revokeChannel,
		// HAProxy connects from 127.0.0.1 and names the client in a PROXY
		// v2 header; nothing else may speak to the public port.
		"--proxy-protocol", "--trusted-proxy", "127.0.0.1/32",
		"--allow", f.allow,
		"--drain-timeout", f.drainTimeout.String(),
		// The simulated browsers open sessions far faster than people do;
		// the per-address rate limit has its own tests. The per-address
		// session cap stays at its default: it counts the real clients.
		"--max-upgrades-per-ip", "0",
		// One simulated VM takes more viewers here than a desktop has.
		"--max-sessions-per-upstream", "512",
		"--log-format", "json")
	e.logPath = e.p.log
	waitTCP(t, e.p, e.admin, 15*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, body, err := e.adminGet("/readyz")
		if err == nil && st == http.StatusOK {
			return e
		}
		if e.p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s not ready: %d %q %v\n%s", name, st, body, err, e.p.tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminDo makes one admin request with the bearer token.
func (e *fleetEdge) adminDo(method, path, body string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+e.admin+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+e.adminToken)
	resp, err := e.adminClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, string(b), err
}

func (e *fleetEdge) adminGet(path string) (int, string, error) { return e.adminDo("GET", path, "") }

// fleetSession is the part of GET /sessions the fleet test reads.
type fleetSession struct {
	ID     string `json:"id"`
	Client string `json:"client"`
	Token  string `json:"token"`
	State  string `json:"state"`
	VM     string `json:"vm"`
}

// sessions lists the instance's live sessions; query filters them
// ("?token=HASH").
func (e *fleetEdge) sessions(t *testing.T, query string) []fleetSession {
	t.Helper()
	st, body, err := e.adminGet("/sessions" + query)
	if err != nil || st != http.StatusOK {
		t.Fatalf("%s GET /sessions%s: %d %v\n%.500s", e.name, query, st, err, body)
	}
	var out struct {
		Sessions []fleetSession `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("%s GET /sessions: %v\n%.500s", e.name, err, body)
	}
	return out.Sessions
}

// byClient indexes sessions by the client address the instance names.
func byClient(list []fleetSession) map[string]fleetSession {
	m := make(map[string]fleetSession, len(list))
	for _, s := range list {
		m[s.Client] = s
	}
	return m
}

// fleetLogLine is one JSON log line of vncedge, the fields the test reads.
type fleetLogLine struct {
	Msg     string `json:"msg"`
	Session string `json:"session"`
	Client  string `json:"client"`
	Token   string `json:"token"`
	Reason  string `json:"reason"`
	Code    int    `json:"code"`
}

// logLines reads the instance's log so far; lines that are not JSON (none
// should be) are returned as raw text for the failure message.
func (e *fleetEdge) logLines(t *testing.T) (lines []fleetLogLine, raw []string) {
	t.Helper()
	f, err := os.Open(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l fleetLogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			raw = append(raw, sc.Text())
			continue
		}
		lines = append(lines, l)
	}
	return lines, raw
}

// fleetHAProxy is HAProxy in TCP mode in front of the instances, sending a
// PROXY v2 header to each and checking each one's /readyz on its admin port.
type fleetHAProxy struct {
	front   string // host:port the browsers connect to
	backend string
	sock    string // the stats socket
	p       *proc
}

func startFleetHAProxy(t *testing.T, bin, dir string, edges []*fleetEdge) *fleetHAProxy {
	t.Helper()
	h := &fleetHAProxy{front: fmt.Sprintf("127.0.0.1:%d", freePort(t)), backend: "vncedge", sock: filepath.Join(dir, "haproxy.sock")}
	var servers strings.Builder
	for _, e := range edges {
		_, adminPort, _ := net.SplitHostPort(e.admin)
		// send-proxy-v2 on the traffic port only: the check on the admin
		// port is plain HTTP, sent without a bearer token (/readyz needs none).
		fmt.Fprintf(&servers, "    server %s %s send-proxy-v2 check port %s\n", e.name, e.listen, adminPort)
	}
	cfg := fmt.Sprintf(`# Written by e2e/fleet_test.go for one run.
global
    log stdout format raw local0 notice
    maxconn 6000
    stats socket %s mode 600 level admin

defaults
    mode tcp
    log global
    maxconn 6000
    timeout connect 2s
    timeout client 2m
    timeout server 2m
    timeout client-fin 5s
    timeout server-fin 5s
    timeout check 1s
    # A connection refused by an instance that just went away is retried
    # on the other.
    retries 2
    option redispatch

frontend fleet
    bind %s
    default_backend %s

backend %s
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    # Short intervals so the test sees a drain leave the pool within a
    # second; deploy/tls/haproxy.cfg has production values.
    default-server inter 200ms fall 3 rise 2
%s`, h.sock, h.front, h.backend, h.backend, servers.String())
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s\n%s", path, err, out, cfg)
	}
	h.p = startProc(t, dir, "haproxy", bin, "-db", "-f", path)
	waitTCP(t, h.p, h.front, 10*time.Second)
	return h
}

// fleetServerStat is HAProxy's view of one backend server.
type fleetServerStat struct {
	status string // UP, DOWN, "UP 1/2" while changing, MAINT...
	total  int    // connections sent to it so far (stot)
	cur    int    // connections open to it now (scur)
}

// stats reads "show stat" from the stats socket.
func (h *fleetHAProxy) stats() (map[string]fleetServerStat, error) {
	c, err := net.DialTimeout("unix", h.sock, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, err
	}
	text := strings.TrimPrefix(strings.TrimSpace(string(b)), "# ")
	r := csv.NewReader(strings.NewReader(text))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("show stat: %v: %q", err, text)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "status", "stot", "scur"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("show stat has no %s column: %q", name, rows[0])
		}
	}
	out := map[string]fleetServerStat{}
	for _, row := range rows[1:] {
		if len(row) <= col["scur"] || len(row) <= col["stot"] || row[col["pxname"]] != h.backend {
			continue
		}
		sv := row[col["svname"]]
		if sv == "BACKEND" {
			continue
		}
		total, _ := strconv.Atoi(row[col["stot"]])
		cur, _ := strconv.Atoi(row[col["scur"]])
		out[sv] = fleetServerStat{status: row[col["status"]], total: total, cur: cur}
	}
	return out, nil
}

// waitStatus waits (bounded) until HAProxy reports server in a status that
// starts with want ("UP", "DOWN") and returns that moment's figures.
func (h *fleetHAProxy) waitStatus(t *testing.T, server, want string, within time.Duration) fleetServerStat {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := h.stats()
		if err == nil && strings.HasPrefix(st[server].status, want) && !strings.Contains(st[server].status, "/") {
			return st[server]
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy does not report %s %s after %v: %v (err %v)\n%s", server, want, within, st, err, h.p.tail(2000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
