// Sampling-planner updates on the device (ops/elite_update.py is the specification),
// so a CEM / MPPI iteration (sample -> propagate -> update) never waits on the host.
//
// cem_update: one block per start state n. The P returns become uint64 sort keys
// (orderable float bits << 32 | ~p; NaN lowest, -0 == +0) and a bitonic sort in
// shared memory orders them descending: best return first, ties to the lower p,
// NaN last -- the reference's elite_order. Moments over the K elites in double.
// mppi_update: one block per (n, panel of kThreads columns); the softmax weights
// are recomputed per block in double (P exps, cheap next to the P x columns sums).
// truncated_normal: elementwise, uniform stream (seed, offset) at ((nP + p)H + h)A + a.
#include "cuda/mlp_block.cuh"
#include "philox.h"

namespace mbrl_fast::cuda {
namespace {

constexpr int kMaxSortP = 16384;  // 128 KiB of keys in shared memory

__device__ __forceinline__ unsigned long long sort_key(float v, uint32_t p) {
  uint32_t u;
  if (isnan(v)) {
    u = 0;  // below every number, -inf included
  } else {
    if (v == 0.0f) v = 0.0f;  // -0 ranks with +0 (the reference's stable sort ties them)
    u = __float_as_uint(v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
  return (static_cast<unsigned long long>(u) << 32) | static_cast<uint32_t>(~p);
}

__global__ void cem_update_kernel(const float* __restrict__ samples, const float* __restrict__ returns,
                                  const float* __restrict__ mean, const float* __restrict__ var,
                                  int64_t p, int64_t ha, int64_t num_elites, double alpha,
                                  double epsilon, int sort_n, float* new_mean, float* new_var,
                                  int64_t* elites, float* best, float* best_return,
                                  uint8_t* converged) {
  extern __shared__ unsigned long long keys[];  // [sort_n], then [num_elites] int64
  int64_t* elite = reinterpret_cast<int64_t*>(keys + sort_n);
  __shared__ double block_max[kThreads / 32];
  const int64_t n = blockIdx.x;
  for (int i = threadIdx.x; i < sort_n; i += blockDim.x) {
    keys[i] = i < p ? sort_key(returns[n * p + i], static_cast<uint32_t>(i)) : 0ull;
  }
  // bitonic sort, descending
  for (int size = 2; size <= sort_n; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      __syncthreads();
      for (int i = threadIdx.x; i < sort_n; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const bool desc = (i & size) == 0;
          const unsigned long long a = keys[i], b = keys[j];
          if (desc ? a < b : a > b) { keys[i] = b; keys[j] = a; }
        }
      }
    }
  }
  __syncthreads();
  for (int k = threadIdx.x; k < num_elites; k += blockDim.x) {
    elite[k] = static_cast<uint32_t>(~static_cast<uint32_t>(keys[k] & 0xffffffffull));
    elites[n * num_elites + k] = elite[k];
  }
  __syncthreads();
  if (threadIdx.x == 0) best_return[n] = returns[n * p + elite[0]];
  double vmax = -1.0;
  for (int64_t c = threadIdx.x; c < ha; c += blockDim.x) {
    double m = 0.0, v = 0.0;
    for (int64_t k = 0; k < num_elites; ++k) m += samples[(n * p + elite[k]) * ha + c];
    m /= static_cast<double>(num_elites);
    for (int64_t k = 0; k < num_elites; ++k) {
      const double d = samples[(n * p + elite[k]) * ha + c] - m;
      v += d * d;
    }
    v /= static_cast<double>(num_elites);
    const int64_t o = n * ha + c;
    new_mean[o] = static_cast<float>(alpha * mean[o] + (1.0 - alpha) * m);
    const float nv = static_cast<float>(alpha * var[o] + (1.0 - alpha) * v);
    new_var[o] = nv;
    vmax = fmax(vmax, static_cast<double>(nv));
    best[o] = samples[(n * p + elite[0]) * ha + c];
  }
  for (int s = 16; s > 0; s >>= 1) vmax = fmax(vmax, __shfl_xor_sync(0xffffffffu, vmax, s));
  if (threadIdx.x % 32 == 0) block_max[threadIdx.x / 32] = vmax;
  __syncthreads();
  if (threadIdx.x == 0) {
    double top = block_max[0];
    for (int w = 1; w < kThreads / 32; ++w) top = fmax(top, block_max[w]);
    converged[n] = top < epsilon ? 1 : 0;
  }
}

// weights of row n in double: softmax(returns / temperature), NaN -> 0, +inf shares all,
// no usable return -> uniform (the reference's special cases)
__global__ void mppi_update_kernel(const float* __restrict__ samples, const float* __restrict__ returns,
                                   int64_t p, int64_t ha, double temperature, float* mean,
                                   float* var, float* weights) {
  extern __shared__ double w[];  // [p]
  __shared__ double red[kThreads / 32];
  const int64_t n = blockIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  auto block_reduce = [&](double v, bool is_max) {
    for (int s = 16; s > 0; s >>= 1) {
      const double o = __shfl_xor_sync(0xffffffffu, v, s);
      v = is_max ? fmax(v, o) : v + o;
    }
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    double r = red[0];
    for (int i = 1; i < kThreads / 32; ++i) r = is_max ? fmax(r, red[i]) : r + red[i];
    return r;
  };
  double local = -INFINITY;
  for (int64_t i = threadIdx.x; i < p; i += kThreads) {
    double z = static_cast<double>(returns[n * p + i]) / temperature;
    if (isnan(z)) z = -INFINITY;
    w[i] = z;
    local = fmax(local, z);
  }
  const double top = block_reduce(local, true);
  local = 0.0;
  for (int64_t i = threadIdx.x; i < p; i += kThreads) {
    double e;
    if (isinf(top) && top > 0) e = w[i] == INFINITY ? 1.0 : 0.0;
    else if (isinf(top)) e = 1.0;
    else e = exp(w[i] - top);
    w[i] = e;
    local += e;
  }
  const double total = block_reduce(local, false);
  for (int64_t i = threadIdx.x; i < p; i += kThreads) {
    w[i] /= total;
    if (blockIdx.y == 0) weights[n * p + i] = static_cast<float>(w[i]);
  }
  __syncthreads();
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x;
  if (c >= ha) return;
  const float* x = samples + n * p * ha + c;
  double m = 0.0, v = 0.0;
  for (int64_t i = 0; i < p; ++i) m += w[i] * x[i * ha];
  for (int64_t i = 0; i < p; ++i) {
    const double d = x[i * ha] - m;
    v += w[i] * d * d;
  }
  mean[n * ha + c] = static_cast<float>(m);
  var[n * ha + c] = static_cast<float>(v);
}

__global__ void truncated_normal_kernel(const float* __restrict__ mean, const float* __restrict__ var,
                                        const float* __restrict__ lower, const float* __restrict__ upper,
                                        int64_t n, int64_t p, int64_t ha, int64_t a, uint64_t seed,
                                        uint64_t offset, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * p * ha) return;
  const int64_t c = i % ha, row = i / (p * ha);
  const float mu = mean[row * ha + c], lo_b = lower[c % a], hi_b = upper[c % a];
  const float lb = (mu - lo_b) * 0.5f, ub = (hi_b - mu) * 0.5f;
  const float s = sqrtf(fminf(var[row * ha + c], fminf(lb * lb, ub * ub)));
  if (!(s > 0.0f)) {
    out[i] = fminf(fmaxf(mu, lo_b), hi_b);
    return;
  }
  const float lo = fminf(fmaxf(mu - 2.0f * s, lo_b), hi_b);
  const float hi = fminf(fmaxf(mu + 2.0f * s, lo_b), hi_b);
  const float cdf_lo = 0.5f * (1.0f + erff((lo - mu) / s * 0.70710678118654752f));
  const float cdf_hi = 0.5f * (1.0f + erff((hi - mu) / s * 0.70710678118654752f));
  const float u = philox_uniform(seed, offset, static_cast<uint64_t>(i));
  const float q = cdf_lo + u * (cdf_hi - cdf_lo);
  const float x = mu + s * (1.41421356237309505f * erfinvf(2.0f * q - 1.0f));
  out[i] = fminf(fmaxf(x, lo), hi);
}

}  // namespace

