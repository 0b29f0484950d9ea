// Philox normals for 16 counter blocks at a time (AVX-512): the propagate kernel's
// eps. Same numbers as csrc/include/philox.h: the Philox rounds are exact integer
// ops, and Box-Muller runs in double with log / sin / cos accurate to ~1e-16
// relative (vs libm), so the float results round the same except within ~1e-16 of
// a float rounding boundary. Scalar libm Box-Muller was ~10% of a propagate call.
#include <immintrin.h>

#include "cpu/philox_blocks.h"
#include "philox.h"

namespace mbrl_fast::cpu {

namespace {

inline __m512d splat(double x) { return _mm512_set1_pd(x); }

// Taylor coefficients: kSin[n] = (-1)^n / (2n + 1)!, kCos[n] = (-1)^n / (2n)!.
struct Taylor {
  double sin[9], cos[9];
  constexpr Taylor() : sin(), cos() {
    double f = 1.0;  // k!
    for (int k = 0; k <= 17; ++k) {
      f *= k > 0 ? k : 1;
      const double term = ((k / 2) % 2 ? -1.0 : 1.0) / f;
      if (k % 2) sin[k / 2] = term;
      else cos[k / 2] = term;
    }
  }
};
constexpr Taylor kTaylor;
constexpr const double* kSin = kTaylor.sin;
constexpr const double* kCos = kTaylor.cos;

// (hi, lo) of the 32 x 32 -> 64-bit products m * c in 16 lanes.
inline void mulhilo(__m512i m, __m512i c, __m512i* hi, __m512i* lo) {
  const __m512i even = _mm512_mul_epu32(c, m);                          // lanes 0, 2, ...
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);    // lanes 1, 3, ...
  *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// log(u) for u in (0, 1]: u = 2^e m, m in [0.75, 1.5), log m = 2 atanh(s), s = (m-1)/(m+1).
inline __m512d log_pd(__m512d u) {
  const __m512d m = _mm512_getmant_pd(u, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
  __m512d e = _mm512_getexp_pd(u);
  e = _mm512_mask_add_pd(e, _mm512_cmp_pd_mask(m, splat(1.0), _CMP_LT_OQ), e, splat(1.0));
  const __m512d s = _mm512_div_pd(_mm512_sub_pd(m, splat(1.0)), _mm512_add_pd(m, splat(1.0)));
  const __m512d z = _mm512_mul_pd(s, s);  // <= 0.04: 12 odd terms reach 1e-17
  __m512d p = splat(1.0 / 25);
  for (int n = 11; n >= 0; --n) p = _mm512_fmadd_pd(p, z, splat(1.0 / (2 * n + 1)));
  const __m512d log_m = _mm512_mul_pd(_mm512_add_pd(s, s), p);
  return _mm512_fmadd_pd(e, splat(6.93147180369123816490e-01),
                         _mm512_fmadd_pd(e, splat(1.90821492927058770002e-10), log_m));
}

// sin and cos of theta in [0, 2 pi): Cody-Waite reduction by pi/2, Taylor on [-pi/4, pi/4].
inline void sincos_pd(__m512d theta, __m512d* s_out, __m512d* c_out) {
  const __m512d q = _mm512_roundscale_pd(_mm512_mul_pd(theta, splat(0.63661977236758134308)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d a = _mm512_fnmadd_pd(q, splat(1.57079632673412561417e+00), theta);
  a = _mm512_fnmadd_pd(q, splat(6.07710050650619224932e-11), a);
  a = _mm512_fnmadd_pd(q, splat(2.02226624879595063154e-21), a);
  const __m512d z = _mm512_mul_pd(a, a);  // |a| <= pi/4: Taylor to a^17 / a^16 is < 1e-17
  __m512d ps = splat(kSin[8]), pc = splat(kCos[8]);
  for (int n = 7; n >= 0; --n) {
    ps = _mm512_fmadd_pd(ps, z, splat(kSin[n]));
    pc = _mm512_fmadd_pd(pc, z, splat(kCos[n]));
  }
  const __m512d sin_a = _mm512_mul_pd(ps, a), cos_a = pc;
  const __m512i qi = _mm512_cvtpd_epi64(q);
  const __mmask8 swap = _mm512_test_epi64_mask(qi, _mm512_set1_epi64(1));
  const __mmask8 neg_s = _mm512_test_epi64_mask(qi, _mm512_set1_epi64(2));
  const __mmask8 neg_c = _mm512_test_epi64_mask(_mm512_add_epi64(qi, _mm512_set1_epi64(1)),
                                                _mm512_set1_epi64(2));
  __m512d s = _mm512_mask_blend_pd(swap, sin_a, cos_a);
  __m512d c = _mm512_mask_blend_pd(swap, cos_a, sin_a);
  *s_out = _mm512_mask_sub_pd(s, neg_s, _mm512_setzero_pd(), s);
  *c_out = _mm512_mask_sub_pd(c, neg_c, _mm512_setzero_pd(), c);
}

// u = ((x >> 8) + 0.5) 2^-24 for 8 uint32.
inline __m512d to_unit(__m256i x) {
  return _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(_mm256_srli_epi32(x, 8)), splat(0.5)),
                       splat(5.9604644775390625e-08));
}

// Box-Muller on 8 pairs (xa, xb) -> r cos, r sin as float.
inline void box_muller8(__m256i xa, __m256i xb, __m256* out_cos, __m256* out_sin) {
  const __m512d r = _mm512_sqrt_pd(_mm512_mul_pd(splat(-2.0), log_pd(to_unit(xa))));
  __m512d s, c;
  sincos_pd(_mm512_mul_pd(splat(6.283185307179586), to_unit(xb)), &s, &c);
  *out_cos = _mm512_cvtpd_ps(_mm512_mul_pd(r, c));
  *out_sin = _mm512_cvtpd_ps(_mm512_mul_pd(r, s));
}

}  // namespace

void philox_normal_blocks_avx512(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                                 float* out) {
  alignas(64) uint64_t b[16];
  alignas(64) float v[4][16];
  for (int64_t i0 = 0; i0 < n; i0 += 16) {
    const int64_t m = std::min<int64_t>(16, n - i0);
    for (int j = 0; j < 16; ++j) b[j] = blocks[i0 + std::min<int64_t>(j, m - 1)];
    const __m512i lo_idx = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i b0 = _mm512_load_si512(b), b1 = _mm512_load_si512(b + 8);
    __m512i c0 = _mm512_permutex2var_epi32(b0, lo_idx, b1);
    __m512i c1 = _mm512_permutex2var_epi32(b0, _mm512_add_epi32(lo_idx, _mm512_set1_epi32(1)), b1);
    __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(offset)));
    __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(offset >> 32)));
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    const __m512i M0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u));
    const __m512i M1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
    for (int round = 0; round < 10; ++round) {
      __m512i hi0, lo0, hi1, lo1;
      mulhilo(M0, c0, &hi0, &lo0);
      mulhilo(M1, c2, &hi1, &lo1);
      c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
      c1 = lo1;
      c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    for (int half = 0; half < 2; ++half) {  // blocks 8 * half .. 8 * half + 7
      auto pick = [&](__m512i c) {
        return half ? _mm512_extracti64x4_epi64(c, 1) : _mm512_castsi512_si256(c);
      };
      __m256 n0, n1, n2, n3;
      box_muller8(pick(c0), pick(c1), &n0, &n1);
      box_muller8(pick(c2), pick(c3), &n2, &n3);
      _mm256_store_ps(&v[0][8 * half], n0);
      _mm256_store_ps(&v[1][8 * half], n1);
      _mm256_store_ps(&v[2][8 * half], n2);
      _mm256_store_ps(&v[3][8 * half], n3);
    }
    for (int64_t j = 0; j < m; ++j)
      for (int q = 0; q < 4; ++q) out[4 * (i0 + j) + q] = v[q][j];
  }
}

}  // namespace mbrl_fast::cpu
