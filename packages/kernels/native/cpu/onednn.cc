// oneDNN (Debian's libdnnl2, the engine of PyTorch's own CPU convolutions) found at
// run time with dlopen: the prebuilt library links nothing new, and where oneDNN is
// absent the built-in GEMM runs instead. Compiled against oneDNN 2.x's C API headers
// (libdnnl-dev) when they are present at build time; without them, only the fallback.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dynload.h"
#include "onednn.h"

// BK_NO_DNNL (make DNNL=0) builds the fallback alone even where the headers exist.
#if defined(__has_include) && !defined(BK_NO_DNNL)
#if __has_include(<dnnl.h>)
#include <dnnl.h>
#define BK_HAVE_DNNL 1
#endif
#endif

namespace bk {
namespace {

thread_local bool t_dnnl_off;  // bk_cpu_use_dnnl(0) in this thread

}  // namespace
}  // namespace bk

#ifdef BK_HAVE_DNNL

namespace bk {
namespace {

// The entry points used, typed from dnnl.h.
#define BK_DNNL_FUNCS(X)                                                                      \
  X(dnnl_version) X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait)             \
  X(dnnl_stream_destroy) X(dnnl_memory_desc_init_by_tag)                                      \
  X(dnnl_dilated_convolution_forward_desc_init)                                               \
  X(dnnl_dilated_convolution_backward_data_desc_init)                                         \
  X(dnnl_dilated_convolution_backward_weights_desc_init) X(dnnl_primitive_desc_create)        \
  X(dnnl_primitive_desc_destroy) X(dnnl_primitive_create) X(dnnl_primitive_destroy)           \
  X(dnnl_primitive_execute) X(dnnl_memory_create) X(dnnl_memory_destroy)                      \
  X(dnnl_memory_set_data_handle) X(dnnl_sgemm) X(dnnl_primitive_desc_query_md)                \
  X(dnnl_memory_desc_equal) X(dnnl_memory_desc_get_size) X(dnnl_reorder_primitive_desc_create)

struct Api {
#define BK_FIELD(f) decltype(&::f) f;
  BK_DNNL_FUNCS(BK_FIELD)
#undef BK_FIELD
};

// Written once under the load lock, read-only afterwards.
enum { kNotTried = 0, kLoaded = 1, kFailed = 2 };
int g_state = kNotTried;
Api g_api;
dnnl_engine_t g_engine;
char g_info[512];  // "oneDNN 2.6.3", or why it is not used

int load_once() {
  const char *env = getenv("BAGUA_DNNL_LIB");
  // an explicit path is the only candidate: a wrong one should show, not be skipped
  const bool from_env = env && *env;
  const char *path = from_env ? env : "libdnnl.so.2";
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    snprintf(g_info, sizeof g_info, "oneDNN not found: tried %s%s (%s)",
             from_env ? "BAGUA_DNNL_LIB=" : "", path, why ? why : "dlopen failed");
    return kFailed;
  }
#define BK_SYM(f)                                                                             \
  if (!(g_api.f = (decltype(g_api.f))dlsym(h, #f))) {                                         \
    snprintf(g_info, sizeof g_info, "oneDNN not usable: %s lacks %s (the oneDNN 2.x C API)",  \
             path, #f);                                                                       \
    return kFailed;                                                                           \
  }
  BK_DNNL_FUNCS(BK_SYM)
#undef BK_SYM
  const dnnl_version_t *v = g_api.dnnl_version();
  if (v->major != 2) {
    snprintf(g_info, sizeof g_info, "oneDNN not usable: %s is oneDNN %d.%d.%d, 2.x is needed",
             path, v->major, v->minor, v->patch);
    return kFailed;
  }
  const dnnl_status_t st = g_api.dnnl_engine_create(&g_engine, dnnl_cpu, 0);
  if (st != dnnl_success) {
    snprintf(g_info, sizeof g_info, "oneDNN not usable: dnnl_engine_create failed: %s",
             dnnl_status_name(st));
    return kFailed;
  }
  // Thread counts reach oneDNN through OpenMP; another runtime keeps its own.
  const char *rt = v->cpu_runtime == DNNL_RUNTIME_OMP ? ""
                   : v->cpu_runtime == DNNL_RUNTIME_SEQ ? ", single-threaded"
                                                        : ", its own threads";
  snprintf(g_info, sizeof g_info, "oneDNN %d.%d.%d%s", v->major, v->minor, v->patch, rt);
  return kLoaded;
}

pthread_mutex_t g_load_mu = PTHREAD_MUTEX_INITIALIZER;

bool loaded() {
  if (int s = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE)) return s == kLoaded;
  // OpenMP first: libdnnl would otherwise load libgomp before its settings are made
  num_threads();
  pthread_mutex_lock(&g_load_mu);
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) == kNotTried)
    __atomic_store_n(&g_state, load_once(), __ATOMIC_RELEASE);
  pthread_mutex_unlock(&g_load_mu);
  return __atomic_load_n(&g_state, __ATOMIC_ACQUIRE) == kLoaded;
}

