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

Flags take one dash or two (--listen or -listen) and their value after "="
or as the next argument. Durations are Go durations (500ms, 10s, 1m30s);
sizes are bytes or binary units (512K, 16M = 16MiB = 16777216). A 0
duration or limit turns that timeout or limit off.

Listeners:
`)
	opt("--listen ADDR", str(e.Listen), "WebSocket upgrades and static files.")
	opt("--admin ADDR", str(e.Admin),
		`/metrics, /healthz, /readyz (and /debug/pprof/ with --pprof); "" turns it off.`,
		"Keep it on a private address: it is not authenticated. Port 6089 sits",
		"next to the listen port's 6080 and clear of Prometheus's own 9090.")
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
		"Loopback, link-local and 0.0.0.0/8 stay refused unless an entry lies",
		"inside them: --allow 127.0.0.0/8 opens loopback, 0.0.0.0/0 does not.")
	opt("--token-file PATH", str(d.tokenFile),
		`websockify token file, or a directory of them: "token: host:port" lines.`,
		"Clients connect to --token-path?token=ID.")
	opt("--token-path PATH", d.tokenPath, "URL path of token routing.")
	opt("--token-watch D", dur(d.tokenWatch), "How often to check the token file for changes (SIGHUP also reloads).")
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
Timeouts:
`)
	opt("--handshake-timeout D", dur(e.HandshakeTimeout), "The whole HTTP upgrade (slowloris guard).")
	opt("--connect-timeout D", dur(e.ConnectTimeout), "Dialling the VNC server.")
	opt("--idle-timeout D", dur(e.IdleTimeout), "Close a session with no bytes either way for this long.")
	opt("--ping-interval D", dur(e.PingInterval), "Send the browser a WebSocket ping this often.")
	opt("--pong-timeout D", dur(e.PongTimeout), "Close a session whose browser has not answered a ping for this long.")
	opt("--drain-timeout D", dur(e.DrainTimeout),
		"On SIGTERM: stop accepting, wait this long for sessions to end, then",
		"close the rest with 1001. Keep it below the supervisor's stop timeout.")

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
		"Check the flags, the config file, the token file and the web root, print",
		`"configuration OK" and exit (status 0, or 2 with the error). Listens on nothing.`)
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
  SIGTERM, SIGINT  drain: stop accepting, close sessions with 1001 after
                   --drain-timeout; a second signal exits at once
  SIGHUP           re-read the token file(s) and the web root; a bad file
                   keeps the previous routing. Changes to flags or the
                   config file need a restart.

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
