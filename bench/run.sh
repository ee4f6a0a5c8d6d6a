#!/usr/bin/env bash
# Runs every bench scenario against a freshly built vncedge, beside the --direct baseline, the
# C-relay baseline (HAProxy in TCP mode relaying the VMs' own WebSocket, when installed) and
# Debian's websockify (when installed), then writes a Markdown report with charts and prints
# every figure and ratio.
#   bench/run.sh short   what `make bench` runs (a few minutes)
#   bench/run.sh full    the figures recorded in BENCHMARKS.md
#   bench/run.sh tiny    a smoke run of every scenario and baseline (about a minute; its
#                        figures mean nothing, it shows the tools work)
# Environment: BENCH_BIN (a directory holding vncedge and bench already built; default:
# build them into $BENCH_OUT/bin), BENCH_OUT (default bench-results), BENCH_PORT (vncedge,
# default 16080), BENCH_ADMIN (default 19090), BENCH_WSPORT (websockify, default 16081),
# BENCH_VS=0 to skip websockify, BENCH_CRELAY=0 to skip HAProxy, BENCH_ONLY="latency setup"
# to run only some scenarios.
# Exit status: non-zero when any scenario failed (failed sessions, a baseline that did not
# run); every scenario still runs and the report is still written.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-short}
case "$mode" in short | full | tiny) ;; *)
	echo "usage: bench/run.sh [short|full|tiny]" >&2
	exit 2
	;;
esac
out=${BENCH_OUT:-bench-results}
port=${BENCH_PORT:-16080}
admin=${BENCH_ADMIN:-19090}
wsport=${BENCH_WSPORT:-16081}
mkdir -p "$out/bin"
out=$(cd "$out" && pwd)
bin=${BENCH_BIN:-}
if [ -z "$bin" ]; then
	bin=$out/bin
	go build -o "$bin/vncedge" ./cmd/vncedge
	go build -o "$bin/bench" ./cmd/bench
fi
bin=$(cd "$bin" && pwd)
bench=$bin/bench
tokens=$out/tokens
"$bench" tokens --file "$tokens" --sessions 50000

proxy_pid=
ws_pid=
cleanup() {
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true
	[ -n "$ws_pid" ] && kill "$ws_pid" 2>/dev/null && wait "$ws_pid" 2>/dev/null || true
}
trap cleanup EXIT

wait_port() { # wait_port PORT: up to 10 s for a listener
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$1" >&2
	return 1
}

# A fresh proxy for every scenario, so each memory figure starts from a clean process.
# The load comes from a few 127.x addresses, so the per-address limits are off.
start_proxy() {
	"$bin/vncedge" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --pprof \
		--allow 127.0.0.0/8 --token-file "$tokens" --log-level warn \
		--max-sessions-per-ip 0 --max-upgrades-per-ip 0 --max-handshakes-per-ip 0 \
		2>>"$out/vncedge.log" &
	proxy_pid=$!
	wait_port "$port"
}
stop_proxy() {
	kill "$proxy_pid" && wait "$proxy_pid" 2>/dev/null || true
	proxy_pid=
}

vs=()
if [ "${BENCH_VS:-1}" != 0 ] && command -v websockify >/dev/null; then
	websockify --token-plugin TokenFile --token-source "$tokens" "127.0.0.1:$wsport" >>"$out/websockify.log" 2>&1 &
	ws_pid=$!
	wait_port "$wsport"
	# websockify fails hundreds of 1,000 concurrent sessions (select() past descriptor 1,024):
	# a known limit of the comparison, reported, not a failure of this run.
	vs=(--vs "ws://127.0.0.1:$wsport/websockify?token={token}" --vs-pid "$ws_pid" --vs-may-fail)
fi

crelay=()
if [ "${BENCH_CRELAY:-1}" != 0 ]; then
	if command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; then
		crelay=(--c-relay haproxy)
	else
		echo "bench/run.sh: WARNING: haproxy is not installed (apt-get install haproxy): no C-relay baseline" >&2
	fi
fi

sources=file,jwt,http
if command -v redis-server >/dev/null; then
	sources=file,redis,jwt,http
else
	echo "bench/run.sh: WARNING: redis-server is not installed (apt-get install redis-server): token-sources without Redis" >&2
fi

