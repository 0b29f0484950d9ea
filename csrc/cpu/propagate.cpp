// Propagate driver: every particle row r = (n * P + p) * K + k is rolled through
// the ensemble for H steps. The unit of work is a tile of <= kTileRows rows of ONE
// member through every layer (mlp_tile.h), so weights are reused across the tile.
//
//   tsinf / fixed: rows are sorted by member once; each tile runs its whole horizon
//                  (tile loop outside the time loop: its rows never change member).
//   expectation:   tiles of consecutive rows, every member per step, whole horizon.
//   ts1:           time loop outside: rows are re-bucketed by member every step.
//
// Policy in the loop (MBPO branched rollouts): each step of a tile first runs the policy
// (a one-member MLP, its own activation and Gaussian head) on the tile's states, draws
// eps_pi and forms a_t = tanh(mu + std * eps_pi), then runs the model on (s_t, a_t): the
// same tile, the same workspace discipline, one more forward per step.
#include "cpu/propagate.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/mlp_tile.h"
#include "cpu/philox_blocks.h"
#include "cpu_features.h"
#include "philox.h"

namespace mbrl_fast::cpu {

namespace {

constexpr int64_t kNone = std::numeric_limits<int64_t>::max();

struct Task {
  int64_t member, begin, count;  // rows order[begin .. begin + count) of one member
};

template <typename T>
T* address(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

class Rollout {
 public:
  Rollout(const MLPView& v, const MLPView* pi, const PropagateDesc& a, CpuIsa isa)
      : v_(v), pi_(pi), a_(a), forward_(select_tile_forward(v, isa)),
        policy_forward_(pi ? select_tile_forward(*pi, isa) : nullptr),
        normal_blocks_(select_normal_blocks(isa)), f_(static_cast<int64_t>(a.feat_src.size())),
        rows_(a.n * a.p * a.k), din_((f_ ? f_ : a.d) + a.a), dl_(v.out_features()),
        obs_(address<const float>(a.obs)), actions_(address<const float>(a.actions)),
        states_(address<float>(a.states)), rewards_(address<float>(a.rewards)),
        taken_(address<float>(a.taken)), callback_(reinterpret_cast<RewardCallback>(a.callback)),
        row_return_(rows_, 0.f) {
    if (states_)
      for (int64_t r = 0; r < rows_; ++r) std::copy_n(start_state(r), a.d, states_ + r * (a.h + 1) * a.d);
    else
      cur_.resize(rows_ * a.d);
  }

  NonFinite run() {
    if (a_.mode == kTs1) run_ts1();
    else run_tiles_over_horizon();
    if (a_.row_returns) std::copy(row_return_.begin(), row_return_.end(), address<float>(a_.row_returns));
    NonFinite bad;
    if (bad_t_ == kNone) return bad;
    bad.t = bad_t_;
    bad.member = a_.mode == kExpectation ? -1 : member_of(bad_row_, bad_t_);
    bad.n = bad_row_ / (a_.p * a_.k);
    bad.p = (bad_row_ / a_.k) % a_.p;
    bad.k = bad_row_ % a_.k;
    return bad;
  }

 private:
  // Multiply-adds of the rollout: `passes` members (and the policy) per row and step.
  double macs(int64_t passes = 1) const {
    const double per_row = v_.macs_per_row() * static_cast<double>(passes) + (pi_ ? pi_->macs_per_row() : 0.);
    return per_row * static_cast<double>(rows_ * a_.h);
  }

  const float* start_state(int64_t r) const { return obs_ + (r / (a_.p * a_.k)) * a_.d; }

  // Where row r's state at step t lives: [D]. `slot` indexes cur_ and row_return_: the
  // row's position in the task order for the tile modes (each task's rows contiguous, so
  // two threads never write one cache line: with rows in row order they shared nearly
  // every line of the state each step), the row itself for ts1.
  float* state(int64_t r, int64_t slot, int64_t t) {
    return states_ ? states_ + (r * (a_.h + 1) + t) * a_.d : cur_.data() + slot * a_.d;
  }

  // Member of row r at step t (ts1 / tsinf / fixed): the docstring's randint(seed, offset + 1).
  int64_t member_of(int64_t r, int64_t t) const {
    if (a_.mode == kFixed) return a_.members[0];
    const uint64_t i = a_.mode == kTs1 ? static_cast<uint64_t>(r * a_.h + t) : static_cast<uint64_t>(r);
    const uint32_t x = philox_uint32(a_.seed, a_.offset + 1, i);
    return a_.members[uint32_to_randint(x, static_cast<uint32_t>(a_.members.size()))];
  }

  // The rows grouped by member: order = rows sorted by member (stable), tasks = tiles of it.
  struct Grouping {
    std::vector<int64_t> order;
    std::vector<Task> tasks;
  };

  // Groups the rows by their member at step t (tsinf / fixed: t = 0 is every step), in
  // tiles of at most `tile` rows.
  void group_by_member(int64_t t, Grouping& g, int64_t tile = kTileRows) const {
    const int64_t E = v_.num_members;
    std::vector<int64_t> count(E + 1, 0), mem(rows_);
    for (int64_t r = 0; r < rows_; ++r) ++count[(mem[r] = member_of(r, t)) + 1];
    for (int64_t e = 0; e < E; ++e) count[e + 1] += count[e];
    g.tasks.clear();
    for (int64_t e = 0; e < E; ++e)
      for (int64_t b = count[e]; b < count[e + 1]; b += tile)
        g.tasks.push_back({e, b, std::min(tile, count[e + 1] - b)});
    g.order.resize(rows_);
    for (int64_t r = 0; r < rows_; ++r) g.order[count[mem[r]]++] = r;
  }

  // The tile modes' tasks: tiles of at most `tile` rows (of each member's rows, tsinf / fixed).
  void tile_tasks(Grouping& g, int64_t tile) const {
    if (a_.mode != kExpectation) return group_by_member(0, g, tile);
    g.order.resize(rows_);
    for (int64_t r = 0; r < rows_; ++r) g.order[r] = r;
    g.tasks.clear();
    for (int64_t b = 0; b < rows_; b += tile) g.tasks.push_back({-1, b, std::min(tile, rows_ - b)});
  }

  void run_tiles_over_horizon() {
    const int64_t passes = a_.mode == kExpectation ? static_cast<int64_t>(a_.members.size()) : 1;
    Grouping g;
    tile_tasks(g, kTileRows);
    // Fewer tiles than threads (a few dozen rows, such as one state's 50 candidates in the
    // skill planner): smaller tiles, so that every thread gets rows. Each row's samples
    // are indexed by the row, so the tiling does not change the result.
    const int64_t threads = omp_get_max_threads();
    if (static_cast<int64_t>(g.tasks.size()) < threads && macs(passes) >= kParallelMinMacs) {
      const int64_t per_thread = (rows_ + threads - 1) / threads;
      tile_tasks(g, (per_thread + kRowQuantum - 1) / kRowQuantum * kRowQuantum);
    }
#pragma omp parallel num_threads(team_size(static_cast<int64_t>(g.tasks.size()), macs(passes)))
    {
      Scratch s(v_, pi_, a_, din_, dl_);
#pragma omp for schedule(dynamic, 1)
      for (size_t i = 0; i < g.tasks.size(); ++i)
        for (int64_t t = 0; t < a_.h && t <= bad_t_seen_.load(std::memory_order_relaxed); ++t)
          if (step_tile(g.tasks[i], g.order.data(), t, s, true)) break;
    }
    std::vector<float> by_row(rows_);  // row_return_ from task order back to row order
    for (int64_t pos = 0; pos < rows_; ++pos) by_row[g.order[pos]] = row_return_[pos];
    row_return_.swap(by_row);
  }

  // One barrier per step: every thread regroups the rows itself (identical, ~1% of a
  // step) instead of waiting on one thread. A serial regroup with 3 barriers per step
  // halved ts1's GFLOP per CPU-second on 2 threads (31 vs 61 now; docs/measurements.md).
  void run_ts1() {
    // Tasks per step: about one per member and tile.
    const int64_t tasks = (rows_ + kTileRows - 1) / kTileRows + v_.num_members - 1;
#pragma omp parallel num_threads(team_size(tasks, macs()))
    {
      Scratch s(v_, pi_, a_, din_, dl_);
      Grouping g;
      for (int64_t t = 0; t < a_.h; ++t) {
        group_by_member(t, g);
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < g.tasks.size(); ++i) step_tile(g.tasks[i], g.order.data(), t, s, false);
        // After the barrier every thread sees the writes of step t; a fast thread may
        // already store t + 1, so test "<= t" (not "any") to keep all threads in step.
        if (bad_t_seen_.load() <= t) break;
      }
    }
  }

  // Philox normals of a tile's rows at one step: row i's draws start at normals[at[i]].
  struct TileNoise {
    explicit TileNoise(int64_t width)
        : blocks(kTileRows * (width / 4 + 2)), normals(4 * blocks.size()), at(kTileRows) {}
    std::vector<uint64_t> blocks;  // the Philox counter blocks holding the draws
    std::vector<float> normals;    // [4 * blocks]
    std::vector<int64_t> at;       // [tile]
  };

  struct Scratch {
    Scratch(const MLPView& v, const MLPView* pi, const PropagateDesc& a, int64_t din, int64_t dl)
        : ws(v), z(kTileRows * din), sa(a.feat_src.empty() ? 0 : kTileRows * (a.d + a.a)),
          y(kTileRows * dl), mu(kTileRows * a.d_out), delta(a.d_out), eps(a.d_out),
          pi_y(pi ? kTileRows * pi->out_features() : 0), eps_pi(pi ? a.a : 1) {
      if (pi) pi_ws.emplace(*pi);
    }
    TileWorkspace ws;
    std::optional<TileWorkspace> pi_ws;  // the policy's (its widths differ from the model's)
    std::vector<float> z;    // [tile, F + A] model input (features(s_t), a_t)
    std::vector<float> sa;   // [tile, D + A] (s_t, a_t) when features(s) != s; else z is it
    std::vector<float> y;    // [tile, 2 D_out] model output (mean, std) or raw
    std::vector<float> mu;   // [tile, D_out] member mean (expectation)
    std::vector<float> delta;  // [D_out]
    TileNoise eps;             // the model's noise, normal(seed, offset)
    std::vector<float> pi_y;   // [tile, 2 A] policy output (mean, std)
    TileNoise eps_pi;          // the policy's noise, normal(seed, offset + 2)
  };

  // One step of one tile; returns true when a state became non-finite. by_position: the
  // rows' slots are their positions in `order` (tile modes), else the rows (ts1).
  bool step_tile(const Task& task, const int64_t* order, int64_t t, Scratch& s, bool by_position) {
    const PropagateDesc& a = a_;
    const int64_t* rows = order + task.begin;
    const int64_t cnt = task.count, D = a.d, A = a.a, Do = a.d_out;
    float* sa = f_ ? s.sa.data() : s.z.data();  // rows of (s_t, a_t), stride D + A
    auto slot = [&](int64_t i) { return by_position ? task.begin + i : rows[i]; };
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t r = rows[i];
      std::copy_n(t == 0 ? start_state(r) : state(r, slot(i), t), D, sa + i * (D + A));
      if (!pi_) std::copy_n(actions_ + ((r / a.k) * a.h + t) * A, A, sa + i * (D + A) + D);
    }
    if (pi_) policy_actions(rows, cnt, t, sa, s);
    if (f_) build_features(sa, cnt, s.z.data());
    const bool expectation = task.member < 0;
    if (expectation) {
      std::fill_n(s.mu.data(), cnt * Do, 0.f);
      for (int64_t m : a.members) {
        forward_(v_, m, cnt, s.z.data(), din_, s.y.data(), kHeadRaw, s.ws);
        for (int64_t i = 0; i < cnt; ++i)
          for (int64_t j = 0; j < Do; ++j) s.mu[i * Do + j] += s.y[i * dl_ + j];
      }
      const float inv = 1.f / static_cast<float>(a.members.size());
      for (int64_t i = 0; i < cnt * Do; ++i) s.mu[i] *= inv;
    } else {
      forward_(v_, task.member, cnt, s.z.data(), din_, s.y.data(), kHeadStd, s.ws);
    }
    if (!expectation) tile_noise(rows, cnt, t, 0, Do, s.eps);
    int64_t bad_row = kNone;
    float* delta = s.delta.data();
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t r = rows[i];
      const float* st = sa + i * (D + A);  // s_t, then a_t
      if (expectation) {
        std::copy_n(s.mu.data() + i * Do, Do, delta);
      } else {
        const float* eps = s.eps.normals.data() + s.eps.at[i];
        const float* y = s.y.data() + i * dl_;
        for (int64_t j = 0; j < Do; ++j) delta[j] = y[j] + y[Do + j] * eps[j];
      }
      float* nxt = state(r, slot(i), states_ ? t + 1 : t);
      bool finite = true;
      for (int64_t j = 0; j < D; ++j) {
        nxt[j] = st[j] + delta[j];
        finite &= std::isfinite(nxt[j]);
      }
      if (!finite) bad_row = std::min(bad_row, r);
      if (a.reward == rewards::kNone) continue;
      float rew;
      if (a.reward == rewards::kModel) {
        rew = delta[D];
      } else if (a.reward == rewards::kHalfCheetah) {
        float aa = 0.f;
        for (int64_t j = 0; j < A; ++j) aa += st[D + j] * st[D + j];
        rew = rewards::halfcheetah(st[0], nxt[0], aa, a.dt);
      } else {
        rew = callback_(st, st + D, nxt, D, A);
      }
      if (rewards_) rewards_[r * a.h + t] = rew;
      row_return_[slot(i)] += rew;
    }
    if (bad_row == kNone) return false;
#pragma omp critical(mbrl_fast_propagate_bad)
    if (t < bad_t_ || (t == bad_t_ && bad_row < bad_row_)) {
      bad_t_ = t;
      bad_row_ = bad_row;
      bad_t_seen_.store(t);
    }
    return true;
  }

