// Runtime CPU dispatch: the module is compiled for baseline x86-64 (or the target's
// baseline elsewhere); kernels in *_avx512.cpp / *_avx2.cpp are only entered when the
// running CPU reports the features their ISA path needs (checked_isa below).
#pragma once
#include <stdexcept>
#include <string>

namespace mbrl_fast {

// The fp32 kernel paths, slowest first. Ids: CPU_ISAS in mbrl_fast/backends.py.
enum class CpuIsa : int { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };

#if defined(MBRL_FAST_X86) && (defined(__GNUC__) || defined(__clang__))
#define MBRL_CPU_HAS(name) __builtin_cpu_supports(name)
#else
#define MBRL_CPU_HAS(name) false
#endif

inline bool cpu_has_avx2() {  // what the *_avx2.cpp files are compiled for
  static const bool ok = MBRL_CPU_HAS("avx2") && MBRL_CPU_HAS("fma") && MBRL_CPU_HAS("f16c");
  return ok;
}

inline bool cpu_has_avx512() {
  static const bool ok = MBRL_CPU_HAS("avx512f") && MBRL_CPU_HAS("avx512bw") &&
                         MBRL_CPU_HAS("avx512vl") && MBRL_CPU_HAS("avx512dq") && cpu_has_avx2();
  return ok;
}

inline bool cpu_has_avx512_bf16() {
  static const bool ok = cpu_has_avx512() && MBRL_CPU_HAS("avx512bf16");
  return ok;
}

// The CPU features an ISA path needs that this CPU lacks, e.g. "AVX512F, AVX512BW"
// ("" when it has them all).
inline std::string cpu_isa_missing(CpuIsa isa) {
  std::string missing;
  auto need = [&missing](bool has, const char* name) {
    if (!has) missing += (missing.empty() ? "" : ", ") + std::string(name);
  };
  if (isa == CpuIsa::kPortable) return missing;
  need(MBRL_CPU_HAS("avx2"), "AVX2");
  need(MBRL_CPU_HAS("fma"), "FMA");
  need(MBRL_CPU_HAS("f16c"), "F16C");
  if (isa == CpuIsa::kAvx512) {
    need(MBRL_CPU_HAS("avx512f"), "AVX512F");
    need(MBRL_CPU_HAS("avx512bw"), "AVX512BW");
    need(MBRL_CPU_HAS("avx512vl"), "AVX512VL");
    need(MBRL_CPU_HAS("avx512dq"), "AVX512DQ");
  }
#if !defined(MBRL_FAST_X86)
  missing = "x86-64 (this build has the portable kernels only)";
#endif
  return missing;
}

// The ISA id a launcher passed, validated against the running CPU: never enter code
// the CPU cannot execute (an illegal instruction would kill the interpreter).
inline CpuIsa checked_isa(int id, const char* op) {
  if (id < static_cast<int>(CpuIsa::kPortable) || id > static_cast<int>(CpuIsa::kAvx512))
    throw std::invalid_argument(std::string(op) + ": unknown CPU kernel path id " + std::to_string(id));
  const CpuIsa isa = static_cast<CpuIsa>(id);
  const std::string missing = cpu_isa_missing(isa);
  if (!missing.empty())
    throw std::runtime_error(std::string(op) + ": the " + (isa == CpuIsa::kAvx2 ? "avx2" : "avx512") +
                             " kernels need CPU features this CPU lacks: " + missing);
  return isa;
}

}  // namespace mbrl_fast
