/* bagua_half.h: float16 and bfloat16 <-> float32, shared by the CPU (g++) and CUDA (nvcc)
 * libraries and by the CUDA emulator (which compiles the .cu sources with g++, so nothing
 * here may come from cuda_fp16.h).
 *
 * Half values travel as their raw 16 bits (uint16_t). Conversions to float are exact;
 * conversions from float round to nearest, ties to even, as PyTorch's c10::Half and
 * c10::BFloat16 do, with the same special values:
 *  - float16: overflow (|x| >= 65520) gives +-inf, NaN gives 0x7E00 with the sign kept,
 *    values below the normal range become subnormals (rounded once, never twice);
 *  - bfloat16: NaN gives 0x7FC0 (any sign), +-inf stays +-inf, rounding may carry into inf.
 * Integer arithmetic only, with no branches the compiler cannot turn into selects, so the
 * same code vectorises in the CPU library's loops.
 *
 * Element kinds for templates: F32 (float), BF16 and F16 (uint16_t bits), each with
 * load (storage -> float) and store (float -> storage).
 */
#ifndef BAGUA_HALF_H
#define BAGUA_HALF_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define BK_HALF_HD __host__ __device__
#else
#define BK_HALF_HD
#endif

namespace bk_half {

BK_HALF_HD inline uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
BK_HALF_HD inline float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* ---- bfloat16: the upper half of a float ---- */
BK_HALF_HD inline float bf16_to_float(uint16_t h) { return bits_float((uint32_t)h << 16); }

BK_HALF_HD inline uint16_t float_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  /* add just under half an ulp of the result, plus one when the kept part is odd: a tie
   * then rounds up only from an odd value (to even) */
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)0x7fc0u : (uint16_t)r;
}

/* ---- float16: 1 sign, 5 exponent (bias 15), 10 mantissa bits ---- */
BK_HALF_HD inline float f16_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu; /* exponent and mantissa */
  /* normal: rebias the exponent (15 -> 127) and widen the mantissa */
  const uint32_t normal = (em << 13) + ((127u - 15u) << 23);
  /* subnormal (exponent field 0): the value is m * 2^-24, exact in float */
  const float sub = (float)em * bits_float(0x33800000u); /* 2^-24 */
  /* inf / NaN (exponent field 31): all-ones float exponent, mantissa kept; a signalling
   * NaN is made quiet, as every float operation on x86 and CUDA would */
  const uint32_t special = 0x7f800000u | (em & 0x3ffu) << 13 | ((em & 0x3ffu) ? 0x00400000u : 0u);
  uint32_t out = em >= 0x7c00u ? special : em >= 0x0400u ? normal : float_bits(sub);
  return bits_float(out | sign);
}

BK_HALF_HD inline uint16_t float_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  /* normal results (|x| in [2^-14, 65520)): drop 13 mantissa bits with the same
   * round-half-to-even trick as bfloat16, after rebiasing the exponent 127 -> 15; a carry
   * out of the mantissa increments the exponent, which is right (and 65520 would give the
   * inf pattern 0x7c00, which is also right) */
  const uint32_t rebased = a - ((127u - 15u) << 23);
  const uint16_t normal = (uint16_t)((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13);
  /* subnormal results (|x| < 2^-14): adding 0.5 aligns the value's bits so that the
   * float adder's own round-to-nearest-even drops exactly the bits below 2^-24; what is
   * left above 0.5's bits is the half mantissa */
  const uint16_t sub = (uint16_t)(float_bits(bits_float(a) + 0.5f) - 0x3f000000u);
  const uint16_t big = a > 0x7f800000u ? (uint16_t)0x7e00u : (uint16_t)0x7c00u; /* NaN / overflow */
  const uint16_t r = a >= 0x477ff000u ? big : a >= 0x38800000u ? normal : sub;
  return (uint16_t)(r | sign);
}

/* ---- element kinds ---- */
struct F32 {
  typedef float storage;
  static BK_HALF_HD inline float load(float v) { return v; }
  static BK_HALF_HD inline float store(float v) { return v; }
};
struct BF16 {
  typedef uint16_t storage;
  static BK_HALF_HD inline float load(uint16_t v) { return bf16_to_float(v); }
  static BK_HALF_HD inline uint16_t store(float v) { return float_to_bf16(v); }
};
struct F16 {
  typedef uint16_t storage;
  static BK_HALF_HD inline float load(uint16_t v) { return f16_to_float(v); }
  static BK_HALF_HD inline uint16_t store(float v) { return float_to_f16(v); }
};

}  // namespace bk_half

#endif
