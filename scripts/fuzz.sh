#!/usr/bin/env bash
# Runs every Fuzz* target in the module for the given time each (make fuzz:
# FUZZTIME, 5m by default) and prints a summary: executions, executions per
# second and corpus size per target. New failing inputs land in the
# package's testdata/fuzz as usual; the script exits 1 if any target failed.
#
# -fuzzminimizetime is bounded because minimizing a new input can stall a
# target for a minute (go test's default is 60s per input): on a small box
# that leaves the timed minutes nearly empty.
set -euo pipefail
fuzztime=${1:-5m}
parallel=${FUZZ_PARALLEL:-2}
only=${FUZZ_ONLY:-}
# FUZZ_PKGS: the packages to fuzz (go list patterns), every one by default.
pkgs=${FUZZ_PKGS:-./...}
cd "$(dirname "$0")/.."
out=${FUZZ_OUT:-artifacts/fuzz}
mkdir -p "$out"
summary=$out/summary.txt
: >"$summary"
status=0
for pkg in $(go list $pkgs); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		if [ -n "$only" ] && ! [[ " $only " == *" $target "* ]]; then
			continue
		fi
		log=$out/${pkg//\//_}.$target.log
		echo "fuzz: $pkg $target ($fuzztime)"
		result=ok
		if ! go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 100x \
			-parallel "$parallel" >"$log" 2>&1; then
			# Go's fuzz coordinator can fail a target at the end of -fuzztime with a bare
			# "context deadline exceeded" and nothing found (golang/go#75804, fixed in
			# go1.27): a finding always writes its input. Anything else is a failure.
			if ! grep -q 'Failing input written' "$log" && grep -q '^    context deadline exceeded$' "$log"; then
				result=ok-race
			else
				result=FAILED
				status=1
			fi
		fi
		# The last progress line: "fuzz: elapsed: 5m0s, execs: N (R/sec), new interesting: K (total: T)"
		last=$(grep -E '^fuzz: elapsed' "$log" | tail -1 || true)
		execs=$(sed -nE 's/.*execs: ([0-9]+) .*/\1/p' <<<"$last")
		# The line's own rate covers its last 3 s only (often 0 while a new input is
		# minimized), so the summary gives the mean over the whole run.
		elapsed=$(sed -nE 's/^fuzz: elapsed: ([0-9hms]+),.*/\1/p' <<<"$last")
		secs=0
		if [[ $elapsed =~ ^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?$ ]]; then
			secs=$(( ${BASH_REMATCH[2]:-0} * 3600 + ${BASH_REMATCH[4]:-0} * 60 + ${BASH_REMATCH[6]:-0} ))
		fi
		rate=
		if [ -n "$execs" ] && [ "$secs" -gt 0 ]; then
			rate=$(( execs / secs ))
		fi
		corpus=$(sed -nE 's/.*\(total: ([0-9]+)\).*/\1/p' <<<"$last")
		printf '%-28s %-28s %-6s execs %-12s %-8s/s corpus %s\n' "${pkg#vncedge/}" "$target" "$result" \
			"${execs:-?}" "${rate:-?}" "${corpus:-?}" | tee -a "$summary"
	done
done
echo "summary in $summary"
exit $status
