#!/usr/bin/env bash
# make soak: a long run of churn (sessions opened, used and closed continuously) beside
# thousands of live echo sessions, against one fresh vncedge; then checks that the proxy's
# resident memory, descriptors and goroutines came back near where they started, and exits
# non-zero on a leak.
#   scripts/soak.sh [BIN_DIR]     BIN_DIR holds vncedge and bench (default: build into a temp dir)
# Environment (defaults in brackets):
#   SOAK_MINUTES [15]              length of the load phase
#   SOAK_SESSIONS [2000]           live echo sessions held for the whole load phase
#   SOAK_RATE [1]                  messages per second per live session
#   SOAK_CHURN [4]                 concurrent open-use-close loops (each as fast as it can)
#   SOAK_PORT [17080] SOAK_ADMIN [19180]   the proxy's listen and admin ports (127.0.0.1)
#   SOAK_VM_PORT [17901]           port of the simulated VMs (two: this one and the next)
#   SOAK_OUT [artifacts/soak]      logs and JSON results
#   SOAK_RSS_SLACK_MIB [24]        allowed resident memory above the start after the run
#   SOAK_GROWTH_SLACK_MIB [16]     allowed RSS growth under steady load (minute 2 -> end)
#   SOAK_FD_SLACK [4] SOAK_GOROUTINE_SLACK [4]
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${SOAK_MINUTES:-15}
sessions=${SOAK_SESSIONS:-2000}
rate=${SOAK_RATE:-1}
churn=${SOAK_CHURN:-4}
port=${SOAK_PORT:-17080}
admin=${SOAK_ADMIN:-19180}
vmport=${SOAK_VM_PORT:-17901}
out=${SOAK_OUT:-artifacts/soak}
rss_slack=${SOAK_RSS_SLACK_MIB:-24}
growth_slack=${SOAK_GROWTH_SLACK_MIB:-16}
fd_slack=${SOAK_FD_SLACK:-4}
gr_slack=${SOAK_GOROUTINE_SLACK:-4}

mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)
	go build -trimpath -o "$bin/vncedge" ./cmd/vncedge
	go build -trimpath -o "$bin/bench" ./cmd/bench
fi
bin=$(cd "$bin" && pwd)

for p in "$port" "$admin" "$vmport" "$((vmport + 1))"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		echo "soak: port $p is taken; set SOAK_PORT, SOAK_ADMIN or SOAK_VM_PORT" >&2
		exit 2
	fi
done

pids=()
proxy_pid=
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT

# Every client is 127.x and opens hundreds of sessions a second: the per-address limits
# have their own tests and are lifted here, as in bench/run.sh.
"$bin/vncedge" --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --pprof \
	--allow "127.0.0.0/8:$vmport-$((vmport + 1))" --log-level warn \
	--max-sessions-per-ip 0 --max-upgrades-per-ip 0 --max-handshakes-per-ip 0 \
	2>"$out/vncedge.log" &
proxy_pid=$!

ready=
for _ in $(seq 150); do
	if curl -fsS -m 1 "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; then
		ready=1
		break
	fi
	kill -0 "$proxy_pid" 2>/dev/null || break
	sleep 0.1
done
if [ -z "$ready" ]; then
	echo "soak: vncedge did not become ready; its log:" >&2
	tail -20 "$out/vncedge.log" >&2
	exit 1
fi

