#!/usr/bin/env bash
# install.sh — install the peer failover managers the side-by-side benchmark
# compares pglease with, from Debian 12 packages.  Idempotent; run as root.
#
#   repmgr            postgresql-15-repmgr  (repmgr + repmgrd)
#   Patroni           patroni + etcd-server (local etcd, v2 API or etcd3)
#   pg_auto_failover  postgresql-15-auto-failover + pg-auto-failover-cli
#   probe, charts     libpq-dev + gcc (probe.c), gnuplot-nox, sqlite3
#
# No service is enabled: Debian's packages start etcd (and, for postgresql,
# the "main" cluster) on install; we stop/disable only the units the packages
# would start, never processes started by other people.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive

pkgs="postgresql-15 postgresql-client-15 libpq-dev gcc make
postgresql-15-repmgr
patroni etcd-server etcd-client python3-psycopg2 python3-etcd
postgresql-15-auto-failover pg-auto-failover-cli
gnuplot-nox sqlite3 procps"

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# python3-etcd3 lets Patroni use etcd's v3 API (etcd3: section); optional.
opt="python3-etcd3"

apt-get update -qq
if [ -n "$missing" ]; then
	# policy-rc.d: keep the packages' postinst from starting daemons (etcd, the
	# Debian 'main' postgres cluster); the benchmark starts its own.
	had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
	if [ $had_policy -eq 0 ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
	fi
	trap '[ $had_policy -eq 1 ] || rm -f /usr/sbin/policy-rc.d' EXIT
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing
fi
if apt-cache show "$opt" >/dev/null 2>&1; then
	dpkg-query -W -f='${Status}' "$opt" 2>/dev/null | grep -q "install ok installed" \
		|| apt-get install -y -qq --no-install-recommends "$opt" || true
fi

echo "installed versions:"
for p in postgresql-15 postgresql-15-repmgr patroni etcd-server python3-etcd python3-etcd3 \
	postgresql-15-auto-failover pg-auto-failover-cli python3-psycopg2 gnuplot-nox; do
	printf '  %-28s %s\n' "$p" "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '-')"
done
