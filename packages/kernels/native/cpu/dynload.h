// dlopen & co. for the libraries found at run time (libgomp, oneDNN).
#pragma once

#include <dlfcn.h>

// glibc 2.34 moved them into libc under new symbol versions; binding the original
// ones (libdl's, still in libc as compatibility symbols) keeps the prebuilt library
// loadable on older glibcs. The Makefile links libdl.so.2 for them.
#if defined(__x86_64__) && defined(__GLIBC__)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
#endif
