// Particle propagation for the whole horizon in one launch (ops/propagate.py is the
// specification). One block owns a tile of kTM particles for all H steps; their
// states, actions and deltas live in shared memory next to the MLP's activation
// slots (csrc/cuda/mlp_block.cuh). Per step the block runs the MLP once per member
// slot that one of its particles uses (__syncthreads_or over the tile): with tsinf the
// Python side passes the particles sorted by drawn member, so a tile almost always
// needs one member; ts1 pays up to E' passes. Noise comes from csrc/include/philox.h
// with the reference's counters (eps: offset, members: offset + 1, policy: offset + 2).
// The model reads concat(features(s), a) (ops/features.py; the feature table travels in
// the kernel parameters); the policy in the loop reads the raw state.
#include <algorithm>
#include <cstdint>

#include "builtin_rewards.h"
#include "cuda/mlp_block.cuh"
#include "philox.h"

namespace mbrl_fast::cuda {
namespace {

constexpr int kMaxFeatures = 512;  // F: the feature table lives in the kernel parameters
constexpr int kFeatValue = 0, kFeatSin = 1, kFeatCos = 2;

struct PropArgs {
  const float* obs;       // [N, D]
  const float* actions;   // [N, P, H, A]
  const int64_t* order;   // [rows] or null
  float* states;          // [rows, H + 1, D]
  float* rewards;         // [rows, H]
  float* row_returns;     // [rows]
  float* taken;           // [rows, H, A]
  unsigned long long* bad;  // [1] initialised to ops/contract.NO_NON_FINITE
  int64_t p, k, h, d, a, d_out, rows, num_members_all;
  int mode, reward, return_states, num_members, has_policy;
  int64_t members[kMaxMembers];
  uint64_t seed, offset;
  float dt;
  int f;                              // feature columns F; 0: features(s) = s
  int16_t feat_src[kMaxFeatures];     // [F] state index of column c
  int8_t feat_kind[kMaxFeatures];     // [F] kFeatValue / kFeatSin / kFeatCos
};
// Kernel parameters (MLPArgs x 2, PropArgs, ld) within the 4 KiB every arch takes.
static_assert(2 * sizeof(MLPArgs) + sizeof(PropArgs) + sizeof(int) <= 4096,
              "propagate_kernel parameters exceed 4 KiB");

constexpr int kTs1 = 0, kTsInf = 1, kExpectation = 2;

__device__ __forceinline__ int draw_member(const PropArgs& pa, int64_t i) {
  return static_cast<int>(
      uint32_to_randint(philox_uint32(pa.seed, pa.offset + 1, static_cast<uint64_t>(i)),
                        static_cast<uint32_t>(pa.num_members)));
}

// Column c of features(s), s the particle's state [D]. sin / cos in double precision:
// --use_fast_math makes sinf / cosf the __sinf / __cosf intrinsics, accurate (2^-21.4 abs)
// only in [-pi, pi], and an angle drifts past that within a rollout; one double sin per
// angle column per step is noise next to the MLP.
__device__ __forceinline__ float feature(const PropArgs& pa, const float* s, int c) {
  const float x = s[pa.feat_src[c]];
  switch (pa.feat_kind[c]) {
    case kFeatSin: return static_cast<float>(sin(static_cast<double>(x)));
    case kFeatCos: return static_cast<float>(cos(static_cast<double>(x)));
    default: return x;
  }
}

__global__ void __launch_bounds__(kThreads)
propagate_kernel(MLPArgs model, MLPArgs policy, PropArgs pa, int ld) {
  extern __shared__ float smem[];
  int64_t* rowid = reinterpret_cast<int64_t*>(smem + 3 * kTM * ld + kKC * kNC);  // [kTM], -1: none
  int* draw = reinterpret_cast<int*>(rowid + kTM);                               // [kTM]
  float* S = reinterpret_cast<float*>(draw + kTM);                               // [kTM, D]
  float* act = S + kTM * pa.d;                                                   // [kTM, A]
  float* delta = act + kTM * pa.a;                                               // [kTM, D_out]
  float* total = delta + kTM * pa.d_out;                                         // [kTM]
  const int tid = threadIdx.x;
  const int d = static_cast<int>(pa.d), a = static_cast<int>(pa.a);
  const int d_out = static_cast<int>(pa.d_out);
  const int f = pa.f ? pa.f : d;  // columns of features(s)
  const int64_t H = pa.h;
  if (tid < kTM) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * kTM + tid;
    const int64_t row = idx < pa.rows ? (pa.order ? pa.order[idx] : idx) : -1;
    rowid[tid] = row;
    total[tid] = 0.0f;
    draw[tid] = (pa.mode == kTsInf && row >= 0) ? draw_member(pa, row) : 0;
  }
  __syncthreads();
  for (int i = tid; i < kTM * d; i += kThreads) {
    const int r = i / d, j = i % d;
    const int64_t row = rowid[r];
    S[i] = row >= 0 ? pa.obs[row / (pa.p * pa.k) * d + j] : 0.0f;
    if (row >= 0 && pa.return_states) pa.states[row * (H + 1) * d + j] = S[i];
  }
  for (int64_t t = 0; t < H; ++t) {
    if (pa.mode == kTs1 && tid < kTM && rowid[tid] >= 0) draw[tid] = draw_member(pa, rowid[tid] * H + t);
    __syncthreads();
    // ---- action ----
    if (pa.has_policy) {
      for (int i = tid; i < kTM * d; i += kThreads) {
        const int r = i / d, j = i % d;
        smem[r * ld + j] = policy.in_mean ? (S[i] - policy.in_mean[j]) / policy.in_std[j] : S[i];
      }
      const float* y = mlp_block(policy, 0, smem, ld);
      for (int i = tid; i < kTM * a; i += kThreads) {
        const int r = i / a, j = i % a;
        const int64_t row = rowid[r];
        if (row < 0) { act[i] = 0.0f; continue; }
        const float lv = soft_bound(y[r * ld + a + j], policy.max_lv[j], policy.min_lv[j]);
        const float eps = philox_normal(pa.seed, pa.offset + 2, static_cast<uint64_t>((row * H + t) * a + j));
        act[i] = tanhf(y[r * ld + j] + expf(0.5f * lv) * eps);
        pa.taken[(row * H + t) * a + j] = act[i];
      }
    } else {
      for (int i = tid; i < kTM * a; i += kThreads) {
        const int r = i / a, j = i % a;
        const int64_t row = rowid[r];
        act[i] = row >= 0 ? pa.actions[((row / pa.k) * H + t) * a + j] : 0.0f;
      }
    }
    __syncthreads();
    // ---- model input z = normalize(concat(features(s), a)) in slot 0; zero the deltas ----
    for (int i = tid; i < kTM * (f + a); i += kThreads) {
      const int r = i / (f + a), j = i % (f + a);
      float v = j >= f ? act[r * a + j - f] : pa.f ? feature(pa, S + r * d, j) : S[r * d + j];
      if (model.in_mean) v = (v - model.in_mean[j]) / model.in_std[j];
      smem[r * ld + j] = v;
    }
    for (int i = tid; i < kTM * d_out; i += kThreads) delta[i] = 0.0f;
    // ---- one MLP pass per member slot in use ----
    for (int slot = 0; slot < pa.num_members; ++slot) {
      const bool mine = tid < kTM && rowid[tid] >= 0 && (pa.mode == kExpectation || draw[tid] == slot);
      if (!__syncthreads_or(mine)) continue;
      const float* y = mlp_block(model, pa.members[slot], smem, ld);
      for (int i = tid; i < kTM * d_out; i += kThreads) {
        const int r = i / d_out, j = i % d_out;
        const int64_t row = rowid[r];
        if (row < 0) continue;
        if (pa.mode == kExpectation) {
          delta[i] += y[r * ld + j];
        } else if (draw[r] == slot) {
          const float lv = soft_bound(y[r * ld + d_out + j], model.max_lv[j], model.min_lv[j]);
          const float eps = philox_normal(pa.seed, pa.offset, static_cast<uint64_t>((row * H + t) * d_out + j));
          delta[i] = y[r * ld + j] + expf(0.5f * lv) * eps;
        }
      }
    }
    __syncthreads();
    // ---- per particle: next state, non-finite check, reward ----
    if (tid < kTM && rowid[tid] >= 0) {
      const int64_t row = rowid[tid];
      float x0 = S[tid * d], x1 = x0;
      bool finite = true;
      for (int j = 0; j < d; ++j) {
        const float dj = pa.mode == kExpectation ? delta[tid * d_out + j] / pa.num_members
                                                 : delta[tid * d_out + j];
        const float nx = S[tid * d + j] + dj;
        finite = finite && isfinite(nx);
        if (j == 0) x1 = nx;
        S[tid * d + j] = nx;
        if (pa.return_states) pa.states[(row * (H + 1) + t + 1) * d + j] = nx;
      }
      if (!finite) {
        const int64_t mem = pa.mode == kExpectation ? -1 : pa.members[draw[tid]];
        const int64_t key = (t * pa.rows + row) * (pa.num_members_all + 1) + mem + 1;
        atomicMin(pa.bad, static_cast<unsigned long long>(key));
      }
      float rew = 0.0f;
      if (pa.reward == rewards::kModel) {
        rew = pa.mode == kExpectation ? delta[tid * d_out + d] / pa.num_members
                                      : delta[tid * d_out + d];
      } else if (pa.reward == rewards::kHalfCheetah) {
        float sq = 0.0f;
        for (int j = 0; j < a; ++j) sq += act[tid * a + j] * act[tid * a + j];
        rew = rewards::halfcheetah(x0, x1, sq, pa.dt);
      }
      total[tid] += rew;
      if (pa.reward && pa.return_states) pa.rewards[row * H + t] = rew;
    }
  }
  if (pa.reward && tid < kTM && rowid[tid] >= 0) pa.row_returns[rowid[tid]] = total[tid];
}

// Copies the feature table into the kernel parameters, checking it.
void set_features(const PropagateDesc& desc, PropArgs& pa) {
  const size_t f = desc.feat_src.size();
  if (desc.feat_kind.size() != f) {
    throw std::invalid_argument("propagate: feat_src and feat_kind must have one entry per column");
  }
  if (f > static_cast<size_t>(kMaxFeatures)) {
    throw std::invalid_argument("propagate: the CUDA kernel takes at most " +
                                std::to_string(kMaxFeatures) + " feature columns, got F = " +
                                std::to_string(f) + " (params.obs_features); use the triton backend");
  }
  for (size_t c = 0; c < f; ++c) {
    const int64_t src = desc.feat_src[c], kind = desc.feat_kind[c];
    if (src < 0 || src >= desc.d || src > INT16_MAX || kind < kFeatValue || kind > kFeatCos) {
      throw std::invalid_argument("propagate: feature table entry " + std::to_string(c) +
                                  " out of range (src " + std::to_string(src) + ", kind " +
                                  std::to_string(kind) + ")");
    }
    pa.feat_src[c] = static_cast<int16_t>(src);
    pa.feat_kind[c] = static_cast<int8_t>(kind);
  }
  pa.f = static_cast<int>(f);
}

}  // namespace

