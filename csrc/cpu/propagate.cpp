// Propagate driver: every particle row r = (n * P + p) * K + k is rolled through
// the ensemble for H steps. The unit of work is a tile of <= kTileRows rows of ONE
// member through every layer (mlp_tile.h), so weights are reused across the tile.
//
//   tsinf / fixed: rows are sorted by member once; each tile runs its whole horizon
//                  (tile loop outside the time loop: its rows never change member).
//   expectation:   tiles of consecutive rows, every member per step, whole horizon.
//   ts1:           time loop outside: rows are re-bucketed by member every step.
#include "cpu/propagate.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
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

class Rollout {
 public:
  Rollout(const MLPView& v, const PropagateArgs& a, CpuIsa isa)
      : v_(v), a_(a), forward_(select_tile_forward(v, isa)), normal_blocks_(select_normal_blocks(isa)),
        rows_(a.n * a.p * a.k), din_((a.f ? a.f : a.d) + a.a), dl_(v.out_features()),
        row_return_(rows_, 0.f) {
    if (a.states)
      for (int64_t r = 0; r < rows_; ++r) std::copy_n(start_state(r), a.d, a.states + r * (a.h + 1) * a.d);
    else
      cur_.resize(rows_ * a.d);
  }

  NonFinite run() {
    if (a_.mode == kTs1) run_ts1();
    else run_tiles_over_horizon();
    if (a_.returns)
      for (int64_t s = 0; s < a_.n * a_.p; ++s) {
        float sum = 0.f;
        for (int64_t k = 0; k < a_.k; ++k) sum += row_return_[s * a_.k + k];
        a_.returns[s] = sum / static_cast<float>(a_.k);
      }
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
  // Multiply-adds of the rollout through one member per row and step.
  double macs() const { return v_.macs_per_row() * static_cast<double>(rows_ * a_.h); }

  const float* start_state(int64_t r) const { return a_.obs + (r / (a_.p * a_.k)) * a_.d; }

  // Where row r's state at step t lives: [D]. `slot` indexes cur_ and row_return_: the
  // row's position in the task order for the tile modes (each task's rows contiguous, so
  // two threads never write one cache line: with rows in row order they shared nearly
  // every line of the state each step), the row itself for ts1.
  float* state(int64_t r, int64_t slot, int64_t t) {
    return a_.states ? a_.states + (r * (a_.h + 1) + t) * a_.d : cur_.data() + slot * a_.d;
  }

  // Member of row r at step t (ts1 / tsinf / fixed): the docstring's randint(seed, offset + 1).
  int64_t member_of(int64_t r, int64_t t) const {
    if (a_.mode == kFixed) return a_.member;
    const uint64_t i = a_.mode == kTs1 ? static_cast<uint64_t>(r * a_.h + t) : static_cast<uint64_t>(r);
    const uint32_t x = philox_uint32(a_.seed, a_.offset + 1, i);
    return a_.members[uint32_to_randint(x, static_cast<uint32_t>(a_.num_members))];
  }

  // The rows grouped by member: order = rows sorted by member (stable), tasks = tiles of it.
  struct Grouping {
    std::vector<int64_t> order;
    std::vector<Task> tasks;
  };

  // Groups the rows by their member at step t (tsinf / fixed: t = 0 is every step).
  void group_by_member(int64_t t, Grouping& g) const {
    const int64_t E = v_.num_members;
    std::vector<int64_t> count(E + 1, 0), mem(rows_);
    for (int64_t r = 0; r < rows_; ++r) ++count[(mem[r] = member_of(r, t)) + 1];
    for (int64_t e = 0; e < E; ++e) count[e + 1] += count[e];
    g.tasks.clear();
    for (int64_t e = 0; e < E; ++e)
      for (int64_t b = count[e]; b < count[e + 1]; b += kTileRows)
        g.tasks.push_back({e, b, std::min(kTileRows, count[e + 1] - b)});
    g.order.resize(rows_);
    for (int64_t r = 0; r < rows_; ++r) g.order[count[mem[r]]++] = r;
  }

  void run_tiles_over_horizon() {
    Grouping g;
    if (a_.mode == kExpectation) {
      for (int64_t r = 0; r < rows_; ++r) g.order.push_back(r);
      for (int64_t b = 0; b < rows_; b += kTileRows) g.tasks.push_back({-1, b, std::min(kTileRows, rows_ - b)});
    } else {
      group_by_member(0, g);
    }
    const int64_t members = a_.mode == kExpectation ? a_.num_members : 1;
#pragma omp parallel num_threads(team_size(static_cast<int64_t>(g.tasks.size()), macs() * members))
    {
      Scratch s(v_, a_, din_, dl_);
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
  // step) instead of waiting on one thread. With a serial regroup and 3 barriers per
  // step, ts1 ran at 31 GFLOP per CPU-second on 2 threads vs 80 on 1; now 61
  // (P = 100, K = 20, H = 10, headline model, loaded 2-core machine, 2026-11-23).
  void run_ts1() {
    // Tasks per step: about one per member and tile.
    const int64_t tasks = (rows_ + kTileRows - 1) / kTileRows + v_.num_members - 1;
#pragma omp parallel num_threads(team_size(tasks, macs()))
    {
      Scratch s(v_, a_, din_, dl_);
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

  struct Scratch {
    Scratch(const MLPView& v, const PropagateArgs& a, int64_t din, int64_t dl)
        : ws(v), z(kTileRows * din), sa(a.f ? kTileRows * (a.d + a.a) : 0), y(kTileRows * dl),
          mu(kTileRows * a.d_out), delta(a.d_out),
          blocks(kTileRows * (a.d_out / 4 + 2)), normals(4 * blocks.size()), eps_at(kTileRows) {}
    TileWorkspace ws;
    std::vector<float> z;    // [tile, F + A] model input (features(s_t), a_t)
    std::vector<float> sa;   // [tile, D + A] (s_t, a_t) when features(s) != s; else z is it
    std::vector<float> y;    // [tile, 2 D_out] model output (mean, std) or raw
    std::vector<float> mu;   // [tile, D_out] member mean (expectation)
    std::vector<float> delta;       // [D_out]
    std::vector<uint64_t> blocks;   // Philox blocks holding the tile's eps
    std::vector<float> normals;     // [4 * blocks]
    std::vector<int64_t> eps_at;    // [tile] where row i's eps starts in normals
  };

  // One step of one tile; returns true when a state became non-finite. by_position: the
  // rows' slots are their positions in `order` (tile modes), else the rows (ts1).
  bool step_tile(const Task& task, const int64_t* order, int64_t t, Scratch& s, bool by_position) {
    const PropagateArgs& a = a_;
    const int64_t* rows = order + task.begin;
    const int64_t cnt = task.count, D = a.d, A = a.a, Do = a.d_out;
    float* sa = a.f ? s.sa.data() : s.z.data();  // rows of (s_t, a_t), stride D + A
    auto slot = [&](int64_t i) { return by_position ? task.begin + i : rows[i]; };
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t r = rows[i];
      std::copy_n(t == 0 ? start_state(r) : state(r, slot(i), t), D, sa + i * (D + A));
      std::copy_n(a.actions + ((r / a.k) * a.h + t) * A, A, sa + i * (D + A) + D);
    }
    if (a.f) build_features(sa, cnt, s.z.data());
    const bool expectation = task.member < 0;
    if (expectation) {
      std::fill_n(s.mu.data(), cnt * Do, 0.f);
      for (int64_t m = 0; m < a.num_members; ++m) {
        forward_(v_, a.members[m], cnt, s.z.data(), din_, s.y.data(), kHeadRaw, s.ws);
        for (int64_t i = 0; i < cnt; ++i)
          for (int64_t j = 0; j < Do; ++j) s.mu[i * Do + j] += s.y[i * dl_ + j];
      }
      const float inv = 1.f / static_cast<float>(a.num_members);
      for (int64_t i = 0; i < cnt * Do; ++i) s.mu[i] *= inv;
    } else {
      forward_(v_, task.member, cnt, s.z.data(), din_, s.y.data(), kHeadStd, s.ws);
    }
    if (!expectation) tile_noise(rows, cnt, t, s);
    int64_t bad_row = kNone;
    float* delta = s.delta.data();
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t r = rows[i];
      const float* st = sa + i * (D + A);  // s_t, then a_t
      if (expectation) {
        std::copy_n(s.mu.data() + i * Do, Do, delta);
      } else {
        const float* eps = s.normals.data() + s.eps_at[i];
        const float* y = s.y.data() + i * dl_;
        for (int64_t j = 0; j < Do; ++j) delta[j] = y[j] + y[Do + j] * eps[j];
      }
      float* nxt = state(r, slot(i), a.states ? t + 1 : t);
      bool finite = true;
      for (int64_t j = 0; j < D; ++j) {
        nxt[j] = st[j] + delta[j];
        finite &= std::isfinite(nxt[j]);
      }
      if (!finite) bad_row = std::min(bad_row, r);
      if (a.reward_kind == kRewardNone) continue;
      float rew;
      if (a.reward_kind == kRewardModel) {
        rew = delta[D];
      } else if (a.reward_kind == kRewardBuiltin) {  // kHalfCheetah
        float aa = 0.f;
        for (int64_t j = 0; j < A; ++j) aa += st[D + j] * st[D + j];
        rew = (nxt[0] - st[0]) / 0.05f - 0.1f * aa;
      } else {
        rew = a.callback(st, st + D, nxt, D, A);
      }
      if (a.rewards) a.rewards[r * a.h + t] = rew;
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

  // z [cnt, F + A] = (features(s_t), a_t) of sa [cnt, D + A] (ops/features.py).
  void build_features(const float* sa, int64_t cnt, float* z) const {
    const int64_t D = a_.d, A = a_.a, F = a_.f;
    for (int64_t i = 0; i < cnt; ++i) {
      const float* in = sa + i * (D + A);
      float* out = z + i * din_;
      for (int64_t c = 0; c < F; ++c) {
        const float v = in[a_.feat_src[c]];
        const int64_t kind = a_.feat_kind[c];
        out[c] = kind == kFeatSin ? std::sin(v) : kind == kFeatCos ? std::cos(v) : v;
      }
      std::copy_n(in + D, A, out + F);
    }
  }

  // eps of the tile's rows at step t: elements [(r H + t) D_out, + D_out) of normal(seed, offset),
  // computed block-wise for the whole tile (vectorized across blocks).
  void tile_noise(const int64_t* rows, int64_t cnt, int64_t t, Scratch& s) const {
    const int64_t Do = a_.d_out;
    int64_t nb = 0;
    for (int64_t i = 0; i < cnt; ++i) {
      const int64_t first = (rows[i] * a_.h + t) * Do;
      s.eps_at[i] = 4 * nb + (first & 3);
      for (int64_t b = first >> 2; b <= (first + Do - 1) >> 2; ++b) s.blocks[nb++] = static_cast<uint64_t>(b);
    }
    normal_blocks_(a_.seed, a_.offset, s.blocks.data(), nb, s.normals.data());
  }

  const MLPView& v_;
  const PropagateArgs& a_;
  const TileForwardFn forward_;
  const NormalBlocksFn normal_blocks_;
  const int64_t rows_, din_, dl_;
  std::vector<float> cur_;          // [rows, D] current states (when states is null)
  std::vector<float> row_return_;   // [rows] sum over steps of the reward
  int64_t bad_t_ = kNone, bad_row_ = kNone;   // first non-finite (step, row)
  std::atomic<int64_t> bad_t_seen_{kNone};    // lets other tiles stop early
};

}  // namespace

NonFinite propagate(const MLPView& v, const PropagateArgs& a, CpuIsa isa) {
  check_view(v);
  auto bad = [](const std::string& what) { throw std::invalid_argument("propagate: " + what); };
  if (!v.gaussian()) bad("params need a Gaussian head");
  if (a.n < 1 || a.p < 1 || a.k < 1 || a.h < 1 || a.d < 1 || a.a < 1) bad("sizes must be >= 1");
  if (a.f < 0 || (a.f > 0 && (!a.feat_src || !a.feat_kind))) bad("bad feature table");
  for (int64_t c = 0; c < a.f; ++c)
    if (a.feat_src[c] < 0 || a.feat_src[c] >= a.d || a.feat_kind[c] < kFeatValue || a.feat_kind[c] > kFeatCos)
      bad("feature table entry out of range");
  if (v.in_features() != (a.f ? a.f : a.d) + a.a) bad("model input width must be F + A (F = D without features)");
  if (v.out_features() != 2 * a.d_out || (a.d_out != a.d && a.d_out != a.d + 1))
    bad("model output must be a Gaussian head over D or D + 1");
  if (a.mode < kTs1 || a.mode > kFixed) bad("unknown mode id " + std::to_string(a.mode));
  if (a.mode == kFixed && (a.member < 0 || a.member >= v.num_members)) bad("member out of range");
  if (a.num_members < 1 || a.num_members > (int64_t{1} << 31)) bad("members must be non-empty");
  for (int64_t i = 0; i < a.num_members; ++i)
    if (a.members[i] < 0 || a.members[i] >= v.num_members) bad("members out of range");
  if (a.reward_kind == kRewardModel && a.d_out != a.d + 1) bad("reward 'model' needs D + 1 outputs");
  if (a.reward_kind == kRewardBuiltin && a.builtin_id != kHalfCheetah)
    bad("unknown built-in reward id " + std::to_string(a.builtin_id));
  if (a.reward_kind == kRewardCallback && a.callback == nullptr) bad("null reward callback");
  if (a.reward_kind < kRewardNone || a.reward_kind > kRewardCallback) bad("unknown reward kind");
  if (a.returns && a.reward_kind == kRewardNone) bad("returns need a reward");
  return Rollout(v, a, isa).run();
}

}  // namespace mbrl_fast::cpu