void cem_update(uintptr_t samples, uintptr_t returns, uintptr_t mean, uintptr_t var, int64_t n,
                int64_t p, int64_t ha, int64_t num_elites, double alpha, double epsilon,
                uintptr_t new_mean, uintptr_t new_var, uintptr_t elites, uintptr_t best,
                uintptr_t best_return, uintptr_t converged, uintptr_t stream) {
  if (p < 1 || p > kMaxSortP || num_elites < 1 || num_elites > p) {
    throw std::invalid_argument("cem_update: the CUDA kernel sorts 1.." +
                                std::to_string(kMaxSortP) + " samples per row, 1 <= K <= P");
  }
  int sort_n = 1;
  while (sort_n < p) sort_n <<= 1;
  const size_t smem = sizeof(unsigned long long) * sort_n + sizeof(int64_t) * num_elites;
  set_smem(cem_update_kernel, smem);
  cem_update_kernel<<<static_cast<unsigned>(n), kThreads, smem, as_stream(stream)>>>(
      reinterpret_cast<const float*>(samples), reinterpret_cast<const float*>(returns),
      reinterpret_cast<const float*>(mean), reinterpret_cast<const float*>(var), p, ha,
      num_elites, alpha, epsilon, sort_n, reinterpret_cast<float*>(new_mean),
      reinterpret_cast<float*>(new_var), reinterpret_cast<int64_t*>(elites),
      reinterpret_cast<float*>(best), reinterpret_cast<float*>(best_return),
      reinterpret_cast<uint8_t*>(converged));
  check(cudaGetLastError(), "cem_update launch");
}

