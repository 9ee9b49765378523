/*
** dl_complete.h -- tab completion of Lua names for the dlua REPL: globals,
** fields (string.fo<TAB>) and methods (client:sub<TAB>), found by walking
** tables and the tables that metatables name as __index, never calling
** any Lua code.  Internal to the dlua command; not part of libdlua.
*/
#ifndef dl_complete_h
#define dl_complete_h

#include <lua.h>

/*
** Push a sorted sequence of the completions of text: each a whole word
** that starts with text ("string.fo" gives "string.format").  text is a
** name, or a path of names with "." between them and a last "." or ":"
** before a partial name; after ":" only functions are completions.  Names
** that start with "_" are left out after "." and ":" unless the partial
** name starts with "_".  Also pushes a boolean that is true when there is
** exactly one completion and its value is a function.  [-0, +2, m]
*/
void dl_complete_push(lua_State *L, const char *text);

/*
** Make libedit's Tab complete Lua names in L's globals.  L is borrowed: it
** must stay open while readline may be called.  [-0, +0, -]
*/
void dl_complete_install(lua_State *L);

#endif
