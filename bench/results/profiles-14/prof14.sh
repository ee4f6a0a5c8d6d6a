#!/usr/bin/env bash
# prof14.sh BIN TAG: CPU profile of a 5,000-session setup ramp, heap at 5,000 idle, CPU profile of 1000x10 msg/s.
set -u
cd /work/main
bin=$1; tag=$2; out=/work/prof14; mkdir -p $out
start() {
  ($bin --listen 127.0.0.1:16080 --admin 127.0.0.1:19090 --pprof --allow 127.0.0.0/8:1-65535 --log-level warn \
    --max-sessions-per-ip 0 --max-upgrades-per-ip 0 --max-handshakes-per-ip 0 2>/tmp/vx-$tag.log &)
  sleep 1; vx=$(pgrep -n -f "$bin --listen 127.0.0.1:16080")
}
start
( curl -s -o $out/$tag-setup.cpu.prof "http://127.0.0.1:19090/debug/pprof/profile?seconds=4" ) & p=$!
sleep 0.2
( sleep 6; curl -s -o $out/$tag-idle.heap.prof "http://127.0.0.1:19090/debug/pprof/heap?gc=1" ) & h=$!
timeout 120 ./bin/bench sessions --url 'ws://127.0.0.1:16080/vnc/{ip}' --sessions 5000 --hold 8s --pid $vx 2>&1 | grep -E "opened|proxy CPU|KiB" | sed "s/^/$tag setup: /"
wait $p $h; kill $vx; sleep 1
start
( sleep 4; curl -s -o $out/$tag-latency.cpu.prof "http://127.0.0.1:19090/debug/pprof/profile?seconds=8" ) & p=$!
timeout 120 ./bin/bench latency --vm-port 5931 --url 'ws://127.0.0.1:16080/vnc/{ip}:{port}' --pid $vx --sessions 1000 --rate 10 --duration 10s 2>&1 | grep -E "round trip|proxy CPU" | sed "s/^/$tag latency: /"
wait $p; kill $vx; sleep 1
