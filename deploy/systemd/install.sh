#!/bin/sh
# Installs vncedge as a systemd service: the steps deploy/README.md lists,
# as one script, so the documented install is the tested one
# (deploy/install_test.go runs it into a scratch root and checks that
# `vncedge --check` passes there, as the service's user would see it).
#
# Usage, from the repository root after `make build`, as root:
#   deploy/systemd/install.sh
# Environment:
#   BIN      the binary to install (default bin/vncedge)
#   DESTDIR  install under this root instead of / (packaging, tests): the
#            system steps (sysctl --system, systemctl) are skipped, and the
#            token group is added to DESTDIR/etc/group
#
# Re-running it upgrades the binary and the unit and keeps the config file
# and the tokens an operator has edited.
set -eu

BIN=${BIN:-bin/vncedge}
DESTDIR=${DESTDIR:-}
# Token files are secrets: readable by root and by this group only. The
# service runs as a transient user (DynamicUser=yes) and joins the group
# through SupplementaryGroups= in the unit.
GROUP=vncedge-tokens

say() { echo "install: $*"; }

[ -x "$BIN" ] || { echo "install: $BIN is missing: run make build first" >&2; exit 1; }
[ -f deploy/systemd/vncedge.service ] || { echo "install: run me from the repository root" >&2; exit 1; }

# 1. The binary, the unit and the kernel settings (always replaced).
install -D -m 0755 "$BIN" "$DESTDIR/usr/local/bin/vncedge"
install -D -m 0644 deploy/systemd/vncedge.service "$DESTDIR/etc/systemd/system/vncedge.service"
# The two slots for restarts that keep sessions, and the script that rolls
# from one to the other (deploy/README.md); vncedge.service stays the one
# started here until the first vncedge-rollout takes over from it.
install -D -m 0644 deploy/systemd/vncedge@.service "$DESTDIR/etc/systemd/system/vncedge@.service"
install -D -m 0755 deploy/systemd/vncedge-rollout "$DESTDIR/usr/local/sbin/vncedge-rollout"
install -D -m 0644 deploy/sysctl/99-vncedge.conf "$DESTDIR/etc/sysctl.d/99-vncedge.conf"

# 2. The config file, only if there is none yet (it is the operator's).
if [ -e "$DESTDIR/etc/vncedge/vncedge.yaml" ]; then
	say "keeping the existing /etc/vncedge/vncedge.yaml"
else
	install -D -m 0644 deploy/systemd/vncedge.yaml "$DESTDIR/etc/vncedge/vncedge.yaml"
fi

# 3. The token group and directory: root:vncedge-tokens, directory 0750 and
#    files 0640, so the service (in the group) reads them and other users
#    do not. vncedge.yaml's token-file points here.
if [ -n "$DESTDIR" ]; then
	mkdir -p "$DESTDIR/etc"
	[ -e "$DESTDIR/etc/group" ] || install -m 0644 /dev/null "$DESTDIR/etc/group"
	[ -e "$DESTDIR/etc/gshadow" ] || install -m 0600 /dev/null "$DESTDIR/etc/gshadow"
	grep -q "^$GROUP:" "$DESTDIR/etc/group" || groupadd --system --prefix "$DESTDIR" "$GROUP"
	gid=$(awk -F: -v g="$GROUP" '$1 == g { print $3 }' "$DESTDIR/etc/group")
else
	getent group "$GROUP" >/dev/null || groupadd --system "$GROUP"
	gid=$GROUP
fi
tokens="$DESTDIR/etc/vncedge/tokens"
install -d -m 0750 "$tokens"
chown "root:$gid" "$tokens"
chmod 0750 "$tokens"
# Files already there (an upgrade, or tokens copied in by hand) get the same.
find "$tokens" -mindepth 1 -type f -exec chown "root:$gid" {} + -exec chmod 0640 {} +

# 4. Check before starting: a failed check leaves the running service alone.
if [ -n "$DESTDIR" ]; then
	say "installed under $DESTDIR; check with: vncedge --config $DESTDIR/etc/vncedge/vncedge.yaml --check"
	exit 0
fi
/usr/local/bin/vncedge --config /etc/vncedge/vncedge.yaml --check
sysctl --system >/dev/null
systemctl daemon-reload
if systemctl is-active --quiet 'vncedge@*'; then
	say "a vncedge@ slot serves the old binary: vncedge-rollout starts the new one, keeping sessions"
	exit 0
fi
if systemctl is-active --quiet vncedge; then
	say "vncedge was already running the old binary: vncedge-rollout moves to the new one keeping sessions" \
		"(systemctl restart vncedge would end them)"
fi
systemctl enable --now vncedge
say "vncedge is running: systemctl status vncedge; journalctl -u vncedge"
