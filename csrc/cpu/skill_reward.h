// DADS's intrinsic reward on the CPU (spec: mbrl_fast/ops/skill_reward.py): M x (L + 1)
// forward passes of the skill dynamics q (one member of an MLPView) with the Gaussian
// log-density and the log-sum-exp over the L prior skills fused, in one call.
#pragma once
#include <cstdint>

#include "cpu/ensemble_mlp.h"
#include "cpu_features.h"

namespace mbrl_fast::cpu {

struct SkillRewardArgs {
  int64_t m = 0;  // transitions M
  int64_t l = 0;  // prior samples L (>= 2)
  int64_t f = 0;  // state features F read by q (0: q reads the skill only)
  int64_t z = 0;  // skill dimension Z (>= 1); q's input is [F + Z]
  int64_t p = 0;  // predicted outputs P (q's mean width)
  bool prior_shared = false;   // prior [L, Z] for every transition, else [M, L, Z]
  bool include_skill = false;  // the denominator also sums the transition's own skill
  const float* x = nullptr;       // [M, F] (unused when F = 0)
  const float* target = nullptr;  // [M, P] in q's output space
  const float* skill = nullptr;   // [M, Z]
  const float* prior = nullptr;   // [M, L, Z] or [L, Z]
  float* log_q = nullptr;         // [M, L + 1]: column 0 the skill's, 1 .. L the prior's
  float* reward = nullptr;        // [M]
};

// Throws std::invalid_argument on inconsistent arguments. isa: the tile kernels' path
// (checked against the CPU by the caller).
void skill_reward(const MLPView& view, const SkillRewardArgs& args, CpuIsa isa);

}  // namespace mbrl_fast::cpu
