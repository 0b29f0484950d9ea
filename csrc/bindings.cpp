// mbrl_fast._C: the CPU kernels. Bindings only; no logic here.
// Every function takes raw pointers (as integers) to contiguous host buffers
// that the Python side (mbrl_fast/ops/*.py) has validated, and releases the GIL.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "cpu/noise.h"
#include "cpu_features.h"

namespace py = pybind11;
using mbrl_fast::cpu_has_avx512;
using mbrl_fast::cpu_has_avx512_bf16;

template <typename T>
static T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "mbrl-fast compiled CPU kernels (private; use mbrl_fast.ops)";
  using release = py::call_guard<py::gil_scoped_release>;

  // ---- runtime CPU features ------------------------------------------------
  m.def("cpu_has_avx512", &cpu_has_avx512);
  m.def("cpu_has_avx512_bf16", &cpu_has_avx512_bf16);

  // ---- noise -----------------------------------------------------------------
  m.def("philox_uint32", [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
    mbrl_fast::cpu::philox_uint32_fill(ptr<uint32_t>(out), n, seed, offset);
  }, release());
  m.def("philox_uniform", [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
    mbrl_fast::cpu::philox_uniform_fill(ptr<float>(out), n, seed, offset);
  }, release());
  m.def("philox_normal", [](uintptr_t out, int64_t n, uint64_t seed, uint64_t offset) {
    mbrl_fast::cpu::philox_normal_fill(ptr<float>(out), n, seed, offset);
  }, release());

  // ---- ensemble_mlp ----------------------------------------------------------

  // ---- propagate -------------------------------------------------------------

  // ---- elite_update ----------------------------------------------------------
}