if [ "$mode" = full ]; then
	tp=(--sessions 1,8 --bytes 1G) lat=(--duration 10s) ses=(--sessions 1000,5000,9900 --hold 5s) churn=(--duration 10s)
	setup=(--sessions 5000 --strace-sessions 1000) desk=(--sessions 200 --duration 10s) tsrc=(--sessions 5000)
elif [ "$mode" = short ]; then
	tp=(--sessions 1,4 --bytes 256M) lat=(--duration 5s) ses=(--sessions 1000,5000 --hold 2s) churn=(--duration 5s)
	setup=(--sessions 3000 --strace-sessions 500) desk=(--sessions 100 --duration 5s) tsrc=(--sessions 2000)
else
	tp=(--sessions 1,2 --bytes 8M --settle 0) lat=(--sessions 50 --duration 1s --settle 0) ses=(--sessions 200 --hold 0 --settle 0)
	churn=(--duration 1s --settle 0) setup=(--sessions 300 --strace-sessions 100 --settle 0)
	desk=(--sessions 10 --duration 1s --settle 0) tsrc=(--sessions 100)
fi

# quiet: before a scenario, wait (up to 60 s) until the cores are at least 80% idle over a second:
# the previous scenario's baselines (websockify's forked processes above all) wind down for tens
# of seconds, and a latency run started in their wake measured their load, not the proxy
# (p99 4.3x direct at load 5, against 1.1x on a quiet box).
cpu_idle() { # percent idle over one second, from /proc/stat
	local a b
	read -r _ a1 a2 a3 a4 a5 _ </proc/stat
	sleep 1
	read -r _ b1 b2 b3 b4 b5 _ </proc/stat
	a=$((b1 + b2 + b3 + b4 + b5 - a1 - a2 - a3 - a4 - a5))
	b=$((b4 - a4))
	echo $((a > 0 ? 100 * b / a : 100))
}
quiet() {
	[ "$mode" = tiny ] && return 0
	local idle
	for _ in $(seq 60); do
		idle=$(cpu_idle)
		[ "$idle" -ge 80 ] && return 0
	done
	echo "bench/run.sh: WARNING: the cores stayed busy (${idle}% idle) for 60 s: figures will be noisy" >&2
}

failed=()
wanted() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }
run() { # run SCENARIO ARGS...: one scenario against a fresh proxy; a failure is noted, not fatal
	local s=$1
	shift
	wanted "$s" || return 0
	quiet
	start_proxy
	echo "== bench $s $*"
	if ! "$bench" "$s" --direct --url "ws://127.0.0.1:$port/vnc/{ip}" --pid "$proxy_pid" \
		--admin-url "http://127.0.0.1:$admin" --out "$out/$s.json" "$@"; then
		failed+=("$s")
	fi
	stop_proxy
	echo
}
run throughput "${tp[@]}" "${crelay[@]}" "${vs[@]}"
run latency --sessions 1000 --rate 10 "${lat[@]}" "${crelay[@]}" "${vs[@]}"
# websockify forks a process per session: thousands of them would swamp the machine. HAProxy
# would need 2 of its 20,000 descriptors per session plus one listener per VM, past the
# machine's ceiling at 9,900: its setup cost is in the setup scenario instead.
run sessions "${ses[@]}"
run setup "${setup[@]}" "${crelay[@]}"
run churn "${churn[@]}" "${crelay[@]}" "${vs[@]}"
run desktops --kbps 256 --fps 20 --input 10 "${desk[@]}" "${crelay[@]}"
if wanted token-sources; then
	quiet
	echo "== bench token-sources --sources $sources ${tsrc[*]}"
	if ! "$bench" token-sources --vncedge "$bin/vncedge" --direct --sources "$sources" --concurrency 1000 \
		--dir "$out/token-sources" --out "$out/token-sources.json" "${tsrc[@]}"; then
		failed+=(token-sources)
	fi
	echo
fi

results=()
for s in throughput latency sessions setup churn desktops token-sources; do
	[ -f "$out/$s.json" ] && wanted "$s" && results+=("$out/$s.json")
done
if [ ${#results[@]} -gt 0 ]; then
	"$bench" report --out "$out/report" "${results[@]}"
	echo "== every figure and ratio ($out/report/report.md)"
	cat "$out/report/report.md"
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "bench/run.sh: FAILED: ${failed[*]} (see above)" >&2
	exit 1
fi
