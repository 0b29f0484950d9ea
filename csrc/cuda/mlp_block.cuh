// A thread block's ensemble-MLP forward on a tile of kTM rows, shared by the
// ensemble_mlp and propagate kernels.
//
// Shared memory (dynamic, floats): three activation slots [3][kTM][ld] (slot 0 holds
// the layer-0 input, slots 1/2 ping-pong) and a weight tile [kKC][kNC]. A layer
// y = h @ W + b is computed in column panels of kNC: the block stages a [kKC, kNC]
// chunk of W through shared memory (coalesced global reads: consecutive threads,
// consecutive output columns) and every thread accumulates a kRM x kRN register tile
// in fp32 FMA: warp w owns rows 4w..4w+3, lane l owns columns l, l+32, l+64, l+96
// (conflict-free shared reads: a row element is a broadcast, weights are consecutive).
// bf16 weights are widened to fp32 while staging and the layer input is rounded to
// bf16 on read: products of two bf16 are exact in fp32, so this is the reference's
// bf16 math (fp32 accumulation), not an approximation of it.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/ops_cuda.h"

namespace mbrl_fast::cuda {

constexpr int kThreads = 256;  // 8 warps
constexpr int kTM = 32;        // rows per tile = 8 warps x kRM
constexpr int kRM = 4;
constexpr int kRN = 4;
constexpr int kNC = 32 * kRN;  // 128 output columns per panel
constexpr int kKC = 16;        // K rows of W staged per step: 16 x 128 x 4 B = 8 KiB
constexpr int kMaxLayers = 8;
constexpr int kMaxMembers = 64;

// Kernel-parameter copy of an MLPDesc (by value: no device tables to manage).
struct MLPArgs {
  const void* w[kMaxLayers];
  const float* b[kMaxLayers];
  int sizes[kMaxLayers + 1];
  int layers;
  int act;
  float slope;
  int bf16;
  const float* in_mean;
  const float* in_std;
  const float* max_lv;
  const float* min_lv;
};

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("mbrl_fast._C_cuda: ") + what + ": " +
                             cudaGetErrorString(err));
  }
}

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

inline MLPArgs to_args(const MLPDesc& d) {
  const int layers = static_cast<int>(d.weights.size());
  if (layers < 1 || layers > kMaxLayers || d.biases.size() != d.weights.size() ||
      d.sizes.size() != d.weights.size() + 1) {
    throw std::invalid_argument("mbrl_fast._C_cuda: an MLP needs 1.." + std::to_string(kMaxLayers) +
                                " layers with one bias each and L + 1 sizes");
  }
  MLPArgs a{};
  for (int l = 0; l < layers; ++l) {
    a.w[l] = reinterpret_cast<const void*>(d.weights[l]);
    a.b[l] = reinterpret_cast<const float*>(d.biases[l]);
  }
  for (int l = 0; l <= layers; ++l) a.sizes[l] = static_cast<int>(d.sizes[l]);
  a.layers = layers;
  a.act = d.activation;
  a.slope = d.slope;
  a.bf16 = d.bf16 ? 1 : 0;
  a.in_mean = reinterpret_cast<const float*>(d.in_mean);
  a.in_std = reinterpret_cast<const float*>(d.in_std);
  a.max_lv = reinterpret_cast<const float*>(d.max_logvar);
  a.min_lv = reinterpret_cast<const float*>(d.min_logvar);
  return a;
}

// Leading dimension of an activation slot: the widest layer, rounded up to 4 floats.
inline int slot_ld(const MLPDesc& d) {
  int64_t w = 1;
  for (int64_t s : d.sizes) w = s > w ? s : w;
  return static_cast<int>((w + 3) / 4 * 4);
}

inline size_t block_smem_bytes(int ld) {
  return sizeof(float) * (3 * static_cast<size_t>(kTM) * ld + kKC * kNC);
}

// Opt in to > 48 KiB of dynamic shared memory; throws when the device has too little.
template <typename Kernel>
inline void set_smem(Kernel kernel, size_t bytes) {
  int dev = 0, limit = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
        "cudaDeviceGetAttribute");
  if (bytes > static_cast<size_t>(limit)) {
    throw std::invalid_argument("mbrl_fast._C_cuda: the MLP is too wide for one block's shared "
                                "memory (" + std::to_string(bytes) + " > " +
                                std::to_string(limit) + " bytes); use the triton backend");
  }
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)), "cudaFuncSetAttribute");
}

