// Counter-based random numbers: Philox-4x32-10 (Salmon et al., SC'11).
// One copy for the CPU and CUDA backends; mbrl_fast/ops/noise.py reproduces it
// bit for bit in torch.
//
// A stream is keyed by (seed, offset). Element i of a stream comes from the
// counter (i / 4 low, i / 4 high, offset low, offset high) with key
// (seed low, seed high), component i % 4:
//   uint32   philox_uint32(seed, offset, i)
//   uniform  ((x >> 8) + 0.5) * 2^-24          in (0, 1), exact in float32
//   normal   Box-Muller in double on components (0,1) and (2,3) of a counter:
//            r = sqrt(-2 log u_a), theta = 2 pi u_b; even comp -> r cos, odd -> r sin
//   randint  (x * high) >> 32                  in [0, high)
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MBRL_HD __host__ __device__ __forceinline__
#else
#define MBRL_HD inline
#endif

namespace mbrl_fast {

struct Philox4 {
  uint32_t x[4];
};

MBRL_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// Philox-4x32 with 10 rounds on counter c and key (k0, k1).
MBRL_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                             uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(M0, c0, &hi0);
    const uint32_t lo1 = mulhilo32(M1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += W0;
    k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// The four uint32 of counter block `block` (= element index / 4) of stream (seed, offset).
MBRL_HD Philox4 philox_block(uint64_t seed, uint64_t offset, uint64_t block) {
  return philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                       static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

MBRL_HD uint32_t philox_uint32(uint64_t seed, uint64_t offset, uint64_t i) {
  return philox_block(seed, offset, i >> 2).x[i & 3];
}

MBRL_HD float uint32_to_uniform(uint32_t x) {
  return (static_cast<float>(x >> 8) + 0.5f) * 5.9604644775390625e-08f;  // 2^-24
}

MBRL_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return uint32_to_uniform(philox_uint32(seed, offset, i));
}

MBRL_HD uint32_t uint32_to_randint(uint32_t x, uint32_t high) {
  return static_cast<uint32_t>((static_cast<uint64_t>(x) * high) >> 32);
}

// Box-Muller in double, rounded to float once: every backend gets the same float.
MBRL_HD void box_muller(uint32_t xa, uint32_t xb, float* out_cos, float* out_sin) {
  const double ua = (static_cast<double>(xa >> 8) + 0.5) * 5.9604644775390625e-08;
  const double ub = (static_cast<double>(xb >> 8) + 0.5) * 5.9604644775390625e-08;
  const double r = sqrt(-2.0 * log(ua));
  const double theta = 6.283185307179586 * ub;
  *out_cos = static_cast<float>(r * cos(theta));
  *out_sin = static_cast<float>(r * sin(theta));
}

// All four normals of counter block `block`.
MBRL_HD void philox_normal4(uint64_t seed, uint64_t offset, uint64_t block, float out[4]) {
  const Philox4 b = philox_block(seed, offset, block);
  box_muller(b.x[0], b.x[1], &out[0], &out[1]);
  box_muller(b.x[2], b.x[3], &out[2], &out[3]);
}

MBRL_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  float v[4];
  philox_normal4(seed, offset, i >> 2, v);
  return v[i & 3];
}

}  // namespace mbrl_fast