// ---- per-thread primitives ------------------------------------------------------
// Creating a convolution primitive costs far more than running a small one, and the
// same layers run every step: each thread keeps the primitives it made (oneDNN
// streams and primitives are not for concurrent use), with their memory objects,
// keyed by everything that shapes them.

enum { kKeyLen = 4 + 17 /* bk_conv2d_geom's fields but size */, kCacheSize = 64, kMaxArgs = 4 };

// One argument of a primitive: the tensor as it is (its data pointer set per call)
// and, when the primitive chose another layout, a copy in that layout with the reorder
// between them (before the primitive for inputs, after it for outputs). Copies live
// in a per-thread scratch buffer only during a call: cached primitives keep no
// activation-sized memory of their own.
struct Arg {
  int id;  // DNNL_ARG_*
  bool output;
  dnnl_memory_t user;
  dnnl_memory_t inner;       // == user when no reorder is needed
  dnnl_primitive_t reorder;  // NULL when no reorder is needed
  size_t bytes;              // of the copy
};

struct Prim {
  int32_t key[kKeyLen];  // kind, bias, layouts chosen, thread count, then the geometry (its layout last)
  dnnl_primitive_t prim;
  int nargs;
  Arg args[kMaxArgs];
  uint64_t used;  // for least-recently-used eviction
};

struct ThreadState {
  bool registered;
  dnnl_stream_t stream;
  Prim *cache;  // kCacheSize entries, `count` in use
  int count;
  uint64_t tick;
};
thread_local ThreadState t_state;  // zero-initialised: no constructor or destructor

void destroy_prim(Prim &p) {
  for (Arg &a : p.args) {
    if (a.reorder) g_api.dnnl_primitive_destroy(a.reorder);
    if (a.inner && a.inner != a.user) g_api.dnnl_memory_destroy(a.inner);
    if (a.user) g_api.dnnl_memory_destroy(a.user);
  }
  if (p.prim) g_api.dnnl_primitive_destroy(p.prim);
  memset(&p, 0, sizeof p);
}

// At thread exit (a worker thread ends): the primitives and scratchpads go with it.
// glibc's hook, as for the scratch buffers in core.cc.
extern "C" int __cxa_thread_atexit_impl(void (*fn)(void *), void *obj, void *dso);
extern "C" void *__dso_handle;

void release_thread(void *obj) {
  ThreadState *s = (ThreadState *)obj;
  for (int i = 0; i < s->count; ++i) destroy_prim(s->cache[i]);
  free(s->cache);
  if (s->stream) g_api.dnnl_stream_destroy(s->stream);
  memset(s, 0, sizeof *s);
}

// The calling thread's stream and cache, made on first use.
int thread_state(ThreadState **out, const char *fn) {
  ThreadState &s = t_state;
  if (!s.registered) {
    __cxa_thread_atexit_impl(release_thread, &s, &__dso_handle);
    s.registered = true;
  }
  if (!s.cache) {
    s.cache = (Prim *)calloc(kCacheSize, sizeof(Prim));
    if (!s.cache) return fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
  }
  if (!s.stream) {
    const dnnl_status_t st =
        g_api.dnnl_stream_create(&s.stream, g_engine, dnnl_stream_default_flags);
    if (st != dnnl_success)
      return fail_status(BK_ERR_LIBRARY, "%s: dnnl_stream_create failed: %s", fn,
                         dnnl_status_name(st));
  }
  *out = &s;
  return 0;
}

