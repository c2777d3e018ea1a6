// Host-side check of the batch-norm index walks (bn_walk.cuh): the exact loops the
// kernels run, executed on the CPU for every (block, thread) of many launch
// geometries. Each element must be visited exactly once and attributed to its
// own channel. Run by `make -C native/cuda check` (no GPU needed).
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "bn_walk.cuh"

using namespace bk;

static int failures = 0;
#define CHECK(cond, ...)                    \
  do {                                      \
    if (!(cond) && failures++ < 10) {       \
      fprintf(stderr, "FAIL: " __VA_ARGS__); \
      fprintf(stderr, "\n");                \
    }                                       \
  } while (0)

// The reductions: blocks_per_channel blocks of `threads` per channel.
template <int U>
static void check_channels(int64_t n, int64_t c, int64_t hwv, int64_t bpc, int64_t threads) {
  std::vector<int> seen((size_t)(n * c * hwv), 0);
  const int64_t per_v = n * hwv, stride = bpc * threads;
  for (int64_t ch = 0; ch < c; ch++)
    for (int64_t b = 0; b < bpc; b++)
      for (int64_t t = 0; t < threads; t++) {
        auto visit = [&](int64_t at) {
          CHECK(at >= 0 && at < (int64_t)seen.size(), "planes U%d [%lld,%lld,%lld] bpc %lld: offset %lld out of range", U,
                (long long)n, (long long)c, (long long)hwv, (long long)bpc, (long long)at);
          if (at < 0 || at >= (int64_t)seen.size()) return;
          seen[(size_t)at]++;
          CHECK((at / hwv) % c == ch, "planes U%d: offset %lld is in channel %lld, walked as %lld", U, (long long)at,
                (long long)((at / hwv) % c), (long long)ch);
        };
        walk_channel<U>(b * threads + t, stride, per_v, hwv, c, ch,
                        [&](const int64_t *at) { for (int u = 0; u < U; u++) visit(at[u]); }, visit);
      }
  for (size_t i = 0; i < seen.size(); i++)
    CHECK(seen[i] == 1, "planes U%d [%lld,%lld,%lld] bpc %lld threads %lld: offset %zu visited %d times", U,
          (long long)n, (long long)c, (long long)hwv, (long long)bpc, (long long)threads, i, seen[i]);
}

// The elementwise passes: a grid-stride walk over all vectors.
template <int U, bool ROW>
static void check_tensor(int64_t n, int64_t c, int64_t hwv, int vec, int64_t grid, int64_t threads) {
  const int64_t total = ROW ? n * (c / vec) : n * c * hwv, stride = grid * threads;
  std::vector<int> seen((size_t)total, 0);
  for (int64_t b = 0; b < grid; b++)
    for (int64_t t = 0; t < threads; t++)
      walk_tensor<U, ROW>(b * threads + t, stride, total, hwv, c, vec, [&](int64_t v0, const int64_t *chs) {
        for (int u = 0; u < U; u++) {
          const int64_t v = v0 + u * stride;
          if (v >= total) break;
          seen[(size_t)v]++;
          const int64_t want = ROW ? v % (c / vec) : (v / hwv) % c;
          CHECK(chs[u] == want, "tensor U%d %s [%lld,%lld,%lld] grid %lld: vector %lld has channel %lld, walked as %lld", U,
                ROW ? "rows" : "planes", (long long)n, (long long)c, (long long)hwv, (long long)grid, (long long)v,
                (long long)want, (long long)chs[u]);
        }
      });
  for (size_t i = 0; i < seen.size(); i++)
    CHECK(seen[i] == 1, "tensor U%d %s [%lld,%lld,%lld] grid %lld threads %lld: vector %zu visited %d times", U,
          ROW ? "rows" : "planes", (long long)n, (long long)c, (long long)hwv, (long long)grid, (long long)threads, i,
          seen[i]);
}

int main() {
  srand(12345);
  int cases = 0;
  auto r = [](int lo, int hi) { return (int64_t)(lo + rand() % (hi - lo + 1)); };
  for (int k = 0; k < 400; k++) {
    const int64_t n = r(1, 9), c = r(1, 13), hwv = r(1, 60), threads = r(1, 3) == 1 ? 256 : r(1, 40);
    check_channels<1>(n, c, hwv, r(1, 9), threads);
    check_channels<2>(n, c, hwv, r(1, 9), threads);
    check_channels<4>(n, c, hwv, r(1, 9), threads);
    check_channels<8>(n, c, hwv, r(1, 9), threads);
    check_tensor<2, false>(n, c, hwv, 1, r(1, 30), threads);
    check_tensor<4, false>(n, c, hwv, 4, r(1, 30), threads);
    const int64_t c4 = 4 * r(1, 12);
    check_tensor<2, true>(n * 3, c4, 1, 4, r(1, 30), threads);
    check_tensor<4, true>(n * 3, c4, 1, 4, r(1, 30), threads);
    cases += 8;
  }
  // the benchmark shapes' geometry, with small thread counts to keep it quick
  check_channels<4>(32, 64, 12544 / 4, 10, 64);
  check_tensor<4, false>(64, 256, 784 / 4, 4, 97, 64);
  check_tensor<4, true>(256, 2048, 1, 4, 53, 64);
  cases += 3;
  if (failures) {
    fprintf(stderr, "test_walk: %d failure(s) in %d cases\n", failures, cases);
    return 1;
  }
  printf("test_walk: %d launch geometries, every element visited once in its own channel\n", cases);
  return 0;
}
