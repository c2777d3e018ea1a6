// Matrix products through cuBLAS, found at run time (dlopen), so the library
// links nothing beyond the driver and works with cuBLAS 12 or 13, wherever it is.
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "conv_impl.cuh"

namespace bk {
namespace {

// The few cuBLAS entry points used, with their C signatures (cublas_api.h).
typedef int (*CreateFn)(void **handle);
typedef int (*SetStreamFn)(void *handle, cudaStream_t s);
typedef int (*GetVersionFn)(void *handle, int *version);
typedef int (*SgemmStridedBatchedFn)(void *handle, int transa, int transb, int m, int n, int k,
                                     const float *alpha, const float *a, int lda, long long sa,
                                     const float *b, int ldb, long long sb, const float *beta,
                                     float *c, int ldc, long long sc, int batch);

struct Cublas {
  bool tried = false;
  std::string path;   // the library loaded
  std::string error;  // why none was
  CreateFn create = nullptr;
  SetStreamFn set_stream = nullptr;
  SgemmStridedBatchedFn sgemm_strided_batched = nullptr;
};

std::mutex g_mu;
Cublas g_cublas;

// The cuBLAS of this library's own CUDA major version first: a newer one loads but
// fails at cublasCreate when the driver is too old for it.
constexpr bool kCuda13 = CUDART_VERSION >= 13000;
const char *const kSonames[2] = {kCuda13 ? "libcublas.so.13" : "libcublas.so.12",
                                 kCuda13 ? "libcublas.so.12" : "libcublas.so.13"};

void add_dir_candidates(std::vector<std::string> &out, const std::string &dir) {
  if (dir.empty()) return;
  for (const char *so : kSonames) out.push_back(dir + "/" + so);
}

void add_glob(std::vector<std::string> &out, const std::string &pattern) {
  glob_t g;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++) add_dir_candidates(out, g.gl_pathv[i]);
  }
  globfree(&g);
}

std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char *env = getenv("BAGUA_CUBLAS_LIB")) {  // a file or a directory
    std::string e(env);
    if (e.find(".so") != std::string::npos) out.push_back(e);
    else add_dir_candidates(out, e);
  }
  if (const char *ld = getenv("LD_LIBRARY_PATH")) {
    std::string s(ld);
    size_t pos = 0;
    while (pos <= s.size()) {
      size_t end = s.find(':', pos);
      if (end == std::string::npos) end = s.size();
      add_dir_candidates(out, s.substr(pos, end - pos));
      pos = end + 1;
    }
  }
  for (const char *var : {"CUDA_HOME", "CUDA_PATH"})
    if (const char *v = getenv(var)) add_dir_candidates(out, std::string(v) + "/lib64");
  add_dir_candidates(out, "/usr/local/cuda/lib64");
  add_dir_candidates(out, "/usr/local/cuda/targets/x86_64-linux/lib");
  add_dir_candidates(out, "/usr/local/cuda/targets/sbsa-linux/lib");
  // pip wheels: nvidia-cublas-cu12 (nvidia/cublas/lib) and the CUDA 13 layout (nvidia/cu13/lib).
  std::vector<std::string> prefixes = {"/usr/local/lib", "/usr/lib", "/opt/conda/lib"};
  for (const char *var : {"VIRTUAL_ENV", "CONDA_PREFIX"})
    if (const char *v = getenv(var)) prefixes.push_back(std::string(v) + "/lib");
  if (const char *home = getenv("HOME")) {
    prefixes.push_back(std::string(home) + "/.local/lib");
    prefixes.push_back(std::string(home) + "/.pyenv/versions/*/lib");
  }
  for (const std::string &p : prefixes)
    for (const char *pk : {"site-packages", "dist-packages"})
      for (const char *sub : {"nvidia/cublas/lib", "nvidia/cu13/lib"})
        add_glob(out, p + "/python3*/" + pk + "/" + sub);
  // Last, the dynamic loader's own search (ld.so.cache, RUNPATH).
  for (const char *so : kSonames) out.push_back(so);
  return out;
}

bool exists(const std::string &p) { return access(p.c_str(), R_OK) == 0; }