// Sets up argument a of p: `plain` is the tensor's layout, the primitive's own is
// queried from pd; a reorder bridges them when they differ.
dnnl_status_t make_arg(Arg &a, int id, bool output, const dnnl_memory_desc_t *plain,
                       const_dnnl_primitive_desc_t pd, const char **call) {
  const Api &A = g_api;
  dnnl_status_t st;
  a.id = id;
  a.output = output;
  *call = "dnnl_memory_create";
  if ((st = A.dnnl_memory_create(&a.user, plain, g_engine, DNNL_MEMORY_NONE))) return st;
  const dnnl_memory_desc_t *chosen =
      A.dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, id);
  if (!chosen || A.dnnl_memory_desc_equal(chosen, plain)) {
    a.inner = a.user;
    return dnnl_success;
  }
  if ((st = A.dnnl_memory_create(&a.inner, chosen, g_engine, DNNL_MEMORY_NONE))) return st;
  a.bytes = A.dnnl_memory_desc_get_size(chosen);
  dnnl_primitive_desc_t rpd;
  *call = "dnnl_reorder_primitive_desc_create";
  if ((st = A.dnnl_reorder_primitive_desc_create(&rpd, output ? chosen : plain, g_engine,
                                                 output ? plain : chosen, g_engine, nullptr)))
    return st;
  *call = "dnnl_primitive_create";
  st = A.dnnl_primitive_create(&a.reorder, rpd);
  A.dnnl_primitive_desc_destroy(rpd);
  return st;
}

