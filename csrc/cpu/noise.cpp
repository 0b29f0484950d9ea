#include "cpu/noise.h"

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

void philox_normal_fill(float* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    float v[4];
    philox_normal4(seed, offset, static_cast<uint64_t>(b), v);
    for (int j = 0; j < 4 && 4 * b + j < n; ++j) out[4 * b + j] = v[j];
  }
}

}  // namespace mbrl_fast::cpu
