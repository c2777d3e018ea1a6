// 16-lane float16 / bfloat16 loads and stores for the CPU library's vector loops: the
// conversions of bagua_half.h (same rounding, same special values) written over GCC
// vector types, so a load widens 16 values and a store rounds 16 with no branches.
// VecIO<E>::load / store for the element kinds of bagua_half.h (F32, BF16, F16): kernels
// templated on E read and write their big operands through these, in float lanes.
#pragma once

#include "bagua_half.h"
#include "common.h"

typedef uint16_t bk_u16x16 __attribute__((vector_size(32)));
typedef uint32_t bk_u32x16 __attribute__((vector_size(64)));
typedef int32_t bk_i32x16 __attribute__((vector_size(64)));

BK_INLINE bk_v16 v16_from_bits(bk_u32x16 u) {
  bk_v16 v;
  memcpy(&v, &u, sizeof v);
  return v;
}
BK_INLINE bk_u32x16 v16_bits(bk_v16 v) {
  bk_u32x16 u;
  memcpy(&u, &v, sizeof u);
  return u;
}
BK_INLINE bk_u32x16 u16x16_load(const uint16_t *p) {
  bk_u16x16 h;
  memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, bk_u32x16);
}
BK_INLINE void u16x16_store(uint16_t *p, bk_u32x16 u) {
  const bk_u16x16 h = __builtin_convertvector(u, bk_u16x16);
  memcpy(p, &h, sizeof h);
}

template <class E>
struct VecIO;

// load32 / store32: 32 elements as two vectors, in an order of the kind's choosing (store32
// undoes load32): for loops whose lanes are independent or only summed (elementwise passes
// with per-channel constants, statistics). float32 and float16: elements 0-15, 16-31.
// kEvenOdd: load32 puts even elements in the first vector and odd ones in the second (so
// per-column constants or per-column sums of a 32-element block sit in that lane order);
// otherwise elements 0-15, 16-31. kWidenOnce: widening costs more than an L1 read, so a
// two-pass loop should widen into a float buffer once.
template <>
struct VecIO<bk_half::F32> {
  static constexpr bool kEvenOdd = false, kWidenOnce = false;
  static BK_INLINE bk_v16 load(const float *p) { return v16_load(p); }
  static BK_INLINE void store(float *p, bk_v16 v) { v16_store(p, v); }
  static BK_INLINE void load32(const float *p, bk_v16 &a, bk_v16 &b) {
    a = v16_load(p);
    b = v16_load(p + 16);
  }
  static BK_INLINE void store32(float *p, bk_v16 a, bk_v16 b) {
    v16_store(p, a);
    v16_store(p + 16, b);
  }
};

template <>
struct VecIO<bk_half::BF16> {
  static constexpr bool kEvenOdd = true, kWidenOnce = false;
  static BK_INLINE bk_v16 load(const uint16_t *p) { return v16_from_bits(u16x16_load(p) << 16); }
  static BK_INLINE void store(uint16_t *p, bk_v16 v) {
    const bk_u32x16 u = v16_bits(v);
    const bk_u32x16 r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const bk_u32x16 nan = bk_u32x16{} + 0x7fc0u;
    u16x16_store(p, (u & 0x7fffffffu) > 0x7f800000u ? nan : r);
  }
  // 32 bfloat16 values as 16 32-bit words: the even elements are the words' low halves, the
  // odd ones their high halves, so widening is one shift or one mask per 16 values, with no
  // zero-extension or packing shuffles (the even / odd lanes come out as two vectors).
  static BK_INLINE void load32(const uint16_t *p, bk_v16 &even, bk_v16 &odd) {
    bk_u32x16 w;
    memcpy(&w, p, sizeof w);
    even = v16_from_bits(w << 16);
    odd = v16_from_bits(w & 0xffff0000u);
  }
  // Rounded as store(), each result in the upper half of its word.
  static BK_INLINE bk_u32x16 round_hi(bk_v16 v) {
    const bk_u32x16 u = v16_bits(v);
    const bk_u32x16 r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    return (u & 0x7fffffffu) > 0x7f800000u ? bk_u32x16{} + 0x7fc00000u : r;
  }
  static BK_INLINE void store32(uint16_t *p, bk_v16 even, bk_v16 odd) {
    const bk_u32x16 w = round_hi(odd) | (round_hi(even) >> 16);
    memcpy(p, &w, sizeof w);
  }
};

