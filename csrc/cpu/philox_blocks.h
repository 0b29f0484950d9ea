// Normals of many Philox counter blocks at once (the propagate kernel's eps, the
// noise op's normal stream): out[4 i + j] = component j of block blocks[i] of the
// normal stream (seed, offset), as philox_normal4 in csrc/include/philox.h.
#pragma once
#include <algorithm>
#include <cstdint>

#include "cpu_features.h"

namespace mbrl_fast::cpu {

using NormalBlocksFn = void (*)(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                                float* out);

void philox_normal_blocks_portable(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                                   float* out);

#if defined(MBRL_FAST_X86)
void philox_normal_blocks_avx512(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                                 float* out);
void philox_normal_blocks_avx2(uint64_t seed, uint64_t offset, const uint64_t* blocks, int64_t n,
                               float* out);
#endif

// The normals of ISA path `isa` (validated by checked_isa).
inline NormalBlocksFn select_normal_blocks(CpuIsa isa) {
#if defined(MBRL_FAST_X86)
  if (isa == CpuIsa::kAvx512) return philox_normal_blocks_avx512;
  if (isa == CpuIsa::kAvx2) return philox_normal_blocks_avx2;
#else
  (void)isa;
#endif
  return philox_normal_blocks_portable;
}

}  // namespace mbrl_fast::cpu