__device__ __forceinline__ float softplus(float x) {
  return x > 20.0f ? x : log1pf(expf(x));  // torch's threshold
}

__device__ __forceinline__ float soft_bound(float raw, float hi, float lo) {
  const float lv = hi - softplus(hi - raw);
  return lo + softplus(lv - lo);
}

__device__ __forceinline__ float activate(float x, int act, float slope) {
  switch (act) {
    case 0: return x / (1.0f + expf(-x));         // silu
    case 1: return x > 0.0f || x != x ? x : 0.0f;  // relu; NaN stays NaN (fmaxf drops it)
    case 2: return tanhf(x);                      // tanh
    case 3: return x > 0.0f ? x : expm1f(x);      // elu
    case 4: return x > 0.0f ? x : x * slope;      // leaky_relu
    default: return x;                            // identity
  }
}

__device__ __forceinline__ float round_bf16(float x) {
  return __bfloat162float(__float2bfloat16_rn(x));
}

__device__ __forceinline__ float load_weight(const MLPArgs& m, int l, int64_t member, int k, int n,
                                             int d_in, int d_out) {
  if (m.bf16) {
    // packed [ceil(in/2), out, 2]: element (k, n) at ((k / 2) * out + n) * 2 + k % 2
    const __nv_bfloat16* w = static_cast<const __nv_bfloat16*>(m.w[l]) +
                             member * ((d_in + 1) / 2) * d_out * 2;
    return __bfloat162float(w[(static_cast<int64_t>(k >> 1) * d_out + n) * 2 + (k & 1)]);
  }
  const float* w = static_cast<const float*>(m.w[l]) + member * d_in * d_out;
  return __ldg(w + static_cast<int64_t>(k) * d_out + n);
}

// All layers of `member` on the kTM rows in slot 0. Returns the output slot.
// Must be called by every thread of the block (it synchronizes).
__device__ inline float* mlp_block(const MLPArgs& m, int64_t member, float* smem, int ld) {
  float* wt = smem + 3 * kTM * ld;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * kRM;
  __syncthreads();  // the caller's slot-0 writes and earlier reads of the slots are done
  float* dst = smem;
  for (int l = 0; l < m.layers; ++l) {
    const int d_in = m.sizes[l], d_out = m.sizes[l + 1];
    const float* src = l == 0 ? smem : smem + (1 + (l - 1) % 2) * kTM * ld;
    dst = smem + (1 + l % 2) * kTM * ld;
    const float* bias = m.b[l] + member * d_out;
    const bool last = l == m.layers - 1;
    for (int n0 = 0; n0 < d_out; n0 += kNC) {
      float acc[kRM][kRN] = {};
      for (int k0 = 0; k0 < d_in; k0 += kKC) {
        __syncthreads();  // the previous chunk's readers are done with wt
        for (int i = threadIdx.x; i < kKC * kNC; i += kThreads) {
          const int k = k0 + i / kNC, n = n0 + i % kNC;
          wt[i] = (k < d_in && n < d_out) ? load_weight(m, l, member, k, n, d_in, d_out) : 0.0f;
        }
        __syncthreads();
        const int kc = min(kKC, d_in - k0);
        for (int kk = 0; kk < kc; ++kk) {
          float a[kRM], b[kRN];
#pragma unroll
          for (int i = 0; i < kRM; ++i) {
            const float v = src[(r0 + i) * ld + k0 + kk];
            a[i] = m.bf16 ? round_bf16(v) : v;
          }
#pragma unroll
          for (int j = 0; j < kRN; ++j) b[j] = wt[kk * kNC + lane + 32 * j];
#pragma unroll
          for (int i = 0; i < kRM; ++i)
#pragma unroll
            for (int j = 0; j < kRN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
      }
#pragma unroll
      for (int j = 0; j < kRN; ++j) {
        const int n = n0 + lane + 32 * j;
        if (n >= d_out) continue;
        const float bn = bias[n];
#pragma unroll
        for (int i = 0; i < kRM; ++i) {
          const float v = acc[i][j] + bn;
          dst[(r0 + i) * ld + n] = last ? v : activate(v, m.act, m.slope);
        }
      }
    }
    __syncthreads();  // dst complete before the next layer (or the caller) reads it
  }
  return dst;
}

}  // namespace mbrl_fast::cuda