template <>
struct VecIO<bk_half::F16> {
  static constexpr bool kEvenOdd = false, kWidenOnce = true;
  // Exponent and mantissa shifted into float position are the value times 2^-112 (a float
  // subnormal for a half subnormal), so one exact multiply by 2^112 rebiases normals and
  // normalises subnormals alike; inf / NaN (exponent 31) get the all-ones exponent (a NaN
  // its quiet bit, as bagua_half.h). Assumes denormals are not flushed (the default MXCSR).
  static BK_INLINE bk_v16 load(const uint16_t *p) {
    const bk_u32x16 h = u16x16_load(p);
    const bk_u32x16 sign = (h & 0x8000u) << 16, o = (h & 0x7fffu) << 13;
    const bk_u32x16 scaled = v16_bits(v16_from_bits(o) * 0x1p112f);
    const bk_u32x16 quiet = (o & 0x007fe000u) != 0u ? bk_u32x16{} + 0x7fc00000u : bk_u32x16{} + 0x7f800000u;
    const bk_u32x16 out = o >= 0x0f800000u ? scaled | quiet : scaled;
    return v16_from_bits(out | sign);
  }
  static BK_INLINE void store(uint16_t *p, bk_v16 v) {
    const bk_u32x16 u = v16_bits(v);
    const bk_u32x16 sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    const bk_u32x16 reb = a - ((127u - 15u) << 23);
    const bk_u32x16 normal = (reb + 0xfffu + ((reb >> 13) & 1u)) >> 13;
    const bk_u32x16 sub = v16_bits(v16_from_bits(a) + 0.5f) - 0x3f000000u;
    const bk_u32x16 big = a > 0x7f800000u ? bk_u32x16{} + 0x7e00u : bk_u32x16{} + 0x7c00u;
    const bk_u32x16 r = a >= 0x477ff000u ? big : a >= 0x38800000u ? normal : sub;
    u16x16_store(p, r | sign);
  }
  static BK_INLINE void load32(const uint16_t *p, bk_v16 &a, bk_v16 &b) {
    a = load(p);
    b = load(p + 16);
  }
  static BK_INLINE void store32(uint16_t *p, bk_v16 a, bk_v16 b) {
    store(p, a);
    store(p + 16, b);
  }
};

// Position, in the lane order of load32, of element k (0..31) of a 32-element block.
template <class E>
BK_INLINE int64_t lane_of(int64_t k) {
  return VecIO<E>::kEvenOdd ? (k >> 1) + ((k & 1) << 4) : k;
}

// float16 through the CPU's own conversions (AVX-512F vcvtph2ps / vcvtps2ph): exact widening,
// narrowing rounded to nearest even, the same values as the software VecIO<F16> for every
// finite and infinite input (a NaN stays a NaN; its payload's high bits are kept where the
// software store writes the canonical 0x7e00). F16HW is bagua_half.h's F16 for scalars; the
// entry points pick it when bk::cpu_isa() is "avx512" (BAGUA_CPU_ISA=avx2 keeps the software
// path), so its vector functions only ever run in the library's avx512f clones, where they
// are inlined (elsewhere they are left as calls that are never made).
namespace bk_half {
struct F16HW : F16 {};
}  // namespace bk_half

#if defined(__x86_64__) && !defined(__clang__)
#include <immintrin.h>
// (the maskz forms with a full mask: GCC 12's plain ones read an undefined vector and warn)
__attribute__((target("avx512f"))) inline void f16hw_widen(float *out, const uint16_t *p) {
  _mm512_storeu_ps(out, _mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256((const __m256i *)p)));
}
__attribute__((target("avx512f"))) inline void f16hw_narrow(uint16_t *p, const float *in) {
  _mm256_storeu_si256((__m256i *)p, _mm512_maskz_cvtps_ph(0xffff, _mm512_loadu_ps(in), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#define BK_HAVE_F16HW 1
#else
#define BK_HAVE_F16HW 0
inline void f16hw_widen(float *out, const uint16_t *p) { v16_store(out, VecIO<bk_half::F16>::load(p)); }
inline void f16hw_narrow(uint16_t *p, const float *in) { VecIO<bk_half::F16>::store(p, v16_load(in)); }
#endif

template <>
struct VecIO<bk_half::F16HW> {
  static constexpr bool kEvenOdd = false, kWidenOnce = false;
  static BK_INLINE bk_v16 load(const uint16_t *p) {
    bk_v16 v;
    f16hw_widen((float *)&v, p);
    return v;
  }
  static BK_INLINE void store(uint16_t *p, bk_v16 v) { f16hw_narrow(p, (const float *)&v); }
  static BK_INLINE void load32(const uint16_t *p, bk_v16 &a, bk_v16 &b) {
    a = load(p);
    b = load(p + 16);
  }
  static BK_INLINE void store32(uint16_t *p, bk_v16 a, bk_v16 b) {
    store(p, a);
    store(p + 16, b);
  }
};
