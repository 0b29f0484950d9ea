// DADS's intrinsic reward: the (L + 1) rows of a transition (its own skill, then its L prior
// samples) are consecutive rows of one long batch of M (L + 1) rows; tiles of kTileRows of
// them go through q with the shared tile forward (mlp_tile.h: AVX-512 / AVX512-BF16 or
// portable), and each row's Gaussian log-density is taken from the tile's output while it
// is in cache. A second pass turns every transition's L + 1 log-densities into its reward
// with a log-sum-exp. Nothing of size M (L + 1) x width is ever stored: only log_q.
// When q reads the skill only and the prior samples are shared, M + L passes suffice
// (skill_reward_shared).
#include "cpu/skill_reward.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/mlp_tile.h"

namespace mbrl_fast::cpu {

namespace {

constexpr double kLog2Pi = 1.8378770664093453;

void check_args(const MLPView& v, const SkillRewardArgs& a) {
  check_view(v);
  auto bad = [](const std::string& what) { throw std::invalid_argument("skill_reward: " + what); };
  if (a.m < 1 || a.l < 2 || a.z < 1 || a.f < 0 || a.p < 1) bad("need M >= 1, L >= 2, Z >= 1, P >= 1");
  if (v.num_members != 1) bad("q must have one member");
  if (v.in_features() != a.f + a.z) bad("q's input width must be F + Z");
  if (v.out_features() != (v.gaussian() ? 2 * a.p : a.p)) bad("q's output width must be P (2P with a Gaussian head)");
  if (!a.target || !a.skill || !a.prior || !a.log_q || !a.reward || (a.f > 0 && !a.x)) bad("missing buffer");
}

// log N(t; mu, exp(lv)) of one row of q's output y = [mu, (lv)], without the constant.
inline float half_sq(const float* y, const float* t, int64_t p, bool gaussian) {
  float sum = 0.f;
  if (gaussian) {
    const float* lv = y + p;
    for (int64_t j = 0; j < p; ++j) {
      const float d = t[j] - y[j];
      sum += d * d * std::exp(-lv[j]) + lv[j];
    }
  } else {
    for (int64_t j = 0; j < p; ++j) {
      const float d = t[j] - y[j];
      sum += d * d;
    }
  }
  return -0.5f * sum;
}

// reward_m = log q(skill) - logsumexp(log q over the denominator) + log(its size)
void rewards_from_log_q(const SkillRewardArgs& a) {
  const int64_t per = a.l + 1, first = a.include_skill ? 0 : 1;
  const double log_count = std::log(static_cast<double>(per - first));
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < a.m; ++m) {
    const float* lq = a.log_q + m * per;
    float top = lq[first];
    for (int64_t i = first + 1; i < per; ++i) top = std::max(top, lq[i]);
    double s = 0.0;
    for (int64_t i = first; i < per; ++i) s += std::exp(static_cast<double>(lq[i] - top));
    a.reward[m] = static_cast<float>(static_cast<double>(lq[0]) - (top + std::log(s)) + log_count);
  }
}

// q reads the skill only (F = 0) and every transition shares the prior samples: q's output
// depends on the skill alone, so M + L forward passes give all M (L + 1) log-densities
// (the same numbers as the general path, M (L + 1) / (M + L) times fewer passes: ~1/500
// of the work at M = 2000, L = 500).
void skill_reward_shared(const MLPView& v, const SkillRewardArgs& a, TileForwardFn forward,
                         int head, float constant) {
  const int64_t rows_all = a.m + a.l, dl = v.out_features(), per = a.l + 1;
  const int64_t tiles = (rows_all + kTileRows - 1) / kTileRows;
  std::vector<float> y(rows_all * dl);  // [own skills M; prior L] x d_L
#pragma omp parallel
  {
    TileWorkspace ws(v);
    std::vector<float> in(kTileRows * a.z);
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t g0 = tile * kTileRows, rows = std::min(kTileRows, rows_all - g0);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t g = g0 + r;
        std::copy_n(g < a.m ? a.skill + g * a.z : a.prior + (g - a.m) * a.z, a.z,
                    in.data() + r * a.z);
      }
      forward(v, 0, rows, in.data(), a.z, y.data() + g0 * dl, head, ws);
    }
#pragma omp for schedule(static)
    for (int64_t m = 0; m < a.m; ++m) {
      const float* t = a.target + m * a.p;
      float* lq = a.log_q + m * per;
      lq[0] = constant + half_sq(y.data() + m * dl, t, a.p, v.gaussian());
      for (int64_t i = 0; i < a.l; ++i)
        lq[1 + i] = constant + half_sq(y.data() + (a.m + i) * dl, t, a.p, v.gaussian());
    }
  }
}

}  // namespace

void skill_reward(const MLPView& v, const SkillRewardArgs& a, CpuIsa isa) {
  check_args(v, a);
  const TileForwardFn forward = select_tile_forward(v, isa);
  const bool gaussian = v.gaussian();
  const int head = gaussian ? kHeadLogvar : kHeadRaw;
  const float constant = static_cast<float>(-0.5 * static_cast<double>(a.p) * kLog2Pi);
  if (a.f == 0 && a.prior_shared) {
    skill_reward_shared(v, a, forward, head, constant);
    rewards_from_log_q(a);
    return;
  }
  const int64_t per = a.l + 1, total = a.m * per, width = a.f + a.z, dl = v.out_features();
  const int64_t tiles = (total + kTileRows - 1) / kTileRows;
#pragma omp parallel
  {
    TileWorkspace ws(v);
    std::vector<float> in(kTileRows * width), y(kTileRows * dl);
#pragma omp for schedule(static)
    for (int64_t tile = 0; tile < tiles; ++tile) {
      const int64_t g0 = tile * kTileRows, rows = std::min(kTileRows, total - g0);
      for (int64_t r = 0; r < rows; ++r) {  // [x_m, skill_m] or [x_m, prior_{m, i - 1}]
        const int64_t m = (g0 + r) / per, i = (g0 + r) % per;
        float* row = in.data() + r * width;
        std::copy_n(a.x + m * a.f, a.f, row);
        const float* z = i == 0 ? a.skill + m * a.z
                                : a.prior + ((a.prior_shared ? 0 : m * a.l) + i - 1) * a.z;
        std::copy_n(z, a.z, row + a.f);
      }
      forward(v, 0, rows, in.data(), width, y.data(), head, ws);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t m = (g0 + r) / per;
        a.log_q[g0 + r] = constant + half_sq(y.data() + r * dl, a.target + m * a.p, a.p, gaussian);
      }
    }
  }
  rewards_from_log_q(a);
}

}  // namespace mbrl_fast::cpu
