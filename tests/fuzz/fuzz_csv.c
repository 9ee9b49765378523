/*
** fuzz_csv.c -- libFuzzer target for dlua.csv's LPeg grammar
** (csv_driver.h says what is checked).  Built and run by scripts/fuzz.
**
** Lua and LPeg come from Debian, not built with coverage, so libFuzzer
** would see none of the code it exercises.  A line hook feeds it instead:
** each pair (previous line, line) of the Lua code that runs marks a byte
** of libFuzzer's extra counters, so inputs that take new paths through
** csv.lua and the check are kept.
*/
#include <stdlib.h>

#include "csv_driver.h"

#define NCOUNTERS 8192
__attribute__((section("__libfuzzer_extra_counters")))
static unsigned char counters[NCOUNTERS];
static unsigned prev_line;

static void on_line(lua_State *L, lua_Debug *ar) {
  unsigned line = (unsigned)ar->currentline;
  unsigned i = (prev_line * 31u + line) % NCOUNTERS;
  (void)L;
  if (counters[i] < 255) counters[i]++;
  prev_line = line;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static lua_State *L;
  if (L == NULL) {
    if ((L = csvdrv_state()) == NULL) abort();
    lua_sethook(L, on_line, LUA_MASKLINE, 0);
  }
  prev_line = 0;
  if (csvdrv_one(L, data, size) != 0) abort();
  return 0;
}