// Makes the primitive for one convolution into p (empty on entry); on failure p is
// left empty. `any` lets oneDNN pick its layouts (reorders then bridge them), else the
// primitive works on the tensors' own layouts. NHWC activations (g.nhwc) are what
// oneDNN's own direct kernels read, so they are asked for as they are (no reorder of
// x, y, dx or dy) and only the weights' layout is oneDNN's: plain NHWC weights would
// send it to a reference kernel hundreds of times slower. Measured (oneDNN 2.6, AVX-512,
// 1 thread, CPU time, [32, 64, 56, 56] 3x3) against NCHW on its blocked layouts: forward
// 0.85x, backward data 0.92-0.96x, backward weights 1.03x; NHWC reordered into the blocked
// layouts instead was no faster (1.02x, 1.04-1.07x for the backward passes).
int create_conv(Prim &p, ConvKind kind, const ConvGeom &g, bool bias, bool any, const char *fn) {
  const Api &A = g_api;
  dnnl_status_t st = dnnl_success;
  const char *call = nullptr;
  dnnl_memory_desc_t src, wei, dst, bia, src_any, wei_any, dst_any;
  dnnl_convolution_desc_t fwd, bwd;
  dnnl_primitive_desc_t fwd_pd = nullptr, pd = nullptr;
  const dnnl_dims_t sdims = {g.n, g.c, g.h, g.w}, ddims = {g.n, g.k, g.oh, g.ow};
  const dnnl_dims_t wdims1 = {g.k, g.c, g.r, g.s}, wdims5 = {g.groups, g.kg, g.cg, g.r, g.s};
  const dnnl_dims_t bdims = {g.k};
  // oneDNN counts dilation from 0 (d - 1); the right padding may be the left one: the
  // output size fixes what is used, as in PyTorch
  const dnnl_dims_t strides = {g.sh, g.sw}, dil = {g.dh - 1, g.dw - 1}, pad = {g.ph, g.pw};
  const int wnd = g.groups > 1 ? 5 : 4;
  const dnnl_dim_t *wdims = g.groups > 1 ? wdims5 : wdims1;
  const dnnl_memory_desc_t *ps, *pw, *pdst;  // what the primitive is asked for

#define BK_TRY(f, ...)                           \
  if ((st = A.f(__VA_ARGS__)) != dnnl_success) { \
    call = #f;                                   \
    goto error;                                  \
  }
  BK_TRY(dnnl_memory_desc_init_by_tag, &src, 4, sdims, dnnl_f32, g.nhwc ? dnnl_nhwc : dnnl_nchw);
  BK_TRY(dnnl_memory_desc_init_by_tag, &dst, 4, ddims, dnnl_f32, g.nhwc ? dnnl_nhwc : dnnl_nchw);
  BK_TRY(dnnl_memory_desc_init_by_tag, &wei, wnd, wdims, dnnl_f32,
         g.groups > 1 ? dnnl_goihw : dnnl_oihw);
  BK_TRY(dnnl_memory_desc_init_by_tag, &bia, 1, bdims, dnnl_f32, dnnl_x);
  BK_TRY(dnnl_memory_desc_init_by_tag, &src_any, 4, sdims, dnnl_f32, dnnl_format_tag_any);
  BK_TRY(dnnl_memory_desc_init_by_tag, &dst_any, 4, ddims, dnnl_f32, dnnl_format_tag_any);
  BK_TRY(dnnl_memory_desc_init_by_tag, &wei_any, wnd, wdims, dnnl_f32, dnnl_format_tag_any);
  ps = any && !g.nhwc ? &src_any : &src;
  pw = any || g.nhwc ? &wei_any : &wei;
  pdst = any && !g.nhwc ? &dst_any : &dst;
  // direct, not auto: auto may pick Winograd, which is less accurate
  BK_TRY(dnnl_dilated_convolution_forward_desc_init, &fwd, dnnl_forward_training,
         dnnl_convolution_direct, ps, pw, bias ? &bia : nullptr, pdst, strides, dil, pad, pad);
  BK_TRY(dnnl_primitive_desc_create, &fwd_pd, &fwd, nullptr, g_engine, nullptr);
  if (kind == kConvForward) {
    pd = fwd_pd;
    fwd_pd = nullptr;
  } else {
    // the backward passes take the forward one as a hint
    if (kind == kConvBackwardData) {
      BK_TRY(dnnl_dilated_convolution_backward_data_desc_init, &bwd, dnnl_convolution_direct,
             ps, pw, pdst, strides, dil, pad, pad);
    } else {
      // no bias gradient here: core sums dy itself
      BK_TRY(dnnl_dilated_convolution_backward_weights_desc_init, &bwd,
             dnnl_convolution_direct, ps, pw, nullptr, pdst, strides, dil, pad, pad);
    }
    BK_TRY(dnnl_primitive_desc_create, &pd, &bwd, nullptr, g_engine, fwd_pd);
  }
  BK_TRY(dnnl_primitive_create, &p.prim, pd);
#undef BK_TRY
  {
    // arguments in the order dnnl_conv passes the data: src, weights, dst, bias
    const bool fw = kind == kConvForward, bd = kind == kConvBackwardData;
    const bool bw = kind == kConvBackwardWeights;
    const int ids[kMaxArgs] = {bd ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC,
                               bw ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS,
                               fw ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST, DNNL_ARG_BIAS};
    const bool outs[kMaxArgs] = {bd, bw, fw, false};
    const dnnl_memory_desc_t *plain[kMaxArgs] = {&src, &wei, &dst, &bia};
    p.nargs = fw && bias ? 4 : 3;
    for (int i = 0; i < p.nargs; ++i)
      if ((st = make_arg(p.args[i], ids[i], outs[i], plain[i], pd, &call))) goto error;
  }
  A.dnnl_primitive_desc_destroy(pd);
  return 0;

error:
  if (fwd_pd) A.dnnl_primitive_desc_destroy(fwd_pd);
  if (pd) A.dnnl_primitive_desc_destroy(pd);
  destroy_prim(p);
  return fail_status(BK_ERR_LIBRARY, "%s: %s failed: %s", fn, call, dnnl_status_name(st));
}

