// mbrl_fast._C_cuda: the CUDA kernels. Bindings only; no logic here.
// Addresses are device pointers passed as integers by mbrl_fast/ops/_cuda.py, which
// validated the tensors; `stream` is torch's current cudaStream_t as an integer.
// The module links the CUDA runtime statically and imports without a GPU or driver
// (device_count() then returns 0).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "cuda/ops_cuda.h"

namespace py = pybind11;
namespace mc = mbrl_fast::cuda;

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "mbrl-fast compiled CUDA kernels (private; use mbrl_fast.ops)";
  using release = py::call_guard<py::gil_scoped_release>;

  m.def("device_count", &mc::device_count);

  py::class_<mc::MLPDesc>(m, "MLPDesc", py::module_local())  // _C binds it too
      .def(py::init<>())
      .def_readwrite("sizes", &mc::MLPDesc::sizes)
      .def_readwrite("weights", &mc::MLPDesc::weights)
      .def_readwrite("biases", &mc::MLPDesc::biases)
      .def_readwrite("members", &mc::MLPDesc::members)
      .def_readwrite("bf16", &mc::MLPDesc::bf16)
      .def_readwrite("activation", &mc::MLPDesc::activation)
      .def_readwrite("slope", &mc::MLPDesc::slope)
      .def_readwrite("in_mean", &mc::MLPDesc::in_mean)
      .def_readwrite("in_std", &mc::MLPDesc::in_std)
      .def_readwrite("max_logvar", &mc::MLPDesc::max_logvar)
      .def_readwrite("min_logvar", &mc::MLPDesc::min_logvar);

  py::class_<mc::PropagateDesc>(m, "PropagateDesc", py::module_local())
      .def(py::init<>())
      .def_readwrite("n", &mc::PropagateDesc::n)
      .def_readwrite("p", &mc::PropagateDesc::p)
      .def_readwrite("k", &mc::PropagateDesc::k)
      .def_readwrite("h", &mc::PropagateDesc::h)
      .def_readwrite("d", &mc::PropagateDesc::d)
      .def_readwrite("a", &mc::PropagateDesc::a)
      .def_readwrite("d_out", &mc::PropagateDesc::d_out)
      .def_readwrite("mode", &mc::PropagateDesc::mode)
      .def_readwrite("reward", &mc::PropagateDesc::reward)
      .def_readwrite("return_states", &mc::PropagateDesc::return_states)
      .def_readwrite("members", &mc::PropagateDesc::members)
      .def_readwrite("feat_src", &mc::PropagateDesc::feat_src)
      .def_readwrite("feat_kind", &mc::PropagateDesc::feat_kind)
      .def_readwrite("num_members_all", &mc::PropagateDesc::num_members_all)
      .def_readwrite("seed", &mc::PropagateDesc::seed)
      .def_readwrite("offset", &mc::PropagateDesc::offset)
      .def_readwrite("dt", &mc::PropagateDesc::dt)
      .def_readwrite("obs", &mc::PropagateDesc::obs)
      .def_readwrite("actions", &mc::PropagateDesc::actions)
      .def_readwrite("order", &mc::PropagateDesc::order)
      .def_readwrite("states", &mc::PropagateDesc::states)
      .def_readwrite("rewards", &mc::PropagateDesc::rewards)
      .def_readwrite("row_returns", &mc::PropagateDesc::row_returns)
      .def_readwrite("taken", &mc::PropagateDesc::taken)
      .def_readwrite("bad", &mc::PropagateDesc::bad);

  // ---- noise -------------------------------------------------------------------
  for (auto [name, kind] : {std::pair{"philox_uint32", 0}, std::pair{"philox_uniform", 1},
                            std::pair{"philox_normal", 2}}) {
    m.def(name, [kind = kind](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset,
                              uintptr_t stream) {
      mc::philox_fill(kind, out, n, seed, offset, stream);
    }, release());
  }

  // ---- ensemble_mlp --------------------------------------------------------------
  m.def("ensemble_mlp", &mc::ensemble_mlp, release());

  // ---- propagate -----------------------------------------------------------------
  m.def("propagate", [](const mc::MLPDesc& model, const mc::MLPDesc* policy,
                        const mc::PropagateDesc& desc, uintptr_t stream) {
    mc::propagate(model, policy, desc, stream);
  }, py::arg("model"), py::arg("policy").none(true), py::arg("desc"), py::arg("stream"),
     release());

  // ---- elite_update --------------------------------------------------------------
  m.def("cem_update", &mc::cem_update, release());
  m.def("mppi_update", &mc::mppi_update, release());
  m.def("truncated_normal", &mc::truncated_normal, release());
}
