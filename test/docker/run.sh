#!/usr/bin/env bash
# test/docker/run.sh — end-to-end tests of pglease in real containers
# (make docker-check).
#
# Usage: test/docker/run.sh [pytest args...]     e.g. -k kill
#
# 1. scripts/build-base-image.sh: pglease-base:bookworm and pglease-build:bookworm
#    from Debian packages (cached: returns at once when they are current).
# 2. Builds the app image once: pglease:$PGLEASE_IMAGE_TAG (default "dev").
# 3. Runs /usr/bin/python3 -m pytest -v test/docker.  Every test cluster is its
#    own compose project (pgl-t<pid>-<n>) with its own lease directory under
#    /var/tmp, and is removed with `docker-compose down -v` afterwards.
#
# Environment: PGLEASE_IMAGE_TAG (image tag, default dev), PGLEASE_DOCKER_SKIP_BUILD=1
# (use the existing images as they are), PGLEASE_DOCKER_TTL_MS /
# PGLEASE_DOCKER_RENEW_MS (lease timings of the test clusters, default 5000/1000).
# PGLEASE_DOCKER_BOOTSTRAPS (fresh clusters brought up at once by test_bootstrap, default 4).
# Exits non-zero on any failure.  Needs root (build-base-image.sh), docker,
# docker-compose, python3-pytest.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1

fail() { echo "docker tests: FAILED ($*)"; exit 1; }

command -v docker >/dev/null 2>&1 || fail "docker not found"
command -v docker-compose >/dev/null 2>&1 || fail "docker-compose not found"
docker info >/dev/null 2>&1 || fail "cannot talk to the Docker daemon"

py=
for cand in /usr/bin/python3 python3; do
	if "$cand" -c 'import pytest, sqlite3' >/dev/null 2>&1; then
		py=$cand
		break
	fi
done
[ -n "$py" ] || fail "no python3 with pytest (apt-get install python3-pytest)"

tag=${PGLEASE_IMAGE_TAG:-dev}
start=$(date +%s)
if [ "${PGLEASE_DOCKER_SKIP_BUILD:-0}" != 1 ]; then
	scripts/build-base-image.sh || fail "scripts/build-base-image.sh"
	docker build -q -f docker/Dockerfile -t "pglease:$tag" \
		--build-arg BASE_IMAGE=pglease-base:bookworm \
		--build-arg BUILD_IMAGE=pglease-build:bookworm . || fail "docker build of pglease:$tag"
	echo "docker tests: images ready in $(( $(date +%s) - start )) s"
fi
docker image inspect "pglease:$tag" >/dev/null 2>&1 || fail "image pglease:$tag missing"

run_id="pgl-t$$"

# Safety net if pytest itself dies: remove this run's compose projects (found
# by their label) and lease directories.  The tests normally do it themselves.
cleanup() {
	local p
	for p in $(docker ps -a --format '{{.Label "com.docker.compose.project"}}' 2>/dev/null |
		grep "^$run_id-" | sort -u); do
		echo "docker tests: removing leftover project $p"
		docker-compose -f "$root/docker-compose.yml" -p "$p" down -v -t 5 >/dev/null 2>&1
	done
	rm -rf /var/tmp/"$run_id"-*
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PGLEASE_IMAGE_TAG=$tag PGLEASE_DOCKER_RUN_ID=$run_id PYTHONDONTWRITEBYTECODE=1 \
	"$py" -m pytest -v -p no:cacheprovider --durations=0 -o faulthandler_timeout=600 "$here" "$@"
rc=$?
echo "docker tests: $([ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (pytest exit $rc)") in $(( $(date +%s) - start )) s"
exit "$rc"
