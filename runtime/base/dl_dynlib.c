/*
** dl_dynlib.c -- shared libraries opened on first use (see dl_dynlib.h).
*/
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "dl_dynlib.h"

static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

int dl_dynlib_load(dl_dynlib *lib) {
  void *h;
  int i;
  /* Loaded once and never unloaded: a plain read is enough after that. */
  if (__atomic_load_n(&lib->state, __ATOMIC_ACQUIRE) == 1) return 0;
  pthread_mutex_lock(&load_lock);
  if (lib->state != 0) goto done;
  h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    snprintf(lib->err, sizeof lib->err,
             "cannot load %s (install the Debian package %s): %s",
             lib->soname, lib->package, dlerror());
    lib->state = -1;
    goto done;
  }
  for (i = 0; lib->names[i] != NULL; i++) {
    void *f = dlsym(h, lib->names[i]);
    if (f == NULL) {
      snprintf(lib->err, sizeof lib->err,
               "%s has no function %s (a newer %s is needed)", lib->soname,
               lib->names[i], lib->package);
      dlclose(h);
      lib->state = -1;
      goto done;
    }
    lib->slots[i] = f;
  }
  __atomic_store_n(&lib->state, 1, __ATOMIC_RELEASE);
done:
  pthread_mutex_unlock(&load_lock);
  return lib->state == 1 ? 0 : -1;
}

int dl_dynlib_load_err(dl_dynlib *lib, char *err, size_t errlen) {
  if (dl_dynlib_load(lib) == 0) return 0;
  if (err != NULL && errlen > 0) snprintf(err, errlen, "%s", lib->err);
  return -1;
}

void dl_dynlib_need(dl_dynlib *lib) {
  if (dl_dynlib_load(lib) == 0) return;
  fprintf(stderr, "dlua: %s\n", lib->err);
  exit(1);
}
