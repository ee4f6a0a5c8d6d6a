package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/routing"
)

// TestFleet proves vncedge as a fleet (issue 11 section 4): two instances
// behind a real HAProxy (TCP mode, PROXY protocol v2, health checks on each
// instance's /readyz) sharing one real redis-server as the token store, with
// simulated browsers on distinct 127.10.x.y source addresses and simulated
// VMs (echo servers) on 127.20.0.x. The subtests run in order on the same
// fleet; the drain comes last because it stops an instance.
func TestFleet(t *testing.T) {
	f := startFleet(t)
	var bystanders []*fleetClient
	t.Run("sessions spread over both instances", func(t *testing.T) {
		bystanders = f.testSpread(t)
	})
	if bystanders == nil {
		t.Fatal("no sessions to go on with")
	}
	t.Run("client addresses are the real clients'", func(t *testing.T) { f.testClientAddresses(t, bystanders) })
	t.Run("revocation reaches both instances", func(t *testing.T) {
		for i, m := range fleetRevokeMethods {
			t.Run(m.name, func(t *testing.T) { f.testRevocation(t, i, m, bystanders) })
		}
	})
	var live []*fleetClient
	t.Run("revocation time with 1000 live sessions", func(t *testing.T) {
		live = f.measureRevocation(t, bystanders)
	})
	if live == nil {
		live = bystanders
	}
	t.Run("session setup rate through HAProxy", func(t *testing.T) { f.measureSetupRate(t) })
	t.Run("drain one instance", func(t *testing.T) { f.testDrain(t, live) })
	t.Run("logs name tokens only by hash", func(t *testing.T) { f.testLogsHideSecrets(t) })
	for _, line := range f.figures {
		t.Log("FIGURE " + line)
	}
}

// fleet is everything TestFleet runs.
type fleet struct {
	edges   []*fleetEdge
	lb      *fleetHAProxy
	redis   *fleetRedis
	vms     []*fleetVM
	addrs   fleetAddrs
	prefix  string // --token-redis-prefix
	channel string // --token-redis-revoke-channel
	drain   time.Duration
	admin   string // the admin bearer token

	mu      sync.Mutex
	figures []string       // measured figures, logged at the end as FIGURE lines
	clients []*fleetClient // every session opened, hung up at cleanup
}

// fleetTokenMark starts every token of the test, so the log check can look
// for any of them in full.
const fleetTokenMark = "fleettok-"

func startFleet(t *testing.T) *fleet {
	t.Helper()
	req := require(t)
	haproxyBin := req.bin("haproxy", "/usr/sbin/haproxy")
	redisBin := req.bin("redis-server", "/usr/bin/redis-server")
	req.check()

	tmp := t.TempDir()
	logs := filepath.Join(artifactsDir(t), "fleet")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := buildVncedge(t, tmp)
	f := &fleet{prefix: "vnc:", channel: "fleet:revoke", drain: 2 * time.Second}
	f.redis = startFleetRedis(t, redisBin, tmp)

	var ports []string
	for i := range 8 {
		vm := startFleetVM(t, fmt.Sprintf("127.20.0.%d:0", i+1))
		f.vms = append(f.vms, vm)
		ports = append(ports, strconv.Itoa(vm.port()))
	}
	tokenFile := filepath.Join(tmp, "admin-token")
	adminToken := "fleet-admin-token-0123456789abcdef"
	f.admin = adminToken
	if err := os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := fleetEdgeFlags{
		redisURL: f.redis.url(), revokeChannel: f.channel, prefix: f.prefix,
		allow:          "127.20.0.0/16:" + strings.Join(ports, ","),
		adminTokenFile: tokenFile, adminToken: adminToken,
		drainTimeout: f.drain,
	}
	for _, name := range []string{"edge1", "edge2"} {
		f.edges = append(f.edges, startFleetEdge(t, bin, logs, name, flags))
	}
	f.redis.waitSubscribers(t, len(f.edges))
	f.lb = startFleetHAProxy(t, haproxyBin, logs, f.edges)
	// Registered after the processes' own cleanups, so it runs before
	// them: the browsers hang up before the servers stop.
	t.Cleanup(f.hangUpAll)
	for _, e := range f.edges {
		// UP means HAProxy's checks reach /readyz without a bearer token
		// and without a PROXY header, as a load balancer's checks must.
		f.lb.waitStatus(t, e.name, "UP", 10*time.Second)
		// Everything else on the admin listener needs the token.
		resp, err := e.adminClient.Get("http://" + e.admin + "/sessions")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: GET /sessions without the admin token: %d, want 401", e.name, resp.StatusCode)
		}
	}
	return f
}