void mppi_update(uintptr_t samples, uintptr_t returns, int64_t n, int64_t p, int64_t ha,
                 double temperature, uintptr_t mean, uintptr_t var, uintptr_t weights,
                 uintptr_t stream) {
  if (p < 1 || p > kMaxSortP) {
    throw std::invalid_argument("mppi_update: the CUDA kernel takes 1.." +
                                std::to_string(kMaxSortP) + " samples per row");
  }
  const size_t smem = sizeof(double) * p;
  set_smem(mppi_update_kernel, smem);
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>((ha + kThreads - 1) / kThreads));
  mppi_update_kernel<<<grid, kThreads, smem, as_stream(stream)>>>(
      reinterpret_cast<const float*>(samples), reinterpret_cast<const float*>(returns), p, ha,
      temperature, reinterpret_cast<float*>(mean), reinterpret_cast<float*>(var),
      reinterpret_cast<float*>(weights));
  check(cudaGetLastError(), "mppi_update launch");
}

void truncated_normal(uintptr_t mean, uintptr_t var, uintptr_t lower, uintptr_t upper, int64_t n,
                      int64_t p, int64_t h, int64_t a, uint64_t seed, uint64_t offset,
                      uintptr_t out, uintptr_t stream) {
  const int64_t total = n * p * h * a;
  if (total <= 0) return;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  truncated_normal_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, as_stream(stream)>>>(
      reinterpret_cast<const float*>(mean), reinterpret_cast<const float*>(var),
      reinterpret_cast<const float*>(lower), reinterpret_cast<const float*>(upper), n, p, h * a, a,
      seed, offset, reinterpret_cast<float*>(out));
  check(cudaGetLastError(), "truncated_normal launch");
}

}  // namespace mbrl_fast::cuda
