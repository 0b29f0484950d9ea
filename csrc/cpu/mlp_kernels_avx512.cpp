// AVX-512 tile forward (compiled with -mavx512f/bw/vl/dq/bf16; entered only after
// the runtime check in select_tile_forward).
//
// Each layer is Y[rows, out] = act(A[rows, in] @ W[in, out] + b) with W read in place.
// Microkernel (R rows x C vectors of 16 outputs): per k, load C weight vectors and
// broadcast one activation per row: R * C FMAs for C + R loads, 20-24 accumulators
// in registers. fp32: vfmadd231ps; bf16: vdpbf16ps on (activation pair) x (packed
// weight pair vector), two products per lane. One template serves both.
// The epilogue (bias is the accumulators' start value; activation; rounding to
// bf16 for the next layer) runs on the accumulators in registers: its R * C
// independent exp chains overlap. As a separate pass over each 16-vector it was
// latency-bound: 29% of the bf16 tile time (perf, 1 thread).
#include <immintrin.h>

#include "cpu/mlp_tile.h"
#include "cpu/simd_math_avx512.h"

namespace mbrl_fast::cpu {

namespace {

// The unroll pragmas make GCC keep acc[][] in registers: without them GCC 12 stored
// all 24 accumulators to the stack every k step (20 vs 57 GFLOP/s for 6x4, 1 thread).
#define MBRL_UNROLL _Pragma("GCC unroll 16")

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

// Operand policies: the unit of A and W is one fp32 value or one bf16 pair.
struct F32Ops {
  using Unit = float;
  using WVec = __m512;
  static WVec load_w(const Unit* w, __mmask16 m) { return _mm512_maskz_loadu_ps(m, w); }
  static __m512 fma(__m512 acc, const Unit* a, WVec w) {
    return _mm512_fmadd_ps(_mm512_set1_ps(*a), w, acc);
  }
};
struct BF16Ops {
  using Unit = uint32_t;  // two bf16 (inputs 2j, 2j + 1), low half first
  using WVec = __m512bh;
  static WVec load_w(const Unit* w, __mmask16 m) { return (__m512bh)_mm512_maskz_loadu_epi32(m, w); }
  static __m512 fma(__m512 acc, const Unit* a, WVec w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32(static_cast<int>(*a)), w);
  }
};

// Output policies: act(y) stored as fp32 [rows, ld] or as bf16 [rows, ld] (the next
// layer's input; lanes past `out` up to ld, the pad of an odd width, are zeroed). The
// bf16 store's silu is silu_bf16_ps, with half the instructions and an error far below
// the rounding that follows: the full-accuracy one cost 24 instructions per 100
// vdpbf16ps of a 200-wide layer: 5% of a bf16 MBPO rollout's time on a Zen 4.
template <int Act>
struct StoreF32 {
  float* y;
  int64_t ld;
  float slope;
  void operator()(int64_t r, int64_t col, __mmask16 m, __m512 v) const {
    _mm512_mask_storeu_ps(y + r * ld + col, m, simd::activate_ps(v, Act, slope));
  }
};
template <int Act>
struct StoreBF16 {
  uint16_t* y;
  int64_t ld;
  float slope;
  void operator()(int64_t r, int64_t col, __mmask16 m, __m512 v) const {
    const __m512 h = Act == kSilu ? simd::silu_bf16_ps(v) : simd::activate_ps(v, Act, slope);
    const __m512 a = _mm512_maskz_mov_ps(m, h);
    _mm256_mask_storeu_epi16(y + r * ld + col, lanes(ld - col), (__m256i)_mm512_cvtneps_pbh(a));
  }
};

// Rows [0, R) x vectors [0, C) of one layer: store(r, col, mask, A @ W + bias).
template <class Ops, int R, int C, class Store>
inline void microkernel(const typename Ops::Unit* A, int64_t lda, const typename Ops::Unit* W,
                        int64_t ldw, int64_t K, const float* bias, __mmask16 tail, int64_t r0,
                        int64_t col0, const Store& store) {
  __m512 acc[R][C];
  MBRL_UNROLL for (int c = 0; c < C; ++c) {
    const __m512 b = _mm512_maskz_loadu_ps(c == C - 1 ? tail : __mmask16(0xFFFF), bias + 16 * c);
    MBRL_UNROLL for (int r = 0; r < R; ++r) acc[r][c] = b;
  }
  for (int64_t k = 0; k < K; ++k) {
    typename Ops::WVec w[C];
    MBRL_UNROLL for (int c = 0; c < C; ++c)
      w[c] = Ops::load_w(W + k * ldw + 16 * c, c == C - 1 ? tail : __mmask16(0xFFFF));
    MBRL_UNROLL for (int r = 0; r < R; ++r)
      MBRL_UNROLL for (int c = 0; c < C; ++c) acc[r][c] = Ops::fma(acc[r][c], A + r * lda + k, w[c]);
  }
  MBRL_UNROLL for (int r = 0; r < R; ++r)
    MBRL_UNROLL for (int c = 0; c < C; ++c)
      store(r0 + r, col0 + 16 * c, c == C - 1 ? tail : __mmask16(0xFFFF), acc[r][c]);
}

template <class Ops, int R, int C, class Store>
void column_block(const typename Ops::Unit* A, int64_t lda, const typename Ops::Unit* W, int64_t ldw,
                  int64_t K, const float* bias, __mmask16 tail, int64_t rows_pad, int64_t col0,
                  const Store& store) {
  for (int64_t r = 0; r < rows_pad; r += R)
    microkernel<Ops, R, C>(A + r * lda, lda, W, ldw, K, bias, tail, r, col0, store);
}

// The block of C vectors with its tall height R when the rows allow (rows_pad % 24 == 0:
// full tiles and most tails), else 4 rows (short tiles).
template <class Ops, int R, int C, class Store>
void column_block_for(bool tall, const typename Ops::Unit* A, int64_t lda, const typename Ops::Unit* W,
                      int64_t ldw, int64_t K, const float* bias, __mmask16 tail, int64_t rows_pad,
                      int64_t col0, const Store& store) {
  if (tall) column_block<Ops, R, C>(A, lda, W, ldw, K, bias, tail, rows_pad, col0, store);
  else column_block<Ops, 4, C>(A, lda, W, ldw, K, bias, tail, rows_pad, col0, store);
}

// One layer over rows [0, rows_pad): column blocks of 4 vectors (6 x 4 accumulators);
// a remainder of 5 / 3 / 2 / 1 vectors uses 4x5 / 8x3 / 12x2 / 12x1 (out = 200 is
// 13 vectors = 4 + 4 + 5, no lone 1-vector pass). Each column block runs over all
// rows of the tile so its weight panel is reused rows_pad / R times while in cache.
// panel: scratch for a packed weight panel (pack_panels).
template <class Ops, class Store>
void dense_layer(const typename Ops::Unit* A, int64_t lda, const typename Ops::Unit* W, int64_t K,
                 int64_t out, const float* bias, int64_t rows_pad, const Store& store, void* panel) {
  const int64_t nv = (out + 15) / 16;
  const __mmask16 tail = lanes(out - 16 * (nv - 1));
  const bool tall = rows_pad % 24 == 0, pack = pack_panels(out, rows_pad);
  for (int64_t v0 = 0; v0 < nv;) {
    const int64_t left = nv - v0;
    const int C = left == 5 ? 5 : (left >= 4 ? 4 : static_cast<int>(left));
    const __mmask16 m = v0 + C == nv ? tail : __mmask16(0xFFFF);
    const auto* Wc = W + 16 * v0;
    int64_t ldw = out;
    if (pack) {  // out % 64 == 0: whole vectors only
      auto* dst = static_cast<typename Ops::Unit*>(panel);
      for (int64_t k = 0; k < K; ++k) std::copy_n(Wc + k * out, 16 * C, dst + k * 16 * C);
      Wc = dst, ldw = 16 * C;
    }
    const float* bc = bias + 16 * v0;
    const int64_t col0 = 16 * v0;
    switch (C) {
      case 5: column_block_for<Ops, 4, 5>(tall, A, lda, Wc, ldw, K, bc, m, rows_pad, col0, store); break;
      case 4: column_block_for<Ops, 6, 4>(tall, A, lda, Wc, ldw, K, bc, m, rows_pad, col0, store); break;
      case 3: column_block_for<Ops, 8, 3>(tall, A, lda, Wc, ldw, K, bc, m, rows_pad, col0, store); break;
      case 2: column_block_for<Ops, 12, 2>(tall, A, lda, Wc, ldw, K, bc, m, rows_pad, col0, store); break;
      default: column_block_for<Ops, 12, 1>(tall, A, lda, Wc, ldw, K, bc, m, rows_pad, col0, store); break;
    }
    v0 += C;
  }
}

// The layer with its activation as a compile-time constant (no switch per vector).
template <class Ops, template <int> class Store, class Out>
void dense_layer_act(int act, const typename Ops::Unit* A, int64_t lda, const typename Ops::Unit* W,
                     int64_t K, int64_t out, const float* bias, int64_t rows_pad, Out* y, int64_t ld,
                     float slope, void* panel) {
  auto run = [&](auto store) { dense_layer<Ops>(A, lda, W, K, out, bias, rows_pad, store, panel); };
  switch (act) {
    case kSilu: return run(Store<kSilu>{y, ld, slope});
    case kRelu: return run(Store<kRelu>{y, ld, slope});
    case kTanh: return run(Store<kTanh>{y, ld, slope});
    case kElu: return run(Store<kElu>{y, ld, slope});
    case kLeakyRelu: return run(Store<kLeakyRelu>{y, ld, slope});
    default: return run(Store<kIdentity>{y, ld, slope});
  }
}

// Soft-bounded logvar (and optionally exp(logvar / 2)) for 16 lanes.
inline __m512 head_ps(__m512 raw, __m512 max_lv, __m512 min_lv, int head) {
  using namespace simd;
  const __m512 lv = _mm512_sub_ps(max_lv, softplus_ps(_mm512_sub_ps(max_lv, raw)));
  const __m512 out = _mm512_add_ps(min_lv, softplus_ps(_mm512_sub_ps(lv, min_lv)));
  return head == kHeadStd ? exp_ps(_mm512_mul_ps(out, splat(0.5f))) : out;
}

}  // namespace

