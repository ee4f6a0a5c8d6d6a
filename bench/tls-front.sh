#!/usr/bin/env bash
# bench/tls-front.sh: wss:// terminated by vncedge itself (--tls-listen) against
# HAProxy terminating TLS in front of a plain vncedge (deploy/tls/haproxy.cfg's
# shape), on this machine, in one run: throughput of one session both ways and
# the session setup rate, with the proxies' CPU. The same vncedge process
# serves both paths (its TLS port, and its plain port behind HAProxy), so
# only where TLS ends differs.
#
#   bench/tls-front.sh            # binaries from bin/ (make build)
#   RUNS=3 BYTES=256M SETUPS=2000 bench/tls-front.sh
#
# Environment: BIN (directory of vncedge and bench; default bin/ next to
# bench/), RUNS (repetitions; 1), BYTES (per session and direction; 256M),
# SETUPS (sessions opened by the setup ramp; 2000), PORT_BASE (first of the
# four loopback ports used; 16400), KEEP_TMP=1 keeps the temporary directory
# (certificates, configuration, logs). Everything it starts is stopped and the
# temporary directory removed when it exits, also on Ctrl-C.
#
# What to read: bench prints each figure for "vncedge-tls" and "haproxy-tls"
# and their ratio vncedge-tls/haproxy-tls. The haproxy-tls CPU figures are
# HAProxy and vncedge together (bench samples the process tree that holds
# both), the cost of that deployment; vncedge-tls is vncedge alone. Memory
# figures of the second target are not comparable (the vncedge heap the first
# target grew is reused). TLS: a test CA and an ECDSA P-256 certificate made
# here; Go's client and vncedge negotiate TLS 1.3 with X25519MLKEM768 where
# HAProxy's OpenSSL 3.0 uses X25519 (set GODEBUG=tlsmlkem=0 to give vncedge
# the same key exchange).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bin=${BIN:-$here/../bin}
runs=${RUNS:-1}
bytes=${BYTES:-256M}
setups=${SETUPS:-2000}
base=${PORT_BASE:-16400}
ws=$base tls=$((base + 1)) ha=$((base + 2)) admin=$((base + 3))

for tool in "$bin/vncedge" "$bin/bench"; do
	[ -x "$tool" ] || { echo "tls-front.sh: $tool missing: run make build" >&2; exit 2; }
done
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$haproxy" ] || { echo "tls-front.sh: haproxy is not installed (apt-get install haproxy)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "tls-front.sh: openssl is not installed" >&2; exit 2; }
for p in $ws $tls $ha $admin; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "tls-front.sh: 127.0.0.1:$p is in use: set PORT_BASE" >&2
		exit 2
	fi
done

tmp=$(mktemp -d /tmp/tls-front.XXXXXX)
vncedge_pid= haproxy_pid= group_pid=
cleanup() {
	local rc=$?
	for p in $haproxy_pid $vncedge_pid; do
		kill "$p" 2>/dev/null || true
	done
	[ -n "$group_pid" ] && wait "$group_pid" 2>/dev/null || true
	if [ "${KEEP_TMP:-0}" = 1 ]; then
		echo "tls-front.sh: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A test CA and a server certificate for 127.0.0.1 signed by it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
	-subj /CN=tls-front-test-ca -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
	-keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
	-days 1 -extfile "$tmp/ext.cnf" -out "$tmp/server.pem" 2>/dev/null
cat "$tmp/server.pem" "$tmp/server.key" >"$tmp/haproxy.pem"
chmod 600 "$tmp"/*.key "$tmp/haproxy.pem"

# deploy/tls/haproxy.cfg cut to what this comparison needs: TLS with ALPN
# http/1.1, HTTP mode (the upgrade parsed, X-Forwarded-For added), then a
# tunnel; HAProxy's default thread count (one per CPU, like vncedge's loops).
cat >"$tmp/haproxy.cfg" <<EOF
global
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    maxconn 8000
    timeout connect 5s
    timeout http-request 10s
    timeout client 30s
    timeout server 30s
    timeout tunnel 2m
frontend tls_front
    bind 127.0.0.1:$ha ssl crt $tmp/haproxy.pem alpn http/1.1
    http-request del-header X-Forwarded-For
    option forwardfor
    default_backend vncedge
backend vncedge
    server edge1 127.0.0.1:$ws
EOF
"$haproxy" -c -q -f "$tmp/haproxy.cfg"

wait_port() { # wait_port PORT: up to 10 s for a listener
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "tls-front.sh: nothing listens on 127.0.0.1:$1 (logs in $tmp)" >&2
	return 1
}

# One parent for vncedge and HAProxy, so that bench samples the HAProxy path's
# CPU as both processes together (--vs-pid: the process tree).
(
	"$bin/vncedge" --listen "127.0.0.1:$ws" --tls-listen "127.0.0.1:$tls" \
		--tls-cert "$tmp/server.pem" --tls-key "$tmp/server.key" \
		--admin "127.0.0.1:$admin" --allow 127.0.0.0/8 --trusted-proxy 127.0.0.1/32 \
		--max-sessions-per-ip 0 --max-upgrades-per-ip 0 --max-handshakes-per-ip 0 \
		--log-level warn 2>>"$tmp/vncedge.log" &
	echo $! >"$tmp/vncedge.pid"
	"$haproxy" -db -f "$tmp/haproxy.cfg" >>"$tmp/haproxy.log" 2>&1 &
	echo $! >"$tmp/haproxy.pid"
	wait
) &
group_pid=$!
wait_port "$ws" && wait_port "$tls" && wait_port "$ha"
vncedge_pid=$(cat "$tmp/vncedge.pid") haproxy_pid=$(cat "$tmp/haproxy.pid")

echo "# tls-front.sh: $(nproc) CPUs, $(uptime)"
echo "# $("$bin/vncedge" --version 2>&1 | head -1); $("$haproxy" -v | head -1); $(openssl version)"
targets=(--url "wss://127.0.0.1:$tls/vnc/{ip}" --name vncedge-tls --pid "$vncedge_pid"
	--vs "wss://127.0.0.1:$ha/vnc/{ip}" --vs-name haproxy-tls --vs-pid "$group_pid" --ca "$tmp/ca.pem")
status=0
for r in $(seq "$runs"); do
	echo "== run $r/$runs: throughput, 1 session, $bytes each way"
	"$bin/bench" throughput "${targets[@]}" --sessions 1 --bytes "$bytes" || status=1
	echo "== run $r/$runs: setup rate, $setups sessions"
	"$bin/bench" sessions "${targets[@]}" --sessions "$setups" --hold 2s || status=1
done
exit $status
