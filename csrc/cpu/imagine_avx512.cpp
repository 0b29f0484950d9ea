// The imagination op with AVX-512 GEMM microkernels (fp32 FMA; bf16 pairs with AVX512-BF16
// vdpbf16ps). Compiled with AVX-512 flags; entered only after imagine_resolve_isa's runtime
// check. The rollout itself is imagine_impl.h, here vectorized 16-wide by the compiler.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "cpu/imagine.h"

namespace mbrl_fast::cpu::imagine_avx512 {

namespace {

#define MBRL_IM_UNROLL _Pragma("GCC unroll 8")

constexpr int64_t kGemvMaxK = 2048;  // gemv's column buffer (longer K: micro)

// the sum of v's 16 lanes, a tree (maskz forms: the unmasked intrinsics' undefined source, as
// in _mm512_reduce_add_ps, trips gcc 12's -Wmaybe-uninitialized)
inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));
  return _mm512_cvtss_f32(v);
}

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : (n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u));
}

// C[RB rows, CB vectors of 16] (= bias | 0 | +=) A[RB, K] @ B[K, 16 CB]. fp32: A and B are
// floats; bf16: uint32 pairs (two products per lane). TA: A stored [K, RB] (A[k lda + r]).
// Epilogue (Epi, below): ReLU on the result, or the result times (mask > 0) with mask laid
// out as C (ReLU's derivative from its output), as the separate passes compute them.
struct Epi {
  bool relu = false;
  const float* mask = nullptr;
};
template <int RB, int CB, bool BF, bool TA>
inline void micro(int64_t K, const void* Av, int64_t lda, const void* Bv, int64_t ldb, float* C,
                  int64_t ldc, const float* bias, bool acc, int64_t cols, Epi epi) {
  __mmask16 m[CB];
  MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) m[c] = lanes(cols - 16 * c);
  __m512 cr[RB][CB];
  MBRL_IM_UNROLL for (int r = 0; r < RB; ++r)
    MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) {
      if (acc) cr[r][c] = _mm512_maskz_loadu_ps(m[c], C + r * ldc + 16 * c);
      else if (bias) cr[r][c] = _mm512_maskz_loadu_ps(m[c], bias + 16 * c);
      else cr[r][c] = _mm512_setzero_ps();
    }
  if constexpr (BF) {
    const auto* A = static_cast<const uint32_t*>(Av);
    const auto* B = static_cast<const uint32_t*>(Bv);
    for (int64_t k = 0; k < K; ++k) {
      __m512bh w[CB];
      MBRL_IM_UNROLL for (int c = 0; c < CB; ++c)
        w[c] = (__m512bh)_mm512_maskz_loadu_epi32(m[c], B + k * ldb + 16 * c);
      MBRL_IM_UNROLL for (int r = 0; r < RB; ++r) {
        const __m512bh x =
            (__m512bh)_mm512_set1_epi32(static_cast<int>(TA ? A[k * lda + r] : A[r * lda + k]));
        MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) cr[r][c] = _mm512_dpbf16_ps(cr[r][c], x, w[c]);
      }
    }
  } else {
    const auto* A = static_cast<const float*>(Av);
    const auto* B = static_cast<const float*>(Bv);
    for (int64_t k = 0; k < K; ++k) {
      __m512 w[CB];
      MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) w[c] = _mm512_maskz_loadu_ps(m[c], B + k * ldb + 16 * c);
      MBRL_IM_UNROLL for (int r = 0; r < RB; ++r) {
        const __m512 x = _mm512_set1_ps(TA ? A[k * lda + r] : A[r * lda + k]);
        MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) cr[r][c] = _mm512_fmadd_ps(x, w[c], cr[r][c]);
      }
    }
  }
  // vmaxps(v, 0) = (v > 0 ? v : 0), NaN and -0 included (it returns the second operand);
  // maskz: _mm512_max_ps's undefined source trips gcc 12's -Wmaybe-uninitialized
  if (epi.relu) {
    MBRL_IM_UNROLL for (int r = 0; r < RB; ++r)
      MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) cr[r][c] = _mm512_maskz_max_ps(0xFFFF, cr[r][c], _mm512_setzero_ps());
  }
  if (epi.mask) {  // v * (h > 0 ? 1 : 0)
    MBRL_IM_UNROLL for (int r = 0; r < RB; ++r)
      MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) {
        const __m512 h = _mm512_maskz_loadu_ps(m[c], epi.mask + r * ldc + 16 * c);
        const __mmask16 pos = _mm512_cmp_ps_mask(h, _mm512_setzero_ps(), _CMP_GT_OQ);
        cr[r][c] = _mm512_mul_ps(cr[r][c], _mm512_mask_blend_ps(pos, _mm512_setzero_ps(), _mm512_set1_ps(1.f)));
      }
  }
  MBRL_IM_UNROLL for (int r = 0; r < RB; ++r)
    MBRL_IM_UNROLL for (int c = 0; c < CB; ++c) _mm512_mask_storeu_ps(C + r * ldc + 16 * c, m[c], cr[r][c]);
}