// Whether oneDNN picks its own layouts for this convolution (channels in blocks of 16
// or 8, where its direct kernels run), with reorders from and to the tensors' own, or
// works on these (through im2col and GEMM). Measured with oneDNN 2.6 on AVX-512, one
// thread: blocked is 1.3-3x faster for 3x3 convolutions and 5-30x for grouped and
// depthwise ones, reorders included; plain wins for a 1x1 convolution (a GEMM as it
// is, so the reorders are pure cost) and for backward data into a few channels (the
// 3-channel input of a stem: 2-3x).
bool blocked_layouts(ConvKind kind, const ConvGeom &g) {
  if (g.groups == 1 && conv_pointwise(g)) return false;
  if (kind == kConvBackwardData && g.groups == 1 && g.c < 8) return false;
  return true;
}

// The cached primitive for this call, created (evicting the least recently used
// one when full) if this thread has not made it yet.
int find_conv(Prim **out, ThreadState &s, ConvKind kind, const ConvGeom &g, bool bias,
              const char *fn) {
  const bool any = blocked_layouts(kind, g);
  int32_t key[kKeyLen] = {(int32_t)kind, bias, any, num_threads(),
                          (int32_t)g.n,  (int32_t)g.c, (int32_t)g.h,  (int32_t)g.w,
                          (int32_t)g.k,  (int32_t)g.r, (int32_t)g.s,  (int32_t)g.oh,
                          (int32_t)g.ow, (int32_t)g.sh, (int32_t)g.sw, (int32_t)g.ph,
                          (int32_t)g.pw, (int32_t)g.dh, (int32_t)g.dw, (int32_t)g.groups,
                          (int32_t)g.nhwc};
  ++s.tick;
  for (int i = 0; i < s.count; ++i)
    if (memcmp(s.cache[i].key, key, sizeof key) == 0) {
      s.cache[i].used = s.tick;
      *out = &s.cache[i];
      return 0;
    }
  int slot = s.count;
  if (slot == kCacheSize) {
    slot = 0;
    for (int i = 1; i < kCacheSize; ++i)
      if (s.cache[i].used < s.cache[slot].used) slot = i;
    destroy_prim(s.cache[slot]);
  } else {
    ++s.count;
  }
  Prim &p = s.cache[slot];
  if (const int rc = create_conv(p, kind, g, bias, any, fn)) {
    // keep the array dense: move the last entry into the hole
    --s.count;
    if (slot != s.count) {
      p = s.cache[s.count];
      memset(&s.cache[s.count], 0, sizeof(Prim));
    }
    return rc;
  }
  memcpy(p.key, key, sizeof key);
  p.used = s.tick;
  *out = &p;
  return 0;
}

// Runs the reorders of p's inputs (into the primitive's layouts) or of its outputs
// (back into the tensors').
dnnl_status_t reorders(const Prim &p, dnnl_stream_t stream, bool outputs) {
  for (int i = 0; i < p.nargs; ++i) {
    const Arg &a = p.args[i];
    if (!a.reorder || a.output != outputs) continue;
    const dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, outputs ? a.inner : a.user},
                                  {DNNL_ARG_TO, outputs ? a.user : a.inner}};
    if (dnnl_status_t st = g_api.dnnl_primitive_execute(a.reorder, stream, 2, r)) return st;
  }
  return dnnl_success;
}

}  // namespace

bool dnnl_on() { return !t_dnnl_off && loaded(); }

