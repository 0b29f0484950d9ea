// Philox normals for 8 counter blocks at a time (AVX2): the propagate kernel's eps and
// the normal noise stream. The same algorithm as philox_avx512.cpp, with AVX2's missing
// getmant / getexp / 64-bit conversions done on the double's bits: the Philox rounds are
// exact integer ops, and Box-Muller runs in double with log / sin / cos accurate to
// ~1e-16 relative (vs libm), so the float results equal csrc/include/philox.h's except
// within ~1e-16 of a float rounding boundary (the tests compare the streams).
#include <immintrin.h>

#include "cpu/philox_blocks.h"
#include "philox.h"

namespace mbrl_fast::cpu {

namespace {

inline __m256d splat(double x) { return _mm256_set1_pd(x); }
inline __m256i splat64(int64_t x) { return _mm256_set1_epi64x(x); }

// Taylor coefficients: sin[n] = (-1)^n / (2n + 1)!, cos[n] = (-1)^n / (2n)!.
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

// (hi, lo) of the 32 x 32 -> 64-bit products m * c in 8 lanes.
inline void mulhilo(__m256i m, __m256i c, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(c, m);                        // lanes 0, 2, ...
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);  // lanes 1, 3, ...
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// log(u) for u in (0, 1] normal: u = 2^e m, m in [0.75, 1.5), log m = 2 atanh(s),
// s = (m-1)/(m+1).
inline __m256d log_pd(__m256d u) {
  const __m256i bits = _mm256_castpd_si256(u);
  // The biased exponent (< 2^11) as a double: OR it into 2^52's mantissa, subtract 2^52.
  const __m256d two52 = splat(4503599627370496.0);
  __m256d e = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(bits, 52),
                                                                 _mm256_castpd_si256(two52))),
                            two52);
  e = _mm256_sub_pd(e, splat(1023.0));
  __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, splat64(0x000fffffffffffffLL)),
                                                  _mm256_castpd_si256(splat(1.0))));  // [1, 2)
  const __m256d big = _mm256_cmp_pd(m, splat(1.5), _CMP_GE_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, splat(0.5)), big);
  e = _mm256_add_pd(e, _mm256_and_pd(big, splat(1.0)));
  const __m256d s = _mm256_div_pd(_mm256_sub_pd(m, splat(1.0)), _mm256_add_pd(m, splat(1.0)));
  const __m256d z = _mm256_mul_pd(s, s);  // <= 0.04: 12 odd terms reach 1e-17
  __m256d p = splat(1.0 / 25);
  for (int n = 11; n >= 0; --n) p = _mm256_fmadd_pd(p, z, splat(1.0 / (2 * n + 1)));
  const __m256d log_m = _mm256_mul_pd(_mm256_add_pd(s, s), p);
  return _mm256_fmadd_pd(e, splat(6.93147180369123816490e-01),
                         _mm256_fmadd_pd(e, splat(1.90821492927058770002e-10), log_m));
}

// sin and cos of theta in [0, 2 pi): Cody-Waite reduction by pi/2, Taylor on [-pi/4, pi/4].
inline void sincos_pd(__m256d theta, __m256d* s_out, __m256d* c_out) {
  const __m256d q = _mm256_round_pd(_mm256_mul_pd(theta, splat(0.63661977236758134308)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d a = _mm256_fnmadd_pd(q, splat(1.57079632673412561417e+00), theta);
  a = _mm256_fnmadd_pd(q, splat(6.07710050650619224932e-11), a);
  a = _mm256_fnmadd_pd(q, splat(2.02226624879595063154e-21), a);
  const __m256d z = _mm256_mul_pd(a, a);  // |a| <= pi/4: Taylor to a^17 / a^16 is < 1e-17
  __m256d ps = splat(kTaylor.sin[8]), pc = splat(kTaylor.cos[8]);
  for (int n = 7; n >= 0; --n) {
    ps = _mm256_fmadd_pd(ps, z, splat(kTaylor.sin[n]));
    pc = _mm256_fmadd_pd(pc, z, splat(kTaylor.cos[n]));
  }
  const __m256d sin_a = _mm256_mul_pd(ps, a), cos_a = pc;
  const __m256i qi = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(q));  // quadrant 0..4
  auto bit_set = [](__m256i x, int64_t bit) {
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(x, splat64(bit)), splat64(bit)));
  };
  const __m256d swap = bit_set(qi, 1), neg_s = bit_set(qi, 2);
  const __m256d neg_c = bit_set(_mm256_add_epi64(qi, splat64(1)), 2);
  const __m256d sign = splat(-0.0);
  *s_out = _mm256_xor_pd(_mm256_blendv_pd(sin_a, cos_a, swap), _mm256_and_pd(neg_s, sign));
  *c_out = _mm256_xor_pd(_mm256_blendv_pd(cos_a, sin_a, swap), _mm256_and_pd(neg_c, sign));
}

// u = ((x >> 8) + 0.5) 2^-24 for 4 uint32.
inline __m256d to_unit(__m128i x) {
  return _mm256_mul_pd(_mm256_add_pd(_mm256_cvtepi32_pd(_mm_srli_epi32(x, 8)), splat(0.5)),
                       splat(5.9604644775390625e-08));
}

// Box-Muller on 4 pairs (xa, xb) -> r cos, r sin as float.
inline void box_muller4(__m128i xa, __m128i xb, __m128* out_cos, __m128* out_sin) {
  const __m256d r = _mm256_sqrt_pd(_mm256_mul_pd(splat(-2.0), log_pd(to_unit(xa))));
  __m256d s, c;
  sincos_pd(_mm256_mul_pd(splat(6.283185307179586), to_unit(xb)), &s, &c);
  *out_cos = _mm256_cvtpd_ps(_mm256_mul_pd(r, c));
  *out_sin = _mm256_cvtpd_ps(_mm256_mul_pd(r, s));
}

}  // namespace

void philox_normal_blocks_avx2(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                               float* out) {
  alignas(32) uint32_t lo[8], hi[8];
  alignas(32) float v[4][8];
  const __m256i M0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i M1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  for (int64_t i0 = 0; i0 < n; i0 += 8) {
    const int64_t m = std::min<int64_t>(8, n - i0);
    for (int j = 0; j < 8; ++j) {
      const uint64_t b = blocks[i0 + std::min<int64_t>(j, m - 1)];
      lo[j] = static_cast<uint32_t>(b);
      hi[j] = static_cast<uint32_t>(b >> 32);
    }
    __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
    __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
    __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(offset)));
    __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(offset >> 32)));
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo(M0, c0, &hi0, &lo0);
      mulhilo(M1, c2, &hi1, &lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
      c1 = lo1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    for (int half = 0; half < 2; ++half) {  // blocks 4 * half .. 4 * half + 3
      auto pick = [half](__m256i c) {
        return half ? _mm256_extracti128_si256(c, 1) : _mm256_castsi256_si128(c);
      };
      __m128 n0, n1, n2, n3;
      box_muller4(pick(c0), pick(c1), &n0, &n1);
      box_muller4(pick(c2), pick(c3), &n2, &n3);
      _mm_store_ps(&v[0][4 * half], n0);
      _mm_store_ps(&v[1][4 * half], n1);
      _mm_store_ps(&v[2][4 * half], n2);
      _mm_store_ps(&v[3][4 * half], n3);
    }
    for (int64_t j = 0; j < m; ++j)
      for (int q = 0; q < 4; ++q) out[4 * (i0 + j) + q] = v[q][j];
  }
}

}  // namespace mbrl_fast::cpu