template <int CB, bool BF, bool TA>
inline void column_block(int64_t M, int64_t K, const void* A, int64_t lda, const void* B,
                         int64_t ldb, float* C, int64_t ldc, const float* bias, bool acc,
                         int64_t cols, Epi epi) {
  using U = typename std::conditional<BF, uint32_t, float>::type;
  const U* a = static_cast<const U*>(A);
  const int64_t step = TA ? 1 : lda;  // from row i of C to row i + 1 in A
  auto at = [](Epi e, int64_t off) { return Epi{e.relu, e.mask ? e.mask + off : nullptr}; };
  int64_t i = 0;
  for (; i + 8 <= M; i += 8)
    micro<8, CB, BF, TA>(K, a + i * step, lda, B, ldb, C + i * ldc, ldc, bias, acc, cols, at(epi, i * ldc));
  for (; i + 4 <= M; i += 4)
    micro<4, CB, BF, TA>(K, a + i * step, lda, B, ldb, C + i * ldc, ldc, bias, acc, cols, at(epi, i * ldc));
  for (; i < M; ++i)
    micro<1, CB, BF, TA>(K, a + i * step, lda, B, ldb, C + i * ldc, ldc, bias, acc, cols, at(epi, i * ldc));
}

// C[M, 1] (= bias | 0 | +=) A @ b, one output column (a critic's or value head's Q, a width-1
// layer): micro would spend 16 lanes on one column. Not TA (A [M, K], lda): each row a dot
// product along K, 16 terms per vector, four rows at a time. TA (A stored [K, M]): rows in
// lanes, 16 per vector, four vectors at a time. b: B's column (stride sb). The sums' order is
// not micro's: results agree with it to float rounding.
template <bool BF, bool TA>
void gemv(int64_t M, int64_t K, const void* Av, int64_t lda, const void* Bv, int64_t sb, float* C,
          int64_t ldc, const float* bias, bool acc, Epi epi) {
  using U = typename std::conditional<BF, uint32_t, float>::type;
  const U* A = static_cast<const U*>(Av);
  const U* B = static_cast<const U*>(Bv);
  auto fma = [](__m512 s, __m512 a, __m512 b) {
    if constexpr (BF) return _mm512_dpbf16_ps(s, (__m512bh)a, (__m512bh)b);
    else return _mm512_fmadd_ps(a, b, s);
  };
  auto load = [](__mmask16 m, const U* p) {
    if constexpr (BF) return _mm512_castsi512_ps(_mm512_maskz_loadu_epi32(m, p));
    else return _mm512_maskz_loadu_ps(m, p);
  };
  auto finish = [&](int64_t i, float sum) {  // one element of C, micro's epilogue
    float v = (acc ? C[i * ldc] : bias ? bias[0] : 0.f) + sum;
    if (epi.relu) v = v > 0.f ? v : 0.f;
    if (epi.mask) v *= epi.mask[i * ldc] > 0.f ? 1.f : 0.f;
    C[i * ldc] = v;
  };
  if constexpr (!TA) {
    U col[kGemvMaxK];  // B's column, contiguous
    for (int64_t k = 0; k < K; ++k) col[k] = B[k * sb];
    int64_t i = 0;
    for (; i + 4 <= M; i += 4) {
      __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
      for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 m = lanes(K - k);
        const __m512 b = load(m, col + k);
        s0 = fma(s0, load(m, A + i * lda + k), b);
        s1 = fma(s1, load(m, A + (i + 1) * lda + k), b);
        s2 = fma(s2, load(m, A + (i + 2) * lda + k), b);
        s3 = fma(s3, load(m, A + (i + 3) * lda + k), b);
      }
      finish(i, hsum(s0));
      finish(i + 1, hsum(s1));
      finish(i + 2, hsum(s2));
      finish(i + 3, hsum(s3));
    }
    for (; i < M; ++i) {
      __m512 s = _mm512_setzero_ps();
      for (int64_t k = 0; k < K; k += 16) {
        const __mmask16 m = lanes(K - k);
        s = fma(s, load(m, A + i * lda + k), load(m, col + k));
      }
      finish(i, hsum(s));
    }
  } else {
    auto bcast = [](U v) {
      if constexpr (BF) return _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(v)));
      else return _mm512_set1_ps(v);
    };
    alignas(64) float out[64];
    for (int64_t i0 = 0; i0 < M; i0 += 64) {
      __mmask16 m[4];
      for (int v = 0; v < 4; ++v) m[v] = lanes(M - i0 - 16 * v);
      __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
      for (int64_t k = 0; k < K; ++k) {
        const __m512 b = bcast(B[k * sb]);
        const U* a = A + k * lda + i0;
        for (int v = 0; v < 4; ++v) s[v] = fma(s[v], load(m[v], a + 16 * v), b);
      }
      for (int v = 0; v < 4; ++v) _mm512_store_ps(out + 16 * v, s[v]);
      const int64_t n = M - i0 < 64 ? M - i0 : 64;
      for (int64_t r = 0; r < n; ++r) finish(i0 + r, out[r]);
    }
  }
}