// open opens n sessions through HAProxy (see fleetOpen); they stay open
// across subtests until the whole test ends.
func (f *fleet) open(t *testing.T, n, par int, spec func(i int) (netip.Addr, string)) []*fleetClient {
	t.Helper()
	clients, err := fleetOpen(f.lb.front, n, par, spec)
	f.mu.Lock()
	for _, c := range clients {
		if c != nil {
			f.clients = append(f.clients, c)
		}
	}
	f.mu.Unlock()
	if err != nil {
		t.Fatalf("opening %d sessions through HAProxy:\n%v", n, err)
	}
	return clients
}

func (f *fleet) hangUpAll() {
	f.mu.Lock()
	clients := f.clients
	f.clients = nil
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(c.hangUp)
	}
	wg.Wait()
}

// figure records a measured figure for the summary.
func (f *fleet) figure(t *testing.T, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	f.mu.Lock()
	f.figures = append(f.figures, line)
	f.mu.Unlock()
}

// put stores token in Redis for VM i: websockify's JSON form for even i,
// the plain host:port form for odd i (vncedge reads both).
func (f *fleet) put(t *testing.T, tokens []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pipe := f.redis.client.Pipeline()
	for i, tok := range tokens {
		vm := f.vms[i%len(f.vms)].addr()
		val := vm
		if i%2 == 0 {
			val = `{"host": "` + vm + `"}`
		}
		pipe.Set(ctx, f.prefix+tok, val, 0)
		if pipe.Len() >= 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				t.Fatalf("redis SET: %v", err)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("redis SET: %v", err)
	}
}

// where finds the instance holding each client's session, by the client
// address each instance's GET /sessions names. A client found on neither
// instance or on both is an error.
func (f *fleet) where(t *testing.T, clients []*fleetClient) (map[*fleetClient]*fleetEdge, error) {
	t.Helper()
	lists := make([]map[string]fleetSession, len(f.edges))
	for i, e := range f.edges {
		lists[i] = byClient(e.sessions(t, ""))
	}
	out := make(map[*fleetClient]*fleetEdge, len(clients))
	var bad []string
	for _, c := range clients {
		var on []string
		for i, e := range f.edges {
			if _, ok := lists[i][c.local]; ok {
				out[c] = e
				on = append(on, e.name)
			}
		}
		if len(on) != 1 {
			bad = append(bad, fmt.Sprintf("%s (token %s) on %v", c.local, routing.TokenHash(c.token), on))
		}
	}
	if len(bad) > 0 {
		var seen []string
		for i, e := range f.edges {
			n := 0
			for client := range lists[i] {
				if n++; n <= 5 {
					seen = append(seen, e.name+":"+client)
				}
			}
		}
		return out, fmt.Errorf("%d of %d sessions not on exactly one instance, e.g. %v; the instances list clients such as %v",
			len(bad), len(clients), bad[:min(5, len(bad))], seen)
	}
	return out, nil
}

// split counts clients per instance.
func (f *fleet) split(loc map[*fleetClient]*fleetEdge, clients []*fleetClient) map[string]int {
	n := map[string]int{}
	for _, e := range f.edges {
		n[e.name] = 0
	}
	for _, c := range clients {
		if e := loc[c]; e != nil {
			n[e.name]++
		}
	}
	return n
}

