// mbrl_fast._C_cuda entry points (host side). Plain C++: bindings_cuda.cpp includes
// this without CUDA headers. Every pointer is a device address passed as an integer
// by mbrl_fast/ops/_cuda.py (validated, contiguous); `stream` is torch's current
// cudaStream_t as an integer. Errors throw std::runtime_error (pybind11: RuntimeError)
// or std::invalid_argument (ValueError).
#pragma once
#include <cstdint>
#include <vector>

#include "mlp_desc.h"

namespace mbrl_fast::cuda {

// An ensemble MLP as the Python side describes it (shared with the CPU module).
using MLPDesc = mbrl_fast::MLPDesc;

// One propagate call (ops/propagate.PropagateSpec plus the output buffers).
struct PropagateDesc {
  int64_t n = 1, p = 1, k = 1, h = 1, d = 1, a = 1, d_out = 1;
  int mode = 0;    // ops/propagate.MODE_IDS: ts1, tsinf, expectation, fixed
  int reward = 0;  // rewards::Kind (builtin_rewards.h, ops/contract.RewardKind); no callbacks
  bool return_states = true;
  std::vector<int64_t> members;  // member slots (fixed: [member])
  // Model input features (ops/features.py ObsFeatures.table): column c of features(s) is
  // feat_kind[c] (0 value, 1 sin, 2 cos) of s[feat_src[c]]; both empty: features(s) = s.
  std::vector<int64_t> feat_src;   // [F]
  std::vector<int64_t> feat_kind;  // [F]
  int64_t num_members_all = 1;   // E, for the non-finite report
  uint64_t seed = 0, offset = 0;
  float dt = 0.0f;                // the built-in reward's control step (Reward.dt)
  uintptr_t obs = 0;              // [N, D]
  uintptr_t actions = 0;          // [N, P, H, A] (0 with a policy)
  uintptr_t order = 0;            // [N P K] int64 visiting order of particles, or 0
  uintptr_t states = 0;           // [N P K, H + 1, D] when return_states
  uintptr_t rewards = 0;          // [N P K, H] when return_states and a reward
  uintptr_t row_returns = 0;      // [N P K] sum_t r_t when a reward
  uintptr_t taken = 0;            // [N P K, H, A] with a policy
  uintptr_t bad = 0;              // [1] min over non-finite (t, row, member) keys, set to
                                  // NO_NON_FINITE (ops/contract.py) by the caller
};

// kind: 0 uint32, 1 uniform (float), 2 normal (float); out [n].
void philox_fill(int kind, uintptr_t out, int64_t n, uint64_t seed, uint64_t offset,
                 uintptr_t stream);

// x [E, B, d_0] -> out [E, B, d_L], or out = mean and logvar [E, B, d_L / 2].
void ensemble_mlp(const MLPDesc& mlp, uintptr_t x, int64_t batch, uintptr_t out,
                  uintptr_t logvar, uintptr_t stream);

// The whole horizon in one launch; policy may be null.
void propagate(const MLPDesc& model, const MLPDesc* policy, const PropagateDesc& desc,
               uintptr_t stream);

// CEM step: samples [N, P, HA], returns [N, P], mean / var [N, HA] ->
// new_mean / new_var / best [N, HA], elites [N, K] int64, best_return [N], converged [N] u8.
void cem_update(uintptr_t samples, uintptr_t returns, uintptr_t mean, uintptr_t var, int64_t n,
                int64_t p, int64_t ha, int64_t num_elites, double alpha, double epsilon,
                uintptr_t new_mean, uintptr_t new_var, uintptr_t elites, uintptr_t best,
                uintptr_t best_return, uintptr_t converged, uintptr_t stream);

// MPPI step: samples [N, P, HA], returns [N, P] -> mean / var [N, HA], weights [N, P].
void mppi_update(uintptr_t samples, uintptr_t returns, int64_t n, int64_t p, int64_t ha,
                 double temperature, uintptr_t mean, uintptr_t var, uintptr_t weights,
                 uintptr_t stream);

// PETS truncated normal: mean / var [N, H, A], lower / upper [A] -> out [N, P, H, A].
void truncated_normal(uintptr_t mean, uintptr_t var, uintptr_t lower, uintptr_t upper, int64_t n,
                      int64_t p, int64_t h, int64_t a, uint64_t seed, uint64_t offset,
                      uintptr_t out, uintptr_t stream);

// Number of CUDA devices the runtime sees (0 without a driver; never throws).
int device_count();

}  // namespace mbrl_fast::cuda
