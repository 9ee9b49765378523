# dlua -- build, test, install.  See README.md.
#
#   make                 build/libdlua.a, build/libdlua.so, build/dlua
#   make test            the whole suite (C tests + busted specs)
#   make sanitize        the same suite under ASan + UBSan (build-san/)
#   make fuzz            fuzz the decoders for FUZZ_SECONDS each (clang)
#   make bench           benchmarks, side by side with Dask
#   make install PREFIX=/usr/local

CC ?= cc
PREFIX ?= /usr/local
PKGS = lua5.4 libuv
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))
EDIT_CFLAGS := $(shell pkg-config --cflags libedit)
EDIT_LIBS := $(shell pkg-config --libs libedit)
LUA ?= lua5.4

OPT ?= -O2 -g
CFLAGS_ALL = -std=gnu99 $(OPT) -Wall -Wextra -fPIC -pthread \
             -Iruntime -I$(B) $(PKG_CFLAGS) $(XCFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lhttp_parser -lpthread -lm $(XLDFLAGS)

B ?= build

LIB_SRC = dl_buf.c dl_mem.c dl_map.c dl_runtime.c dl_core_lua.c dl_codec.c dl_codec_lua.c \
          dl_proto.c dl_sched.c dl_server.c dl_worker.c dl_cluster_lua.c \
          dl_http.c dl_dashboard.c
BIN_SRC = dlua.c dl_repl.c dl_complete.c
LUA_SRC = $(wildcard lua/dlua/*.lua)
ASSETS = $(wildcard runtime/dashboard/*.html runtime/dashboard/*.js \
                    runtime/dashboard/*.css)

LIB_OBJ = $(addprefix $(B)/,$(LIB_SRC:.c=.o)) $(B)/dl_luasrc.o \
          $(B)/dl_assets.o
BIN_OBJ = $(addprefix $(B)/,$(BIN_SRC:.c=.o))
HDRS = $(wildcard runtime/*.h)

CTESTS = $(patsubst tests/c/%.c,$(B)/tests/%,$(wildcard tests/c/test_*.c))

.PHONY: all test sanitize fuzz bench install clean demo

all: $(B)/libdlua.a $(B)/libdlua.so $(B)/dlua $(B)/dlua.pc $(CTESTS) \
     $(B)/http_load

$(B)/%.o: runtime/%.c $(HDRS) | $(B)
	$(CC) $(CFLAGS_ALL) $(EDIT_CFLAGS) -c $< -o $@

$(B)/dl_luasrc.c: scripts/embed-lua.lua $(LUA_SRC) | $(B)
	$(LUA) scripts/embed-lua.lua $@ $(LUA_SRC)

$(B)/dl_luasrc.o: $(B)/dl_luasrc.c
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The dashboard's pages, compiled in: no files to install or find.
$(B)/dl_assets.c: scripts/embed-assets.lua $(ASSETS) | $(B)
	$(LUA) scripts/embed-assets.lua $@ $(ASSETS)

$(B)/dl_assets.o: $(B)/dl_assets.c runtime/dl_dashboard.h runtime/dl_http.h
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/http_load: scripts/bench/http_load.c
	$(CC) $(CFLAGS_ALL) -o $@ $< $(PKG_LIBS) -lhttp_parser $(XLDFLAGS)

$(B)/libdlua.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/libdlua.so: $(LIB_OBJ)
	$(CC) -shared -pthread -o $@ $^ $(LDLIBS_ALL)

$(B)/dlua: $(BIN_OBJ) $(B)/libdlua.a
	$(CC) -pthread -rdynamic -o $@ $(BIN_OBJ) $(B)/libdlua.a $(LDLIBS_ALL) $(EDIT_LIBS)

$(B)/tests/%: tests/c/%.c tests/c/tap.h $(B)/libdlua.a | $(B)
	@mkdir -p $(B)/tests
	$(CC) $(CFLAGS_ALL) -Itests/c -Itests/fuzz -o $@ $< $(B)/libdlua.a $(LDLIBS_ALL)

# dlua.pc for PREFIX; `make install PREFIX=...` writes its own with that
# prefix, so a build made for another prefix installs a correct one.
DLUA_PC_LINES = 'prefix=$(1)' 'libdir=$${prefix}/lib' \
  'includedir=$${prefix}/include' '' 'Name: dlua' \
  'Description: Dask for Lua: task graphs on a process cluster' \
  'Version: 0.1.0' 'Requires: lua5.4' 'Requires.private: libuv' \
  'Libs: -L$${libdir} -ldlua' 'Libs.private: -lhttp_parser -lpthread -lm' \
  'Cflags: -I$${includedir}'

$(B)/bench_embed: scripts/bench/bench_embed.c $(B)/libdlua.a
	$(CC) $(CFLAGS_ALL) -o $@ $< $(B)/libdlua.a $(LDLIBS_ALL)

$(B)/dlua.pc: Makefile | $(B)
	@printf '%s\n' $(call DLUA_PC_LINES,$(PREFIX)) > $@

$(B):
	@mkdir -p $(B)

demo: all
	$(B)/dlua examples/pipeline.lua

test: all
	@scripts/run-tests $(B)

sanitize:
	@$(MAKE) --no-print-directory B=build-san OPT="-O1 -g" \
	  XCFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  XLDFLAGS="-fsanitize=address,undefined" all
	@DLUA_SANITIZE=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:quarantine_size_mb=16 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  scripts/run-tests build-san

FUZZ_SECONDS ?= 60
fuzz:
	@scripts/fuzz $(FUZZ_SECONDS)

bench: all $(B)/bench_embed $(B)/http_load
	@scripts/bench/run-all

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
