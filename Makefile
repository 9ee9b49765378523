# dlua -- build, test, install.  See README.md.
#
#   make                 build/libdlua.a, build/libdlua.so, build/dlua
#   make test            the whole suite (C tests + busted specs)
#   make sanitize        the same suite under ASan + UBSan (build-san/)
#   make fuzz            fuzz the decoders for FUZZ_SECONDS each (clang)
#   make bench           benchmarks, side by side with Dask
#   make bench-quick     every benchmark at small sizes (CI)
#   make install PREFIX=/usr/local

CC ?= cc
PREFIX ?= /usr/local
LUA_CFLAGS := $(shell pkg-config --cflags lua5.4)
LUA_LIBS := $(shell pkg-config --libs lua5.4)
UV_CFLAGS := $(shell pkg-config --cflags libuv)
PKG_LIBS := $(shell pkg-config --libs lua5.4 libuv libcjson zlib) -ldl
# libedit (the REPL's line editing) is not linked but opened on first use
# (cmd/dl_edit.h): every start of the command, a script's or the workers'
# zygote's, would otherwise load it and the three libraries behind it.
EDIT_CFLAGS := $(shell pkg-config --cflags libedit)
LUA ?= lua5.4
# The Jupyter kernel (runtime/kernel, `dlua kernel`): ZeroMQ, cJSON and
# libcrypto's HMAC, in the dlua command only, not in libdlua.  ZeroMQ and
# libcrypto are not linked but opened on first use (base/dl_dynlib.h):
# every worker would otherwise load them, and they were two thirds of a
# process's start.  Their headers are still needed to build.
KERNEL_CFLAGS := $(shell pkg-config --cflags libzmq libcjson)
KERNEL_LIBS := $(shell pkg-config --libs libcjson)

