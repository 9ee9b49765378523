/* placeholder */
#include "dlua.h"
int dlua_worker_main(int argc, char **argv) { (void)argc; (void)argv; return -1; }
