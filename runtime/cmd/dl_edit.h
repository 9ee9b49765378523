/*
** dl_edit.h -- libedit (libedit2), opened on first use (base/dl_dynlib.h).
**
** Only the REPL on a terminal edits lines; linked, libedit and the
** libraries behind it (libtinfo, libbsd, libmd) were loaded and
** relocated by every start of the dlua command, a script's and the
** workers' zygote's too: about 0.2 ms of CPU and 28 page faults each.
** Include this header instead of <editline/readline.h>: the functions and
** variables below keep their names and types and go through a table that
** the first use fills.  dl_edit_load reports a missing library; after it
** failed, any use ends the process with the same message.
*/
#ifndef dl_edit_h
#define dl_edit_h

#include <stdio.h>

#include <editline/readline.h>

#include "dl_dynlib.h"

/* Functions and variables alike: each slot holds its address. */
#define DL_EDIT_SYMS(X)                                                      \
  X(add_history) X(clear_history) X(read_history) X(readline)                \
  X(rl_attempted_completion_function) X(rl_attempted_completion_over)        \
  X(rl_basic_word_break_characters) X(rl_catch_signals)                      \
  X(rl_completer_word_break_characters) X(rl_completion_append_character)    \
  X(rl_completion_matches) X(rl_getc_function) X(rl_readline_name)           \
  X(stifle_history) X(using_history) X(write_history)

typedef struct dl_edit_syms {
#define DL_EDIT_SLOT(n) __typeof__(&n) p_##n;
  DL_EDIT_SYMS(DL_EDIT_SLOT)
#undef DL_EDIT_SLOT
} dl_edit_syms;

extern dl_edit_syms dl_edit_sym;
extern dl_dynlib dl_edit_lib;

/* Load libedit now: 0, or -1 with the reason in err. */
int dl_edit_load(char *err, size_t errlen);

static inline dl_edit_syms *dl_edit_(void) {
  dl_dynlib_need(&dl_edit_lib);
  return &dl_edit_sym;
}

#define add_history (*dl_edit_()->p_add_history)
#define clear_history (*dl_edit_()->p_clear_history)
#define read_history (*dl_edit_()->p_read_history)
#define readline (*dl_edit_()->p_readline)
#define rl_attempted_completion_function \
  (*dl_edit_()->p_rl_attempted_completion_function)
#define rl_attempted_completion_over \
  (*dl_edit_()->p_rl_attempted_completion_over)
#define rl_basic_word_break_characters \
  (*dl_edit_()->p_rl_basic_word_break_characters)
#define rl_catch_signals (*dl_edit_()->p_rl_catch_signals)
#define rl_completer_word_break_characters \
  (*dl_edit_()->p_rl_completer_word_break_characters)
#define rl_completion_append_character \
  (*dl_edit_()->p_rl_completion_append_character)
#define rl_completion_matches (*dl_edit_()->p_rl_completion_matches)
#define rl_getc_function (*dl_edit_()->p_rl_getc_function)
#define rl_readline_name (*dl_edit_()->p_rl_readline_name)
#define stifle_history (*dl_edit_()->p_stifle_history)
#define using_history (*dl_edit_()->p_using_history)
#define write_history (*dl_edit_()->p_write_history)

#endif
