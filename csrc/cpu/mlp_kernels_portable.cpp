// Portable tile forward: plain loops the compiler auto-vectorizes for the
// baseline ISA. Used on CPUs without AVX-512 (or AVX512-BF16 for bf16 weights)
// and when MBRL_FAST_CPU_KERNELS=portable (see mbrl_fast/ops/_cpu.py).
// Rows go in blocks of 8 with k outside the row loop, so each weight row is read
// from L2 once per 8 rows: 11.4 -> 17.4 GFLOP per CPU-second (fp32, headline model,
// 1 thread, 2026-11-23) against one row at a time.
#include <cmath>

#include "cpu/mlp_tile.h"

namespace mbrl_fast::cpu {

namespace {

constexpr int64_t kBlockRows = 8;

float activate(float x, int act, float slope) {
  switch (act) {
    case kSilu: return x / (1.f + std::exp(-x));
    case kRelu: return x > 0.f || std::isnan(x) ? x : 0.f;
    case kTanh: return std::tanh(x);
    case kElu: return x > 0.f ? x : std::expm1(x);
    case kLeakyRelu: return x > 0.f ? x : x * slope;
    default: return x;
  }
}

// y[r, o] = b[o] + sum_k x[r, k] W[k, o] for rows r < nr (row stride ld); W fp32 [in, out].
void dense_rows(const MLPView& v, int l, int64_t e, float* x, float* y, int64_t nr, int64_t ld) {
  const int64_t in = v.sizes[l], out = v.sizes[l + 1];
  const float* b = v.biases[l] + e * out;
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t o = 0; o < out; ++o) y[r * ld + o] = b[o];
  if (v.bf16_inputs)
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t k = 0; k < in; ++k) x[r * ld + k] = round_bf16(x[r * ld + k]);
  const float* w = static_cast<const float*>(v.weights[l]) + e * in * out;
  for (int64_t k = 0; k < in; ++k)
    for (int64_t r = 0; r < nr; ++r) {
      const float xk = x[r * ld + k];
      float* yr = y + r * ld;
      for (int64_t o = 0; o < out; ++o) yr[o] += xk * w[k * out + o];
    }
}

}  // namespace

void forward_tile_portable(const MLPView& v, int64_t e, int64_t rows, const float* in,
                           int64_t ld_in, float* out, int head, TileWorkspace& ws) {
  const int L = v.num_layers;
  const int64_t d0 = v.sizes[0], dl = v.sizes[L], half = dl / 2, ld = ws.width;
  for (int64_t r0 = 0; r0 < rows; r0 += kBlockRows) {
    const int64_t nr = std::min(kBlockRows, rows - r0);
    float* a = ws.f0.data();  // [nr, width] activations
    float* b = ws.f1.data();
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t j = 0; j < d0; ++j) {
        const float x = in[(r0 + r) * ld_in + j];
        a[r * ld + j] = v.in_mean ? (x - v.in_mean[j]) / v.in_std[j] : x;
      }
    for (int l = 0; l < L; ++l) {
      dense_rows(v, l, e, a, b, nr, ld);
      if (l + 1 < L)
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t o = 0; o < v.sizes[l + 1]; ++o)
            b[r * ld + o] = activate(b[r * ld + o], v.activation, v.leaky_slope);
      std::swap(a, b);
    }
    for (int64_t r = 0; r < nr; ++r) {
      const float* y = a + r * ld;
      float* o = out + (r0 + r) * dl;
      std::copy_n(y, dl, o);
      if (head == kHeadRaw || !v.gaussian()) continue;
      for (int64_t j = 0; j < half; ++j) {
        const float lv = soft_bound_logvar(y[half + j], v.max_logvar[j], v.min_logvar[j]);
        o[half + j] = head == kHeadStd ? std::exp(0.5f * lv) : lv;
      }
    }
  }
}

}  // namespace mbrl_fast::cpu
