// Runtime CPU dispatch: the module is compiled for baseline x86-64; kernels in
// *_avx512.cpp are only entered when the running CPU reports these features.
#pragma once

namespace mbrl_fast {

inline bool cpu_has_avx512() {
#if defined(MBRL_FAST_X86) && (defined(__GNUC__) || defined(__clang__))
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

inline bool cpu_has_avx512_bf16() {
#if defined(MBRL_FAST_X86) && (defined(__GNUC__) || defined(__clang__))
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return ok;
#else
  return false;
#endif
}

}  // namespace mbrl_fast
