// AVX2 + FMA tile forward (compiled with -mavx2 -mfma -mf16c; entered only after
// checked_isa found those features). fp32 weights; bf16 weights reach this path
// unpacked to fp32 by the launcher, with each layer's input rounded to bf16
// (MLPView::bf16_inputs), so the math is the bf16 math.
//
// Each layer is Y[rows, out] = act(A[rows, in] @ W[in, out] + b) with W read in place.
// Microkernel (R rows x C vectors of 8 outputs): per k, load C weight vectors and
// broadcast one activation per row, R * C FMAs. With 16 ymm registers the shape is
// 6 x 2 (12 accumulators + 2 weight vectors + 1 broadcast, BLIS's Haswell shape) and
// 12 x 1 for a lone last vector. The epilogue runs on the accumulators: bias is their
// start value, then the activation (and bf16 rounding) for hidden layers; the last
// layer applies the Gaussian head to its log-variance lanes and stores straight into
// the caller's output.
#include <immintrin.h>

#include "cpu/mlp_tile.h"
#include "cpu/simd_math_avx2.h"

namespace mbrl_fast::cpu {

namespace {

using namespace simd2;

// As in the AVX-512 file: without the unroll pragmas GCC keeps acc[][] on the stack.
#define MBRL_UNROLL _Pragma("GCC unroll 16")

inline int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

// Hidden layers: act(y) (rounded to bf16 for bf16 weights) into [rows, ld], ld a
// multiple of 8: whole vectors are stored; the lanes past `out` hold act(0) = 0.
template <int Act>
struct StoreHidden {
  float* y;
  int64_t ld;
  float slope;
  bool round;
  MBRL_SIMD_INLINE void operator()(int64_t r, int64_t col, __m256 v) const {
    __m256 a = activate_ps(v, Act, slope);
    if (round) a = round_bf16_ps(a);
    _mm256_storeu_ps(y + r * ld + col, a);
  }
};

// The last layer: rows < `rows` of y (as is, or with the Gaussian head on the
// log-variance columns) into the tile's output [rows, d_L].
struct StoreOutput {
  float* out;
  int64_t rows, dl, half;
  int head;  // HeadMode (kHeadRaw also without a Gaussian head)
  const float *head_max, *head_min;
  const int32_t* head_sel;
  MBRL_SIMD_INLINE void operator()(int64_t r, int64_t col, __m256 v) const {
    if (r >= rows) return;
    if (head != kHeadRaw && col + 8 > half) {
      const __m256 h = head_ps(v, _mm256_loadu_ps(head_max + col), _mm256_loadu_ps(head_min + col),
                               head == kHeadStd);
      v = _mm256_blendv_ps(v, h, _mm256_castsi256_ps(
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(head_sel + col))));
    }
    if (col + 8 <= dl) _mm256_storeu_ps(out + r * dl + col, v);
    else _mm256_maskstore_ps(out + r * dl + col, lane_mask(dl - col), v);
  }
};

// Rows [0, R) x vectors [0, C) of one layer: store(r, col, A @ W + bias). Partial: the
// last vector has lanes past the layer's width (masked loads of W and bias give 0).
template <int R, int C, bool Partial, class Store>
inline void microkernel(const float* A, int64_t lda, const float* W, int64_t ldw, int64_t K,
                        const float* bias, __m256i tail, int64_t r0, int64_t col0, const Store& store) {
  auto load = [tail](const float* p, int c) {
    return Partial && c == C - 1 ? _mm256_maskload_ps(p, tail) : _mm256_loadu_ps(p);
  };
  __m256 acc[R][C];
  MBRL_UNROLL for (int c = 0; c < C; ++c) {
    const __m256 b = load(bias + 8 * c, c);
    MBRL_UNROLL for (int r = 0; r < R; ++r) acc[r][c] = b;
  }
  for (int64_t k = 0; k < K; ++k) {
    __m256 w[C];
    MBRL_UNROLL for (int c = 0; c < C; ++c) w[c] = load(W + k * ldw + 8 * c, c);
    MBRL_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      MBRL_UNROLL for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(a, w[c], acc[r][c]);
    }
  }
  MBRL_UNROLL for (int r = 0; r < R; ++r)
    MBRL_UNROLL for (int c = 0; c < C; ++c) store(r0 + r, col0 + 8 * c, acc[r][c]);
}

// One column block over every row of the tile: its weight panel (K x 8C floats,
// 12.8 KB at K = 200, C = 2) stays in L1 while 96 / R microkernels reuse it.
template <int R, int C, bool Partial, class Store>
void column_block(const float* A, int64_t lda, const float* W, int64_t ldw, int64_t K,
                  const float* bias, __m256i tail, int64_t rows_pad, int64_t col0, const Store& store) {
  static_assert(kRowQuantum % R == 0, "microkernel height must divide the row quantum");
  for (int64_t r = 0; r < rows_pad; r += R)
    microkernel<R, C, Partial>(A + r * lda, lda, W, ldw, K, bias, tail, r, col0, store);
}

