// oneDNN, loaded at run time (onednn.cc): convolutions and matrix products run on
// it where it loads; the built-in GEMM (gemm.cc, conv.cc) runs everywhere else.
#pragma once

#include <stdint.h>

#include "bagua_geom.h"

namespace bk {

// Whether the calling thread runs conv2d and GEMM on oneDNN: it loaded (tried once
// per process, on first use) and bk_cpu_use_dnnl has not turned it off here.
bool dnnl_on();

enum ConvKind { kConvForward, kConvBackwardData, kConvBackwardWeights };

// One conv2d kernel on oneDNN, tensors in their own layouts: src / dst [n, c|k, h, w],
// weights [k, c / groups, r, s]. Per kind, the output is dst (forward), src (backward
// data) or weights (backward weights); bias (forward only) may be NULL. The geometry
// is checked and every size is > 0. Non-zero on failure, reported with fail().
int dnnl_conv(ConvKind kind, const ConvGeom &g, const float *src, const float *weights,
              const float *dst, const float *bias, const char *fn);

// dnnl_sgemm (row-major, the conventions of bk::sgemm). Returns the dnnl_status_t
// (0: success) without calling fail(), so it may run on a pool thread.
int dnnl_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);

// The name of a dnnl_status_t, for error messages.
const char *dnnl_status_name(int status);

}  // namespace bk
