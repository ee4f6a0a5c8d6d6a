#!/usr/bin/env bash
# Installs what the end-to-end test needs: Debian packages given as
# arguments, and the npm packages of web/ and e2e/. Installs only what is
# missing; without root (and not in CI) it says what is missing and goes on,
# and the e2e test reports the skip.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# playwright-core needs Node >= 20; Debian's own nodejs is only a fallback.
command -v node >/dev/null || set -- "$@" nodejs npm
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "e2e-deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	else
		echo "e2e-deps: cannot install ${missing[*]} (need root and apt-get); the end-to-end test will skip"
	fi
fi
if command -v npm >/dev/null; then
	[[ -d web/node_modules/@novnc/novnc ]] || npm ci --prefix web --no-audit --no-fund --silent
	[[ -f web/dist/vnc.html ]] || node web/build.mjs
	[[ -d e2e/node_modules/playwright-core ]] || npm ci --prefix e2e --no-audit --no-fund --silent
else
	echo "e2e-deps: npm not found; the end-to-end test will skip"
fi