// Column blocks of 3 vectors (8 x 3 accumulators), the last 1-3 vectors masked. B row-major
// (ldb), or panel-packed [ceil(N / 48), K, 48]: one contiguous stream per column block.
// One output column: gemv.
template <bool BF, bool TA>
void gemm(int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb,
          float* C, int64_t ldc, const float* bias, bool acc, bool panel, Epi epi) {
  using U = typename std::conditional<BF, uint32_t, float>::type;
  static_assert(kImPanel == 48, "column blocks are 3 vectors");
  if (panel) ldb = 48;
  if (N == 1 && (TA || K <= kGemvMaxK)) {
    gemv<BF, TA>(M, K, A, lda, B, ldb, C, ldc, bias, acc, epi);
    return;
  }
  for (int64_t j0 = 0; j0 < N; j0 += 48) {
    const int64_t cols = N - j0 < 48 ? N - j0 : 48;
    const U* b = static_cast<const U*>(B) + (panel ? (j0 / 48) * K * 48 : j0);
    const float* bs = bias ? bias + j0 : nullptr;
    const Epi ej{epi.relu, epi.mask ? epi.mask + j0 : nullptr};
    switch ((cols + 15) / 16) {
      case 3: column_block<3, BF, TA>(M, K, A, lda, b, ldb, C + j0, ldc, bs, acc, cols, ej); break;
      case 2: column_block<2, BF, TA>(M, K, A, lda, b, ldb, C + j0, ldc, bs, acc, cols, ej); break;
      default: column_block<1, BF, TA>(M, K, A, lda, b, ldb, C + j0, ldc, bs, acc, cols, ej); break;
    }
  }
}

}  // namespace

