#!/usr/bin/env bash
# Runs every bench scenario against a freshly built vncedge, beside the --direct baseline and
# (when installed) Debian's websockify, then writes a Markdown report with charts.
#   bench/run.sh short   what `make bench` runs (a few minutes)
#   bench/run.sh full    the figures recorded in BENCHMARKS.md
# Environment: BENCH_BIN (a directory holding vncedge and bench already built; default:
# build them into $BENCH_OUT/bin), BENCH_OUT (default bench-results), BENCH_PORT (vncedge, default 16080),
# BENCH_ADMIN (default 19090), BENCH_WSPORT (websockify, default 16081), BENCH_VS=0 to skip
# websockify.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-short}
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
	vs=(--vs "ws://127.0.0.1:$wsport/websockify?token={token}" --vs-pid "$ws_pid")
fi

if [ "$mode" = full ]; then
	tp=(--sessions 1,8 --bytes 1G) lat=(--duration 10s) ses=(--sessions 1000,5000,9900 --hold 5s) churn=(--duration 10s)
else
	tp=(--sessions 1,4 --bytes 256M) lat=(--duration 5s) ses=(--sessions 1000,5000 --hold 2s) churn=(--duration 5s)
fi

run() { # run SCENARIO ARGS...: one scenario against a fresh proxy
	local s=$1
	shift
	start_proxy
	echo "== bench $s $*"
	"$bench" "$s" --direct --url "ws://127.0.0.1:$port/vnc/{ip}" --pid "$proxy_pid" --out "$out/$s.json" "$@"
	stop_proxy
	echo
}
run throughput "${tp[@]}" "${vs[@]}"
run latency --sessions 1000 --rate 10 "${lat[@]}" "${vs[@]}"
# websockify forks a process per session: thousands of them would swamp the machine.
run sessions "${ses[@]}"
run churn "${churn[@]}" "${vs[@]}"
"$bench" report --out "$out/report" "$out"/throughput.json "$out"/latency.json "$out"/sessions.json "$out"/churn.json