# sample: RSS in KiB, open descriptors, goroutines, live sessions, open connections.
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$proxy_pid/status"; }
fds() { find "/proc/$proxy_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
goroutines() { curl -fsS -m 5 "http://127.0.0.1:$admin/debug/pprof/goroutine?debug=1" | awk 'NR == 1 {print $NF}'; }
metric() { curl -fsS -m 5 "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
sample() { # sample LABEL: one row of figures, also kept in the SAMPLE_* variables
	SAMPLE_RSS=$(rss)
	SAMPLE_FDS=$(fds)
	SAMPLE_GR=$(goroutines)
	SAMPLE_SESS=$(metric vncedge_sessions_active)
	SAMPLE_CONN=$(metric vncedge_connections_open)
	printf '%-22s %10.1f %8d %11d %9d %12d\n' "$1" "$(echo "$SAMPLE_RSS / 1024" | bc -l)" \
		"$SAMPLE_FDS" "$SAMPLE_GR" "$SAMPLE_SESS" "$SAMPLE_CONN" | tee -a "$out/samples.txt"
}
header() { printf '%-22s %10s %8s %11s %9s %12s\n' when "RSS MiB" fds goroutines sessions connections; }

echo "soak: ${minutes} min: $sessions live echo sessions at $rate msg/s, $churn churn loops; vncedge pid $proxy_pid"
header
rm -f "$out/samples.txt"
sample start
curl -fsS -m 5 "http://127.0.0.1:$admin/debug/pprof/goroutine?debug=1" >"$out/goroutines-start.txt"
start_rss=$SAMPLE_RSS start_fds=$SAMPLE_FDS start_gr=$SAMPLE_GR

url="ws://127.0.0.1:$port/vnc/{ip}:{port}"
"$bin/bench" latency --url "$url" --vm-port "$vmport" --sessions "$sessions" --rate "$rate" \
	--duration "${minutes}m" --timeout 30s --json >"$out/latency.json" 2>"$out/latency.log" &
pids+=($!)
# The churn starts once the live sessions are open, so both run for the same stretch.
for _ in $(seq 600); do
	n=$(metric vncedge_sessions_active)
	[ "${n%.*}" -ge "$sessions" ] && break
	sleep 0.5
done
"$bin/bench" churn --url "$url" --vm-port "$((vmport + 1))" --concurrency "$churn" \
	--duration "${minutes}m" --timeout 30s --json >"$out/churn.json" 2>"$out/churn.log" &
pids+=($!)

# The growth check compares samples taken with every live session open: minute 2 (the
# processes warmed up) and the last such minute.
minute2_rss= last_load_rss= last_load_minute=
for m in $(seq "$minutes"); do
	sleep 60
	sample "load, minute $m"
	[ "${SAMPLE_SESS%.*}" -ge "$sessions" ] || continue
	[ "$m" = 2 ] && minute2_rss=$SAMPLE_RSS
	last_load_rss=$SAMPLE_RSS last_load_minute=$m
done
fail=0
for p in "${pids[@]}"; do
	wait "$p" || { echo "soak: a bench process failed (see $out/*.log)" >&2; fail=1; }
done
pids=()
# Closed sessions linger for the close handshake; the proxy hands freed memory back on its
# ticker once the live-session count has dropped.
sleep 15
sample "end (settled)"
# gnet's worker pool (ants) keeps idle workers for 10 to 20 s after their last task: give them
# the time to expire before calling extra goroutines a leak.
for _ in 1 2 3 4 5 6; do
	[ $((SAMPLE_GR - start_gr)) -le "$gr_slack" ] && break
	sleep 5
	sample "end (+idle workers)"
done
curl -fsS -m 5 "http://127.0.0.1:$admin/debug/pprof/goroutine?debug=1" >"$out/goroutines-end.txt"

churned=$(jq -r '.results[0].churned // 0' "$out/churn.json" 2>/dev/null || echo "?")
churn_failed=$(jq -r '.results[0].open_failed // 0' "$out/churn.json" 2>/dev/null || echo "?")
echoes=$(jq -r '.results[0].messages // 0' "$out/latency.json" 2>/dev/null || echo "?")
lat_failed=$(jq -r '.results[0].open_failed // 0' "$out/latency.json" 2>/dev/null || echo "?")
lat_errors=$(jq -r '.results[0].errors // 0' "$out/latency.json" 2>/dev/null || echo "?")
p99=$(jq -r '.results[0].rtt.p99_ms // "?"' "$out/latency.json" 2>/dev/null || echo "?")
opened=$(metric vncedge_sessions_opened_total)
echo
echo "sessions opened by the proxy: $opened; churned $churned (open failures $churn_failed);"
echo "live sessions: $echoes echoes, round trip p99 $p99 ms, open failures $lat_failed, errors $lat_errors"
echo
printf '%-12s %10s %10s %10s %10s\n' "" start end change allowed
printf '%-12s %10.1f %10.1f %+10.1f %10s\n' "RSS MiB" "$(echo "$start_rss/1024" | bc -l)" \
	"$(echo "$SAMPLE_RSS/1024" | bc -l)" "$(echo "($SAMPLE_RSS-$start_rss)/1024" | bc -l)" "+$rss_slack"
printf '%-12s %10d %10d %+10d %10s\n' fds "$start_fds" "$SAMPLE_FDS" "$((SAMPLE_FDS - start_fds))" "+$fd_slack"
printf '%-12s %10d %10d %+10d %10s\n' goroutines "$start_gr" "$SAMPLE_GR" "$((SAMPLE_GR - start_gr))" "+$gr_slack"
if [ -n "$minute2_rss" ]; then
	printf '%-12s %10.1f %10.1f %+10.1f %10s   (under load: minute 2 -> minute %d)\n' "RSS load" \
		"$(echo "$minute2_rss/1024" | bc -l)" "$(echo "$last_load_rss/1024" | bc -l)" \
		"$(echo "($last_load_rss-$minute2_rss)/1024" | bc -l)" "+$growth_slack" "$last_load_minute"
fi

leak() { echo "soak: LEAK: $*" >&2; fail=1; }
[ $((SAMPLE_RSS - start_rss)) -le $((rss_slack * 1024)) ] || leak "resident memory $((SAMPLE_RSS / 1024)) MiB, started at $((start_rss / 1024)) MiB"
[ $((SAMPLE_FDS - start_fds)) -le "$fd_slack" ] || leak "$SAMPLE_FDS descriptors open, started with $start_fds"
[ $((SAMPLE_GR - start_gr)) -le "$gr_slack" ] || leak "$SAMPLE_GR goroutines, started with $start_gr"
[ "${SAMPLE_SESS%.*}" = 0 ] || leak "$SAMPLE_SESS sessions still active"
[ "${SAMPLE_CONN%.*}" = 0 ] || leak "$SAMPLE_CONN connections still open"
if [ -n "$minute2_rss" ] && [ $((last_load_rss - minute2_rss)) -gt $((growth_slack * 1024)) ]; then
	leak "resident memory grew by $(((last_load_rss - minute2_rss) / 1024)) MiB under steady load"
fi
if [ "$churned" = 0 ] || [ "$echoes" = 0 ]; then
	echo "soak: the load did not run (churned $churned, echoes $echoes)" >&2
	fail=1
fi
kill -0 "$proxy_pid" 2>/dev/null || { echo "soak: vncedge exited during the run" >&2; fail=1; }
if [ "$fail" = 0 ]; then
	echo "soak: OK"
fi
exit "$fail"