// relu / mask: the epilogue of micro (Epi), applied as each block is stored.
struct Gemm {
  static void f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                  int64_t ldb, float* C, int64_t ldc, const float* bias, bool acc, bool panel,
                  bool ta, bool relu = false, const float* mask = nullptr) {
    if (ta) gemm<false, true>(M, N, K, A, lda, B, ldb, C, ldc, bias, acc, panel, {relu, mask});
    else gemm<false, false>(M, N, K, A, lda, B, ldb, C, ldc, bias, acc, panel, {relu, mask});
  }
  static void bf16(int64_t M, int64_t N, int64_t K2, const uint32_t* A, int64_t lda,
                   const uint32_t* B, int64_t ldb, float* C, int64_t ldc, const float* bias,
                   bool acc, bool panel, bool ta, bool relu = false, const float* mask = nullptr) {
    if (ta) gemm<true, true>(M, N, K2, A, lda, B, ldb, C, ldc, bias, acc, panel, {relu, mask});
    else gemm<true, false>(M, N, K2, A, lda, B, ldb, C, ldc, bias, acc, panel, {relu, mask});
  }
};

}  // namespace mbrl_fast::cpu::imagine_avx512

#define IMAGINE_NS imagine_avx512
#include "cpu/imagine_impl.h"
#undef IMAGINE_NS

namespace mbrl_fast::cpu {

void imagine_run_avx512(const ImagineArgs& a, int64_t R, bool backward, int threads, float* ws_f,
                        int64_t ws_nf, uint32_t* ws_u, int64_t ws_nu, float* grads,
                        int64_t grad_n) {
  imagine_avx512::run(a, R, backward, threads, ws_f, ws_nf, ws_u, ws_nu, grads, grad_n);
}

}  // namespace mbrl_fast::cpu

// The training MLP op's AVX-512 kernels (mlp_train_impl.h, with this unit's Gemm and the
// bf16 packings below: the AVX512-BF16 conversions, 16 or 32 values per instruction, instead
// of the elementwise rounding the portable unit vectorizes).
namespace mbrl_fast::cpu::imagine_avx512 {

struct Pack {
  // x [n, K] (ld ldx) -> bf16 pairs along K, [n, ceil(K / 2)] words (odd K: a zero pad).
  static void rows(int64_t n, int64_t K, const float* x, int64_t ldx, uint32_t* out) {
    const int64_t k2 = (K + 1) / 2;
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = x + r * ldx;
      auto* o = reinterpret_cast<uint16_t*>(out + r * k2);
      for (int64_t j = 0; j < K; j += 16) {
        const __mmask16 m = lanes(K - j);
        _mm256_mask_storeu_epi16(o + j, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, xr + j)));
      }
      if (K & 1) o[K] = 0;
    }
  }
  // y [n, N] (ld ldy) -> bf16 pairs along n: out[r2 * ldo + j] = (y[2 r2][j], y[2 r2 + 1][j])
  // (odd n: a zero pad), j < N.
  static void row_pairs(int64_t n, int64_t N, const float* y, int64_t ldy, uint32_t* out,
                        int64_t ldo) {
    alignas(64) static constexpr uint16_t kInterleave[32] = {
        0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
        8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i idx = _mm512_load_si512(kInterleave);
    for (int64_t r2 = 0; r2 < (n + 1) / 2; ++r2) {
      const float* a = y + 2 * r2 * ldy;
      const bool two = 2 * r2 + 1 < n;
      for (int64_t j = 0; j < N; j += 16) {
        const __mmask16 m = lanes(N - j);
        const __m512 lo = _mm512_maskz_loadu_ps(m, a + j);
        const __m512 hi = two ? _mm512_maskz_loadu_ps(m, a + ldy + j) : _mm512_setzero_ps();
        const __m512i v = _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_mask_storeu_epi32(out + r2 * ldo + j, m, v);
      }
    }
  }
};

}  // namespace mbrl_fast::cpu::imagine_avx512

#define IMAGINE_NS imagine_avx512
#include "cpu/mlp_train_impl.h"
#undef IMAGINE_NS

namespace mbrl_fast::cpu {

void mlp_train_run_avx512(const MlpTrainArgs& a, const MlpTrainPacked& p, bool backward,
                          int64_t R, int threads, uint32_t* work, int64_t work_words) {
  imagine_avx512::mlp_train_run(a, p, backward, R, threads, work, work_words);
}

}  // namespace mbrl_fast::cpu
