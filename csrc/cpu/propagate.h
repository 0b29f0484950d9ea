// Particle propagation through an ensemble for a whole horizon in one call, optionally
// with a policy in the loop (spec: mbrl_fast/ops/propagate.py, including the Philox
// noise offsets).
#pragma once
#include <cstdint>
#include <vector>

#include "builtin_rewards.h"
#include "cpu/ensemble_mlp.h"
#include "mlp_desc.h"
#include "reward_callback.h"

namespace mbrl_fast::cpu {

// Mode ids: MODE_IDS in mbrl_fast/ops/propagate.py.
enum PropagateMode : int { kTs1 = 0, kTsInf = 1, kExpectation = 2, kFixed = 3 };
enum FeatureKind : int { kFeatValue = 0, kFeatSin = 1, kFeatCos = 2 };

// One propagate call (ops/propagate.PropagateSpec plus the output buffers). The fields
// are the CUDA module's PropagateDesc with the same meanings; the CPU adds `callback`
// and leaves out CUDA's launch details (order, bad, num_members_all, return_states:
// here states = 0 means no states).
struct PropagateDesc {
  int64_t n = 1, p = 1, k = 1, h = 1;  // start states, sequences, particles, horizon
  int64_t d = 1, a = 1, d_out = 1;     // state, action, model output (D or D + 1) widths
  int mode = kTs1;
  int reward = rewards::kNone;         // rewards::Kind (builtin_rewards.h, ops/contract.RewardKind)
  // The member slots a particle draws from (ops/propagate's `members`, e.g. the
  // elites); mode fixed: [member]. Indices into the model's E members.
  std::vector<int64_t> members;
  // Model input features (ops/features.py ObsFeatures.table): column c of features(s) is
  // feat_kind[c] (0 value, 1 sin, 2 cos) of s[feat_src[c]]; both empty: features(s) = s.
  // The policy in the loop reads the raw state.
  std::vector<int64_t> feat_src;   // [F]
  std::vector<int64_t> feat_kind;  // [F]
  uint64_t seed = 0, offset = 0;
  float dt = 0.0f;                 // the built-in reward's control step (Reward.dt)
  uintptr_t callback = 0;          // reward rewards::kCallback: a RewardCallback
  uintptr_t obs = 0;               // [N, D]
  uintptr_t actions = 0;           // [N, P, H, A] (0 with a policy)
  uintptr_t states = 0;            // [N P K, H + 1, D] or 0
  uintptr_t rewards = 0;           // [N P K, H] or 0 (needs a reward)
  uintptr_t row_returns = 0;       // [N P K] sum_t r_t, or 0 (needs a reward)
  uintptr_t taken = 0;             // [N P K, H, A] the policy's actions (with a policy)
};

// First non-finite state in (step, row) order; t = -1 when every state is finite.
struct NonFinite {
  int64_t t = -1, member = -1, n = -1, p = -1, k = -1;
};

// Runs the rollout on ISA path `isa` (checked_isa). policy: null, or one member with a
// Gaussian head over A outputs reading the D-wide state (actions = tanh(mu + std eps)
// with eps from normal(seed, offset + 2)). Throws std::invalid_argument on inconsistent
// arguments.
NonFinite propagate(const MLPDesc& model, const MLPDesc* policy, const PropagateDesc& desc, CpuIsa isa);

}  // namespace mbrl_fast::cpu
