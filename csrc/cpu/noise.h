// Philox streams written to host buffers (see csrc/include/philox.h for the
// counter layout). Element i of `out` is element i of stream (seed, offset).
#pragma once
#include <cstdint>

#include "cpu_features.h"

namespace mbrl_fast::cpu {

void philox_uint32_fill(uint32_t* out,  // [n]
                        int64_t n, uint64_t seed, uint64_t offset);
void philox_uniform_fill(float* out,  // [n]
                         int64_t n, uint64_t seed, uint64_t offset);
void philox_normal_fill(float* out,  // [n]
                        int64_t n, uint64_t seed, uint64_t offset, CpuIsa isa);

}  // namespace mbrl_fast::cpu