// testSpread opens 40 sessions from 20 client hosts (two each, one token
// each) and finds them on both instances: they stay open as bystanders that
// later subtests must not disturb.
func (f *fleet) testSpread(t *testing.T) []*fleetClient {
	const n = 40
	tokens := make([]string, n)
	srcs := make([]netip.Addr, n/2)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("%sbystander-%d", fleetTokenMark, i)
	}
	for i := range srcs {
		srcs[i] = f.addrs.take()
	}
	f.put(t, tokens)
	clients := f.open(t, n, 8, func(i int) (netip.Addr, string) { return srcs[i/2], tokens[i] })
	if err := fleetEchoAll(clients, "spread"); err != nil {
		t.Fatalf("sessions through HAProxy do not carry bytes: %v", err)
	}
	loc, err := f.where(t, clients)
	if err != nil {
		t.Fatal(err)
	}
	split := f.split(loc, clients)
	stats, err := f.lb.stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sessions: %v by GET /sessions; HAProxy's open connections per server %v", n, split, stats)
	for _, e := range f.edges {
		if split[e.name] < n/4 {
			t.Errorf("%s holds %d of %d sessions: not spread (split %v)", e.name, split[e.name], n, split)
		}
		if stats[e.name].cur != split[e.name] {
			t.Errorf("HAProxy has %d connections open to %s, which lists %d sessions", stats[e.name].cur, e.name, split[e.name])
		}
	}
	return clients
}

