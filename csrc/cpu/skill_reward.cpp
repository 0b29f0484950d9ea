// DADS's intrinsic reward: the (L + 1) rows of a transition (its own skill, then its L prior
// samples) are consecutive rows of one long batch of M (L + 1) rows; tiles of kTileRows of
// them go through q with the shared tile forward (mlp_tile.h: AVX-512 / AVX512-BF16 or
// portable), and each row's Gaussian log-density is taken from the tile's output while it
// is in cache. A second pass turns every transition's L + 1 log-densities into its reward
// with a log-sum-exp. Nothing of size M (L + 1) x width is ever stored: only log_q.
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

}  // namespace

void skill_reward(const MLPView& v, const SkillRewardArgs& a, bool portable) {
  check_args(v, a);
  const TileForwardFn forward = select_tile_forward(v, portable);
  const int64_t per = a.l + 1, total = a.m * per, width = a.f + a.z, p = a.p;
  const int64_t tiles = (total + kTileRows - 1) / kTileRows;
  const bool gaussian = v.gaussian();
  const int head = gaussian ? kHeadLogvar : kHeadRaw;
  const float constant = static_cast<float>(-0.5 * static_cast<double>(p) * kLog2Pi);
#pragma omp parallel
  {
    TileWorkspace ws(v);
    std::vector<float> in(kTileRows * width), y(kTileRows * v.out_features());
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
        const float* mu = y.data() + r * v.out_features();
        const float* t = a.target + m * p;
        float sum = 0.f;
        if (gaussian) {
          const float* lv = mu + p;
          for (int64_t j = 0; j < p; ++j) {
            const float d = t[j] - mu[j];
            sum += d * d * std::exp(-lv[j]) + lv[j];
          }
        } else {
          for (int64_t j = 0; j < p; ++j) {
            const float d = t[j] - mu[j];
            sum += d * d;
          }
        }
        a.log_q[g0 + r] = constant - 0.5f * sum;
      }
    }
    // reward_m = log q(skill) - logsumexp(log q over the denominator) + log(its size)
    const int64_t first = a.include_skill ? 0 : 1;
    const double log_count = std::log(static_cast<double>(per - first));
#pragma omp for schedule(static)
    for (int64_t m = 0; m < a.m; ++m) {
      const float* lq = a.log_q + m * per;
      float top = lq[first];
      for (int64_t i = first + 1; i < per; ++i) top = std::max(top, lq[i]);
      double s = 0.0;
      for (int64_t i = first; i < per; ++i) s += std::exp(static_cast<double>(lq[i] - top));
      a.reward[m] = static_cast<float>(static_cast<double>(lq[0]) - (top + std::log(s)) + log_count);
    }
  }
}

}  // namespace mbrl_fast::cpu