OPT ?= -O2 -g
CFLAGS_BASE = -std=gnu99 $(OPT) -Wall -Wextra -fPIC -pthread $(XCFLAGS)
# Tests, fuzzers and benches see every folder.
CFLAGS_ALL = $(CFLAGS_BASE) -Iruntime $(foreach d,$(LAYERS),-Iruntime/$(d)) \
             -I$(B) $(LUA_CFLAGS) $(UV_CFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lhttp_parser -lcjson -lz -lpthread -lm $(XLDFLAGS)
# The dlua command (client and workers) runs on mimalloc, whose segments
# dl_mem_heap_init puts on huge pages (README, "Memory").  libdlua does not
# link it: an embedder keeps its own malloc.  The sanitizers keep malloc.
# `make HEAP_LIBS=` builds it on glibc's malloc.
HEAP_LIBS ?= -lmimalloc

B ?= build

# ---------------------------------------------------------------------
# runtime/ is cut in layers, one folder each (README, "Architecture").
# A layer's sources see only the headers of the folders listed for it,
# so an include across the rule is a compile error.  Layers outside
# LUA_LAYERS are built without Lua's include path and with Lua's types
# poisoned: `#include <lua.h>` there does not compile.
LAYERS = base wire codec sched cluster dashboard worker client array collections frame lua kernel cmd
SEES_base      = base
SEES_wire      = base wire
SEES_codec     = base codec
SEES_sched     = base wire sched
SEES_cluster   = base wire sched cluster
SEES_dashboard = base wire sched cluster dashboard
SEES_worker    = base wire codec sched worker
SEES_client    = base wire client
SEES_array     = base array
SEES_collections = base collections
SEES_frame     = base array frame
SEES_lua       = base wire codec sched cluster dashboard worker client array collections frame lua
SEES_kernel    = base kernel
SEES_cmd       = base cmd kernel
LUA_LAYERS = codec worker lua cmd
# `runtime/` itself holds dlua.h, the public header, for the Lua layers.
layer_cflags = $(CFLAGS_BASE) $(foreach d,$(SEES_$(1)),-Iruntime/$(d)) \
  $(if $(filter $(1),$(LUA_LAYERS)),-Iruntime $(LUA_CFLAGS),-include runtime/base/dl_nolua.h) \
  $(UV_CFLAGS) -I$(B)

LIB_LAYERS = $(filter-out cmd kernel,$(LAYERS))
LIB_SRC = $(foreach d,$(LIB_LAYERS),$(wildcard runtime/$(d)/*.c))
BIN_SRC = $(wildcard runtime/cmd/*.c)
KERNEL_SRC = $(wildcard runtime/kernel/*.c)
LUA_SRC = $(wildcard lua/dlua/*.lua lua/dlua/*/*.lua)
ASSETS = $(wildcard runtime/dashboard/assets/*.html \
                    runtime/dashboard/assets/*.js \
                    runtime/dashboard/assets/*.css)

obj = $(patsubst runtime/%.c,$(B)/%.o,$(1))
LIB_OBJ = $(call obj,$(LIB_SRC)) $(B)/dl_luasrc.o $(B)/dl_assets.o
BIN_OBJ = $(call obj,$(BIN_SRC))
KERNEL_OBJ = $(call obj,$(KERNEL_SRC))
HDRS = $(wildcard runtime/*.h runtime/*/*.h)

# C tests mirror runtime/'s folders: tests/c/<layer>/test_*.c.
CTESTS = $(patsubst tests/c/%.c,$(B)/tests/%,$(wildcard tests/c/*/test_*.c))

.PHONY: all test sanitize fuzz bench bench-quick install clean demo

all: $(B)/libdlua.a $(B)/libdlua.so $(B)/dlua $(B)/dlua.pc $(CTESTS) \
     $(B)/http_load

# One pattern rule per layer, each with that layer's view of the tree.
define layer_rule
$(B)/$(1)/%.o: runtime/$(1)/%.c $(HDRS) | $(B)
	@mkdir -p $(B)/$(1)
	$$(CC) $$(call layer_cflags,$(1)) $(if $(filter cmd,$(1)),$$(EDIT_CFLAGS)) $(if $(filter cmd kernel,$(1)),$$(KERNEL_CFLAGS)) -c $$< -o $$@
endef
$(foreach d,$(LAYERS),$(eval $(call layer_rule,$(d))))

# The Lua modules, compiled in as bytecode (and source, for a liblua that
# does not load it) by a tool linked against the liblua the runtime links:
# its bytecode is in that library's format.  A host tool: no sanitizers.
$(B)/embed-lua: scripts/embed-lua.c runtime/lua/dl_runtime.h | $(B)
	$(CC) -std=gnu99 -O2 -Wall -Wextra -Iruntime/lua $(LUA_CFLAGS) -o $@ $< $(LUA_LIBS)

$(B)/dl_luasrc.c: $(B)/embed-lua $(LUA_SRC) | $(B)
	$(B)/embed-lua $@ $(LUA_SRC)

$(B)/dl_luasrc.o: $(B)/dl_luasrc.c
	$(CC) $(call layer_cflags,lua) -c $< -o $@

# The dashboard's pages, compiled in: no files to install or find.
$(B)/dl_assets.c: scripts/embed-assets.lua $(ASSETS) | $(B)
	$(LUA) scripts/embed-assets.lua $@ $(ASSETS)

$(B)/dl_assets.o: $(B)/dl_assets.c runtime/dashboard/dl_dashboard.h runtime/dashboard/dl_http.h
	$(CC) $(call layer_cflags,dashboard) -c $< -o $@

$(B)/http_load: scripts/bench/http_load.c
	$(CC) $(CFLAGS_ALL) -o $@ $< $(PKG_LIBS) -lhttp_parser $(XLDFLAGS)

$(B)/libdlua.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/libdlua.so: $(LIB_OBJ)
	$(CC) -shared -pthread -o $@ $^ $(LDLIBS_ALL)

$(B)/libdlkernel.a: $(KERNEL_OBJ) $(B)/dl_kernel_logo.o
	rm -f $@ && ar rcs $@ $^

# The kernelspec's logos, compiled into the dlua command.
KERNEL_LOGOS = $(wildcard runtime/kernel/logo-*)
$(B)/dl_kernel_logo.c: scripts/embed-logo.lua $(KERNEL_LOGOS) | $(B)
	$(LUA) scripts/embed-logo.lua $@ $(KERNEL_LOGOS)

$(B)/dl_kernel_logo.o: $(B)/dl_kernel_logo.c
	$(CC) $(CFLAGS_BASE) -c $< -o $@

$(B)/dlua: $(BIN_OBJ) $(B)/libdlkernel.a $(B)/libdlua.a
	$(CC) -pthread -rdynamic -o $@ $(BIN_OBJ) $(B)/libdlkernel.a $(B)/libdlua.a $(HEAP_LIBS) $(LDLIBS_ALL) $(KERNEL_LIBS)

$(B)/tests/%: tests/c/%.c tests/c/tap.h $(wildcard tests/fuzz/*.h) $(B)/libdlua.a | $(B)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(if $(HEAP_LIBS),-DDL_TEST_HEAP_LIBS) -Itests/c -Itests/fuzz -o $@ $< $(B)/libdlua.a $(HEAP_LIBS) $(LDLIBS_ALL)

# The kernel's C test links the kernel layer (not part of libdlua).
$(B)/tests/kernel/test_kernel: tests/c/kernel/test_kernel.c tests/c/tap.h $(B)/libdlkernel.a $(B)/libdlua.a | $(B)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(KERNEL_CFLAGS) -Itests/c -Itests/fuzz -o $@ $< $(B)/libdlkernel.a $(B)/libdlua.a $(LDLIBS_ALL) $(KERNEL_LIBS)

# dlua.pc for PREFIX; `make install PREFIX=...` writes its own with that
# prefix, so a build made for another prefix installs a correct one.
DLUA_PC_LINES = 'prefix=$(1)' 'libdir=$${prefix}/lib' \
  'includedir=$${prefix}/include' '' 'Name: dlua' \
  'Description: Dask for Lua: task graphs on a process cluster' \
  'Version: 0.1.0' 'Requires: lua5.4' 'Requires.private: libuv' \
  'Libs: -L$${libdir} -ldlua' 'Libs.private: -lhttp_parser -lcjson -lz -lpthread -lm -ldl' \
  'Cflags: -I$${includedir}'

$(B)/bench_embed: scripts/bench/bench_embed.c $(B)/libdlua.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libdlua.a $(LDLIBS_ALL)

$(B)/bench_events: scripts/bench/bench_events.c tests/fuzz/sched_msgs.h $(B)/libdlua.a
	$(CC) $(CFLAGS_ALL) -Itests/fuzz -o $@ $< $(B)/libdlua.a $(LDLIBS_ALL)

$(B)/dlua.pc: Makefile | $(B)
	@printf '%s\n' $(call DLUA_PC_LINES,$(PREFIX)) > $@

$(B):
	@mkdir -p $(B)

demo: all
	$(B)/dlua examples/pipeline.lua

test: all
	@scripts/run-tests $(B)

sanitize:
	@$(MAKE) --no-print-directory B=build-san OPT="-O1 -g" HEAP_LIBS= \
	  XCFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  XLDFLAGS="-fsanitize=address,undefined" all
	@# allocator_release_to_os_interval_ms: ASan's allocator gives freed
	@# memory back to the system, so a worker's resident memory (which its
	@# memory limit reads) follows its live data as with the real malloc;
	@# without it the spill specs' workers stay paused over their limits.
	@DLUA_SANITIZE=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=16:allocator_release_to_os_interval_ms=10 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/run-tests build-san

FUZZ_SECONDS ?= 60
fuzz:
	@scripts/fuzz $(FUZZ_SECONDS)

bench: all $(B)/bench_embed $(B)/http_load
	@scripts/bench/run-all

# Every bench at small sizes (about a minute): fails if one breaks (CI).
bench-quick: all $(B)/bench_embed $(B)/http_load
	@QUICK=1 scripts/bench/run-all

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	  $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/share/lua/5.4/dlua
	install -m 755 $(B)/dlua $(DESTDIR)$(PREFIX)/bin/dlua
	install -m 644 $(B)/libdlua.a $(DESTDIR)$(PREFIX)/lib/libdlua.a
	install -m 755 $(B)/libdlua.so $(DESTDIR)$(PREFIX)/lib/libdlua.so
	install -m 644 runtime/dlua.h $(DESTDIR)$(PREFIX)/include/dlua.h
	printf '%s\n' $(call DLUA_PC_LINES,$(PREFIX)) \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/dlua.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/dlua.pc
	install -m 644 $(LUA_SRC) $(DESTDIR)$(PREFIX)/share/lua/5.4/dlua/

clean:
	rm -rf build build-san build-fuzz
