// Philox normals for many counter blocks, in standard C++ the compiler vectorizes: the
// portable path's eps and normal stream. The algorithm of philox_avx2.cpp written as
// loops over 8 blocks (`omp simd`), the float / double bits through memcpy and
// magic-number conversions instead of libm: scalar libm Box-Muller was 42 ns a block on
// one core, 3.5x the AVX2 code. The float results equal csrc/include/
// philox.h's except within ~1e-16 of a float rounding boundary (the tests compare).
#include <cstring>

#include "cpu/philox_blocks.h"

namespace mbrl_fast::cpu {

namespace {

constexpr int kBatch = 8;  // blocks per pass

inline double from_bits(uint64_t b) {
  double d;
  std::memcpy(&d, &b, 8);
  return d;
}

inline uint64_t to_bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

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

// log(u) for u in (0, 1] normal: u = 2^e m, m in [0.75, 1.5), log m = 2 atanh((m-1)/(m+1)).
inline double log_unit(double u) {
  const uint64_t bits = to_bits(u);
  // The biased exponent (< 2^11) as a double: OR it into 2^52's mantissa, subtract 2^52.
  double e = from_bits((bits >> 52) | 0x4330000000000000ull) - 4503599627370496.0 - 1023.0;
  double m = from_bits((bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  const bool big = m >= 1.5;
  m = big ? m * 0.5 : m;
  e = big ? e + 1.0 : e;
  const double s = (m - 1.0) / (m + 1.0);
  const double z = s * s;  // <= 0.04: 12 odd terms reach 1e-17
  double p = 1.0 / 25;
  for (int n = 11; n >= 0; --n) p = p * z + 1.0 / (2 * n + 1);
  return e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + (s + s) * p);
}

// r cos(theta), r sin(theta) of one Box-Muller pair (xa, xb) as float.
inline void box_muller(uint32_t xa, uint32_t xb, float* out_cos, float* out_sin) {
  // x >> 8 < 2^24 through int32: SSE2 / AVX convert signed int32 to double, not uint32.
  const double ua = (static_cast<double>(static_cast<int32_t>(xa >> 8)) + 0.5) * 5.9604644775390625e-08;
  const double ub = (static_cast<double>(static_cast<int32_t>(xb >> 8)) + 0.5) * 5.9604644775390625e-08;
  const double r = __builtin_sqrt(-2.0 * log_unit(ua));
  const double theta = 6.283185307179586 * ub;
  // Quadrant q = round(theta / (pi / 2)) in 0..4 (adding 1.5 * 2^52 rounds).
  const double q = (theta * 0.63661977236758134308 + 6755399441055744.0) - 6755399441055744.0;
  double a = theta - q * 1.57079632673412561417e+00;
  a = a - q * 6.07710050650619224932e-11;
  a = a - q * 2.02226624879595063154e-21;
  const double z = a * a;  // |a| <= pi/4: Taylor to a^17 / a^16 is < 1e-17
  double ps = kTaylor.sin[8], pc = kTaylor.cos[8];
  for (int n = 7; n >= 0; --n) {
    ps = ps * z + kTaylor.sin[n];
    pc = pc * z + kTaylor.cos[n];
  }
  const double sin_a = ps * a, cos_a = pc;
  // From q's value, not its bits: SSE2 has no 64-bit integer compare, and one kept the
  // whole loop scalar.
  const bool swap = q == 1.0 || q == 3.0, neg_s = q == 2.0 || q == 3.0, neg_c = q == 1.0 || q == 2.0;
  double s = swap ? cos_a : sin_a, c = swap ? sin_a : cos_a;
  s = neg_s ? -s : s;
  c = neg_c ? -c : c;
  *out_cos = static_cast<float>(r * c);
  *out_sin = static_cast<float>(r * s);
}

}  // namespace

void philox_normal_blocks_portable(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                                   float* out) {
  uint32_t c0[kBatch], c1[kBatch], c2[kBatch], c3[kBatch];
  float v[4][kBatch];
  for (int64_t i0 = 0; i0 < n; i0 += kBatch) {
    const int64_t m = std::min<int64_t>(kBatch, n - i0);
    for (int j = 0; j < kBatch; ++j) {
      const uint64_t b = blocks[i0 + std::min<int64_t>(j, m - 1)];
      c0[j] = static_cast<uint32_t>(b);
      c1[j] = static_cast<uint32_t>(b >> 32);
      c2[j] = static_cast<uint32_t>(offset);
      c3[j] = static_cast<uint32_t>(offset >> 32);
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
#pragma omp simd
      for (int j = 0; j < kBatch; ++j) {
        const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0[j];
        const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2[j];
        c0[j] = static_cast<uint32_t>(p1 >> 32) ^ c1[j] ^ k0;
        c2[j] = static_cast<uint32_t>(p0 >> 32) ^ c3[j] ^ k1;
        c1[j] = static_cast<uint32_t>(p1);
        c3[j] = static_cast<uint32_t>(p0);
      }
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
#pragma omp simd
    for (int j = 0; j < kBatch; ++j) {
      box_muller(c0[j], c1[j], &v[0][j], &v[1][j]);
      box_muller(c2[j], c3[j], &v[2][j], &v[3][j]);
    }
    for (int64_t j = 0; j < m; ++j)
      for (int q = 0; q < 4; ++q) out[4 * (i0 + j) + q] = v[q][j];
  }
}

}  // namespace mbrl_fast::cpu
