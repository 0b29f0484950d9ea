// Philox-4x32-10 streams on the GPU: the counters and conversions of
// csrc/include/philox.h (shared with the CPU backend), one counter block of four
// elements per thread.
//
// Box-Muller runs in double: --use_fast_math (cmake/cuda.cmake) only changes
// single-precision math (ftz, approximate div/sqrt, __expf-style intrinsics), so the
// double log/sqrt/cos/sin here are CUDA's IEEE double routines (<= 2 ulp, against
// glibc's < 1 ulp: the float result agrees with the CPU to 1 float ulp, usually exactly).
// The uniform conversion (x >> 8 + 0.5) * 2^-24 is exact in float and has no a*b+c
// pattern for fma contraction, so uint32 and uniform streams are bit-exact.
#include "cuda/mlp_block.cuh"
#include "philox.h"

namespace mbrl_fast::cuda {
namespace {

__global__ void philox_fill_kernel(int kind, void* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t block = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t base = block * 4;
  if (base >= n) return;
  const Philox4 x = philox_block(seed, offset, static_cast<uint64_t>(block));
  float v[4];
  if (kind == 0) {
    uint32_t* o = static_cast<uint32_t*>(out);
    for (int j = 0; j < 4 && base + j < n; ++j) o[base + j] = x.x[j];
    return;
  }
  if (kind == 1) {
    for (int j = 0; j < 4; ++j) v[j] = uint32_to_uniform(x.x[j]);
  } else {
    box_muller(x.x[0], x.x[1], &v[0], &v[1]);
    box_muller(x.x[2], x.x[3], &v[2], &v[3]);
  }
  float* o = static_cast<float*>(out);
  for (int j = 0; j < 4 && base + j < n; ++j) o[base + j] = v[j];
}

}  // namespace

void philox_fill(int kind, uintptr_t out, int64_t n, uint64_t seed, uint64_t offset,
                 uintptr_t stream) {
  if (kind < 0 || kind > 2) throw std::invalid_argument("philox_fill: kind must be 0, 1 or 2");
  if (n <= 0) return;
  const int64_t blocks = (n + 3) / 4;
  const int threads = 256;
  const int64_t grid = (blocks + threads - 1) / threads;
  philox_fill_kernel<<<static_cast<unsigned>(grid), threads, 0, as_stream(stream)>>>(
      kind, reinterpret_cast<void*>(out), n, seed, offset);
  check(cudaGetLastError(), "philox_fill launch");
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

}  // namespace mbrl_fast::cuda
