#!/usr/bin/env bash
# build-base-image.sh - build pglease's Debian bookworm base images locally,
# for machines that cannot pull images from any registry.
#
# See --help for what it does. Run as root (debootstrap, chroot, mount).
set -euo pipefail

readonly SUITE=bookworm
readonly RUNTIME_TAG=pglease-base:${SUITE}
readonly BUILD_TAG=pglease-build:${SUITE}
readonly LABEL_KEY=org.pglease.base.cachekey

# Packages added to the minbase root for the runtime image.
readonly RUNTIME_PKGS=(postgresql-15 postgresql-client-15 libpq5 libsqlite3-0 libmicrohttpd12 libcurl4 libjansson4 sqlite3 tini haproxy xz-utils etcd-server etcd-client)
# Packages added on top of the runtime set for the build image.
readonly BUILD_PKGS=(gcc make pkg-config libpq-dev libsqlite3-dev libmicrohttpd-dev libcurl4-openssl-dev libjansson-dev libc6-dev postgresql-server-dev-15)

CACHE_DIR=${PGLEASE_BASE_CACHE_DIR:-/var/cache/pglease-base}
FORCE=0

usage() {
    cat <<EOF
Usage: $(basename "$0") [--force] [--help]

Builds two Docker images from Debian ${SUITE} packages without pulling any
image from a registry:

  ${RUNTIME_TAG}   minbase + ${RUNTIME_PKGS[*]}
  ${BUILD_TAG}  the same + ${BUILD_PKGS[*]}

How: debootstrap --variant=minbase a ${SUITE} root into the cache dir (the
minbase root is kept there as a tarball and reused), install the packages
with apt-get inside a chroot of it (using the host's network), then
'docker import' each root as an image. No network is needed inside Docker.

The Debian mirror is taken from this machine's own apt sources
(/etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources): the
entry for suite '${SUITE}' (plus ${SUITE}-updates and ${SUITE}-security when
listed). Images get the same mirror in /etc/apt/sources.list.d/debian.sources.
An http proxy configured for apt (Acquire::http::Proxy) is used too.

Both images carry the label ${LABEL_KEY}, a hash of this script's
contents (which include the package lists) and the mirror entries. When both
images exist with the current hash the script says so and exits at once.
Package versions are whatever the mirror serves at build time (security
updates included); use --force to pick up newer ones.

Options:
  --force   rebuild everything, including the cached minbase root
  --help    show this text

Environment:
  PGLEASE_BASE_CACHE_DIR   work/cache directory (default /var/cache/pglease-base)

Needs: root, debootstrap, docker, and network access to the Debian mirror.
EOF
}

log() { printf '[build-base-image] %s\n' "$*" >&2; }
die() { printf '[build-base-image] ERROR: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

# ---------------------------------------------------------------- preflight
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
command -v docker >/dev/null 2>&1 || die "docker not found in PATH"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running?)"

# ------------------------------------------------------- apt source parsing
# Print "TYPE URI SUITE COMPONENTS..." for every enabled deb entry in the
# host's apt sources (one-line and deb822 formats).
list_apt_entries() {
    local f
    if [ -f /etc/apt/sources.list ]; then
        awk '
            { sub(/#.*/, "") }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                line = "deb " $i " " $(i+1)
                for (j = i + 2; j <= NF; j++) line = line " " $j
                print line
            }' /etc/apt/sources.list
    fi
    for f in /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '
            { sub(/#.*/, "") }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                line = "deb " $i " " $(i+1)
                for (j = i + 2; j <= NF; j++) line = line " " $j
                print line
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush(   nu, ns, a, b, i, j) {
                if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no" && uris != "" && suites != "") {
                    nu = split(uris, a, " "); ns = split(suites, b, " ")
                    for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
                        print "deb " a[i] " " b[j] " " comps
                }
                types = uris = suites = comps = ""; enabled = "yes"; field = ""
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { # continuation line
                v = $0; gsub(/^[ \t]+|[ \t]+$/, "", v)
                if (field == "uris") uris = uris " " v
                else if (field == "suites") suites = suites " " v
                else if (field == "components") comps = comps " " v
                next
            }
            {
                k = tolower($0); sub(/:.*/, "", k)
                v = $0; sub(/^[^:]*:[ \t]*/, "", v); gsub(/[ \t]+$/, "", v)
                field = k
                if (k == "types") types = v
                else if (k == "uris") uris = v
                else if (k == "suites") suites = v
                else if (k == "components") comps = v
                else if (k == "enabled") enabled = v
            }
            END { flush() }' "$f"
    done
}

# First URI serving exactly suite $1 with component "main".
uri_for_suite() {
    awk -v s="$1" '$3 == s { for (i = 4; i <= NF; i++) if ($i == "main") { print $2; exit } }' <<<"$APT_ENTRIES"
}

APT_ENTRIES=$(list_apt_entries | awk '{ sub(/\/+$/, "", $2); print }')   # drop trailing "/" of URIs
MAIN_URI=$(uri_for_suite "$SUITE")
if [ -z "$MAIN_URI" ]; then
    # The host may run another Debian release: use its Debian archive URI.
    MAIN_URI=$(awk '$2 ~ /\/debian$/ { print $2; exit }' <<<"$APT_ENTRIES")
    [ -n "$MAIN_URI" ] || die "no Debian mirror found in this machine's apt sources
  (looked for a 'deb' entry for suite '$SUITE', component main, or a URI ending in /debian,
   in /etc/apt/sources.list, /etc/apt/sources.list.d/*.list and *.sources)"
    log "no '$SUITE' entry in apt sources; using the host's Debian archive $MAIN_URI"
fi
UPDATES_URI=$(uri_for_suite "$SUITE-updates")
[ -n "$UPDATES_URI" ] || UPDATES_URI=$(awk '$2 ~ /\/debian$/ && $3 ~ /-updates$/ { print $2; exit }' <<<"$APT_ENTRIES")
SECURITY_URI=$(uri_for_suite "$SUITE-security")
[ -n "$SECURITY_URI" ] || SECURITY_URI=$(awk '$2 ~ /\/debian-security$/ { print $2; exit }' <<<"$APT_ENTRIES")

# http(s) proxy from apt's configuration, if any (debootstrap uses wget).
APT_HTTP_PROXY=""
APT_HTTPS_PROXY=""
eval "$(apt-config shell APT_HTTP_PROXY Acquire::http::Proxy APT_HTTPS_PROXY Acquire::https::Proxy 2>/dev/null || true)"
[ -z "$APT_HTTP_PROXY" ] || export http_proxy="$APT_HTTP_PROXY"
[ -z "$APT_HTTPS_PROXY" ] || export https_proxy="$APT_HTTPS_PROXY"

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "$KEYRING missing: apt-get install debian-archive-keyring"

MINBASE_EXTRA=""
case "$MAIN_URI $UPDATES_URI $SECURITY_URI" in
    *https://*) MINBASE_EXTRA="ca-certificates" ;;
esac

# deb822 sources written into the images (same mirror as the host).
sources_file() {
    local suites=$SUITE
    [ "$UPDATES_URI" != "$MAIN_URI" ] || suites="$SUITE $SUITE-updates"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
        "$MAIN_URI" "$suites" "$KEYRING"
    if [ -n "$UPDATES_URI" ] && [ "$UPDATES_URI" != "$MAIN_URI" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-updates\nComponents: main\nSigned-By: %s\n' \
            "$UPDATES_URI" "$SUITE" "$KEYRING"
    fi
    if [ -n "$SECURITY_URI" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
            "$SECURITY_URI" "$SUITE" "$KEYRING"
    fi
}
SOURCES_CONTENT=$(sources_file)

ARCH=$(dpkg --print-architecture)
SCRIPT_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
MINBASE_KEY=$(printf '%s\n' "$SUITE" "$ARCH" "$MAIN_URI" "$MINBASE_EXTRA" \
    | sha256sum | cut -c1-16)
CACHE_KEY=$(printf '%s\n' "$SCRIPT_HASH" "$SUITE" "$ARCH" "$SOURCES_CONTENT" \
    "${RUNTIME_PKGS[*]}" "${BUILD_PKGS[*]}" "$MINBASE_EXTRA" | sha256sum | cut -c1-16)

log "mirror: $MAIN_URI (suite $SUITE${UPDATES_URI:+, $SUITE-updates}${SECURITY_URI:+, security $SECURITY_URI})"
log "cache key: $CACHE_KEY"

# ------------------------------------------------------------ cache check
image_key() { docker image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$1" 2>/dev/null || true; }

if [ "$FORCE" -eq 0 ] \
   && [ "$(image_key "$RUNTIME_TAG")" = "$CACHE_KEY" ] \
   && [ "$(image_key "$BUILD_TAG")" = "$CACHE_KEY" ]; then
    log "$RUNTIME_TAG and $BUILD_TAG are up to date (cache key $CACHE_KEY); nothing to do (--force rebuilds)"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || die "debootstrap not found: apt-get install debootstrap"

# ------------------------------------------------------------- the build
mkdir -p "$CACHE_DIR"
MINBASE_TAR=$CACHE_DIR/minbase-$SUITE-$ARCH-$MINBASE_KEY.tar
ROOT=$CACHE_DIR/root.$$
MOUNTED=()

cleanup() {
    local m
    for m in "${MOUNTED[@]+"${MOUNTED[@]}"}"; do umount -l "$m" 2>/dev/null || true; done
    # --one-file-system: never descend into anything still mounted
    [ ! -d "$ROOT" ] || rm -rf --one-file-system "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$FORCE" -eq 1 ]; then
    rm -f "$CACHE_DIR"/minbase-*.tar
fi

if [ ! -s "$MINBASE_TAR" ]; then
    log "debootstrap --variant=minbase $SUITE from $MAIN_URI (this takes a few minutes)"
    rm -f "$CACHE_DIR"/minbase-*.tar
    mkdir -p "$ROOT"
    if ! debootstrap --variant=minbase --arch="$ARCH" --keyring="$KEYRING" \
            ${MINBASE_EXTRA:+--include="$MINBASE_EXTRA"} \
            "$SUITE" "$ROOT" "$MAIN_URI" >"$CACHE_DIR/debootstrap.log" 2>&1; then
        tail -n 20 "$CACHE_DIR/debootstrap.log" >&2 || true
        [ ! -f "$ROOT/debootstrap/debootstrap.log" ] || tail -n 20 "$ROOT/debootstrap/debootstrap.log" >&2
        die "debootstrap failed (full log: $CACHE_DIR/debootstrap.log)"
    fi
    tar -C "$ROOT" --numeric-owner --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' \
        -cf "$MINBASE_TAR.tmp" .
    mv "$MINBASE_TAR.tmp" "$MINBASE_TAR"
    rm -rf --one-file-system "$ROOT"
else
    log "reusing cached minbase root $MINBASE_TAR"
fi

mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner -xpf "$MINBASE_TAR"

# Image-wide settings, done once in the root.
rm -f "$ROOT"/etc/apt/sources.list "$ROOT"/etc/apt/sources.list.d/*
printf '%s\n' "$SOURCES_CONTENT" >"$ROOT/etc/apt/sources.list.d/debian.sources"
# No daemons started by package scripts (as in Debian's official images).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
# Keep images small: no docs/man pages/locales from later installs.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$ROOT/etc/apt/apt.conf.d/docker-norecommends"
# As the official postgres image: packages must not create a "main" cluster.
mkdir -p "$ROOT/etc/postgresql-common/createcluster.d"
printf 'create_main_cluster = false\n' >"$ROOT/etc/postgresql-common/createcluster.d/pglease.conf"
# Docker manages these at run time.
: >"$ROOT/etc/machine-id"
printf 'localhost\n' >"$ROOT/etc/hostname"

cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"; MOUNTED+=("$ROOT/proc")

in_root() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
        ${http_proxy:+http_proxy="$http_proxy"} ${https_proxy:+https_proxy="$https_proxy"} "$@"
}

apt_install() {
    local what=$1; shift
    log "installing $what packages: $*"
    if ! in_root apt-get install -y -q --no-install-recommends "$@" >"$CACHE_DIR/apt-$what.log" 2>&1; then
        tail -n 30 "$CACHE_DIR/apt-$what.log" >&2
        die "apt-get install of $what packages failed (log: $CACHE_DIR/apt-$what.log)"
    fi
}

# Tar the root and import it as image $1 with the given summary description.
import_root() {
    local tag=$1 desc=$2
    log "importing $tag"
    in_root apt-get clean
    tar -C "$ROOT" --numeric-owner \
        --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* --exclude=./tmp/* \
        --exclude=./var/lib/apt/lists/* --exclude=./var/cache/apt/*.bin \
        --exclude=./var/log/apt/* --exclude=./var/log/dpkg.log \
        --exclude=./etc/resolv.conf \
        -cf - . \
    | docker import \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin" \
        --change "ENV LANG=C.UTF-8" \
        --change "LABEL $LABEL_KEY=$CACHE_KEY" \
        --change "LABEL org.pglease.base.description=\"$desc\"" \
        --change 'CMD ["/bin/bash"]' \
        --message "pglease $desc ($SUITE, built by scripts/build-base-image.sh)" \
        - "$tag" >/dev/null
}

log "apt-get update (in chroot)"
in_root apt-get update -q >"$CACHE_DIR/apt-update.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/apt-update.log" >&2; die "apt-get update failed in the chroot (log: $CACHE_DIR/apt-update.log)"; }
log "apt-get dist-upgrade (in chroot: pending ${SUITE}-updates/-security fixes)"
in_root apt-get dist-upgrade -y -q >"$CACHE_DIR/apt-upgrade.log" 2>&1 \
    || { tail -n 20 "$CACHE_DIR/apt-upgrade.log" >&2; die "apt-get dist-upgrade failed in the chroot (log: $CACHE_DIR/apt-upgrade.log)"; }
apt_install runtime "${RUNTIME_PKGS[@]}"
in_root test -x /usr/lib/postgresql/15/bin/postgres || die "postgres binary missing after install"
in_root id postgres >/dev/null || die "postgres user missing after install"
import_root "$RUNTIME_TAG" "runtime: ${RUNTIME_PKGS[*]}"

apt_install build "${BUILD_PKGS[@]}"
import_root "$BUILD_TAG" "build: runtime + ${BUILD_PKGS[*]}"

log "done: $RUNTIME_TAG and $BUILD_TAG (cache key $CACHE_KEY)"
docker image ls --filter "label=$LABEL_KEY=$CACHE_KEY" --format '  {{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' >&2