void propagate(const MLPDesc& model, const MLPDesc* policy, const PropagateDesc& desc,
               uintptr_t stream) {
  const MLPArgs m = to_args(model);
  const MLPArgs pol = policy ? to_args(*policy) : m;
  if (desc.members.empty() || desc.members.size() > static_cast<size_t>(kMaxMembers)) {
    throw std::invalid_argument("propagate: the CUDA kernel takes 1.." +
                                std::to_string(kMaxMembers) + " member slots");
  }
  if (desc.reward != rewards::kNone && desc.reward != rewards::kModel &&
      desc.reward != rewards::kHalfCheetah) {
    throw std::invalid_argument("propagate: the CUDA kernel fuses rewards none, model and "
                                "halfcheetah, got reward kind " + std::to_string(desc.reward));
  }
  if (desc.reward == rewards::kHalfCheetah && !(desc.dt > 0.0f)) {
    throw std::invalid_argument("propagate: the halfcheetah reward needs dt > 0");
  }
  PropArgs pa{};
  set_features(desc, pa);
  if (model.sizes.front() != (pa.f ? pa.f : desc.d) + desc.a) {
    throw std::invalid_argument("propagate: model input width must be F + A (F = D without "
                                "features), got " + std::to_string(model.sizes.front()));
  }
  pa.obs = reinterpret_cast<const float*>(desc.obs);
  pa.actions = reinterpret_cast<const float*>(desc.actions);
  pa.order = reinterpret_cast<const int64_t*>(desc.order);
  pa.states = reinterpret_cast<float*>(desc.states);
  pa.rewards = reinterpret_cast<float*>(desc.rewards);
  pa.row_returns = reinterpret_cast<float*>(desc.row_returns);
  pa.taken = reinterpret_cast<float*>(desc.taken);
  pa.bad = reinterpret_cast<unsigned long long*>(desc.bad);
  pa.p = desc.p; pa.k = desc.k; pa.h = desc.h; pa.d = desc.d; pa.a = desc.a; pa.d_out = desc.d_out;
  pa.rows = desc.n * desc.p * desc.k;
  pa.num_members_all = desc.num_members_all;
  pa.mode = desc.mode;
  pa.reward = desc.reward;
  pa.return_states = desc.return_states ? 1 : 0;
  pa.num_members = static_cast<int>(desc.members.size());
  pa.has_policy = policy != nullptr;
  for (size_t i = 0; i < desc.members.size(); ++i) pa.members[i] = desc.members[i];
  pa.seed = desc.seed;
  pa.offset = desc.offset;
  pa.dt = desc.dt;
  int ld = slot_ld(model);
  if (policy) ld = std::max(ld, slot_ld(*policy));
  const size_t smem = block_smem_bytes(ld) + kTM * (sizeof(int64_t) + sizeof(int)) +
                      sizeof(float) * kTM * (desc.d + desc.a + desc.d_out + 1);
  set_smem(propagate_kernel, smem);
  const int64_t blocks = (pa.rows + kTM - 1) / kTM;
  propagate_kernel<<<static_cast<unsigned>(blocks), kThreads, smem, as_stream(stream)>>>(m, pol, pa, ld);
  check(cudaGetLastError(), "propagate launch");
}

}  // namespace mbrl_fast::cuda