int dnnl_conv(ConvKind kind, const ConvGeom &g, const float *src, const float *weights,
              const float *dst, const float *bias, const char *fn) {
  ThreadState *s;
  Prim *p;
  if (const int rc = thread_state(&s, fn)) return rc;
  if (const int rc = find_conv(&p, *s, kind, g, bias != nullptr, fn)) return rc;
  const Api &A = g_api;
  const float *data[kMaxArgs] = {src, weights, dst, bias};
  dnnl_exec_arg_t args[kMaxArgs];
  dnnl_status_t st;
  const char *call = "dnnl_memory_set_data_handle";
  // the reordered copies, one after another in this thread's scratch
  size_t copies = 0;
  for (int i = 0; i < p->nargs; ++i)
    if (p->args[i].reorder) copies += (p->args[i].bytes + 63) / 64 * 64;
  char *buf = nullptr;
  if (copies)
    if (!(buf = (char *)scratch(1, copies / sizeof(float))))
      return fail_status(BK_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
  for (int i = 0; i < p->nargs; ++i) {
    Arg &a = p->args[i];
    if ((st = A.dnnl_memory_set_data_handle(a.user, (void *)data[i]))) goto error;
    if (a.reorder) {
      if ((st = A.dnnl_memory_set_data_handle(a.inner, buf))) goto error;
      buf += (a.bytes + 63) / 64 * 64;
    }
    args[i].arg = a.id;
    args[i].memory = a.inner;
  }
  call = "dnnl_primitive_execute";
  // inputs into the primitive's layouts, the primitive, outputs back into the tensors'
  if ((st = reorders(*p, s->stream, false)) ||
      (st = A.dnnl_primitive_execute(p->prim, s->stream, p->nargs, args)) ||
      (st = reorders(*p, s->stream, true)))
    goto error;
  call = "dnnl_stream_wait";
  if ((st = A.dnnl_stream_wait(s->stream))) goto error;
  return 0;
error:
  return fail_status(BK_ERR_LIBRARY, "%s: %s failed: %s", fn, call, dnnl_status_name(st));
}

int dnnl_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc) {
  return (int)g_api.dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda,
                               b, ldb, beta, c, ldc);
}

const char *dnnl_status_name(int status) {
  switch (status) {
    case dnnl_success: return "dnnl_success";
    case dnnl_out_of_memory: return "dnnl_out_of_memory";
    case dnnl_invalid_arguments: return "dnnl_invalid_arguments";
    case dnnl_unimplemented: return "dnnl_unimplemented";
    case dnnl_iterator_ends: return "dnnl_iterator_ends";
    case dnnl_runtime_error: return "dnnl_runtime_error";
    case dnnl_not_required: return "dnnl_not_required";
    default: return "unknown dnnl_status_t";
  }
}

}  // namespace bk

#else  // no oneDNN headers at build time: the built-in path only

namespace bk {
namespace {
const char g_info[] = "oneDNN not built in (no dnnl.h at build time: install libdnnl-dev)";
bool loaded() { return false; }
}  // namespace

bool dnnl_on() { return false; }
int dnnl_conv(ConvKind, const ConvGeom &, const float *, const float *, const float *,
              const float *, const char *fn) {
  return fail_status(BK_ERR_UNSUPPORTED, "%s: built without oneDNN", fn);
}
int dnnl_gemm(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
              const float *, int64_t, float, float *, int64_t) {
  return -1;
}
const char *dnnl_status_name(int) { return "oneDNN not built in"; }

}  // namespace bk

#endif

extern "C" int bk_cpu_info(char *buf, int64_t len) {
  BK_NOTNULL(buf);
  BK_REQUIRE(len > 0, "%s: len must be > 0 (got %lld)", __func__, (long long)len);
  const int nt = bk::num_threads();
  char threads[400];
  if (const char *why = bk::openmp_missing())
    snprintf(threads, sizeof threads, "%d thread%s (%s: runs on 1)", nt, nt == 1 ? "" : "s", why);
  else
    snprintf(threads, sizeof threads, "%d thread%s", nt, nt == 1 ? "" : "s");
  const bool on = bk::loaded();  // tries to load oneDNN if nothing has yet
  const char *engine = !on             ? bk::g_info
                       : bk::t_dnnl_off ? "oneDNN turned off in this thread (bk_cpu_use_dnnl)"
                                        : bk::g_info;
  snprintf(buf, (size_t)len, "cpu (%s, %s, %s%s)", bk::cpu_isa(), threads,
           on && !bk::t_dnnl_off ? "" : "built-in GEMM: ", engine);
  return 0;
}

extern "C" int32_t bk_cpu_use_dnnl(int32_t enable) {
  if (enable >= 0) bk::t_dnnl_off = enable == 0;
  return bk::dnnl_on() ? 1 : 0;
}
