#!/usr/bin/env bash
# Make sure rsyslogd and its imrelp module are installed for the logship tests (SPEC 12).
# Silent and fast when they are. As root it installs them from Debian's archive (apt-get update
# only when the package lists do not know them, or when an install from stale lists fails) and
# stops and disables the system rsyslog service the package may start: the tests run private
# instances only. Not root, or the install failed: one line on stderr, exit 0, and the rsyslog
# tests are reported as skipped with the reason.
set -euo pipefail

PACKAGES=(rsyslog rsyslog-relp)

have_rsyslog() {
    local exe module
    exe=$(PATH="$PATH:/usr/sbin:/sbin" command -v rsyslogd) || return 1
    [[ -x $exe ]] || return 1
    for module in /usr/lib/*/rsyslog/imrelp.so /usr/lib/rsyslog/imrelp.so \
        /usr/lib64/rsyslog/imrelp.so; do
        [[ -e $module ]] && return 0
    done
    return 1
}

have_rsyslog && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "ensure_rsyslog: rsyslogd or its imrelp module is missing and this is not root:" \
        "the rsyslog (logship) tests will be skipped" >&2
    exit 0
fi

log=$(mktemp /tmp/ensure_rsyslog.XXXXXX.log)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive

known_to_apt() {
    local pkg policy
    for pkg in "${PACKAGES[@]}"; do
        policy=$(apt-cache policy "$pkg" 2>/dev/null) || return 1
        [[ $policy == *"Candidate: "[!\(]* ]] || return 1
    done
}

install() {
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$log" 2>&1
}

echo "ensure_rsyslog: installing ${PACKAGES[*]} for the logship tests" >&2
updated=no
if ! known_to_apt; then
    apt-get update -q >>"$log" 2>&1 || true
    updated=yes
fi
if ! install; then
    if [[ $updated == no ]] && apt-get update -q >>"$log" 2>&1 && install; then
        :
    else
        tail -n 20 "$log" >&2 || true
        echo "ensure_rsyslog: could not install ${PACKAGES[*]}: the rsyslog tests will be" \
            "skipped" >&2
        exit 0
    fi
fi

# The package may have started and enabled the system service (with systemd, or through
# invoke-rc.d without it). Stop and disable it; any of these may fail where there is no init
# system, which is fine.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now rsyslog.service syslog.socket >>"$log" 2>&1 || true
else
    if command -v systemctl >/dev/null 2>&1; then
        # No systemd running: this only removes the unit's enablement symlinks, offline.
        systemctl disable rsyslog.service >>"$log" 2>&1 || true
    fi
    if command -v service >/dev/null 2>&1; then
        service rsyslog stop >>"$log" 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1; then
        update-rc.d rsyslog disable >>"$log" 2>&1 || true
    fi
fi
# Whatever started it: the system instance is the one with the system pid file.
if [[ -e /run/rsyslogd.pid ]] && command -v start-stop-daemon >/dev/null 2>&1; then
    start-stop-daemon --stop --quiet --retry 5 --pidfile /run/rsyslogd.pid \
        --exec /usr/sbin/rsyslogd >>"$log" 2>&1 || true
fi

if ! have_rsyslog; then
    echo "ensure_rsyslog: ${PACKAGES[*]} installed but rsyslogd or imrelp is still missing:" \
        "the rsyslog tests will be skipped" >&2
fi
exit 0
