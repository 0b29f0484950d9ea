// Vectorized fp32 math for the AVX-512 kernels (include only from *_avx512.cpp).
// Cephes-style polynomials: exp and log within ~2 ulp of libm over the range used,
// so fp32 results match the torch reference to ~1e-6 relative.
#pragma once
#include <immintrin.h>

namespace mbrl_fast::cpu::simd {

inline __m512 splat(float x) { return _mm512_set1_ps(x); }

// exp(x); x clamped to [-104, 88.3763]: the top is exp's largest finite result, so
// 1 + exp(-x) in silu stays finite (an inf there made silu(x < -88.4) NaN: rcp14(inf)
// = 0, and the Newton step's 0 * inf). vmaxps/vminps return their second operand on
// NaN: x goes second so NaN propagates.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_min_ps(splat(88.3762626647949f), _mm512_max_ps(splat(-104.f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, splat(1.44269504089f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, splat(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, splat(-2.12194440e-4f), r);
  __m512 p = splat(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, splat(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, splat(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, splat(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, splat(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, splat(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, splat(1.f)));
  return _mm512_scalef_ps(p, n);
}

// log(u) for u >= 1 (finite): u = 2^e m with m in [0.75, 1.5).
inline __m512 log_ps(__m512 u) {
  const __m512 m = _mm512_getmant_ps(u, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
  __m512 e = _mm512_getexp_ps(u);
  e = _mm512_mask_add_ps(e, _mm512_cmp_ps_mask(m, splat(1.f), _CMP_LT_OQ), e, splat(1.f));
  const __m512 f = _mm512_sub_ps(m, splat(1.f));
  const __m512 z = _mm512_mul_ps(f, f);
  __m512 y = splat(7.0376836292e-2f);
  y = _mm512_fmadd_ps(y, f, splat(-1.1514610310e-1f));
  y = _mm512_fmadd_ps(y, f, splat(1.1676998740e-1f));
  y = _mm512_fmadd_ps(y, f, splat(-1.2420140846e-1f));
  y = _mm512_fmadd_ps(y, f, splat(1.4249322787e-1f));
  y = _mm512_fmadd_ps(y, f, splat(-1.6668057665e-1f));
  y = _mm512_fmadd_ps(y, f, splat(2.0000714765e-1f));
  y = _mm512_fmadd_ps(y, f, splat(-2.4999993993e-1f));
  y = _mm512_fmadd_ps(y, f, splat(3.3333331174e-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
  y = _mm512_fmadd_ps(e, splat(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(z, splat(0.5f), y);
  return _mm512_fmadd_ps(e, splat(0.693359375f), _mm512_add_ps(f, y));
}

// softplus(x) = log1p(exp(x)), = x above 20 (torch's threshold).
inline __m512 softplus_ps(__m512 x) {
  const __m512 ex = exp_ps(x);
  const __m512 u = _mm512_add_ps(ex, splat(1.f));
  // log1p(ex) = log(u) + (ex - (u - 1)) / u: corrects the rounding of 1 + ex.
  const __m512 c = _mm512_div_ps(_mm512_sub_ps(ex, _mm512_sub_ps(u, splat(1.f))), u);
  const __m512 y = _mm512_add_ps(log_ps(u), c);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, splat(20.f), _CMP_GT_OQ), y, x);
}

// 1 / d: rcp14 + one Newton step (~1 ulp; vdivps zmm was the hottest epilogue instruction).
inline __m512 reciprocal_ps(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, splat(2.f)));
}

inline __m512 silu_ps(__m512 x) {
  return _mm512_mul_ps(x, reciprocal_ps(_mm512_add_ps(splat(1.f), exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), x)))));
}

// silu for a value rounded to bf16 next (the bf16-weight kernels' hidden layers): exp(-x)
// as 2^n p(f), n = round(t), f = t - n (vreduceps) for t = -x log2(e), with a degree-4
// polynomial for 2^f on [-1/2, 1/2] (relative error 2.7e-6), and the reciprocal from
// rcp14 without a Newton step (2^-14): 10 instructions where silu_ps takes 24, within
// ~6.5e-5 of silu relative, ~1/60 of a bf16 ulp. No clamp is needed: t = +-inf gives f = 0
// and 2^n = inf or 0, so silu(inf) = inf, silu(-inf) = NaN (torch's -inf * 0), and a large
// negative x gives -0.
inline __m512 silu_bf16_ps(__m512 x) {
  constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512 t = _mm512_mul_ps(x, splat(-1.44269504089f));
  const __m512 n = _mm512_roundscale_ps(t, kNearest);
  const __m512 f = _mm512_reduce_ps(t, kNearest);
  __m512 p = splat(9.570097550749779e-3f);
  p = _mm512_fmadd_ps(p, f, splat(5.591786652803421e-2f));
  p = _mm512_fmadd_ps(p, f, splat(2.40247443318367e-1f));
  p = _mm512_fmadd_ps(p, f, splat(6.931217908859253e-1f));
  p = _mm512_fmadd_ps(p, f, splat(9.999992847442627e-1f));
  return _mm512_mul_ps(x, _mm512_rcp14_ps(_mm512_add_ps(splat(1.f), _mm512_scalef_ps(p, n))));
}

// tanh: odd polynomial below |x| = 0.625 (Cephes tanhf), 1 - 2 / (exp(2|x|) + 1) above.
inline __m512 tanh_ps(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = splat(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, splat(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, splat(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, splat(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, splat(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __m512 e = exp_ps(_mm512_add_ps(ax, ax));
  __m512 big = _mm512_sub_ps(splat(1.f), _mm512_div_ps(splat(2.f), _mm512_add_ps(e, splat(1.f))));
  big = _mm512_or_ps(big, _mm512_and_ps(x, splat(-0.f)));  // copy the sign of x
  const __m512 y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, splat(0.625f), _CMP_LT_OQ), big, small);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);  // NaN stays NaN
}

// act(x) for an Activation id (switch outside the hot loops: one call per 16 values).
inline __m512 activate_ps(__m512 x, int act, float slope) {
  switch (act) {
    case 0: return silu_ps(x);
    case 1: return _mm512_max_ps(_mm512_setzero_ps(), x);  // NaN in x propagates
    case 2: return tanh_ps(x);
    case 3: return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ),
                                        _mm512_sub_ps(exp_ps(x), splat(1.f)), x);
    case 4: return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ),
                                        _mm512_mul_ps(x, splat(slope)), x);
    default: return x;
  }
}

}  // namespace mbrl_fast::cpu::simd