// One layer over rows [0, rows_pad): column blocks of 2 vectors (6 x 2), a lone last
// vector 12 x 1 (out = 200 is 25 vectors = 12 blocks of 2 + 1).
template <class Store>
void dense_layer(const float* A, int64_t lda, const float* W, int64_t K, int64_t out,
                 const float* bias, int64_t rows_pad, const Store& store) {
  const int64_t nv = (out + 7) / 8;
  const bool partial = out % 8 != 0;
  const __m256i tail = lane_mask(out - 8 * (nv - 1));
  for (int64_t v0 = 0; v0 < nv;) {
    const int C = nv - v0 >= 3 ? 3 : static_cast<int>(nv - v0);
    const bool p = partial && v0 + C == nv;
    const float* Wc = W + 8 * v0;
    const float* bc = bias + 8 * v0;
    const int64_t col0 = 8 * v0;
    if (C == 3) {
      if (p) column_block<4, 3, true>(A, lda, Wc, out, K, bc, tail, rows_pad, col0, store);
      else column_block<4, 3, false>(A, lda, Wc, out, K, bc, tail, rows_pad, col0, store);
    } else if (C == 2) {
      if (p) column_block<6, 2, true>(A, lda, Wc, out, K, bc, tail, rows_pad, col0, store);
      else column_block<6, 2, false>(A, lda, Wc, out, K, bc, tail, rows_pad, col0, store);
    } else {
      if (p) column_block<12, 1, true>(A, lda, Wc, out, K, bc, tail, rows_pad, col0, store);
      else column_block<12, 1, false>(A, lda, Wc, out, K, bc, tail, rows_pad, col0, store);
    }
    v0 += C;
  }
}

// A hidden layer with its activation as a compile-time constant.
void hidden_layer(int act, const float* A, int64_t lda, const float* W, int64_t K, int64_t out,
                  const float* bias, int64_t rows_pad, float* y, int64_t ld, float slope, bool round) {
  switch (act) {
    case kSilu: return dense_layer(A, lda, W, K, out, bias, rows_pad, StoreHidden<kSilu>{y, ld, slope, round});
    case kRelu: return dense_layer(A, lda, W, K, out, bias, rows_pad, StoreHidden<kRelu>{y, ld, slope, round});
    case kTanh: return dense_layer(A, lda, W, K, out, bias, rows_pad, StoreHidden<kTanh>{y, ld, slope, round});
    case kElu: return dense_layer(A, lda, W, K, out, bias, rows_pad, StoreHidden<kElu>{y, ld, slope, round});
    case kLeakyRelu:
      return dense_layer(A, lda, W, K, out, bias, rows_pad, StoreHidden<kLeakyRelu>{y, ld, slope, round});
    default:
      return dense_layer(A, lda, W, K, out, bias, rows_pad, StoreHidden<kIdentity>{y, ld, slope, round});
  }
}

}  // namespace

void forward_tile_avx2(const MLPView& v, int64_t e, int64_t rows, const float* in,
                       int64_t ld_in, float* out, int head, TileWorkspace& ws) {
  const int L = v.num_layers;
  const int64_t d0 = v.sizes[0], rows_pad = (rows + kRowQuantum - 1) / kRowQuantum * kRowQuantum;
  const bool round = v.bf16_inputs;
  float* cur = ws.f0.data();
  float* nxt = ws.f1.data();

  // Layer 0 input: (x - mean) / std, row stride round8(d0); scratch rows are zero inputs.
  const int64_t ld0 = round8(d0);
  for (int64_t r = 0; r < rows_pad; ++r) {
    for (int64_t j = 0; j < ld0; j += 8) {
      const __m256i m = lane_mask(d0 - j);
      __m256 x = r < rows ? _mm256_maskload_ps(in + r * ld_in + j, m) : _mm256_setzero_ps();
      if (v.in_mean)
        x = _mm256_div_ps(_mm256_sub_ps(x, _mm256_maskload_ps(v.in_mean + j, m)),
                          _mm256_blendv_ps(splat(1.f), _mm256_maskload_ps(v.in_std + j, m),
                                           _mm256_castsi256_ps(m)));
      if (round) x = round_bf16_ps(x);
      _mm256_storeu_ps(cur + r * ld0 + j, x);
    }
  }

  int64_t lda = ld0;
  for (int l = 0; l + 1 < L; ++l) {
    const int64_t d_in = v.sizes[l], d_out = v.sizes[l + 1];
    const float* W = static_cast<const float*>(v.weights[l]) + e * d_in * d_out;
    hidden_layer(v.activation, cur, lda, W, d_in, d_out, v.biases[l] + e * d_out, rows_pad, nxt,
                 round8(d_out), v.leaky_slope, round);
    std::swap(cur, nxt);
    lda = round8(d_out);
  }
  const int64_t d_in = v.sizes[L - 1], dl = v.sizes[L];
  const float* W = static_cast<const float*>(v.weights[L - 1]) + e * d_in * dl;
  const bool gauss = head != kHeadRaw && v.gaussian();
  const StoreOutput store{out, rows, dl, dl / 2, gauss ? head : int{kHeadRaw},
                          ws.head_max.data(), ws.head_min.data(), ws.head_sel.data()};
  dense_layer(cur, lda, W, d_in, dl, v.biases[L - 1] + e * dl, rows_pad, store);
}

}  // namespace mbrl_fast::cpu
