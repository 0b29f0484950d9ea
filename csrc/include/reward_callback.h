// The C ABI of a per-transition reward the CPU propagate kernel calls inside the
// rollout (mbrl_fast/ops/rewards.py; numba-compiled user rewards produce such
// pointers). Called once per particle per step, possibly from several OpenMP
// threads at once: the function must be thread-safe and must not keep the pointers.
#pragma once
#include <cstdint>

namespace mbrl_fast {

// obs [obs_dim], act [act_dim], next_obs [obs_dim] -> reward of the transition.
extern "C" typedef float (*RewardCallback)(const float* obs, const float* act, const float* next_obs,
                                           int64_t obs_dim, int64_t act_dim);

}  // namespace mbrl_fast
