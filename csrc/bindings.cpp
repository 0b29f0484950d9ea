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
#include "cpu/mlp_train.h"
#include "cpu/noise.h"
#include "cpu/propagate.h"
#include "cpu/sac_grads.h"
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

  // ---- network and propagate descriptors (the CUDA module binds the same fields) ---
  py::class_<mbrl_fast::MLPDesc>(m, "MLPDesc", py::module_local())  // _C_cuda binds it too
      .def(py::init<>())
      .def_readwrite("sizes", &mbrl_fast::MLPDesc::sizes)
      .def_readwrite("weights", &mbrl_fast::MLPDesc::weights)
      .def_readwrite("biases", &mbrl_fast::MLPDesc::biases)
      .def_readwrite("members", &mbrl_fast::MLPDesc::members)
      .def_readwrite("bf16", &mbrl_fast::MLPDesc::bf16)
      .def_readwrite("activation", &mbrl_fast::MLPDesc::activation)
      .def_readwrite("slope", &mbrl_fast::MLPDesc::slope)
      .def_readwrite("in_mean", &mbrl_fast::MLPDesc::in_mean)
      .def_readwrite("in_std", &mbrl_fast::MLPDesc::in_std)
      .def_readwrite("max_logvar", &mbrl_fast::MLPDesc::max_logvar)
      .def_readwrite("min_logvar", &mbrl_fast::MLPDesc::min_logvar);

  using mbrl_fast::cpu::PropagateDesc;
  py::class_<PropagateDesc>(m, "PropagateDesc", py::module_local())
      .def(py::init<>())
      .def_readwrite("n", &PropagateDesc::n)
      .def_readwrite("p", &PropagateDesc::p)
      .def_readwrite("k", &PropagateDesc::k)
      .def_readwrite("h", &PropagateDesc::h)
      .def_readwrite("d", &PropagateDesc::d)
      .def_readwrite("a", &PropagateDesc::a)
      .def_readwrite("d_out", &PropagateDesc::d_out)
      .def_readwrite("mode", &PropagateDesc::mode)
      .def_readwrite("reward", &PropagateDesc::reward)
      .def_readwrite("members", &PropagateDesc::members)
      .def_readwrite("feat_src", &PropagateDesc::feat_src)
      .def_readwrite("feat_kind", &PropagateDesc::feat_kind)
      .def_readwrite("seed", &PropagateDesc::seed)
      .def_readwrite("offset", &PropagateDesc::offset)
      .def_readwrite("dt", &PropagateDesc::dt)
      .def_readwrite("callback", &PropagateDesc::callback)
      .def_readwrite("obs", &PropagateDesc::obs)
      .def_readwrite("actions", &PropagateDesc::actions)
      .def_readwrite("states", &PropagateDesc::states)
      .def_readwrite("rewards", &PropagateDesc::rewards)
      .def_readwrite("row_returns", &PropagateDesc::row_returns)
      .def_readwrite("taken", &PropagateDesc::taken);

  // ---- ensemble_mlp ----------------------------------------------------------
  m.def("ensemble_mlp", [](const mbrl_fast::MLPDesc& mlp, uintptr_t x, int64_t batch, uintptr_t out,
                           uintptr_t out_logvar, int isa) {
    mbrl_fast::cpu::ensemble_mlp_forward(mbrl_fast::cpu::make_mlp_view(mlp), ptr<const float>(x), batch,
                                         ptr<float>(out), ptr<float>(out_logvar),
                                         checked_isa(isa, "ensemble_mlp"));
  }, release());

  // ---- propagate -------------------------------------------------------------
  // Returns the first non-finite state (t, member, n, p, k), t = -1 when none.
  m.def("propagate", [](const mbrl_fast::MLPDesc& model, const mbrl_fast::MLPDesc* policy,
                        const PropagateDesc& desc, int isa) {
    const auto bad = mbrl_fast::cpu::propagate(model, policy, desc, checked_isa(isa, "propagate"));
    return std::make_tuple(bad.t, bad.member, bad.n, bad.p, bad.k);
  }, py::arg("model"), py::arg("policy").none(true), py::arg("desc"), py::arg("isa"), release());

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
  // q as one MLPDesc (as ensemble_mlp), then the SkillRewardArgs fields in order.
  m.def("skill_reward", [](const mbrl_fast::MLPDesc& mlp, int64_t m_, int64_t l, int64_t f,
                           int64_t z, int64_t p, bool prior_shared, bool include_skill, uintptr_t x,
                           uintptr_t target, uintptr_t skill, uintptr_t prior, uintptr_t log_q,
                           uintptr_t reward, int isa) {
    const auto view = mbrl_fast::cpu::make_mlp_view(mlp);
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
  // ---- mlp_train (training forward / backward of stacked MLPs: csrc/cpu/mlp_train.h) ----
  m.def("mlp_train", &mbrl_fast::cpu::mlp_train_call, release());
  // ---- sac_grads (one SAC update's gradients on mlp_train: csrc/cpu/sac_grads.h) ----
  m.def("sac_grads", &mbrl_fast::cpu::sac_grads_call, release());
}
