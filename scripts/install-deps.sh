#!/usr/bin/env bash
# Installs the Debian 12 packages that building and testing pglease needs.
# Idempotent; run as root on a fresh Debian 12 machine.
set -euo pipefail
pkgs=(gcc make pkg-config libpq-dev libsqlite3-dev libmicrohttpd-dev sqlite3 postgresql-15
      postgresql-server-dev-15
      postgresql-client-15 python3 python3-pytest python3-psycopg2 perl util-linux
      iproute2 procps bc openssl debootstrap debian-archive-keyring clang libclang-rt-14-dev gnuplot-nox
      gdb haproxy libsystemd-dev xz-utils systemd
      libcurl4-openssl-dev libjansson-dev etcd-server etcd-client)
# The Docker tests need Compose; install Debian's when a Docker engine is present.
if command -v docker >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
	pkgs+=(docker-compose)
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps.sh: must run as root (it calls apt-get)" >&2
	exit 2
fi
need=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
	echo "install-deps.sh: all ${#pkgs[@]} packages already installed"
	exit 0
fi
echo "install-deps.sh: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
