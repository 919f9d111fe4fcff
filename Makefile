# ambient: one static binary. `make` (musl, static, stripped), `make SAN=1` (glibc + ASan/UBSan),
# `make test`, `make check`, `make fuzz`, `make deps`, `make bench` (timings; `make test`
# runs each bench script once in quick mode, tests/e2e/test_bench_docs.py, asserting no timing).

SAN ?= 0
ifeq ($(SAN),1)
  CC := gcc
  OUT ?= build/san
  VFLAV := glibc
  BUILD_TYPE := asan-ubsan
  MODE_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
                 -fno-sanitize-recover=undefined
  MODE_LDFLAGS := -fsanitize=address,undefined
  KHEADERS :=
else
  CC := musl-gcc
  OUT ?= build
  VFLAV := musl
  BUILD_TYPE := release
  MODE_CFLAGS := -O2 -ffunction-sections -fdata-sections
  MODE_LDFLAGS := -static -Wl,--gc-sections -s
  KHEADERS := -isystem vendor/out/musl/kheaders
endif

VENDOR := vendor/out/$(VFLAV)
VENDOR_STAMP := $(VENDOR)/include/vendor_versions.h
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wformat-truncation=1 -Wvla -Wpointer-arith -Wundef -Wcast-align \
        -Wnull-dereference -Wimplicit-fallthrough -Wno-format-nonliteral
CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -I. -I$(OUT)/gen -isystem $(VENDOR)/include $(KHEADERS) \
          $(MODE_CFLAGS) -MMD -MP $(EXTRA_CFLAGS)
LDLIBS := -L$(VENDOR)/lib -lnghttp2 -lbearssl -lcjson -lpthread -lm

# ONLY="base buf ev" restricts the library to some modules (for work on one module at a time).
ONLY ?= $(notdir $(wildcard pkg/*))
PKG_SRCS := $(filter-out %_test.c %_fuzz.c,$(foreach m,$(ONLY),$(wildcard pkg/$(m)/*.c)))
CMD_SRCS := $(wildcard cmd/*.c)
PKG_OBJS := $(PKG_SRCS:%.c=$(OUT)/obj/%.o)
CMD_OBJS := $(CMD_SRCS:%.c=$(OUT)/obj/%.o) $(OUT)/obj/ambient.o
MODULES := $(ONLY)
TEST_BINS := $(foreach m,$(MODULES),$(if $(wildcard pkg/$(m)/*_test.c),$(OUT)/test/$(m)_test))
FUZZ_SRCS := $(foreach m,$(ONLY),$(wildcard pkg/$(m)/*_fuzz.c))
FUZZ_NAMES := $(basename $(notdir $(FUZZ_SRCS)))
REPLAY_BINS := $(FUZZ_NAMES:%=$(OUT)/fuzz/%_replay)

.SECONDEXPANSION:
.SECONDARY:
.PHONY: all vendor unit replay test check fuzz deps bench clean distclean FORCE
all: $(OUT)/ambient

deps:
	sh scripts/deps.sh

vendor: $(VENDOR_STAMP)
$(VENDOR_STAMP): vendor/VERSIONS vendor/build.sh vendor/fetch.sh
	sh vendor/build.sh $(VFLAV)

# version.h changes only when the commit or build type does, so rebuilds stay incremental.
$(OUT)/gen/version.h: FORCE
	@mkdir -p $(@D)
	@c=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	 d=$$(git diff --quiet HEAD 2>/dev/null || echo -dirty); \
	 printf '#define AMBIENT_VERSION "%s"\n#define AMBIENT_GIT_COMMIT "%s%s"\n#define AMBIENT_BUILD_TYPE "%s"\n' \
	   "$$(cat VERSION)" "$$c" "$$d" "$(BUILD_TYPE)" > $@.tmp; \
	 cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(OUT)/obj/%.o: %.c $(VENDOR_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(CMD_OBJS): $(OUT)/gen/version.h

$(OUT)/libambient.a: $(PKG_OBJS)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(OUT)/ambient: $(CMD_OBJS) $(OUT)/libambient.a
	$(CC) $(MODE_LDFLAGS) -o $@ $(CMD_OBJS) $(OUT)/libambient.a $(LDLIBS)

# Unit tests: one binary per module from pkg/<m>/*_test.c.
# (Helpers hide their own `%` from pattern-rule stem substitution.)
src2obj = $(patsubst %.c,$(OUT)/obj/%.o,$(1))
$(OUT)/test/%_test: $(OUT)/obj/test/unit_main.o $(OUT)/libambient.a $$(call src2obj,$$(wildcard pkg/$$*/*_test.c))
	@mkdir -p $(@D)
	$(CC) $(MODE_LDFLAGS) -o $@ $(filter %.o,$^) $(OUT)/libambient.a $(LDLIBS)

