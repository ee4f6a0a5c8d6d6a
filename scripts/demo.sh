#!/usr/bin/env bash
# Runs the demo: a simulated VM and vncedge in front of it, serving our
# noVNC viewer; prints the URLs and stops both on Ctrl-C.
set -euo pipefail
bin=$1 listen=$2 admin=$3 vm=$4
cd "$(dirname "$0")/.."

tokens=$(mktemp -t vncedge-demo-tokens.XXXXXX)
echo "demo: $vm" >"$tokens"
pids=()
cleanup() {
	kill "${pids[@]}" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -f "$tokens"
}
trap cleanup EXIT INT TERM

"$bin/bench" vm --listen "$vm" --mode desktop --name "vncedge demo" &
pids+=($!)
"$bin/vncedge" --listen "$listen" --admin "$admin" --allow 127.0.0.0/8 \
	--token-file "$tokens" --web web/dist &
pids+=($!)

host=${listen%:*}
[[ $host == 0.0.0.0 ]] && host=127.0.0.1
cat <<MSG

  vncedge demo is running. Open in a browser:

    http://$host:${listen##*:}/vnc.html?path=vnc/$vm&autoconnect=true     (path routing)
    http://$host:${listen##*:}/vnc.html?path=websockify?token=demo&autoconnect=true  (token routing)

  Metrics: http://$admin/metrics   Health: http://$admin/healthz
  Debian's full noVNC app works too: vncedge --web /usr/share/novnc ...
  Ctrl-C stops the demo.

MSG
wait -n "${pids[@]}"
