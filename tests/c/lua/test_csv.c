/*
** test_csv.c -- replays the inputs the CSV fuzzer saved
** (tests/fuzz/regressions-csv) through csv_driver.h: each must parse or
** fail cleanly, and round-trip.
*/
#include "csv_driver.h"
#include "tap.h"

static void csv_one(const unsigned char *data, size_t size, void *ud) {
  CHECK(csvdrv_one((lua_State *)ud, data, size) == 0);
}

static void test_regressions(void) {
  lua_State *L = csvdrv_state();
  CHECK(L != NULL);
  CHECK(tap_replay("tests/fuzz/regressions-csv", csv_one, L) > 0);
  lua_close(L);
}

/* Well-formed and malformed CSV both pass the driver's checks. */
static void test_driver_checks(void) {
  lua_State *L = csvdrv_state();
  static const unsigned char ok[] = ",a,\"b\"\"c\"\r\nd,\"e\nf\"\n";
  static const unsigned char bad[] = ",a,\"b";
  CHECK(L != NULL);
  CHECK(csvdrv_one(L, ok, sizeof ok - 1) == 0);
  CHECK(csvdrv_one(L, bad, sizeof bad - 1) == 0); /* a clean error */
  lua_close(L);
}

int main(void) {
  RUN(test_driver_checks);
  RUN(test_regressions);
  return TAP_END();
}
