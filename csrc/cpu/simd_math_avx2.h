// Vectorized fp32 math for the AVX2 + FMA kernels (include only from *_avx2.cpp).
// The same Cephes-style polynomials as simd_math_avx512.h (exp and log within ~2 ulp
// of libm over the range used), with AVX2's missing getmant / getexp / scalef done on
// the float bits, so both paths give the torch reference's values to ~1e-6 relative.
#pragma once
#include <immintrin.h>

#include <cstdint>

// Always inlined: an outlined exp_ps in the epilogue forced every live accumulator to the
// stack around the call (the SysV ABI has no callee-saved ymm registers).
#define MBRL_SIMD_INLINE inline __attribute__((always_inline))

namespace mbrl_fast::cpu::simd2 {

MBRL_SIMD_INLINE __m256 splat(float x) { return _mm256_set1_ps(x); }
MBRL_SIMD_INLINE __m256i splat_i(int32_t x) { return _mm256_set1_epi32(x); }

// Lanes [0, n) all-ones (n clamped to [0, 8]): the mask of a partial vector.
MBRL_SIMD_INLINE __m256i lane_mask(int64_t n) {
  const int32_t m = static_cast<int32_t>(n < 0 ? 0 : (n > 8 ? 8 : n));
  return _mm256_cmpgt_epi32(splat_i(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// x with NaN lanes of `src` restored (maxps/minps return their second operand on NaN).
MBRL_SIMD_INLINE __m256 keep_nan(__m256 y, __m256 src) {
  return _mm256_blendv_ps(y, src, _mm256_cmp_ps(src, src, _CMP_UNORD_Q));
}

// exp(x); x clamped to [-87.33, 88]: n = round(x / ln 2) stays in [-126, 127], so one
// shift builds 2^n, and exp(88) = 1.65e38 is finite, so 1 + exp(-x) in silu stays
// finite and its reciprocal exact (an inf there gave 0 * inf = NaN in the Newton step).
// Outside the clamp no activation or head result changes: they use x itself above 20
// (softplus, elu) or saturate (tanh, sigmoid); below it exp(x) < 1.2e-38 comes out as
// ~1.2e-38. NaN propagates (x is maxps's second operand).
MBRL_SIMD_INLINE __m256 exp_ps(__m256 x) {
  x = _mm256_min_ps(splat(88.f), _mm256_max_ps(splat(-87.33f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, splat(1.44269504089f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, splat(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, splat(-2.12194440e-4f), r);
  __m256 p = splat(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, splat(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, splat(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, splat(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, splat(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, splat(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, splat(1.f)));
  // 2^n from the biased exponent n + 127 (added in float: an integer splat of 127 was
  // rebuilt with 3 instructions per call under the epilogue's register pressure).
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(_mm256_add_ps(n, splat(127.f))), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));  // NaN: p is NaN
}

// log(u) for u >= 1 (finite): u = 2^e m with m in [0.75, 1.5), as getmant / getexp give.
MBRL_SIMD_INLINE __m256 log_ps(__m256 u) {
  const __m256i bits = _mm256_castps_si256(u);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), splat_i(127));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, splat_i(0x007fffff)),
                                                 splat_i(0x3f800000)));  // [1, 2)
  const __m256 big = _mm256_cmp_ps(m, splat(1.5f), _CMP_GE_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, splat(0.5f)), big);
  e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // big lanes are -1: e + 1
  const __m256 ef = _mm256_cvtepi32_ps(e);
  const __m256 f = _mm256_sub_ps(m, splat(1.f));
  const __m256 z = _mm256_mul_ps(f, f);
  __m256 y = splat(7.0376836292e-2f);
  y = _mm256_fmadd_ps(y, f, splat(-1.1514610310e-1f));
  y = _mm256_fmadd_ps(y, f, splat(1.1676998740e-1f));
  y = _mm256_fmadd_ps(y, f, splat(-1.2420140846e-1f));
  y = _mm256_fmadd_ps(y, f, splat(1.4249322787e-1f));
  y = _mm256_fmadd_ps(y, f, splat(-1.6668057665e-1f));
  y = _mm256_fmadd_ps(y, f, splat(2.0000714765e-1f));
  y = _mm256_fmadd_ps(y, f, splat(-2.4999993993e-1f));
  y = _mm256_fmadd_ps(y, f, splat(3.3333331174e-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, f), z);
  y = _mm256_fmadd_ps(ef, splat(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, splat(0.5f), y);
  return _mm256_fmadd_ps(ef, splat(0.693359375f), _mm256_add_ps(f, y));
}

// softplus(x) = log1p(exp(x)), = x above 20 (torch's threshold) and for NaN.
MBRL_SIMD_INLINE __m256 softplus_ps(__m256 x) {
  const __m256 ex = exp_ps(x);
  const __m256 u = _mm256_add_ps(ex, splat(1.f));
  // log1p(ex) = log(u) + (ex - (u - 1)) / u: corrects the rounding of 1 + ex.
  const __m256 c = _mm256_div_ps(_mm256_sub_ps(ex, _mm256_sub_ps(u, splat(1.f))), u);
  const __m256 y = _mm256_add_ps(log_ps(u), c);
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, splat(20.f), _CMP_NLE_UQ));  // x > 20 or NaN
}

// 1 / d for finite d >= 1: rcpps (12 bits) + one Newton step (~1 ulp); vdivps is ~4x
// the throughput cost in an epilogue that runs once per output.
MBRL_SIMD_INLINE __m256 reciprocal_ps(__m256 d) {
  const __m256 r = _mm256_rcp_ps(d);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, splat(2.f)));
}

MBRL_SIMD_INLINE __m256 silu_ps(__m256 x) {
  return _mm256_mul_ps(x, reciprocal_ps(_mm256_add_ps(splat(1.f), exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), x)))));
}

