/*
** dl_edit.c -- libedit's table of symbols (see dl_edit.h).
*/

#include "dl_edit.h"

dl_edit_syms dl_edit_sym;

static const char *const names[] = {
#define DL_EDIT_NAME(n) #n,
  DL_EDIT_SYMS(DL_EDIT_NAME)
#undef DL_EDIT_NAME
  NULL};

dl_dynlib dl_edit_lib = {"libedit.so.2", "libedit2", names,
                         (void **)&dl_edit_sym, 0, ""};

int dl_edit_load(char *err, size_t errlen) {
  return dl_dynlib_load_err(&dl_edit_lib, err, errlen);
}
