// Normals of many Philox counter blocks at once (the propagate kernel's eps):
// out[4 i + j] = component j of block blocks[i] of the normal stream (seed, offset),
// exactly as philox_normal4 in csrc/include/philox.h.
#pragma once
#include <algorithm>
#include <cstdint>

#include "philox.h"

namespace mbrl_fast::cpu {

inline void philox_normal_blocks_portable(uint64_t seed, uint64_t offset, const uint64_t* blocks,
                                          int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) philox_normal4(seed, offset, blocks[i], out + 4 * i);
}

#if defined(MBRL_FAST_X86)
void philox_normal_blocks_avx512(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                                 float* out);
#endif

}  // namespace mbrl_fast::cpu