  // a_t = tanh(mu + std * eps_pi) of the policy on the tile's states (the first D columns
  // of sa's rows), into sa's action columns and `taken`; eps_pi of row r at step t:
  // elements [(r H + t) A, + A) of normal(seed, offset + 2).
  void policy_actions(const int64_t* rows, int64_t cnt, int64_t t, float* sa, Scratch& s) const {
    const int64_t D = a_.d, A = a_.a;
    policy_forward_(*pi_, 0, cnt, sa, D + A, s.pi_y.data(), kHeadStd, *s.pi_ws);
    tile_noise(rows, cnt, t, 2, A, s.eps_pi);
    for (int64_t i = 0; i < cnt; ++i) {
      const float* y = s.pi_y.data() + i * 2 * A;  // mean, std
      const float* eps = s.eps_pi.normals.data() + s.eps_pi.at[i];
      float* act = sa + i * (D + A) + D;
      for (int64_t j = 0; j < A; ++j) act[j] = std::tanh(y[j] + y[A + j] * eps[j]);
      if (taken_) std::copy_n(act, A, taken_ + (rows[i] * a_.h + t) * A);
    }
  }

  // z [cnt, F + A] = (features(s_t), a_t) of sa [cnt, D + A] (ops/features.py).
  void build_features(const float* sa, int64_t cnt, float* z) const {
    const int64_t D = a_.d, A = a_.a;
    for (int64_t i = 0; i < cnt; ++i) {
      const float* in = sa + i * (D + A);
      float* out = z + i * din_;
      for (int64_t c = 0; c < f_; ++c) {
        const float v = in[a_.feat_src[c]];
        const int64_t kind = a_.feat_kind[c];
        out[c] = kind == kFeatSin ? std::sin(v) : kind == kFeatCos ? std::cos(v) : v;
      }
      std::copy_n(in + D, A, out + f_);
    }
  }

