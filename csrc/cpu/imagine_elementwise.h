// Elementwise code of the imagination rollout: branch-free math, activations and their
// derivatives over row blocks, bf16 packing. Part of imagine_impl.h, compiled once per ISA
// (IMAGINE_NS defined by the including unit; no include guard: one inclusion per unit).
#include <cmath>
#include <cstdint>

namespace mbrl_fast::cpu::IMAGINE_NS {

// ---- branch-free math (vectorizes under `omp simd`; exp ~2 ulp) -----------------------------
inline float exp_(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float t = x * 1.44269504088896341f;
  const float nf = (t + 12582912.f) - 12582912.f;  // round to nearest (|t| < 2^22)
  const float r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(nf) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
inline float sigmoid_(float x) { return 1.f / (1.f + exp_(-x)); }
inline float tanh_(float x) {  // via exp(-2|x|): no cancellation for large |x|
  const float e = exp_(-2.f * std::fabs(x));
  return std::copysign((1.f - e) / (1.f + e), x);
}
inline float softplus_(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

inline uint32_t bf16_bits(float x) {  // round to nearest even (torch .to(bfloat16))
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// ---- tile helpers --------------------------------------------------------------------------
inline int64_t half_up(int64_t n) { return (n + 1) / 2; }
inline int64_t max_(int64_t a, int64_t b) { return a > b ? a : b; }

// y = act(x), x pre-activations [n, cols] with leading dims ldx, ldy.
template <int Act>
void act_rows(int64_t n, int64_t cols, const float* x, int64_t ldx, float* y, int64_t ldy) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      const float v = xr[j];
      if constexpr (Act == kImElu) {
        const float e = exp_(v) - 1.f;
        yr[j] = v > 0.f ? v : e;
      }
      else if constexpr (Act == kImSilu) yr[j] = v * sigmoid_(v);
      else if constexpr (Act == kImRelu) yr[j] = v > 0.f ? v : 0.f;
      else yr[j] = tanh_(v);
    }
  }
}
inline void act_rows(int act, int64_t n, int64_t cols, const float* x, int64_t ldx, float* y,
                     int64_t ldy) {
  switch (act) {
    case kImElu: return act_rows<kImElu>(n, cols, x, ldx, y, ldy);
    case kImSilu: return act_rows<kImSilu>(n, cols, x, ldx, y, ldy);
    case kImRelu: return act_rows<kImRelu>(n, cols, x, ldx, y, ldy);
    default: return act_rows<kImTanh>(n, cols, x, ldx, y, ldy);
  }
}

// g *= act'(x) given pre-activation x (ld cols; read by SiLU only) and post-activation y (ld
// ldy), g [n, cols]. ELU, ReLU and tanh read their derivative from y (ELU(x) > 0 iff x > 0).
template <int Act>
void act_grad_rows(int64_t n, int64_t cols, const float* x, const float* y, int64_t ldy,
                   float* g) {
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = Act == kImSilu ? x + r * cols : nullptr;
    const float* yr = y + r * ldy;
    float* gr = g + r * cols;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      float d;
      if constexpr (Act == kImElu) d = yr[j] > 0.f ? 1.f : yr[j] + 1.f;
      else if constexpr (Act == kImSilu) {
        const float s = sigmoid_(xr[j]);
        d = s * (1.f + xr[j] * (1.f - s));
      } else if constexpr (Act == kImRelu) d = yr[j] > 0.f ? 1.f : 0.f;
      else d = 1.f - yr[j] * yr[j];
      gr[j] *= d;
    }
  }
}
inline void act_grad_rows(int act, int64_t n, int64_t cols, const float* x, const float* y,
                          int64_t ldy, float* g) {
  switch (act) {
    case kImElu: return act_grad_rows<kImElu>(n, cols, x, y, ldy, g);
    case kImSilu: return act_grad_rows<kImSilu>(n, cols, x, y, ldy, g);
    case kImRelu: return act_grad_rows<kImRelu>(n, cols, x, y, ldy, g);
    default: return act_grad_rows<kImTanh>(n, cols, x, y, ldy, g);
  }
}

// X [n, K] (ld x) -> bf16 pairs along K: out [n, ceil(K/2)], the odd tail padded with 0.
inline void pack_rows(int64_t n, int64_t K, const float* x, int64_t ldx, uint32_t* out) {
  const int64_t k2 = half_up(K);
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x + r * ldx;
    uint32_t* o = out + r * k2;
#pragma omp simd
    for (int64_t j = 0; j < K / 2; ++j) o[j] = bf16_bits(xr[2 * j]) | (bf16_bits(xr[2 * j + 1]) << 16);
    if (K & 1) o[k2 - 1] = bf16_bits(xr[K - 1]);
  }
}
// Y [n, N] -> bf16 pairs along n: out [ceil(n/2), N] (row stride ldo, default N).
inline void pack_row_pairs(int64_t n, int64_t N, const float* y, int64_t ldy, uint32_t* out,
                           int64_t ldo = 0) {
  const int64_t n2 = half_up(n);
  ldo = ldo ? ldo : N;
  for (int64_t r2 = 0; r2 < n2; ++r2) {
    const float* a = y + 2 * r2 * ldy;
    const bool pair = 2 * r2 + 1 < n;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j)
      out[r2 * ldo + j] = bf16_bits(a[j]) | (pair ? bf16_bits(a[ldy + j]) << 16 : 0u);
  }
}

}  // namespace mbrl_fast::cpu::IMAGINE_NS