// tanh: odd polynomial below |x| = 0.625 (Cephes tanhf), 1 - 2 / (exp(2|x|) + 1) above.
MBRL_SIMD_INLINE __m256 tanh_ps(__m256 x) {
  const __m256 sign = splat(-0.f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = splat(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, splat(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, splat(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, splat(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, splat(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 e = exp_ps(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(splat(1.f), _mm256_div_ps(splat(2.f), _mm256_add_ps(e, splat(1.f))));
  big = _mm256_or_ps(big, _mm256_and_ps(x, sign));  // copy the sign of x
  const __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, splat(0.625f), _CMP_LT_OQ));
  return keep_nan(y, x);
}

// act(x) for an Activation id (switch outside the hot loops: the id is a template
// argument of the store policies).
MBRL_SIMD_INLINE __m256 activate_ps(__m256 x, int act, float slope) {
  const __m256 zero = _mm256_setzero_ps();
  switch (act) {
    case 0: return silu_ps(x);
    case 1: return _mm256_max_ps(zero, x);  // NaN in x propagates (second operand)
    case 2: return tanh_ps(x);
    case 3: return _mm256_blendv_ps(_mm256_sub_ps(exp_ps(x), splat(1.f)), x, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    case 4: return _mm256_blendv_ps(_mm256_mul_ps(x, splat(slope)), x, _mm256_cmp_ps(x, zero, _CMP_GT_OQ));
    default: return x;
  }
}

// PETS's soft-bounded log-variance (and optionally exp(logvar / 2)) for 8 lanes.
MBRL_SIMD_INLINE __m256 head_ps(__m256 raw, __m256 max_lv, __m256 min_lv, bool std_out) {
  const __m256 lv = _mm256_sub_ps(max_lv, softplus_ps(_mm256_sub_ps(max_lv, raw)));
  const __m256 out = _mm256_add_ps(min_lv, softplus_ps(_mm256_sub_ps(lv, min_lv)));
  return std_out ? exp_ps(_mm256_mul_ps(out, splat(0.5f))) : out;
}

}  // namespace mbrl_fast::cpu::simd2
