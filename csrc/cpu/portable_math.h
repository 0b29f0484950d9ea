// Scalar fp32 math written for loops the compiler vectorizes (`#pragma omp simd`):
// no branches, no libm calls, float bits through memcpy. The same Cephes-style
// polynomials as the AVX2 / AVX-512 kernels (simd_math_avx2.h), so every kernel path
// gives the reference's values to ~1e-6 relative. libm's expf / log1pf in an
// activation or head loop keep it scalar (one call per value).
#pragma once
#include <cstdint>
#include <cstring>

namespace mbrl_fast::cpu::pmath {

inline float from_bits(int32_t i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}

inline int32_t to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i;
}

// Nearest integer of |x| < 2^22 (ties to even) without a libm call.
inline float round_nearest(float x) { return (x + 12582912.f) - 12582912.f; }

// exp(x), x clamped to [-87.33, 88] as exp_ps in simd_math_avx2.h (see there). NaN
// propagates (comparisons with NaN are false, so the clamps keep it).
inline float exp(float x) {
  x = x < -87.33f ? -87.33f : x;
  x = x > 88.f ? 88.f : x;
  const float n = round_nearest(x * 1.44269504089f);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + (r + 1.f);
  const int32_t ni = static_cast<int32_t>(n == n ? n : 0.f);  // NaN: p is NaN anyway
  return p * from_bits((ni + 127) << 23);
}

// log(u) for u >= 1 (finite): u = 2^e m with m in [0.75, 1.5).
inline float log_ge1(float u) {
  const int32_t bits = to_bits(u);
  int32_t e = (bits >> 23) - 127;
  float m = from_bits((bits & 0x007fffff) | 0x3f800000);  // [1, 2)
  const bool big = m >= 1.5f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float ef = static_cast<float>(e);
  const float f = m - 1.f;
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y = ef * -2.12194440e-4f + y;
  y = y - z * 0.5f;
  return ef * 0.693359375f + (f + y);
}

// softplus(x) = log1p(exp(x)), = x above 20 (torch's threshold) and for NaN.
inline float softplus(float x) {
  const float ex = exp(x);
  const float u = ex + 1.f;
  const float y = log_ge1(u) + (ex - (u - 1.f)) / u;  // + the rounding of 1 + ex
  return x > 20.f || x != x ? x : y;
}

inline float silu(float x) { return x / (1.f + exp(-x)); }

// tanh: odd polynomial below |x| = 0.625 (Cephes tanhf), 1 - 2 / (exp(2|x|) + 1) above.
inline float tanh(float x) {
  const float ax = x < 0.f ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float big = 1.f - 2.f / (exp(ax + ax) + 1.f);
  return ax < 0.625f || x != x ? small : (x < 0.f ? -big : big);
}

// PETS's soft-bounded log-variance.
inline float soft_bound_logvar(float raw, float max_lv, float min_lv) {
  const float lv = max_lv - softplus(max_lv - raw);
  return min_lv + softplus(lv - min_lv);
}

}  // namespace mbrl_fast::cpu::pmath
