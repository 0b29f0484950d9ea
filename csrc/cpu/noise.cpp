#include "cpu/noise.h"

#include <algorithm>

#include "cpu/philox_blocks.h"
#include "philox.h"

namespace mbrl_fast::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;  // below this, threads cost more than they save
}

void philox_uint32_fill(uint32_t* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const Philox4 r = philox_block(seed, offset, static_cast<uint64_t>(b));
    for (int j = 0; j < 4 && 4 * b + j < n; ++j) out[4 * b + j] = r.x[j];
  }
}

void philox_uniform_fill(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const Philox4 r = philox_block(seed, offset, static_cast<uint64_t>(b));
    for (int j = 0; j < 4 && 4 * b + j < n; ++j) out[4 * b + j] = uint32_to_uniform(r.x[j]);
  }
}

// Chunks of kChunk blocks through the ISA path's vectorized Box-Muller (philox_blocks.h).
void philox_normal_fill(float* out, int64_t n, uint64_t seed, uint64_t offset, CpuIsa isa) {
  constexpr int64_t kChunk = 256;
  const NormalBlocksFn normal_blocks = select_normal_blocks(isa);
  const int64_t blocks = (n + 3) / 4, chunks = (blocks + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    uint64_t idx[kChunk];
    float v[4 * kChunk];
    const int64_t b0 = c * kChunk, nb = std::min(kChunk, blocks - b0);
    for (int64_t i = 0; i < nb; ++i) idx[i] = static_cast<uint64_t>(b0 + i);
    normal_blocks(seed, offset, idx, nb, v);
    std::copy_n(v, std::min(4 * nb, n - 4 * b0), out + 4 * b0);
  }
}

}  // namespace mbrl_fast::cpu