int load_locked() {
  Cublas &c = g_cublas;
  if (c.tried) return c.create ? 0 : fail_status(BK_ERR_LIBRARY, "%s", c.error.c_str());
  c.tried = true;
  std::string tried;
  for (const std::string &path : candidates()) {
    bool bare = path.find('/') == std::string::npos;
    if (!bare && !exists(path)) {
      tried += "\n  " + path + " (absent)";
      continue;
    }
    if (!bare) {
      // libcublas needs libcublasLt of the same version: load it from the same
      // directory first, so it resolves even when that directory is not on a search path.
      std::string lt = path;
      size_t at = lt.rfind("libcublas.so");
      lt.replace(at, strlen("libcublas"), "libcublasLt");
      if (exists(lt)) dlopen(lt.c_str(), RTLD_NOW | RTLD_GLOBAL);
    }
    void *h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char *e = dlerror();
      tried += "\n  " + path + " (" + (e ? e : "dlopen failed") + ")";
      continue;
    }
    c.create = (CreateFn)dlsym(h, "cublasCreate_v2");
    c.set_stream = (SetStreamFn)dlsym(h, "cublasSetStream_v2");
    c.sgemm_strided_batched = (SgemmStridedBatchedFn)dlsym(h, "cublasSgemmStridedBatched");
    if (!c.create || !c.set_stream || !c.sgemm_strided_batched) {
      tried += "\n  " + path + " (lacks cublasCreate_v2 / cublasSetStream_v2 / cublasSgemmStridedBatched)";
      c.create = nullptr;
      dlclose(h);
      continue;
    }
    char real[PATH_MAX];
    Dl_info info;
    if (dladdr((void *)c.create, &info) && info.dli_fname && realpath(info.dli_fname, real))
      c.path = real;
    else
      c.path = path;
    return 0;
  }
  c.error = "cuBLAS (libcublas.so.13 or .12) was not found; it is needed for matrix products and "
            "convolutions on CUDA. Set BAGUA_CUBLAS_LIB to the library or its directory, or add "
            "its directory to LD_LIBRARY_PATH (pip install nvidia-cublas-cu12 provides one). "
            "Tried:" + tried;
  return fail_status(BK_ERR_LIBRARY, "%s", c.error.c_str());
}

int load() {
  std::lock_guard<std::mutex> g(g_mu);
  return load_locked();
}

// One handle per host thread and device: cuBLAS handles must not be used by two
// threads at once, and are bound to the device current at creation.
int handle_for(int dev, void **out) {
  thread_local std::map<int, void *> handles;
  auto it = handles.find(dev);
  if (it != handles.end()) {
    *out = it->second;
    return 0;
  }
  void *h = nullptr;
  int st = g_cublas.create(&h);
  if (st != 0) return fail_status(BK_ERR_LIBRARY, "cublasCreate failed on cuda:%d (cublasStatus %d)", dev, st);
  handles[dev] = h;
  *out = h;
  return 0;
}

bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

}  // namespace

// Row-major C = alpha op(A) op(B) + beta C through cuBLAS (gemm_rowmajor in
// conv_impl.cuh swaps operands for its column-major convention).
int sgemm_strided_batched(cudaStream_t s, bool trans_a, bool trans_b, int64_t m, int64_t n,
                          int64_t k, float alpha, const float *a, int64_t lda, int64_t stride_a,
                          const float *b, int64_t ldb, int64_t stride_b, float beta, float *c,
                          int64_t ldc, int64_t stride_c, int64_t batch) {
  if (m == 0 || n == 0 || batch == 0) return 0;
  BK_REQUIRE(m > 0 && n > 0 && k >= 0 && batch > 0, "gemm: negative size (m %lld, n %lld, k %lld, batch %lld)",
             (long long)m, (long long)n, (long long)k, (long long)batch);
  BK_REQUIRE(fits_int(m) && fits_int(n) && fits_int(k) && fits_int(lda) && fits_int(ldb) &&
                 fits_int(ldc) && fits_int(batch),
             "gemm: a size or leading dimension exceeds 2^31-1 (m %lld, n %lld, k %lld)",
             (long long)m, (long long)n, (long long)k);
  BK_TRY(load());
  int dev;
  BK_TRY(current_device(&dev));
  void *h = nullptr;
  BK_TRY(handle_for(dev, &h));
  int st = g_cublas.set_stream(h, s);
  if (st != 0) return fail_status(BK_ERR_LIBRARY, "cublasSetStream failed (cublasStatus %d)", st);
  auto colmajor = [h](int ta, int tb, int mm, int nn, int kk, const float *al, const float *aa, int la,
                      long long sa, const float *bb, int lb, long long sb, const float *be, float *cc, int lc,
                      long long sc, int bt) {
    return g_cublas.sgemm_strided_batched(h, ta, tb, mm, nn, kk, al, aa, la, sa, bb, lb, sb, be, cc, lc, sc, bt);
  };
  st = gemm_rowmajor(colmajor, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,
                     stride_c, batch);
  if (st != 0)
    return fail_status(BK_ERR_LIBRARY, "cublasSgemmStridedBatched failed (cublasStatus %d; m %lld n %lld k %lld lda %lld "
                "ldb %lld ldc %lld batch %lld trans %d%d)",
                st, (long long)m, (long long)n, (long long)k, (long long)lda, (long long)ldb,
                (long long)ldc, (long long)batch, (int)trans_a, (int)trans_b);
  return check_launch("gemm");
}

}  // namespace bk

using namespace bk;

extern "C" {

BK_API int bk_gemm_f32(float *c, const float *a, const float *b, int32_t trans_a, int32_t trans_b,
                       int64_t m, int64_t n, int64_t k, float alpha, float beta, int64_t lda,
                       int64_t ldb, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                       int64_t stride_c, void *stream) {
  return sgemm_strided_batched(as_stream(stream), trans_a != 0, trans_b != 0, m, n, k, alpha, a,
                               lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c, batch);
}

BK_API int bk_cuda_cublas_info(char *path, int32_t path_len) {
  BK_TRY(load());
  if (path && path_len > 0) {
    strncpy(path, g_cublas.path.c_str(), (size_t)path_len - 1);
    path[path_len - 1] = 0;
  }
  return 0;
}

}  // extern "C"