void forward_tile_avx512(const MLPView& v, int64_t e, int64_t rows, const float* in,
                         int64_t ld_in, float* out, int head, TileWorkspace& ws) {
  const int L = v.num_layers;
  const int64_t d0 = v.sizes[0], rows_pad = padded_rows(rows);
  const bool bf16 = v.bf16;
  float* f_cur = ws.f0.data();
  float* f_nxt = ws.f1.data();
  uint16_t* h_cur = ws.h0.data();
  uint16_t* h_nxt = ws.h1.data();

  // Layer 0 input: (x - mean) / std, fp32 or bf16 (row stride d0 rounded up to even).
  const int64_t ld0 = bf16 ? d0 + (d0 & 1) : d0;
  for (int64_t r = 0; r < rows_pad; ++r) {
    for (int64_t j = 0; j < ld0; j += 16) {
      const __mmask16 m = lanes(d0 - j);
      __m512 x = r < rows ? _mm512_maskz_loadu_ps(m, in + r * ld_in + j) : _mm512_setzero_ps();
      if (v.in_mean)
        x = _mm512_maskz_div_ps(m, _mm512_sub_ps(x, _mm512_maskz_loadu_ps(m, v.in_mean + j)),
                                _mm512_mask_loadu_ps(simd::splat(1.f), m, v.in_std + j));
      if (bf16)
        _mm256_mask_storeu_epi16(h_cur + r * ld0 + j, lanes(ld0 - j), (__m256i)_mm512_cvtneps_pbh(x));
      else
        _mm512_mask_storeu_ps(f_cur + r * ld0 + j, m, x);
    }
  }

  // Hidden layers write act(y) (fp32, or bf16 for bf16 weights); the last writes y to f_cur.
  for (int l = 0; l < L; ++l) {
    const int64_t d_in = v.sizes[l], d_out = v.sizes[l + 1];
    const float* bias = v.biases[l] + e * d_out;
    const int act = l + 1 < L ? v.activation : kIdentity;
    if (!bf16) {
      const float* W = static_cast<const float*>(v.weights[l]) + e * d_in * d_out;
      dense_layer_act<F32Ops, StoreF32>(act, f_cur, d_in, W, d_in, d_out, bias, rows_pad, f_nxt, d_out,
                                        v.leaky_slope, ws.panel.data());
      std::swap(f_cur, f_nxt);
      continue;
    }
    const int64_t half = (d_in + 1) / 2;
    const auto* W = static_cast<const uint32_t*>(v.weights[l]) + e * half * d_out;
    const auto* A = reinterpret_cast<const uint32_t*>(h_cur);
    if (l + 1 < L) {
      dense_layer_act<BF16Ops, StoreBF16>(act, A, half, W, half, d_out, bias, rows_pad, h_nxt,
                                          d_out + (d_out & 1), v.leaky_slope, ws.panel.data());
      std::swap(h_cur, h_nxt);
    } else {
      dense_layer<BF16Ops>(A, half, W, half, d_out, bias, rows_pad, StoreF32<kIdentity>{f_cur, d_out, 0.f},
                           ws.panel.data());
    }
  }

  // f_cur holds the last layer's output [rows_pad, d_L].
  const int64_t dl = v.sizes[L], half = dl / 2;
  const bool gauss = head != kHeadRaw && v.gaussian();
  for (int64_t r = 0; r < rows; ++r) {
    const float* y = f_cur + r * dl;
    float* o = out + r * dl;
    if (!gauss) {
      std::copy_n(y, dl, o);
      continue;
    }
    std::copy_n(y, half, o);
    for (int64_t j = 0; j < half; j += 16) {
      const __mmask16 m = lanes(half - j);
      const __m512 lv = head_ps(_mm512_maskz_loadu_ps(m, y + half + j),
                                _mm512_maskz_loadu_ps(m, v.max_logvar + j),
                                _mm512_maskz_loadu_ps(m, v.min_logvar + j), head);
      _mm512_mask_storeu_ps(o + half + j, m, lv);
    }
  }
}

}  // namespace mbrl_fast::cpu
