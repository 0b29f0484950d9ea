// The reward kinds every compiled propagate kernel takes (ids of
// mbrl_fast/ops/contract.py RewardKind) and the built-in rewards they fuse, written
// once for the CPU and CUDA kernels (Triton: ops/_triton/propagate.py
// halfcheetah_reward; the specification: ops/rewards.py).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MBRL_REWARD_HD __host__ __device__ __forceinline__
#else
#define MBRL_REWARD_HD inline
#endif

namespace mbrl_fast::rewards {

enum Kind : int {
  kNone = 0,         // no reward
  kModel = 1,        // the model's reward head: delta[D]
  kHalfCheetah = 2,  // (x_{t+1} - x_t) / dt - 0.1 |a_t|^2
  kCallback = 3,     // a C function pointer (reward_callback.h): host code, CPU only
};

// HalfCheetah-v5 (x = obs[0]): x0 / x1 the position before / after the step,
// act_sq = |a_t|^2, dt the control step (a parameter: 0.05 for gymnasium v5).
MBRL_REWARD_HD float halfcheetah(float x0, float x1, float act_sq, float dt) {
  return (x1 - x0) / dt - 0.1f * act_sq;
}

}  // namespace mbrl_fast::rewards
