// Particle propagation through an ensemble for a whole horizon in one call
// (spec: mbrl_fast/ops/propagate.py, including the Philox noise offsets).
#pragma once
#include <cstdint>

#include "cpu/ensemble_mlp.h"
#include "reward_callback.h"

namespace mbrl_fast::cpu {

// Mode ids: MODE_IDS in mbrl_fast/ops/propagate.py.
enum PropagateMode : int { kTs1 = 0, kTsInf = 1, kExpectation = 2, kFixed = 3 };
// How the per-step reward is obtained.
enum RewardKind : int { kRewardNone = 0, kRewardModel = 1, kRewardBuiltin = 2, kRewardCallback = 3 };
enum BuiltinReward : int { kHalfCheetah = 0 };
enum FeatureKind : int { kFeatValue = 0, kFeatSin = 1, kFeatCos = 2 };

struct PropagateArgs {
  int64_t n = 0, p = 0, k = 0, h = 0;  // start states, sequences, particles, horizon
  int64_t d = 0, a = 0, d_out = 0;     // state, action, model output (D or D + 1) widths
  int mode = kTsInf;
  int64_t member = -1;                // mode kFixed: index into the full ensemble
  const int64_t* members = nullptr;   // [E'] usable members
  int64_t num_members = 0;            // E'
  uint64_t seed = 0, offset = 0;
  int reward_kind = kRewardNone;
  int builtin_id = -1;
  RewardCallback callback = nullptr;
  // Model input features (ops/features.py): column c of features(s) is feat_kind[c]
  // (0 value, 1 sin, 2 cos) of s[feat_src[c]]; f = 0: features(s) = s.
  const int64_t* feat_src = nullptr;   // [F]
  const int64_t* feat_kind = nullptr;  // [F]
  int64_t f = 0;
  const float* obs = nullptr;      // [N, D]
  const float* actions = nullptr;  // [N, P, H, A]
  float* states = nullptr;         // [N, P, K, H + 1, D] or null
  float* rewards = nullptr;        // [N, P, K, H] or null
  float* returns = nullptr;        // [N, P] or null (needs a reward)
};

// First non-finite state in (step, row) order; t = -1 when every state is finite.
struct NonFinite {
  int64_t t = -1, member = -1, n = -1, p = -1, k = -1;
};

// Runs the rollout on ISA path `isa` (checked_isa); throws std::invalid_argument on
// inconsistent arguments.
NonFinite propagate(const MLPView& view, const PropagateArgs& args, CpuIsa isa);

}  // namespace mbrl_fast::cpu
