// Ensemble MLP forward: one block per (tile of kTM rows, member); the layers run
// through shared memory (csrc/cuda/mlp_block.cuh), normalization and the Gaussian
// head are fused at the ends.
#include "cuda/mlp_block.cuh"

namespace mbrl_fast::cuda {
namespace {

// x [E, B, d0] -> out [E, B, dL] or out = mean, logvar [E, B, dL / 2]
__global__ void ensemble_mlp_kernel(MLPArgs m, const float* __restrict__ x, int64_t batch,
                                    float* __restrict__ out, float* __restrict__ logvar, int ld) {
  extern __shared__ float smem[];
  const int64_t e = blockIdx.y;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTM;
  const int d0 = m.sizes[0], d_last = m.sizes[m.layers];
  for (int i = threadIdx.x; i < kTM * d0; i += kThreads) {
    const int r = i / d0, k = i % d0;
    float v = 0.0f;
    if (row0 + r < batch) {
      v = x[(e * batch + row0 + r) * d0 + k];
      if (m.in_mean != nullptr) v = (v - m.in_mean[k]) / m.in_std[k];
    }
    smem[r * ld + k] = v;
  }
  const float* y = mlp_block(m, e, smem, ld);
  const bool gaussian = m.max_lv != nullptr;
  const int width = gaussian ? d_last / 2 : d_last;
  for (int i = threadIdx.x; i < kTM * width; i += kThreads) {
    const int r = i / width, j = i % width;
    if (row0 + r >= batch) continue;
    const int64_t o = (e * batch + row0 + r) * width + j;
    out[o] = y[r * ld + j];
    if (gaussian) logvar[o] = soft_bound(y[r * ld + width + j], m.max_lv[j], m.min_lv[j]);
  }
}

}  // namespace

void ensemble_mlp(const MLPDesc& mlp, uintptr_t x, int64_t batch, uintptr_t out, uintptr_t logvar,
                  uintptr_t stream) {
  const MLPArgs m = to_args(mlp);
  if (batch <= 0) return;
  if (mlp.members < 1 || mlp.members > 65535) {
    throw std::invalid_argument("ensemble_mlp: the CUDA kernel supports 1..65535 members");
  }
  const int ld = slot_ld(mlp);
  const size_t smem = block_smem_bytes(ld);
  set_smem(ensemble_mlp_kernel, smem);
  const dim3 grid(static_cast<unsigned>((batch + kTM - 1) / kTM), static_cast<unsigned>(mlp.members));
  ensemble_mlp_kernel<<<grid, kThreads, smem, as_stream(stream)>>>(
      m, reinterpret_cast<const float*>(x), batch, reinterpret_cast<float*>(out),
      reinterpret_cast<float*>(logvar), ld);
  check(cudaGetLastError(), "ensemble_mlp launch");
}

}  // namespace mbrl_fast::cuda
