// One network (an ensemble of E MLPs, or a policy: E = 1) as the Python side describes
// it to every compiled backend: the CPU module (_C) and the CUDA module (_C_cuda) bind
// this one struct, filled from ops/ensemble_mlp.MLPParams by mbrl_fast/ops/_cpu.py and
// _cuda.py. Addresses are integers (host pointers for _C, device pointers for _C_cuda);
// 0 means absent. The kernels read the tensors in place.
#pragma once
#include <cstdint>
#include <vector>

namespace mbrl_fast {

struct MLPDesc {
  std::vector<int64_t> sizes;      // [L + 1] layer widths d_0 .. d_L
  std::vector<uintptr_t> weights;  // [L] fp32 [E, d_l, d_{l+1}] or bf16 [E, ceil(d_l/2), d_{l+1}, 2]
  std::vector<uintptr_t> biases;   // [L] fp32 [E, d_{l+1}]
  int64_t members = 1;             // E, the ensemble's member count
  bool bf16 = false;               // weights are bf16-packed (ops.pack_bf16)
  int activation = 0;              // hidden activation, ops/ensemble_mlp.ACTIVATION_IDS
  float slope = 0.01f;             // leaky_relu slope
  uintptr_t in_mean = 0, in_std = 0;        // [d_0] or 0
  uintptr_t max_logvar = 0, min_logvar = 0;  // [d_L / 2] or 0 (no Gaussian head)
};

}  // namespace mbrl_fast
