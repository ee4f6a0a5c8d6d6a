package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// helpText is what --help prints. It is written by hand so options can be
// grouped and explained; the defaults are filled in from defaultOptions, and
// a test checks that every flag newFlagSet defines appears here.
func helpText() string {
	d := defaultOptions()
	e := d.engine
	dur := func(v time.Duration) string {
		if v == 0 {
			return "0 (off)"
		}
		return formatDuration(v)
	}
	num := func(v int) string {
		if v == 0 {
			return "0 (off)"
		}
		return strconv.Itoa(v)
	}
	size := func(v int64) string {
		if v == 0 {
			return "0 (off)"
		}
		return formatSize(v)
	}
	str := func(v string) string {
		if v == "" {
			return `"" (off)`
		}
		return v
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	// opt prints a flag, its explanation indented below it, and its default.
	opt := func(flag, def string, lines ...string) {
		w("  %s\n", flag)
		for _, l := range lines {
			w("      %s\n", l)
		}
		if def != "" {
			w("      Default: %s\n", def)
		}
	}

	w(`vncedge: WebSocket-to-VNC edge proxy. Browsers running noVNC connect over
WebSocket; vncedge relays each session to a VNC server over TCP.

Usage:
  vncedge [flags]
  vncedge sessions [--admin ADDR] [--admin-token-file FILE] [--target HOST:PORT] [--token HASH] [--json]
      the live sessions of a running vncedge, from its admin listener

Flags take one dash or two (--listen or -listen) and their value after "="
or as the next argument. Durations are Go durations (500ms, 10s, 1m30s);
sizes are bytes or binary units (512K, 16M = 16MiB = 16777216). A 0
duration or limit turns that timeout or limit off.

Listeners:
`)
	opt("--listen ADDR", str(e.Listen), "WebSocket upgrades and static files.")
	opt("--admin ADDR", str(e.Admin),
		`/metrics, /healthz, /readyz, the live-session API (/sessions, /targets,`,
		`/tokens/revoke) and /debug/pprof/ with --pprof; "" turns it off. Port 6089`,
		"sits next to the listen port's 6080 and clear of Prometheus's own 9090.")
	opt("--admin-token-file FILE", str(e.AdminTokenFile),
		"A bearer token (one line) every admin request but /healthz and /readyz",
		"must send (Authorization: Bearer ...); re-read on SIGHUP. Without it the",
		"admin listener is open to whoever reaches it: keep it on loopback then.")
	opt("--takeover", strconv.FormatBool(e.Takeover),
		"Start beside a running vncedge on the same addresses (--listen,",
		"--tls-listen, --admin; every listener binds with SO_REUSEPORT) instead of",
		"refusing them. Both take new connections until the old one is stopped",
		"(SIGTERM): it then hands its listeners over at once and keeps its",
		"sessions until they end or --drain-timeout. A restart that keeps",
		"sessions: start the new one with --takeover, wait until it is ready,",
		"stop the old one. Without it, a second instance on an address a running",
		"vncedge holds exits with status 2. Command line only.")
	opt("--loops N", strconv.Itoa(e.Loops)+" (one per CPU)", "Event loops.")
	opt("--web DIR", str(e.WebDir), "Serve static files (the noVNC client) from DIR on the listen port.")
	opt("--pprof", strconv.FormatBool(e.Pprof), "Expose /debug/pprof/ on the admin listener.")

	w(`
Routing:
`)
	opt("--allow CIDR[:PORT[,PORT]]", "none",
		"Repeatable. A network, and ports (5901 when omitted), that path routing",
		"(/vnc/{ip}, /vnc/{ip}:{port}) may reach; with none, /vnc/ answers 403.",
		"Once any is given, token targets must lie inside an entry too.",
		"Special ranges stay refused unless an entry lies inside them: loopback,",
		"link-local (cloud metadata), 0.0.0.0/8, Azure 168.63.129.16, Alibaba",
		"100.100.100.200, AWS fd00:ec2::254, and the IPv6 forms that embed these",
		"(NAT64 64:ff9b::/96, 6to4, IPv4-mapped/-translated/-compatible).",
		"--allow 127.0.0.0/8 opens loopback; 0.0.0.0/0 covers it but does not.")
	opt("--allow-unix DIR", "none",
		"Repeatable. unix:/path targets from Redis, signed tokens or the HTTP lookup",
		"must be sockets inside DIR; with none, only the token file may name",
		"unix: targets (--allow does not apply to sockets).")
	opt("--origin PATTERN", "only pages whose Origin host equals the Host header's host",
		"Repeatable. A browser origin allowed to open sessions: exact",
		"(https://console.example.com) or a subdomain wildcard (https://*.example.com).",
		"'*' turns the check off. Requests without Origin (not from a page) pass.")
	opt("--trusted-proxy CIDR", "none",
		"Repeatable. TLS terminators or load balancers in front of vncedge; from",
		"them, X-Forwarded-For names the client in logs (rightmost untrusted hop).",
		"From other addresses the header is ignored.")
	opt("--proxy-protocol", "false",
		"Every connection starts with a PROXY protocol v1/v2 header (HAProxy",
		"send-proxy, AWS NLB, Traefik proxyProtocol) naming the client. Accepted only",
		"from --trusted-proxy networks (required); other connections are closed.")

	w(`
Token routing:
  Clients connect to --token-path?token=ID (or send the token in the
  --token-cookie cookie). Sources are asked in this order, the first that
  knows the token wins, and a source that fails ends the lookup (503 when a
  store is down, 504 when it is too slow): --token-file, --token-jwt-key,
  --token-redis, --token-http. Token-file tokens, and cached answers, are
  resolved on the event loop; the rest on workers.
`)
	opt("--token-path PATH", d.tokenPath, "URL path of token routing.")
	opt("--token-cookie NAME", str(d.tokenCookie),
		"Take the token from this cookie when the query has none (a console page",
		"can set a cookie; noVNC cannot send headers). OpenStack uses \"token\".")
	opt("--token-file PATH", str(d.tokenFile),
		`websockify token file, or a directory of them: "token: target [option ...]"`,
		"lines; target is host:port or unix:/path; options: view-only, record, tls, vencrypt,",
		"password-file=PATH (the VM's VNC password; relative to the file's directory).",
		"Reloads (SIGHUP, --token-watch) go file by file: a file with any bad line,",
		"or an unreadable password file, keeps its previous contents whole and is",
		"counted in vncedge_reload_errors_total; a file of only white space keeps",
		"its previous contents with a warning (a comment-only file removes every",
		"token); dangling symlinks and symlink loops in a directory are skipped",
		"with a warning. Tokens that disappear are revoked.")
	opt("--token-watch D", dur(d.tokenWatch),
		"How often to check the token file, password files, the signing key and",
		"the HTTP header file for changes; a change reloads like SIGHUP.")
	opt("--token-jwt-key FILE", str(d.tokenJWTKey),
		"Signed tokens (JWS): FILE holds a PEM public key (RS256/PS256, EdDSA,",
		"ES256) or else the HMAC secret as raw bytes (HS256, 32 bytes at least; one",
		"trailing newline ignored). The algorithm is pinned to the key type. Claims:",
		"host, port, exp, nbf, jti, view_only, record, tls; a vnc_password claim is",
		"refused. Expired, not yet valid or badly signed: 403.")
	opt("--token-jwt-key-format FORMAT", d.tokenJWTKeyFormat,
		"standard, or websockify: a non-PEM file is a base64url JWK k value (as",
		"websockify's JWTTokenApi reads it) or a JWK JSON object.")
	opt("--token-jwt-leeway D", dur(d.tokenJWTLeeway), "Clock skew allowed on exp and nbf.")
	opt("--token-redis URL", str(d.tokenRedis),
		"redis://[user:password@]host:port/db (rediss:// for TLS; go-redis options",
		"such as ?dial_timeout=3s; ?master_name=NAME for Sentinel; addr=... for a",
		"Cluster). Key = --token-redis-prefix + token; value host:port, unix:/path,",
		`or JSON {"host": "h:p"} / {"host": "h", "port": N} with view_only, record,`,
		"tls, vnc_password, expires (Unix seconds). A deleted or expired key ends",
		"its sessions when the server has notify-keyspace-events Kgx.")
	opt("--token-redis-prefix P", `"" (none)`, "Prefix of the token keys.")
	opt("--token-redis-revoke-channel NAME", d.tokenRedisRevoke,
		"Pub/sub channel whose messages (a token each) revoke that token on every",
		"instance; POST /tokens/revoke publishes there too.")
	opt("--token-http URL", str(d.tokenHTTP),
		"Lookup service: GET URL/{token} (token path-escaped; or where {token}",
		"stands in URL); 200 with host:port or the JSON above, 404 unknown, 5xx",
		"store down. Keep-alive pool; redirects are not followed.")
	opt("--token-http-header-file FILE", str(d.tokenHTTPHeaderFile),
		`"Name: value" lines sent with every lookup (Authorization: Bearer ...).`)
	opt("--token-timeout D", dur(d.tokenTimeout),
		"Bound on each lookup in Redis or the HTTP service (not --connect-timeout).")
	opt("--token-cache-ttl D", dur(d.tokenCacheTTL),
		"Keep Redis and HTTP answers, hits and unknowns, this long (never past a",
		"grant's expiry; errors are not kept). One lookup per token is in flight.")
	opt("--token-cache-size N", strconv.Itoa(d.tokenCacheSize), "Most tokens the cache holds.")
	opt("--token-single-use", strconv.FormatBool(d.tokenSingleUse),
		"A token opens one session: Redis values are taken with GETDEL; signed tokens",
		"are remembered by jti (else the token) until exp, in Redis when --token-redis",
		"is set so every instance agrees; token-file tokens in memory until removed.")
	opt("--token-expiry-closes", strconv.FormatBool(e.TokenExpiryCloses),
		"End a session when its grant expires (JWT exp, JSON expires), not only",
		"refuse new ones.")

	w(`
Timeouts:
`)
	opt("--handshake-timeout D", dur(e.HandshakeTimeout), "The whole HTTP upgrade (slowloris guard).")
	opt("--connect-timeout D", dur(e.ConnectTimeout), "Dialling the VNC server.")
	opt("--idle-timeout D", dur(e.IdleTimeout), "Close a session with no bytes either way for this long.")
	opt("--ping-interval D", dur(e.PingInterval), "Send the browser a WebSocket ping this often.")
	opt("--pong-timeout D", dur(e.PongTimeout), "Close a session whose browser has not answered a ping for this long.")
	opt("--drain-timeout D", dur(e.DrainTimeout),
		"On SIGTERM: hand the listeners to a --takeover successor (or, with none,",
		"keep them and answer new upgrades with 503), wait this long for sessions",
		"to end, then close the rest with 1001. Keep it below the supervisor's",
		"stop timeout; after a takeover it may be hours (sessions end by",
		"themselves while the successor serves).")

	w(`
Limits:
`)
	opt("--max-sessions N", num(e.MaxSessions), "Concurrent sessions in all; more get 503.")
	opt("--max-sessions-per-upstream N", num(e.MaxSessionsPerVM), "Concurrent sessions per VNC server host:port; more get 503.")
	opt("--max-frame BYTES", size(e.MaxFrame), "Largest frame payload a browser may send; larger closes with 1009.")
	opt("--max-buffered BYTES", size(int64(e.MaxBuffered)),
		"Bytes queued per session and direction before it counts as a slow",
		"consumer and is closed.")
	opt("--max-sessions-per-ip N", num(e.MaxSessionsPerIP),
		"Concurrent sessions from one client address; more get 429. The",
		"address is the real client's (PROXY protocol, trusted X-Forwarded-For).")
	opt("--max-upgrades-per-ip RATE", formatRate(e.UpgradeRate, e.UpgradeBurst),
		"Upgrades from one client address: N/s, N/m or N/h, :BURST the bucket;",
		"over it 429. 0 turns it off.")
	opt("--max-handshakes N", num(e.MaxHandshakes)+" (1/4 of the descriptors)",
		"Connections not yet relaying (requests, static files, setups) in all;",
		"more are refused at once with 503.")
	opt("--max-handshakes-per-ip N", num(e.MaxHandshakesPerIP),
		"The same from one client address (the slowloris guard).")
	opt("--memory-budget BYTES", size(e.MemoryBudget)+" (1/4 of memory)",
		"Bytes queued for slow or stalled peers in all sessions together; over",
		"it the biggest queues are closed first (1008).")
	opt("--fd-reserve N", num(e.FDReserve)+" (1/128 of the open files limit, at least 128)",
		"Descriptors kept out of the budget for browser and VM sockets and",
		"recordings (admin clients, token files and stores); past the budget",
		"new connections get 503.")
	opt("--max-admin-conns N", num(e.MaxAdminConns),
		"Open admin connections; more wait in the accept queue. 0: no limit.")

	w(`
TLS (wss:// and https:// terminated by vncedge, on its event loops):
`)
	opt("--tls-listen ADDR", str(e.TLSListen),
		"Serve TLS here, beside --listen (either may be off: --listen \"\").",
		"The handshake runs on bounded workers once the ClientHello is complete;",
		"--handshake-timeout covers it. Plain HTTP sent here gets a 400.")
	opt("--tls-cert FILE", "none",
		"Repeatable. A PEM certificate with its chain; pairs with the --tls-key",
		"of the same position. The certificate is chosen by SNI (exact names",
		"before wildcards); the first pair answers clients naming no match.",
		"Reloaded on SIGHUP and when the files change; a bad file keeps the old.")
	opt("--tls-key FILE", "none", "Repeatable. The PEM private key of the --tls-cert in the same position.")
	opt("--tls-client-ca FILE", str(e.TLS.ClientCA),
		"Require browser client certificates signed by this CA (PEM); the",
		"subject goes into the session log.")
	opt("--tls-client-cn PATTERN", "any",
		"Repeatable. Only client certificates whose CN matches (exact, or *",
		"for any run of characters), like websockify's ClientCertCNAuth.")
	opt("--tls-min-version V", d.tlsMinVersion, "1.2 or 1.3. Cipher suites are Go's defaults; ALPN http/1.1.")
	opt("--tls-handshake-workers N", num(e.TLS.HandshakeWorkers),
		"TLS handshakes at once (a worker waits on its client's round trips).")
	opt("--upstream-ca FILE", str(e.TLS.UpstreamCA),
		"Roots for TLS to VNC servers (grants with the tls option); the system's",
		"when unset.")
	opt("--upstream-tls-insecure-skip-verify", strconv.FormatBool(e.TLS.UpstreamInsecureSkipVerify),
		"Do not check VNC servers' certificates (websockify's --ssl-target never",
		"does): for migrating only, the connection is then open to anyone on path.")

	w(`
RFB (the proxy speaks VNC where a session needs it):
`)
	opt("--rfb-errors", strconv.FormatBool(e.RFBErrors),
		"Explain failures a user with a valid link can meet (unknown or expired",
		"link, token store down, VM unreachable, VM refusing the proxy) inside",
		"RFB after the 101, where noVNC shows the reason, instead of an HTTP",
		"status it cannot show. --rfb-errors=false keeps the HTTP statuses.")
	opt("--vnc-password-file FILE", str(e.VNCPasswordFile),
		"The VNC password of every VM (first line; a token's password-file=",
		"option wins). vncedge answers the VM's challenge itself and offers the",
		"browser security type None: the password never reaches a browser.",
		"Re-read on SIGHUP.")
	opt("--view-only", strconv.FormatBool(e.ViewOnly),
		"Every session view-only (per token: the view-only option): vncedge drops",
		"the browser's key, pointer, clipboard and resize messages, and sets",
		"ClientInit's shared flag so a watcher never disconnects the VM's user.",
		"A VM that asks for a password needs it at the proxy for this.")
	opt("--vm-vencrypt", strconv.FormatBool(e.VMVeNCrypt),
		"Where vncedge runs the RFB handshake with a VM (a password, view-only or",
		"recording), prefer VeNCrypt's X509Vnc and X509None: the VM's password and",
		"the session then cross the network inside TLS, the VM's certificate checked",
		"against --upstream-ca (or the system roots) for the target's host. VMs that",
		"offer no VeNCrypt are used as without it; anonymous TLS (TLSVnc) is not",
		"supported by Go's crypto/tls.")
	opt("--record DIR", str(d.record),
		"Record every session into DIR: the VM-to-browser stream as FBS 001.000",
		"(rfbproxy's format; `bench vm --replay FILE` serves one), files 0600 named",
		"time_session_target.fbs. A slow or full disk cuts a recording (renamed",
		"*.truncated.fbs), never the relay. A VM asking for a password needs it",
		"at the proxy.")
	opt("--record-dir DIR", str(d.recordDir),
		"Where sessions whose token says record go, without recording the rest.")
	opt("--record-input", strconv.FormatBool(e.RecordInput),
		"Also write the browser's key and pointer events, JSON lines beside each recording.")
	opt("--record-required", strconv.FormatBool(e.RecordRequired),
		"A session that should be recorded and cannot be is refused, or ended if",
		"its recording is cut, instead of going on unrecorded.")
	opt("--record-queue BYTES", "4M",
		"What one recording may have waiting for the disk before it is cut.")

	w(`
Logging (to stderr):
`)
	opt("--log-level LEVEL", strings.ToLower(d.logLevel.String()), "debug, info, warn or error.")
	opt("--log-format FORMAT", d.logFormat, "text or json.")

	w(`
Other:
`)
	opt("--config FILE", "none", "Read settings from a YAML file (see below).")
	opt("--check", "",
		"Check the flags, the config file, the token sources (token file, signing",
		"key, URLs, header file) and the web root, print \"configuration OK\" and",
		"exit (status 0, or 2 with the error). Listens on nothing. Redis not",
		"reachable is a warning: it may come up after vncedge.")
	opt("--version", "", "Print the version and exit.")
	opt("--help", "", "Print this help and exit.")

	w(`
Config file:
  YAML; the keys are the flag names without dashes, the repeatable ones
  take a list. Unknown keys are an error. Precedence, lowest first:
  built-in defaults, the config file, flags on the command line. A
  repeatable flag on the command line replaces the file's list.

    listen: 0.0.0.0:6080
    allow: [192.168.100.0/24, "10.0.0.0/8:5900,5901"]
    token-file: /etc/vncedge/tokens
    handshake-timeout: 10s
    max-buffered: 16MiB

Signals:
  SIGTERM, SIGINT  drain: /readyz fails; with a --takeover successor on the
                   same addresses the listeners go to it at once, else new
                   upgrades get 503 until one binds; sessions left after
                   --drain-timeout close with 1001; a second signal exits
                   at once
  SIGHUP           re-read the config file and apply its allow, origin,
                   trusted-proxy, max-sessions, max-sessions-per-upstream,
                   max-sessions-per-ip, max-upgrades-per-ip, max-handshakes
                   and max-handshakes-per-ip (flags on the command line keep
                   their values; one bad value keeps all of these as they
                   run); re-read the token sources (token files, password
                   files, signing key, HTTP header file), the web root, the
                   TLS certificates, the VNC password and admin token
                   files. Each part that fails keeps what it had, the rest
                   applies, and the log names every failure
                   (vncedge_reload_errors_total). Sessions already open
                   keep what they opened with. Everything else needs a
                   restart (with --takeover, one that keeps sessions): the
                   listen, TLS and admin addresses, --loops, the token
                   source flags, --token-path, --token-cookie, the
                   timeouts, --max-frame, --max-buffered, --memory-budget,
                   --proxy-protocol, --allow-unix, recording, --rfb-errors,
                   --view-only, the paths of files, logging; the log names
                   the ones a reload saw changed and did not apply.

Exit status: 0 clean stop, 1 runtime failure, 2 bad flags or config.

Examples:
  # path routing: ws://HOST:6080/vnc/192.168.100.3 reaches 192.168.100.3:5901
  vncedge --allow 192.168.100.0/24 --web /usr/share/novnc

  # token routing: ws://HOST:6080/websockify?token=vm1 (tokens: "vm1: 10.0.0.5:5901")
  vncedge --token-file /etc/vncedge/tokens --allow 10.0.0.0/8:5900,5901

  # everything from a file, one setting overridden, JSON logs
  vncedge --config /etc/vncedge/vncedge.yaml --drain-timeout 2m --log-format json
`)
	return b.String()
}
