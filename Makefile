# pglease — build, test and sanitize.
#
#   make            build ./pglease
#   make check      unit, CLI, in-server fence and integration tests (real PostgreSQL 15)
#   make unit       unit tests only (no PostgreSQL needed)
#   make sanitize   rebuild everything with ASan + UBSan and run the unit tests
#   make fuzz       libFuzzer targets (clang) for the config parser and the store
#                   reader, FUZZ_SECONDS (default 60) each
#   make docker-check  end-to-end tests in real containers
#   make nemesis    the randomized fault campaign: FAULTS=500 SEED=1 MODE=sync|async
#                   NODES=3|5 TTL_MS=2000 STORE=sqlite|etcd NEMESIS_OUT=nemesis-out

CC      ?= gcc
PKGS    := libpq sqlite3 libmicrohttpd libcurl jansson
# sd_notify for systemd's Type=notify: on when libsystemd-dev is installed
# (make SYSTEMD=0 builds without it; the notifications then do nothing).
SYSTEMD ?= $(shell pkg-config --exists libsystemd 2>/dev/null && echo 1 || echo 0)
ifeq ($(SYSTEMD),1)
PKGS    += libsystemd
SYSTEMD_DEF := -DPGL_HAVE_SYSTEMD
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Iinclude $(PKG_CFLAGS) $(SYSTEMD_DEF)
override LDLIBS += $(PKG_LIBS) -lpthread
BUILD   ?= build

SRCS    := $(wildcard src/*.c)
LIBSRCS := $(filter-out src/main.c,$(SRCS))
OBJS    := $(SRCS:src/%.c=$(BUILD)/%.o)
LIBOBJS := $(LIBSRCS:src/%.c=$(BUILD)/%.o)
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/unit/%) $(BUILD)/unit/test_decide_broken

.PHONY: all check unit cli-test fence fence-test install-fence integration sanitize clean deps-check docker-check bench bench-peers fuzz fuzz-build nemesis nemesis-check

all: deps-check pglease

deps-check:
	@scripts/check-deps.sh

pglease: $(BUILD)/pglease
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/pglease: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: src/%.c $(wildcard include/pglease/*.h) | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/unit/%: test/unit/%.c test/unit/harness.h $(LIBOBJS) | $(BUILD)
	@mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS) -Itest/unit -o $@ $< $(LIBOBJS) $(LDLIBS)

# The decision module with a deliberately broken rule (observers wait half
# the TTL): test_decide's simulation must catch it (test_broken_rule_caught).
$(BUILD)/unit/decide_broken.o: src/decide.c $(wildcard include/pglease/*.h) | $(BUILD)
	@mkdir -p $(BUILD)/unit
	$(CC) $(CFLAGS) -DPGL_DECIDE_BROKEN_FOR_TEST -c -o $@ $<

$(BUILD)/unit/test_decide_broken: test/unit/test_decide.c test/unit/harness.h $(BUILD)/unit/decide_broken.o $(filter-out $(BUILD)/decide.o,$(LIBOBJS)) | $(BUILD)
	$(CC) $(CFLAGS) -Wno-unused-function -DPGL_DECIDE_BROKEN_FOR_TEST -Itest/unit -o $@ $< $(BUILD)/unit/decide_broken.o $(filter-out $(BUILD)/decide.o,$(LIBOBJS)) $(LDLIBS)

$(BUILD):
	mkdir -p $(BUILD)

unit: deps-check $(BUILD)/pglease $(UNIT_BINS)
	@PGLEASE_BIN=$(CURDIR)/$(BUILD)/pglease test/unit/run-all.sh $(UNIT_BINS)

cli-test: pglease
	@test/cli/run.sh $(CURDIR)/pglease

# The in-server fence: a PGXS extension (needs postgresql-server-dev-15).
fence:
	$(MAKE) -C src/fence

install-fence: fence
	$(MAKE) -C src/fence install

fence-test:
	@test/fence/run.sh

# As root the fence is installed first, so the agents under test use it.
integration: pglease
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) -s install-fence >/dev/null; \
	else echo "integration: not root, pglease_fence not installed (agents run without it)"; fi
	@test/integration/run.sh

# The randomized fault campaign (test/nemesis).  `make check` runs a short one.
FAULTS  ?= 500
SEED    ?= 1
MODE    ?= sync
NODES   ?= 3
TTL_MS  ?= 2000
STORE   ?= sqlite
NEMESIS_OUT ?= nemesis-out

nemesis: pglease
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) -s install-fence >/dev/null; fi
	@test/nemesis/run.sh --faults $(FAULTS) --seed $(SEED) --mode $(MODE) --nodes $(NODES) \
		--ttl-ms $(TTL_MS) --store $(STORE) --out $(NEMESIS_OUT)

nemesis-check: pglease
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) -s install-fence >/dev/null; fi
	@test/nemesis/ci.sh

check: unit cli-test fence-test integration nemesis-check

sanitize:
	$(MAKE) BUILD=build-san CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" LDFLAGS="-fsanitize=address,undefined" unit

# libFuzzer: the library objects are built with clang and the sanitizers into
# their own directory; test/fuzz/run.sh runs each target for FUZZ_SECONDS on a
# copy of its corpus (test/fuzz/corpus/*) and keeps crashes in build-fuzz/.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Iinclude $(PKG_CFLAGS) $(FUZZ_SAN)
FUZZ_LIBOBJS := $(LIBSRCS:src/%.c=$(FUZZ_BUILD)/%.o)
FUZZ_BINS    := $(FUZZ_BUILD)/fuzz_config $(FUZZ_BUILD)/fuzz_store $(FUZZ_BUILD)/fuzz_store_mutate

$(FUZZ_BUILD)/%.o: src/%.c $(wildcard include/pglease/*.h)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/fuzz_config: test/fuzz/fuzz_config.c $(FUZZ_LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBOBJS) $(LDLIBS)

$(FUZZ_BUILD)/fuzz_store: test/fuzz/fuzz_store.c $(FUZZ_LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -fsanitize=fuzzer -o $@ $< $(FUZZ_LIBOBJS) $(LDLIBS)

$(FUZZ_BUILD)/fuzz_store_mutate: test/fuzz/fuzz_store.c $(FUZZ_LIBOBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -fsanitize=fuzzer -DPGL_FUZZ_MUTATE -o $@ $< $(FUZZ_LIBOBJS) $(LDLIBS)

fuzz-build: deps-check $(FUZZ_BINS)

fuzz: fuzz-build
	@test/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

docker-check: pglease
	@test/docker/run.sh

bench: pglease
	@bench/lease

# pglease beside repmgr, Patroni and pg_auto_failover (docs/benchmarks.md).
# Root; installs the peers from Debian; about 2 hours for PEERS_RUNS=5.
PEERS_RUNS ?= 5
PEERS_OUT ?= /var/tmp/peers-out
PEERS_FAULTS ?= kill,stop,freeze,idle
bench-peers: pglease
	bench/peers/install.sh
	$(MAKE) -C bench/peers probe
	rc=0; PEERS_PGLEASE_BIN=$(CURDIR)/pglease bench/peers/run -n $(PEERS_RUNS) \
		-f $(PEERS_FAULTS) -o $(PEERS_OUT) || rc=$$?; \
	bench/peers/report -c -i $(PEERS_OUT)/results.csv -p $(PEERS_OUT)/ttfw.png \
		> $(PEERS_OUT)/table.md && cat $(PEERS_OUT)/table.md; exit $$rc

clean:
	rm -rf build build-san build-fuzz pglease
	$(MAKE) -C src/fence clean