// testClientAddresses checks that both instances name each browser by its
// own source address and port (from the PROXY header), in GET /sessions and
// in their "session open" log lines, and never by HAProxy's 127.0.0.1.
func (f *fleet) testClientAddresses(t *testing.T, clients []*fleetClient) {
	want := map[string]*fleetClient{}
	for _, c := range clients {
		want[c.local] = c
	}
	for _, e := range f.edges {
		list := e.sessions(t, "")
		ids := map[string]string{} // session id -> client address
		for _, s := range list {
			host, _, err := net.SplitHostPort(s.Client)
			if err != nil || host == "127.0.0.1" {
				t.Errorf("%s lists session %s from %q: HAProxy's address, not the client's", e.name, s.ID, s.Client)
				continue
			}
			c := want[s.Client]
			if c == nil {
				t.Errorf("%s lists session %s from %s, which no test client uses", e.name, s.ID, s.Client)
				continue
			}
			if s.Token != routing.TokenHash(c.token) {
				t.Errorf("%s: session from %s has token hash %q, want %q", e.name, s.Client, s.Token, routing.TokenHash(c.token))
			}
			ids[s.ID] = s.Client
		}
		if len(ids) == 0 {
			t.Errorf("%s lists no session", e.name)
			continue
		}
		// Every session this instance lists was logged as opened by the
		// same client address; the log is written asynchronously, so wait.
		deadline := time.Now().Add(5 * time.Second)
		for {
			lines, raw := e.logLines(t)
			opened := map[string]string{}
			var fromLB []string
			for _, l := range lines {
				if l.Msg != "session open" {
					continue
				}
				opened[l.Session] = l.Client
				if strings.HasPrefix(l.Client, "127.0.0.1:") {
					fromLB = append(fromLB, l.Session)
				}
			}
			var missing []string
			for id, client := range ids {
				if opened[id] != client {
					missing = append(missing, fmt.Sprintf("%s from %s (logged %q)", id, client, opened[id]))
				}
			}
			if len(fromLB) > 0 {
				t.Errorf("%s logged sessions %v as opened by HAProxy's 127.0.0.1", e.name, fromLB)
			}
			if len(raw) > 0 {
				t.Errorf("%s wrote %d log lines that are not JSON, e.g. %q", e.name, len(raw), raw[0])
			}
			if len(missing) == 0 {
				t.Logf("%s: %d sessions, each logged and listed with its client's own address and port", e.name, len(ids))
				break
			}
			if time.Now().After(deadline) || len(fromLB) > 0 {
				t.Errorf("%s: %d sessions have no \"session open\" line naming their client, e.g. %v", e.name, len(missing), missing[:min(5, len(missing))])
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// fleetRevokeMethod is one way of revoking a token once, for the fleet.
type fleetRevokeMethod struct {
	name string
	// admin: the revocation goes to one instance's admin API (the one
	// revoke is given), which tells the others through Redis; otherwise
	// every instance learns of it from Redis.
	admin  bool
	revoke func(t *testing.T, f *fleet, token string, at *fleetEdge)
}

var fleetRevokeMethods = []fleetRevokeMethod{
	{name: "POST /tokens/revoke on one instance", admin: true, revoke: func(t *testing.T, f *fleet, token string, at *fleetEdge) {
		st, body, err := at.adminDo("POST", "/tokens/revoke", token)
		if err != nil || st != http.StatusOK {
			t.Fatalf("%s POST /tokens/revoke: %d %v %s", at.name, st, err, body)
		}
	}},
	{name: "message on the revoke channel", revoke: func(t *testing.T, f *fleet, token string, _ *fleetEdge) {
		n, err := f.redis.client.Publish(context.Background(), f.channel, token).Result()
		if err != nil || n < int64(len(f.edges)) {
			t.Fatalf("PUBLISH %s: %d receivers, %v", f.channel, n, err)
		}
	}},
	{name: "Redis key deleted", revoke: func(t *testing.T, f *fleet, token string, _ *fleetEdge) {
		n, err := f.redis.client.Del(context.Background(), f.prefix+token).Result()
		if err != nil || n != 1 {
			t.Fatalf("DEL %s: %d, %v", f.prefix+token, n, err)
		}
	}},
}

// testRevocation revokes a token held by six sessions on both instances,
// once, and expects all six closed with 1008 "access revoked" within a
// second, the bystanders untouched, the token refused from then on, and a
// log line with the token's hash on both instances.
func (f *fleet) testRevocation(t *testing.T, i int, m fleetRevokeMethod, bystanders []*fleetClient) {
	token := fmt.Sprintf("%srevoke-%d", fleetTokenMark, i)
	hash := routing.TokenHash(token)
	f.put(t, []string{token})
	srcs := []netip.Addr{f.addrs.take(), f.addrs.take(), f.addrs.take()}
	clients := f.open(t, 6, 1, func(i int) (netip.Addr, string) { return srcs[i/2], token })
	loc, err := f.where(t, clients)
	if err != nil {
		t.Fatal(err)
	}
	split := f.split(loc, clients)
	before := map[string][]fleetSession{}
	for _, e := range f.edges {
		before[e.name] = e.sessions(t, "?token="+hash)
		if split[e.name] == 0 || len(before[e.name]) != split[e.name] {
			t.Fatalf("the token's sessions are not on both instances: %v; %s lists %d for token %s", split, e.name, len(before[e.name]), hash)
		}
	}

	t0 := time.Now()
	m.revoke(t, f, token, f.edges[0])
	var worst time.Duration
	for _, c := range clients {
		if !c.waitEnd(time.Until(t0.Add(time.Second))) {
			t.Errorf("%s's session from %s is still open a second after the revocation", loc[c].name, c.local)
			continue
		}
		if c.closeCode != ws.StatusPolicyViolation || c.closeReason != "access revoked" {
			t.Errorf("%s's session from %s: %s, want close 1008 \"access revoked\"", loc[c].name, c.local, c.end())
			continue
		}
		if d := c.closedAt.Sub(t0); d > time.Second {
			t.Errorf("%s's session from %s got its close frame %v after the revocation, over a second", loc[c].name, c.local, d)
		}
		worst = max(worst, c.closedAt.Sub(t0))
	}
	t.Logf("%s: %d sessions (%v) closed with 1008 \"access revoked\", the last %v after the revocation", m.name, len(clients), split, worst.Round(time.Microsecond))

	for _, c := range bystanders {
		if c.ended() {
			t.Errorf("bystander %s (another token) ended: %s", c.local, c.end())
		}
	}
	if err := fleetEchoAll(bystanders, "after-revoke"); err != nil {
		t.Errorf("sessions of other tokens were disturbed: %v", err)
	}
	for _, e := range f.edges {
		if left := e.sessions(t, "?token="+hash); len(left) > 0 {
			t.Errorf("%s still lists %d sessions of the revoked token", e.name, len(left))
		}
	}
	// The token opens nothing any more, on either instance (asked directly,
	// so each one is).
	for _, e := range f.edges {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := dialEdgeDirect(ctx, e.listen, srcs[0], token)
		cancel()
		if err == nil {
			// --rfb-errors (the default): a 101, then the RFB refusal noVNC
			// shows; the echo VM behind would never speak first.
			reason, rerr := c.rfbRefusal(5 * time.Second)
			c.hangUp()
			if rerr != nil || reason != "unknown or expired link" {
				t.Errorf("the revoked token still opens a session on %s (refusal %q, %v)", e.name, reason, rerr)
			}
			continue
		}
		if de, ok := err.(*fleetDialError); !ok || (de.status != http.StatusForbidden && de.status != http.StatusNotFound) {
			t.Errorf("the revoked token on %s: %v, want an RFB refusal or HTTP 403 or 404", e.name, err)
		}
	}
	// Each instance logs the revocation of each of its sessions with the hash.
	for _, e := range f.edges {
		want := map[string]bool{}
		for _, s := range before[e.name] {
			want[s.ID] = true
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			lines, _ := e.logLines(t)
			for _, l := range lines {
				if l.Msg == "session revoked" && l.Token == hash {
					delete(want, l.Session)
				}
			}
			if len(want) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s has no \"session revoked\" line with token %s for sessions %v", e.name, hash, want)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// measureRevocation opens sessions up to 1,000 live ones over both
// instances and times, for each way of revoking, a token held by 1 session
// and one held by 100: from the revocation to the close frame at each
// browser. It returns every session still open afterwards.
func (f *fleet) measureRevocation(t *testing.T, bystanders []*fleetClient) []*fleetClient {
	const total = 1000
	type target struct {
		method fleetRevokeMethod
		token  string
		n      int
	}
	var targets []target
	var tokens []string
	for _, m := range fleetRevokeMethods {
		for _, n := range []int{1, 100} {
			tok := fmt.Sprintf("%smeasure-%d-%d", fleetTokenMark, len(targets), n)
			targets = append(targets, target{m, tok, n})
			for range n {
				tokens = append(tokens, tok)
			}
		}
	}
	revoked := len(tokens)
	var live []*fleetClient
	for _, c := range bystanders {
		if !c.ended() {
			live = append(live, c)
		}
	}
	for i := range total - len(live) - revoked {
		tokens = append(tokens, fmt.Sprintf("%sfiller-%d", fleetTokenMark, i))
	}
	uniq := slices.Compact(slices.Clone(tokens))
	f.put(t, uniq)
	// Ten sessions per client host, well under --max-sessions-per-ip (32).
	srcs := make([]netip.Addr, (len(tokens)+9)/10)
	for i := range srcs {
		srcs[i] = f.addrs.take()
	}
	t0 := time.Now()
	clients := f.open(t, len(tokens), 32, func(i int) (netip.Addr, string) { return srcs[i/10], tokens[i] })
	opened := time.Since(t0)
	var sum int
	for _, e := range f.edges {
		sum += len(e.sessions(t, ""))
	}
	if sum != total {
		t.Fatalf("the instances list %d sessions together, want %d", sum, total)
	}
	everyone := append(live, clients...)
	loc, err := f.where(t, everyone)
	if err != nil {
		t.Fatal(err)
	}
	split := f.split(loc, everyone)
	f.figure(t, "revocation setup: %d live sessions, %d on %s and %d on %s (%d opened for it in %v)",
		total, split[f.edges[0].name], f.edges[0].name, split[f.edges[1].name], f.edges[1].name, len(clients), opened.Round(time.Millisecond))

	held := map[string][]*fleetClient{}
	for _, c := range clients {
		held[c.token] = append(held[c.token], c)
	}
	for _, tg := range targets {
		mine := held[tg.token]
		if tg.n > 1 {
			if s := f.split(loc, mine); slices.Contains(mapValues(s), 0) {
				t.Errorf("the %d sessions of one token are not on both instances: %v", tg.n, s)
			}
		}
		// The admin API gets the revocation on the instance that does not
		// hold the single session, so even that figure crosses Redis.
		at := f.edges[0]
		if tg.n == 1 && loc[mine[0]] == at {
			at = f.edges[1]
		}
		start := time.Now()
		tg.method.revoke(t, f, tg.token, at)
		per := map[string][]time.Duration{}
		for _, c := range mine {
			if !c.waitEnd(time.Until(start.Add(10 * time.Second))) {
				t.Errorf("%s: session from %s still open 10s after the revocation", tg.method.name, c.local)
				continue
			}
			if c.closeCode != ws.StatusPolicyViolation || c.closeReason != "access revoked" {
				t.Errorf("%s: session from %s: %s, want close 1008 \"access revoked\"", tg.method.name, c.local, c.end())
				continue
			}
			per[loc[c].name] = append(per[loc[c].name], c.closedAt.Sub(start))
		}
		var parts []string
		var all []time.Duration
		for _, e := range f.edges {
			d := per[e.name]
			if len(d) == 0 {
				continue
			}
			all = append(all, d...)
			how := "via Redis"
			if tg.method.admin && e == at {
				how = "local"
			}
			parts = append(parts, fmt.Sprintf("%s (%s) %d sessions, median %v, last %v", e.name, how, len(d), fleetPct(d, 50), fleetPct(d, 100)))
		}
		f.figure(t, "revoke by %s, token held by %d of %d sessions: last close frame %v after the revocation; %s",
			revokeHow(tg.method, at), tg.n, total, fleetPct(all, 100), strings.Join(parts, "; "))
	}

	revokedTokens := map[string]bool{}
	for _, tg := range targets {
		revokedTokens[tg.token] = true
	}
	var rest []*fleetClient
	for _, c := range everyone {
		if revokedTokens[c.token] {
			continue
		}
		if c.ended() {
			t.Errorf("session %s of an unrevoked token ended: %s", c.local, c.end())
			continue
		}
		rest = append(rest, c)
	}
	if err := fleetEchoAll(rest, "after-measure"); err != nil {
		t.Errorf("sessions of other tokens were disturbed by the revocations: %v", err)
	}
	return rest
}

// revokeHow names a revocation for the figures.
func revokeHow(m fleetRevokeMethod, at *fleetEdge) string {
	if m.admin {
		return "POST /tokens/revoke on " + at.name
	}
	return m.name
}

func mapValues(m map[string]int) []int {
	var v []int
	for _, n := range m {
		v = append(v, n)
	}
	return v
}

// fleetPct is the p-th percentile of ds (100: the largest), rounded for
// reading.
func fleetPct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i].Round(10 * time.Microsecond)
}

// measureSetupRate opens and closes sessions through HAProxy for a few
// seconds from 16 client hosts at once, each with a token never used
// before, so every setup is a real Redis lookup: PROXY header, upgrade,
// Redis GET, VM dial, 101.
func (f *fleet) measureSetupRate(t *testing.T) {
	const workers, run = 16, 3 * time.Second
	tokens := make([]string, 20000)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("%srate-%d", fleetTokenMark, i)
	}
	f.put(t, tokens)
	before, err := f.lb.stats()
	if err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, workers)
	errs := make([][]string, workers)
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(run)
	for w := range workers {
		src := f.addrs.take()
		wg.Go(func() {
			for time.Now().Before(stop) {
				i := int(next.Add(1)) - 1
				if i >= len(tokens) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t1 := time.Now()
				c, err := dialFleet(ctx, f.lb.front, src, tokens[i])
				d := time.Since(t1)
				cancel()
				if err != nil {
					errs[w] = append(errs[w], fmt.Sprintf("token %d: %v", i, err))
					continue
				}
				lat[w] = append(lat[w], d)
				c.hangUp()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	var failed []string
	for w := range workers {
		all = append(all, lat[w]...)
		failed = append(failed, errs[w]...)
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d setups failed, e.g. %v", len(failed), len(failed)+len(all), failed[:min(5, len(failed))])
	}
	if len(all) == 0 {
		t.Fatal("no session was set up")
	}
	after, err := f.lb.stats()
	if err != nil {
		t.Fatal(err)
	}
	var perEdge []string
	for _, e := range f.edges {
		n := after[e.name].total - before[e.name].total
		perEdge = append(perEdge, fmt.Sprintf("%s %d", e.name, n))
		if n < len(all)/4 {
			t.Errorf("HAProxy sent %s only %d of %d setups", e.name, n, len(all))
		}
	}
	f.figure(t, "session setups through HAProxy to the pair, Redis source, %d client hosts in parallel: %.0f/s (%d in %v; %s); setup time median %v, p99 %v, max %v",
		workers, float64(len(all))/elapsed.Seconds(), len(all), elapsed.Round(time.Millisecond), strings.Join(perEdge, ", "),
		fleetPct(all, 50), fleetPct(all, 99), fleetPct(all, 100))
}

// testDrain stops edge1 with SIGTERM and follows the drain: /readyz fails
// first, HAProxy takes edge1 out of the pool and sends new sessions to
// edge2 only, edge1's sessions end with 1001 after --drain-timeout, their
// browsers reconnect through HAProxy to edge2 and work, and edge2's own
// sessions are not disturbed.
func (f *fleet) testDrain(t *testing.T, live []*fleetClient) {
	a, b := f.edges[0], f.edges[1]
	loc, err := f.where(t, live)
	if err != nil {
		t.Fatal(err)
	}
	var onA, onB []*fleetClient
	for _, c := range live {
		if loc[c] == a {
			onA = append(onA, c)
		} else {
			onB = append(onB, c)
		}
	}
	if len(onA) == 0 || len(onB) == 0 {
		t.Fatalf("need sessions on both instances to drain one: %d on %s, %d on %s", len(onA), a.name, len(onB), b.name)
	}

	t0 := time.Now()
	if err := syscall.Kill(a.p.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// /readyz fails first.
	var notReady time.Duration
	for {
		st, body, err := a.adminGet("/readyz")
		if err == nil && st == http.StatusServiceUnavailable {
			notReady = time.Since(t0)
			if !strings.Contains(body, "draining") {
				t.Errorf("%s /readyz while draining: %q", a.name, body)
			}
			break
		}
		if time.Since(t0) > 2*time.Second {
			t.Fatalf("%s /readyz still %d %v 2s after SIGTERM", a.name, st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	down := f.lb.waitStatus(t, a.name, "DOWN", 3*time.Second)
	outOfPool := time.Since(t0)
	for _, c := range onA {
		if c.ended() {
			t.Fatalf("session %s on %s ended %v after SIGTERM, before HAProxy took %s out (%v) and before --drain-timeout: %s",
				c.local, a.name, c.closedAt.Sub(t0), a.name, outOfPool, c.end())
		}
	}

	// New sessions now go to edge2 only.
	fresh := make([]string, 20)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("%sdrain-new-%d", fleetTokenMark, i)
	}
	f.put(t, fresh)
	src := f.addrs.take()
	newcomers := f.open(t, len(fresh), 4, func(i int) (netip.Addr, string) { return src, fresh[i] })
	if err := fleetEchoAll(newcomers, "drain-new"); err != nil {
		t.Errorf("new sessions during the drain: %v", err)
	}
	onNew := byClient(b.sessions(t, ""))
	for _, c := range newcomers {
		if _, ok := onNew[c.local]; !ok {
			t.Errorf("new session %s opened during the drain is not on %s", c.local, b.name)
		}
	}
	if st, err := f.lb.stats(); err != nil || st[a.name].total != down.total {
		t.Errorf("HAProxy sent %s new connections after taking it out of the pool: %d then %d (%v)", a.name, down.total, st[a.name].total, err)
	}

	// edge1's sessions end with 1001 once --drain-timeout has passed.
	var first, last time.Duration
	for _, c := range onA {
		if !c.waitEnd(time.Until(t0.Add(f.drain + 10*time.Second))) {
			t.Errorf("session %s on %s still open %v after SIGTERM", c.local, a.name, f.drain+10*time.Second)
			continue
		}
		if c.closeCode != ws.StatusGoingAway {
			t.Errorf("session %s on %s: %s, want close 1001", c.local, a.name, c.end())
			continue
		}
		d := c.closedAt.Sub(t0)
		if first == 0 || d < first {
			first = d
		}
		last = max(last, d)
	}
	if first < f.drain-100*time.Millisecond {
		t.Errorf("the first session on %s closed %v after SIGTERM, before --drain-timeout %v", a.name, first, f.drain)
	}
	select {
	case <-a.p.done:
		if a.p.err != nil {
			t.Errorf("%s exited with %v after the drain, want status 0", a.name, a.p.err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s still running 15s after its sessions closed", a.name)
	}

	// Their browsers reconnect through HAProxy, land on edge2 and work.
	r0 := time.Now()
	back := f.open(t, len(onA), 16, func(i int) (netip.Addr, string) { return onA[i].src, onA[i].token })
	reconnected := time.Since(r0)
	if err := fleetEchoAll(back, "reconnected"); err != nil {
		t.Errorf("reconnected sessions: %v", err)
	}
	onB2 := byClient(b.sessions(t, ""))
	for _, c := range back {
		if _, ok := onB2[c.local]; !ok {
			t.Errorf("reconnected session %s is not on %s", c.local, b.name)
		}
	}
	// edge2's own sessions never noticed.
	for _, c := range onB {
		if c.ended() {
			t.Errorf("session %s on %s ended during %s's drain: %s", c.local, b.name, a.name, c.end())
		} else if _, ok := onB2[c.local]; !ok {
			t.Errorf("session %s is no longer listed on %s", c.local, b.name)
		}
	}
	if err := fleetEchoAll(onB, "undisturbed"); err != nil {
		t.Errorf("sessions on %s were disturbed by %s's drain: %v", b.name, a.name, err)
	}
	f.figure(t, "drain of %s (--drain-timeout %v) with %d sessions on it and %d on %s: /readyz failed %v after SIGTERM, HAProxy took it out at %v, its sessions closed with 1001 from %v to %v, all %d reconnected through HAProxy to %s in %v; %d new sessions went to %s meanwhile, none of its %d sessions was disturbed",
		a.name, f.drain, len(onA), len(onB), b.name, notReady.Round(100*time.Microsecond), outOfPool.Round(time.Millisecond),
		first.Round(time.Millisecond), last.Round(time.Millisecond), len(back), b.name, reconnected.Round(time.Millisecond),
		len(newcomers), b.name, len(onB))
}

// testLogsHideSecrets checks both instances' logs for any token, the Redis
// password or the admin token in full: they must name tokens by hash only.
func (f *fleet) testLogsHideSecrets(t *testing.T) {
	for _, e := range f.edges {
		b, err := os.ReadFile(e.logPath)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if i := strings.Index(text, fleetTokenMark); i >= 0 {
			t.Errorf("%s's log holds a token in full: %q", e.name, text[max(0, i-80):min(len(text), i+40)])
		}
		if strings.Contains(text, f.redis.password) {
			t.Errorf("%s's log holds the Redis password", e.name)
		}
		if strings.Contains(text, f.admin) {
			t.Errorf("%s's log holds the admin token", e.name)
		}
	}
}
