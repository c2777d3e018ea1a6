/*
 * The per-thread error message behind bk_last_error(), shared by the CPU and
 * CUDA libraries: each defines its own buffer and gets fail()/fail_status()
 * from BK_DEFINE_FAIL (a function of each library, not exported).
 */
#ifndef BAGUA_ERRORS_H
#define BAGUA_ERRORS_H

#include <stdarg.h>
#include <stdio.h>

#include "bagua_kernels.h"

/* fail(): BK_ERR_INVALID_ARGUMENT with a message; fail_status(): the bk_status given. */
#define BK_DEFINE_FAIL(buffer)                                        \
  int fail_status(int status, const char *fmt, ...) {                 \
    va_list ap;                                                       \
    va_start(ap, fmt);                                                \
    vsnprintf(buffer, sizeof buffer, fmt, ap);                        \
    va_end(ap);                                                       \
    return status;                                                    \
  }                                                                   \
  int fail(const char *fmt, ...) {                                    \
    va_list ap;                                                       \
    va_start(ap, fmt);                                                \
    vsnprintf(buffer, sizeof buffer, fmt, ap);                        \
    va_end(ap);                                                       \
    return BK_ERR_INVALID_ARGUMENT;                                   \
  }

#endif
