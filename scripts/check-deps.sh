#!/usr/bin/env bash
# Says exactly which build or test dependency is missing, and how to get it.
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=("pkg-config (apt-get install pkg-config)")
if command -v pkg-config >/dev/null 2>&1; then
	pkg-config --exists libpq   || missing+=("libpq headers (apt-get install libpq-dev)")
	pkg-config --exists sqlite3 || missing+=("sqlite3 headers (apt-get install libsqlite3-dev)")
	pkg-config --exists libmicrohttpd || missing+=("libmicrohttpd headers (apt-get install libmicrohttpd-dev)")
	pkg-config --exists libcurl || missing+=("libcurl headers (apt-get install libcurl4-openssl-dev)")
	pkg-config --exists jansson || missing+=("jansson headers (apt-get install libjansson-dev)")
fi
command -v "${CC:-gcc}" >/dev/null 2>&1 || missing+=("a C compiler (apt-get install gcc)")
if [ ${#missing[@]} -gt 0 ]; then
	echo "pglease: missing build dependencies:" >&2
	for m in "${missing[@]}"; do echo "  - $m" >&2; done
	echo "Run: sudo scripts/install-deps.sh" >&2
	exit 1
fi
