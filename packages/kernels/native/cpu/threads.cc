// Kernel threads, on OpenMP's runtime (libgomp) found at run time.
//
// A thread count belongs to the calling thread: each rank of the in-process `threads`
// backend is a Node worker thread that sizes its own share of the cores, so one rank's
// setting must not change another's. OpenMP keeps such a setting per thread as well
// (omp_set_num_threads), and Debian's oneDNN runs on libgomp, so one call sizes both.
//
// libgomp is dlopen'ed rather than linked: the prebuilt library then needs nothing new,
// runs single-threaded where libgomp is absent, and can choose how long idle pool
// threads spin before sleeping (below) before libgomp reads its environment.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "dynload.h"

namespace bk {
namespace {

constexpr int kMaxThreads = 1024;

// libgomp's default spin before an idle thread sleeps is 300000 pauses, 10 ms and more
// on CPUs with a slow pause: when other processes share the cores, threads waiting at
// a barrier for a preempted one burn whole time slices, and 2 threads ran 10-50x slower
// than 1 in measurements on a busy machine. 10000 keeps back-to-back kernels from
// sleeping between calls. Used only when the user set neither variable.
const char kSpinCount[] = "10000";

// The GOMP ABI that GCC's -fopenmp code calls, and the OpenMP API calls used.
struct Gomp {
  void (*parallel)(void (*fn)(void *), void *data, unsigned nthreads, unsigned flags);
  int (*thread_num)(void);
  int (*num_threads)(void);
  void (*set_num_threads)(int);
  int (*num_procs)(void);
};

enum { kNotTried = 0, kLoaded = 1, kFailed = 2 };
int g_state = kNotTried;
Gomp g_gomp;
char g_why[320];  // why OpenMP is not used
pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

int load_once() {
  const bool set_spin = !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
  if (set_spin) setenv("GOMP_SPINCOUNT", kSpinCount, 0);
  // libgomp reads its environment when loaded (if nothing loaded it before)
  void *h = dlopen("libgomp.so.1", RTLD_NOW | RTLD_LOCAL);
  if (set_spin) unsetenv("GOMP_SPINCOUNT");  // not passed on to child processes
  if (!h) {
    const char *e = dlerror();
    snprintf(g_why, sizeof g_why, "no OpenMP: %s", e ? e : "libgomp.so.1 not found");
    return kFailed;
  }
  Gomp g;
  g.parallel = (decltype(g.parallel))dlsym(h, "GOMP_parallel");
  g.thread_num = (decltype(g.thread_num))dlsym(h, "omp_get_thread_num");
  g.num_threads = (decltype(g.num_threads))dlsym(h, "omp_get_num_threads");
  g.set_num_threads = (decltype(g.set_num_threads))dlsym(h, "omp_set_num_threads");
  g.num_procs = (decltype(g.num_procs))dlsym(h, "omp_get_num_procs");
  if (!g.parallel || !g.thread_num || !g.num_threads || !g.set_num_threads || !g.num_procs) {
    snprintf(g_why, sizeof g_why, "no OpenMP: libgomp.so.1 lacks GOMP_parallel (GCC 4.9+)");
    return kFailed;
  }
  g_gomp = g;
  return kLoaded;
}

bool gomp() {
  if (int s = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE)) return s == kLoaded;
  pthread_mutex_lock(&g_mu);
  if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE) == kNotTried)
    __atomic_store_n(&g_state, load_once(), __ATOMIC_RELEASE);
  pthread_mutex_unlock(&g_mu);
  return __atomic_load_n(&g_state, __ATOMIC_ACQUIRE) == kLoaded;
}

thread_local int t_threads;         // 0 until this thread first needs a count
thread_local bool t_in_parallel;    // inside one of our parallel regions

// A positive integer environment variable, or 0 when unset or not one.
int env_count(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  const long x = strtol(v, &end, 10);
  return (*end == 0 && x > 0 && x <= kMaxThreads) ? (int)x : 0;
}

int cores() {
  if (gomp()) return g_gomp.num_procs();  // the CPUs this process may run on (affinity)
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

int default_threads() {
  if (const int n = env_count("BAGUA_NUM_THREADS")) return n;
  // the launcher starts LOCAL_WORLD_SIZE ranks on this machine: share the cores
  const int local = env_count("LOCAL_WORLD_SIZE");
  const int n = cores() / (local ? local : 1);
  return n < 1 ? 1 : n;
}

void apply(int n) {
  t_threads = n;
  // OpenMP's setting for this thread only; oneDNN sizes its parallel regions by it
  if (gomp()) g_gomp.set_num_threads(n);
}

struct Region {
  void (*body)(void *, int, int);
  void *ctx;
};

void region(void *p) {
  const Region &r = *(const Region *)p;
  t_in_parallel = true;
  r.body(r.ctx, g_gomp.thread_num(), g_gomp.num_threads());
  t_in_parallel = false;
}

}  // namespace

int num_threads() {
  if (t_threads == 0) apply(default_threads());
  return t_threads;
}

int threads_for(int64_t work, int64_t grain) {
  if (t_in_parallel) return 1;
  const int nt = num_threads();
  if (nt <= 1 || work < 2 * grain || !gomp()) return 1;
  const int64_t most = work / grain;
  return most < nt ? (int)most : nt;
}

int run_parallel(void (*body)(void *, int, int), void *ctx, int nt) {
  if (nt <= 1 || t_in_parallel || !gomp()) {
    body(ctx, 0, 1);
    return 1;
  }
  Region r = {body, ctx};
  g_gomp.parallel(region, &r, (unsigned)nt, 0);
  return nt;
}

const char *openmp_missing() { return gomp() ? nullptr : g_why; }

}  // namespace bk

extern "C" int bk_set_num_threads(int32_t n) {
  BK_REQUIRE(n >= 1 && n <= bk::kMaxThreads, "%s: n must be an integer in [1, %d] (got %d)",
             __func__, bk::kMaxThreads, n);
  bk::apply(n);
  return 0;
}

extern "C" int32_t bk_get_num_threads(void) { return bk::num_threads(); }
