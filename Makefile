# snapfs: plain GNU make, pkg-config, no autotools.
#
# Everything is discovered by wildcard so that adding a module, a unit test,
# a fuzz target or a generator tool needs no edit here:
#   codec/*.c cache/*.c         -> libraries (no FUSE, no fs/)
#   fs/*.c (minus main/snapctl*/fuse) -> the filesystem core
#   tests/unit/test_*.c         -> $(BUILD)/tests/test_*   (linked with all libs)
#   tests/fuzz/fuzz_*.c         -> $(BUILD)/fuzz/fuzz_*   (clang libFuzzer)
#   tests/gen/*.c               -> $(BUILD)/<name>        (test data tools)

CC ?= cc
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
BUILD ?= build
OPT ?= -O2 -g
SAN ?=
WERROR ?=

PKGS := fuse3 libzstd liblzma libdeflate libxxhash libcurl liburing
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wpointer-arith -Wcast-align -Wformat=2 -Wundef -Wwrite-strings -Wvla
CFLAGS ?=
CFLAGS += -std=gnu11 $(OPT) $(WARN) $(WERROR) $(SAN) -pthread
CPPFLAGS += -I. -D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE -MMD -MP \
	$(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LDLIBS += $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lpthread -lm
LDFLAGS += $(SAN)

CODEC_SRC := $(wildcard codec/*.c)
CACHE_SRC := $(wildcard cache/*.c)
FS_CTL    := fs/snapctl.c fs/snapctl_cmd.c fs/snapctl_io.c fs/snapctl_mnt.c
FS_FRONT  := fs/main.c fs/fuse_ops.c fs/fuse_read.c fs/fuse_tree.c fs/fuse_write.c fs/fuse_xattr.c fs/rpoll.c $(FS_CTL)
FS_SRC    := $(filter-out $(FS_FRONT),$(wildcard fs/*.c))
LIB_OBJ   := $(patsubst %.c,$(BUILD)/%.o,$(CODEC_SRC) $(CACHE_SRC) $(FS_SRC))
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
GEN_SRC   := $(wildcard tests/gen/*.c)
GEN_BIN   := $(patsubst tests/gen/%.c,$(BUILD)/%,$(GEN_SRC))
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
BIN       := $(if $(wildcard fs/main.c),$(BUILD)/snapfs) \
             $(if $(wildcard fs/snapctl.c),$(BUILD)/snapctl)

.PHONY: all deps test check check-tsan fuzz fuzz-merge bench demo install clean layering
# Objects of pattern-chained rules are kept: no "rm ..." after the test
# summary (CI reads the closing line), and no rebuilds for nothing.
.SECONDARY:

all: $(BIN) $(UNIT_BIN) $(GEN_BIN) $(BENCH_BIN)

# Installs missing Debian packages (no-op when everything is there).
deps:
	@sh contrib/deps.sh build test

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/libsnapfs.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/snapfs: $(BUILD)/fs/main.o $(BUILD)/fs/fuse_ops.o $(BUILD)/fs/fuse_read.o $(BUILD)/fs/fuse_tree.o $(BUILD)/fs/fuse_write.o $(BUILD)/fs/fuse_xattr.o $(BUILD)/fs/rpoll.o $(BUILD)/libsnapfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/snapctl: $(patsubst %.c,$(BUILD)/%.o,$(FS_CTL)) $(BUILD)/libsnapfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libsnapfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/libsnapfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%: $(BUILD)/tests/gen/%.o $(BUILD)/libsnapfs.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The test command of the README: unit binaries, then end-to-end scripts.
# One aggregate line "N passed, M failed" at the end.
test: deps all
	@BUILD=$(BUILD) sh tests/run.sh

# codec/ and cache/ must not know fs/ or FUSE; cache/ must not know codec/;
# only the chain's own files include fs/chain_int.h, only the FUSE front
# end's fs/fuse_int.h, only the writer's fs/writer_int.h, only the remote
# store's fs/remote_int.h, only the store's fs/store_int.h, only
# snapctl's fs/snapctl_int.h, only the S3 client's (s3.c, s3put.c)
# fs/s3_int.h, only the VCDIFF decoder's codec/vcdiff_dec_int.h, only
# zframe's codec/zframe_int.h.
layering:
	@bad=$$(grep -nE '#include *[<"](fs/|fuse)' codec/*.[ch] cache/*.[ch] 2>/dev/null; \
	        grep -nE '#include *"codec/' cache/*.[ch] 2>/dev/null; \
	        grep -nE '#include *"fs/chain_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(chain|chmeta|sfile|sfile_sums|derive|ibuild|readahead|rebase|rvec|fcopy|vcopy|dlru)\.c'); \
	        grep -nE '#include *"fs/fuse_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(fuse_ops|fuse_read|fuse_tree|fuse_write|fuse_int)\.[ch]'); \
	        grep -nE '#include *"fs/writer_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(writer|wcommit|wsidx|writer_int)\.[ch]'); \
	        grep -nE '#include *"fs/remote_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(remote|rblob|rprefetch|rwrite|rlease|remote_int)\.[ch]'); \
	        grep -nE '#include *"fs/store_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(store|store_load|store_commit|store_int)\.[ch]'); \
	        grep -nE '#include *"fs/snapctl_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(snapctl|snapctl_cmd|snapctl_io|snapctl_mnt|snapctl_int)\.[ch]'); \
	        grep -nE '#include *"fs/s3_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'fs/(s3|s3put|s3_int)\.[ch]'); \
	        grep -nE '#include *"codec/vcdiff_dec_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'codec/(vcdiff_patch|vcdiff_dec|vcdiff_recode|vcdiff_dec_int)\.[ch]'); \
	        grep -nE '#include *"codec/zframe_int\.h"' $$(ls */*.[ch] */*/*.[ch] 2>/dev/null | \
	          grep -vxE 'codec/(zframe|zframe_write|zframe_int)\.[ch]')); \
	if [ -n "$$bad" ]; then echo "layering violation:"; echo "$$bad"; exit 1; fi; \
	echo "layering: ok"

SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
check: deps layering
	$(MAKE) BUILD=build-san OPT="-O1 -g" WERROR=-Werror SAN="$(SAN_FLAGS)" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	SNAPFS_SANITIZED=1 BUILD=build-san sh tests/run.sh
	$(MAKE) fuzz FUZZ_SECONDS=20

check-tsan: deps
	$(MAKE) BUILD=build-tsan OPT="-O1 -g" SAN="-fsanitize=thread" all
	TSAN_OPTIONS=halt_on_error=1 BUILD=build-tsan SNAPFS_ONLY_UNIT=1 sh tests/run.sh

# libFuzzer targets: built with clang against the codec/cache sources.
FUZZ_SECONDS ?= 20
FUZZ_CFLAGS = -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
	-D_FILE_OFFSET_BITS=64 -D_GNU_SOURCE
$(BUILD)/fuzz/%: tests/fuzz/%.c $(CODEC_SRC) $(CACHE_SRC) $(FS_SRC)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(shell $(PKG_CONFIG) --cflags $(PKGS)) -o $@ $^ \
		$(shell $(PKG_CONFIG) --libs libzstd liblzma libdeflate libxxhash libcurl liburing) -lpthread

# Each target runs FUZZ_SECONDS on its kept corpus (tests/fuzz/corpus/,
# read-only here) and seeds; what it finds goes to $(BUILD)/fuzz/corpus/.
# The last stats line (executions, cov:, ft:) is printed per target.
# fuzz-merge minimises kept corpus + findings back into tests/fuzz/corpus/.
fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	  seeds=tests/fuzz/seeds/$$n; kept=tests/fuzz/corpus/$$n; \
	  mkdir -p $(BUILD)/fuzz/corpus/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	      $(BUILD)/fuzz/corpus/$$n $$( [ -d $$kept ] && echo $$kept ) \
	      $$( [ -d $$seeds ] && echo $$seeds ) \
	      2>$(BUILD)/fuzz/$$n.log || { tail -40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	  grep -a -E '^#[0-9]+' $(BUILD)/fuzz/$$n.log | tail -1 | sed "s/^/  $$n: /"; \
	  grep -a -E '^Done [0-9]+ runs' $(BUILD)/fuzz/$$n.log | sed "s/^/  $$n: /"; \
	done

fuzz-merge: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	  kept=tests/fuzz/corpus/$$n; new=$(BUILD)/fuzz/merged/$$n; \
	  rm -rf $$new; mkdir -p $$new $$kept $(BUILD)/fuzz/corpus/$$n; \
	  $$f -merge=1 -max_len=65536 $$new $$kept $(BUILD)/fuzz/corpus/$$n \
	      $$( [ -d tests/fuzz/seeds/$$n ] && echo tests/fuzz/seeds/$$n ) \
	      2>$(BUILD)/fuzz/$$n.merge.log || { tail -20 $(BUILD)/fuzz/$$n.merge.log; exit 1; }; \
	  rm -rf $$kept; mv $$new $$kept; \
	  echo "fuzz-merge: $$n: $$(ls $$kept | wc -l) files, $$(du -sh $$kept | cut -f1)"; \
	done

# Long (tens of minutes at the default 1 GiB states); never part of test.
# BENCH_SIZE, BENCH_DEPTHS etc.: see the scripts' headers.
bench: deps
	@sh contrib/deps.sh bench
	$(MAKE) BUILD=build-bench OPT="-O2 -g -DNDEBUG" all
	BUILD=build-bench sh tests/bench/run.sh
	BUILD=build-bench sh tests/bench/write.sh
	BUILD=build-bench sh tests/bench/depth.sh
	BUILD=build-bench sh tests/bench/rm.sh
	BUILD=build-bench sh tests/bench/qemu.sh
	BUILD=build-bench sh tests/bench/restore.sh
	BUILD=build-bench sh tests/bench/remote.sh

demo: deps all
	BUILD=$(BUILD) sh contrib/demo.sh

install: $(BIN)
	install -D -m 0755 $(BUILD)/snapfs $(DESTDIR)$(PREFIX)/bin/snapfs
	if [ -f $(BUILD)/snapctl ]; then install -D -m 0755 $(BUILD)/snapctl $(DESTDIR)$(PREFIX)/bin/snapctl; fi
	install -D -m 0644 contrib/man/snapfs.1 $(DESTDIR)$(PREFIX)/share/man/man1/snapfs.1
	install -D -m 0644 contrib/man/snapctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/snapctl.1

clean:
	rm -rf build build-san build-tsan build-bench

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
