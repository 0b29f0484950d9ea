// Ensemble MLP forward on the CPU (spec: mbrl_fast/ops/ensemble_mlp.py).
// An MLPView points at the ensemble's tensors in place; nothing is copied.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu_features.h"
#include "mlp_desc.h"

namespace mbrl_fast::cpu {

// Activation ids: ACTIVATION_IDS in mbrl_fast/ops/ensemble_mlp.py.
enum Activation : int { kSilu = 0, kRelu = 1, kTanh = 2, kElu = 3, kLeakyRelu = 4, kIdentity = 5 };
constexpr int kMaxLayers = 16;

struct MLPView {
  int num_layers = 0;                  // L
  int64_t num_members = 0;             // E
  int64_t sizes[kMaxLayers + 1] = {};  // d_0 .. d_L
  const void* weights[kMaxLayers] = {};   // fp32 [E, d_l, d_{l+1}] or bf16 [E, ceil(d_l/2), d_{l+1}, 2]
  const float* biases[kMaxLayers] = {};   // [E, d_{l+1}]
  bool bf16 = false;  // bf16-packed weights (kAvx512 with AVX512-BF16 only)
  int activation = kSilu;
  float leaky_slope = 0.01f;
  const float* in_mean = nullptr;     // [d_0] or null
  const float* in_std = nullptr;      // [d_0] or null
  const float* max_logvar = nullptr;  // [d_L / 2] or null (no Gaussian head)
  const float* min_logvar = nullptr;  // [d_L / 2]

  int64_t in_features() const { return sizes[0]; }
  int64_t out_features() const { return sizes[num_layers]; }
  double macs_per_row() const {  // multiply-adds of one row through one member
    double m = 0;
    for (int l = 0; l < num_layers; ++l) m += static_cast<double>(sizes[l]) * static_cast<double>(sizes[l + 1]);
    return m;
  }
  bool gaussian() const { return max_logvar != nullptr; }
};

// Checks the view's sizes and ids (throws std::invalid_argument).
void check_view(const MLPView& view);

// A view of the network a descriptor points at (checked: check_view).
MLPView make_mlp_view(const MLPDesc& desc);

// x [E, B, d_0] -> out [E, B, d_L]; with a Gaussian head out holds the mean and
// out_logvar [E, B, d_L / 2] the soft-bounded log-variance (out is then [E, B, d_L / 2]).
// isa: the kernel path (checked_isa); bf16 weights need kAvx512 on a CPU with AVX512-BF16.
void ensemble_mlp_forward(const MLPView& view,
                          const float* x,     // [E, B, d_0]
                          int64_t batch,      // B
                          float* out,         // [E, B, d_L] or [E, B, d_L / 2]
                          float* out_logvar,  // [E, B, d_L / 2] or null
                          CpuIsa isa);

}  // namespace mbrl_fast::cpu
