// mbrl_fast._C: the CPU kernels. Bindings only; no logic here.
// Every function takes raw pointers (as integers) to contiguous host buffers
// that the Python side (mbrl_fast/ops/*.py) has validated, and releases the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>

#include "cpu/elite_update.h"
#include "cpu/ensemble_mlp.h"
#include "cpu/mlp_tile.h"
#include "cpu/imagine.h"
#include "cpu/noise.h"
#include "cpu/propagate.h"
#include "cpu/skill_reward.h"
#include "cpu_features.h"

namespace py = pybind11;
using mbrl_fast::CpuIsa;
using mbrl_fast::checked_isa;

template <typename T>
static T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "mbrl-fast compiled CPU kernels (private; use mbrl_fast.ops)";
  using release = py::call_guard<py::gil_scoped_release>;

  // ---- runtime CPU features ------------------------------------------------
  // The ISA paths take an id (CpuIsa: 0 portable, 1 avx2, 2 avx512), checked against
  // the running CPU on every call (an unsupported one raises, never executes).
  m.def("cpu_has_avx2", &mbrl_fast::cpu_has_avx2);
  m.def("cpu_has_avx512", &mbrl_fast::cpu_has_avx512);
  m.def("cpu_has_avx512_bf16", &mbrl_fast::cpu_has_avx512_bf16);
  m.def("set_portable_baseline_only", [](bool on) { mbrl_fast::cpu::g_portable_baseline_only = on; },
        "Test / measurement hook: the portable path runs its x86-64 baseline build even where "
        "the CPU has AVX (the default uses the AVX build there).");
  m.def("cpu_isa_missing", [](int isa) {  // "" or e.g. "AVX512F, AVX512BW"
    if (isa < 0 || isa > static_cast<int>(CpuIsa::kAvx512))
      throw std::invalid_argument("unknown CPU kernel path id " + std::to_string(isa));
    return mbrl_fast::cpu_isa_missing(static_cast<CpuIsa>(isa));
  });

  // ---- noise -----------------------------------------------------------------
  m.def("philox_uint32", [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
    mbrl_fast::cpu::philox_uint32_fill(ptr<uint32_t>(out), n, seed, offset);
  }, release());
  m.def("philox_uniform", [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
    mbrl_fast::cpu::philox_uniform_fill(ptr<float>(out), n, seed, offset);
  }, release());
  m.def("philox_normal", [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset, int isa) {
    mbrl_fast::cpu::philox_normal_fill(ptr<float>(out), n, seed, offset, checked_isa(isa, "noise.normal"));
  }, release());

  // ---- ensemble_mlp ----------------------------------------------------------
  // MLP arguments, shared by ensemble_mlp and propagate (see make_mlp_view):
  // sizes, weights, biases, num_members, precision, activation, leaky_slope,
  // in_mean, in_std, max_logvar, min_logvar (addresses; 0 = absent).
  m.def("ensemble_mlp", [](const std::vector<int64_t>& sizes, const std::vector<uintptr_t>& weights,
                           const std::vector<uintptr_t>& biases, int64_t num_members, int precision,
                           int activation, float leaky_slope, uintptr_t in_mean, uintptr_t in_std,
                           uintptr_t max_logvar, uintptr_t min_logvar, uintptr_t x, int64_t batch,
                           uintptr_t out, uintptr_t out_logvar, int isa) {
    const auto view = mbrl_fast::cpu::make_mlp_view(sizes, weights, biases, num_members, precision, activation,
                                                     leaky_slope, in_mean, in_std, max_logvar, min_logvar);
    mbrl_fast::cpu::ensemble_mlp_forward(view, ptr<const float>(x), batch, ptr<float>(out),
                                         ptr<float>(out_logvar), checked_isa(isa, "ensemble_mlp"));
  }, release());

  // ---- propagate -------------------------------------------------------------
  // MLP arguments as for ensemble_mlp, then the PropagateArgs fields in order;
  // returns the first non-finite state (t, member, n, p, k), t = -1 when none.
  m.def("propagate", [](const std::vector<int64_t>& sizes, const std::vector<uintptr_t>& weights,
                        const std::vector<uintptr_t>& biases, int64_t num_members, int precision,
                        int activation, float leaky_slope, uintptr_t in_mean, uintptr_t in_std,
                        uintptr_t max_logvar, uintptr_t min_logvar, int64_t n, int64_t p, int64_t k,
                        int64_t h, int64_t d, int64_t a, int64_t d_out, int mode, int64_t member,
                        uintptr_t members, int64_t num_used, uint64_t seed, uint64_t offset,
                        int reward_kind, int builtin_id, uintptr_t callback, uintptr_t feat_src,
                        uintptr_t feat_kind, int64_t f, uintptr_t obs,
                        uintptr_t actions, uintptr_t states, uintptr_t rewards, uintptr_t returns,
                        int isa) {
    const auto view = mbrl_fast::cpu::make_mlp_view(sizes, weights, biases, num_members, precision, activation,
                                                     leaky_slope, in_mean, in_std, max_logvar, min_logvar);
    mbrl_fast::cpu::PropagateArgs args;
    args.n = n; args.p = p; args.k = k; args.h = h; args.d = d; args.a = a; args.d_out = d_out;
    args.mode = mode; args.member = member;
    args.members = ptr<const int64_t>(members); args.num_members = num_used;
    args.seed = seed; args.offset = offset;
    args.reward_kind = reward_kind; args.builtin_id = builtin_id;
    args.callback = reinterpret_cast<mbrl_fast::RewardCallback>(callback);
    args.feat_src = ptr<const int64_t>(feat_src); args.feat_kind = ptr<const int64_t>(feat_kind);
    args.f = f;
    args.obs = ptr<const float>(obs); args.actions = ptr<const float>(actions);
    args.states = ptr<float>(states); args.rewards = ptr<float>(rewards); args.returns = ptr<float>(returns);
    const auto bad = mbrl_fast::cpu::propagate(view, args, checked_isa(isa, "propagate"));
    return std::make_tuple(bad.t, bad.member, bad.n, bad.p, bad.k);
  }, release());

  // ---- elite_update ----------------------------------------------------------
  m.def("cem_update", [](uintptr_t samples, uintptr_t returns, uintptr_t mean, uintptr_t var,
                         int64_t n, int64_t p, int64_t ha, int64_t k, double alpha, double epsilon,
                         uintptr_t new_mean, uintptr_t new_var, uintptr_t elites, uintptr_t best,
                         uintptr_t best_return, uintptr_t converged) {
    mbrl_fast::cpu::cem_update(ptr<const float>(samples), ptr<const float>(returns),
                               ptr<const float>(mean), ptr<const float>(var), n, p, ha, k, alpha,
                               epsilon, ptr<float>(new_mean), ptr<float>(new_var),
                               ptr<int64_t>(elites), ptr<float>(best), ptr<float>(best_return),
                               ptr<uint8_t>(converged));
  }, release());
  m.def("mppi_update", [](uintptr_t samples, uintptr_t returns, int64_t n, int64_t p, int64_t ha,
                          double temperature, uintptr_t new_mean, uintptr_t new_var,
                          uintptr_t weights) {
    mbrl_fast::cpu::mppi_update(ptr<const float>(samples), ptr<const float>(returns), n, p, ha,
                                temperature, ptr<float>(new_mean), ptr<float>(new_var),
                                ptr<float>(weights));
  }, release());
  m.def("truncated_normal", [](uintptr_t mean, uintptr_t var, uintptr_t lower, uintptr_t upper,
                               int64_t n, int64_t p, int64_t h, int64_t a, uint64_t seed,
                               uint64_t offset, uintptr_t out) {
    mbrl_fast::cpu::truncated_normal(ptr<const float>(mean), ptr<const float>(var),
                                     ptr<const float>(lower), ptr<const float>(upper), n, p, h, a,
                                     seed, offset, ptr<float>(out));
  }, release());
  m.def("colored_noise", [](uintptr_t mean, uintptr_t var, uintptr_t lower, uintptr_t upper,
                            int64_t n, int64_t p, int64_t h, int64_t a, uintptr_t scales,
                            double sigma, uint64_t seed, uint64_t offset, uintptr_t out) {
    mbrl_fast::cpu::colored_noise(ptr<const float>(mean), ptr<const float>(var),
                                  ptr<const float>(lower), ptr<const float>(upper), n, p, h, a,
                                  ptr<const double>(scales), sigma, seed, offset, ptr<float>(out));
  }, release());

  // ---- skill_reward (DADS) ---------------------------------------------------
  // MLP arguments as for ensemble_mlp, then the SkillRewardArgs fields in order.
  m.def("skill_reward", [](const std::vector<int64_t>& sizes, const std::vector<uintptr_t>& weights,
                           const std::vector<uintptr_t>& biases, int64_t num_members, int precision,
                           int activation, float leaky_slope, uintptr_t in_mean, uintptr_t in_std,
                           uintptr_t max_logvar, uintptr_t min_logvar, int64_t m_, int64_t l, int64_t f,
                           int64_t z, int64_t p, bool prior_shared, bool include_skill, uintptr_t x,
                           uintptr_t target, uintptr_t skill, uintptr_t prior, uintptr_t log_q,
                           uintptr_t reward, int isa) {
    const auto view = mbrl_fast::cpu::make_mlp_view(sizes, weights, biases, num_members, precision, activation,
                                                     leaky_slope, in_mean, in_std, max_logvar, min_logvar);
    mbrl_fast::cpu::SkillRewardArgs args;
    args.m = m_; args.l = l; args.f = f; args.z = z; args.p = p;
    args.prior_shared = prior_shared; args.include_skill = include_skill;
    args.x = ptr<const float>(x); args.target = ptr<const float>(target);
    args.skill = ptr<const float>(skill); args.prior = ptr<const float>(prior);
    args.log_q = ptr<float>(log_q); args.reward = ptr<float>(reward);
    mbrl_fast::cpu::skill_reward(view, args, checked_isa(isa, "skill_reward"));
  }, release());
  // ---- imagine (Dreamer's imagination rollout; flat arguments: csrc/cpu/imagine.h) -----
  m.def("imagine", &mbrl_fast::cpu::imagine_call, release());
  m.def("imagine_saved_floats", &mbrl_fast::cpu::imagine_saved_floats);
  m.def("imagine_resolve_isa", &mbrl_fast::cpu::imagine_resolve_isa);
}