  // The tile's draws at step t from stream normal(seed, offset + stream), `width` per row
  // and step: row r's are elements [(r H + t) width, + width), computed block-wise for the
  // whole tile (vectorized across blocks).
  void tile_noise(const int64_t* rows, int64_t cnt, int64_t t, uint64_t stream, int64_t width,
                  TileNoise& s) const {
    int64_t nb = 0;
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t first = (rows[i] * a_.h + t) * width;
      s.at[i] = 4 * nb + (first & 3);
      for (int64_t b = first >> 2; b <= (first + width - 1) >> 2; ++b) s.blocks[nb++] = static_cast<uint64_t>(b);
    }
    normal_blocks_(a_.seed, a_.offset + stream, s.blocks.data(), nb, s.normals.data());
  }

  const MLPView& v_;
  const MLPView* pi_;  // the policy in the loop, or null
  const PropagateDesc& a_;
  const TileForwardFn forward_, policy_forward_;
  const NormalBlocksFn normal_blocks_;
  const int64_t f_, rows_, din_, dl_;
  const float* obs_;
  const float* actions_;
  float *states_, *rewards_, *taken_;
  const RewardCallback callback_;
  std::vector<float> cur_;          // [rows, D] current states (when states is null)
  std::vector<float> row_return_;   // [rows] sum over steps of the reward
  int64_t bad_t_ = kNone, bad_row_ = kNone;   // first non-finite (step, row)
  std::atomic<int64_t> bad_t_seen_{kNone};    // lets other tiles stop early
};

}  // namespace

