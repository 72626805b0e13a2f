#!/usr/bin/env bash
# test/fuzz/make-corpus.sh — regenerates the seed corpora in test/fuzz/corpus.
#
# Usage: test/fuzz/make-corpus.sh MKSTORE
#
# MKSTORE is the CLI tests' fixture builder (test/cli/mkstore.c, built by
# test/cli/run.sh or by hand).  Store seeds are real stores made by
# pglease's own store code; cluster.db is also the base of
# fuzz_store_mutate.  Config seeds are small files written here.  Run it
# when the store schema changes; commit the result (a few dozen small files).
set -eu
mk=${1:?usage: $0 MKSTORE}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
s=$here/corpus/store
c=$here/corpus/config
m=$here/corpus/store_mutate
mkdir -p "$s" "$c" "$m"

store() {	# NAME: builds $tmp/NAME/lease.db with the commands on stdin
	mkdir -p "$tmp/$1"
	while read -r -a args; do "$mk" "$tmp/$1/lease.db" "${args[@]}"; done
	cp "$tmp/$1/lease.db" "$s/$1.db"
}

echo create | store fresh
store cluster <<'CMDS'
node n1 primary running - 1 0/3004000 - 100 host=pg1
claim n1 5000
node n2 standby streaming n1 1 0/3004000 0/3000000 100 host=pg2
node n3 standby streaming n1 1 0/3004000 0/3003C00 50 host=pg3
event n1 promoted timeline-1
sysid 7345678901234567890
CMDS
store released <<'CMDS'
node n1 primary stopped - 2 0/5000000 - 100 host=pg1
claim n1
release n1 0/5000000
event - note clean-stop
pause
CMDS

# config seeds: FILE, optionally "\0\0" then NUL-separated environment entries
printf 'node_name = pg1\nlease_db = /var/lib/pglease/lease.db\npg_port = 5432\n' > "$c/basic"
printf "# comment\n  node_name = 'pg-2'  # c\npgdata = '/a b' # q\nlog_level=debug\n" > "$c/quoted"
printf 'pg.shared_buffers = 128MB\npg.synchronous_standby_names = '"'"'ANY 1 (*)'"'"'\n' > "$c/pg"
printf 'allowed_network = 10.0.0.0/8\n' > "$c/net4"
printf 'allowed_network = fd00::/8\n' > "$c/net6"
printf 'allowed_network = samehost\nin_server_fence = on\n' > "$c/samehost"
printf 'allowed_network = 0.0.0.0/0 trust #\n' > "$c/net-bad"
printf 'lease_ttl_ms = 5000\nrenew_interval_ms = 2001\nfence_margin_ms = 1000\n' > "$c/timing"
printf 'node_name = a\nnode_name = b\npg.x = 1\npg.x = 2\n' > "$c/dup"
printf 'node_name = a\0b\npg_port = x\n' > "$c/nul"
printf 'pgdata = /a#b\nbogus = 1\njust words\n' > "$c/errors"
printf "replication_sslmode = verify-full\nreplication_sslrootcert = '/ca.pem'\nreplication_channel_binding = require\n" > "$c/ssl"
printf 'priority = 0\n\0\0PGLEASE_PG_PORT=6000\0PGLEASE_NODENAME=x\0PGLEASE_ALLOWED_NETWORK=::1/128' > "$c/env"
printf '\0\0PGLEASE_LEASE_DB=/x\0PGLEASE_BIN=/y\0PGLEASE_IT_X=1\0PGLEASE_PG_BINDIR=' > "$c/env-only"
printf 'http_listen = 127.0.0.1:8008\nmax_lag_on_failover = 1048576\n' > "$c/http"
printf 'http_listen = [::1]:80\non_role_change = hook\nhook_timeout_ms = 5\n' > "$c/http-bad"
printf 'on_role_change = /usr/local/bin/hook\nhook_timeout_ms = 30000\n' > "$c/hook"

# store_mutate seeds: 4-byte patches (3-byte offset, value) on cluster.db
printf '' > "$m/none"
printf '\x00\x00\x12\x01\x00\x00\x13\x01' > "$m/rollback-journal"	# header bytes 18, 19
printf '\x00\x00\x44\x00' > "$m/appid"
printf '\x00\x00\x1c\x00\x00\x00\x1d\x00\x00\x00\x1e\x00\x00\x00\x1f\x01' > "$m/pagecount"
echo "corpus: $(ls "$s" | wc -l) stores, $(ls "$c" | wc -l) configs, $(ls "$m" | wc -l) patches"