unit: $(TEST_BINS)

# Fuzz targets linked to a plain driver that replays the corpus in testdata/fuzz/<name>/.
$(OUT)/fuzz/%_replay: $(OUT)/obj/test/fuzz_replay.o $(OUT)/libambient.a $$(call src2obj,$$(wildcard pkg/*/$$*.c))
	@mkdir -p $(@D)
	$(CC) $(MODE_LDFLAGS) -o $@ $(filter %.o,$^) $(OUT)/libambient.a $(LDLIBS)

replay: $(REPLAY_BINS)

test:
	sh scripts/test.sh

check:
	sh scripts/check.sh

fuzz:
	sh scripts/fuzz.sh $(FUZZ_TIME)

# Side-by-side benchmarks against peer implementations (bench/run.sh); they print tables, and no
# timing of theirs gates CI. DURATION, REPS, CONNS tune them (see bench/ca.sh).
bench: $(OUT)/ambient
	AMBIENT=$(OUT)/ambient sh bench/run.sh

clean:
	rm -rf build

distclean: clean
	rm -rf vendor/out vendor/src vendor/dl

-include $(shell find $(OUT)/obj -name '*.d' 2>/dev/null)

# `make demo`: a small mesh in network namespaces, narrated step by step (scripts/demo.sh; root).
# It installs what it needs and builds the binary itself. DEMO_NONINTERACTIVE=1: no pauses.
demo:
	sh scripts/demo.sh

# `make image`: the FROM scratch image (Dockerfile) with docker when a daemon answers, else with
# buildah. The build context is only build/image/ (the binary and a symlink per subcommand).
# IMAGE names it; IMAGE_BIN is the binary to ship (default: the static release build);
# IMAGE_BUILDER=docker|buildah overrides the choice.
IMAGE ?= ambient:$(shell cat VERSION)
IMAGE_BIN ?= build/ambient
IMAGE_LINKS := ztunnel waypoint cni ca ctl
image: $(IMAGE_BIN)
	@if readelf -l $(IMAGE_BIN) | grep -q INTERP; then echo "make image: $(IMAGE_BIN) is not static"; exit 1; fi
	rm -rf build/image && mkdir -p build/image/rootfs/usr/local/bin
	cp $(IMAGE_BIN) build/image/rootfs/usr/local/bin/ambient
	for l in $(IMAGE_LINKS); do ln -s ambient build/image/rootfs/usr/local/bin/$$l; done
	@v=$$(cat VERSION); r=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	 b="$(IMAGE_BUILDER)"; \
	 if [ -z "$$b" ]; then \
	   if docker info >/dev/null 2>&1; then b=docker; \
	   elif command -v buildah >/dev/null 2>&1; then b=buildah; echo "no docker daemon answers: using buildah"; \
	   else echo "make image: no docker daemon answers and buildah is not installed (apt-get install buildah)"; exit 1; fi; \
	 fi; \
	 case $$b in \
	 docker) docker build -f Dockerfile -t $(IMAGE) --build-arg VERSION=$$v --build-arg REVISION=$$r build/image ;; \
	 buildah) buildah bud --isolation chroot -q -f Dockerfile -t $(IMAGE) --build-arg VERSION=$$v --build-arg REVISION=$$r build/image ;; \
	 *) echo "make image: IMAGE_BUILDER must be docker or buildah"; exit 1 ;; \
	 esac

.PHONY: demo image