NonFinite propagate(const MLPDesc& model, const MLPDesc* policy, const PropagateDesc& a, CpuIsa isa) {
  auto bad = [](const std::string& what) { throw std::invalid_argument("propagate: " + what); };
  const MLPView v = make_mlp_view(model);
  if (!v.gaussian()) bad("params need a Gaussian head");
  if (a.n < 1 || a.p < 1 || a.k < 1 || a.h < 1 || a.d < 1 || a.a < 1) bad("sizes must be >= 1");
  const int64_t f = static_cast<int64_t>(a.feat_src.size());
  if (a.feat_kind.size() != a.feat_src.size()) bad("feat_src and feat_kind must have one entry per feature");
  for (int64_t c = 0; c < f; ++c)
    if (a.feat_src[c] < 0 || a.feat_src[c] >= a.d || a.feat_kind[c] < kFeatValue || a.feat_kind[c] > kFeatCos)
      bad("feature table entry out of range");
  if (v.in_features() != (f ? f : a.d) + a.a) bad("model input width must be F + A (F = D without features)");
  if (v.out_features() != 2 * a.d_out || (a.d_out != a.d && a.d_out != a.d + 1))
    bad("model output must be a Gaussian head over D or D + 1");
  if (a.mode < kTs1 || a.mode > kFixed) bad("unknown mode id " + std::to_string(a.mode));
  if (a.members.empty() || a.members.size() > (size_t{1} << 31)) bad("members must be non-empty");
  if (a.mode == kFixed && a.members.size() != 1) bad("mode fixed takes members = [member]");
  for (int64_t m : a.members)
    if (m < 0 || m >= v.num_members) bad("members out of range");
  if (a.reward < rewards::kNone || a.reward > rewards::kCallback) bad("unknown reward id " + std::to_string(a.reward));
  if (a.reward == rewards::kModel && a.d_out != a.d + 1) bad("reward 'model' needs D + 1 outputs");
  if (a.reward == rewards::kHalfCheetah && !(a.dt > 0.0f)) bad("the HalfCheetah reward needs dt > 0");
  if (a.reward == rewards::kCallback && a.callback == 0) bad("null reward callback");
  if (a.row_returns && a.reward == rewards::kNone) bad("returns need a reward");
  if (a.rewards && a.reward == rewards::kNone) bad("rewards need a reward");
  if (!a.obs) bad("obs is null");
  MLPView pi;
  if (policy) {
    pi = make_mlp_view(*policy);
    if (pi.num_members != 1 || !pi.gaussian() || pi.in_features() != a.d || pi.out_features() != 2 * a.a)
      bad("the policy must be one member with D inputs and a Gaussian head over A outputs");
    if (a.actions) bad("actions must be null with a policy in the loop");
  } else {
    if (!a.actions) bad("actions is null (and no policy)");
    if (a.taken) bad("taken needs a policy");
  }
  return Rollout(v, policy ? &pi : nullptr, a, isa).run();
}

}  // namespace mbrl_fast::cpu
