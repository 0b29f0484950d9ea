// AVX2 + FMA tile forward (compiled with -mavx2 -mfma -mf16c; entered only after
// checked_isa found those features). fp32 weights (bf16 weights reach this path
// unpacked to fp32 by the launcher, mbrl_fast/ops/_cpu.py).
//
// Each layer is Y[rows, out] = act(A[rows, in] @ W[in, out] + b) with W read in place.
// Microkernel (R rows x C vectors of 8 outputs): per k, load C weight vectors and
// broadcast one activation per row, R * C FMAs. With 16 ymm registers the shape is
// 4 x 3 (12 accumulators + 3 weight vectors + 1 broadcast: 7 loads per 12 FMAs; 6 x 2,
// BLIS's Haswell shape, needs 8 and measured the same or slower), with 6 x 2 / 12 x 1
// (or 4-row blocks in short tiles) for the last vectors. The epilogue runs on the
// accumulators: bias is their start value, then the activation for hidden layers; the
// last layer applies the Gaussian head to its log-variance lanes and stores straight
// into the caller's output. perf (1 thread, PETS planning step): 83% of the main
// microkernel's time in its k loop, 17% in the SiLU epilogue.
#include <immintrin.h>

#include "cpu/mlp_tile.h"
#include "cpu/simd_math_avx2.h"

namespace mbrl_fast::cpu {

namespace {

using namespace simd2;

// As in the AVX-512 file: without the unroll pragmas GCC keeps acc[][] on the stack.
#define MBRL_UNROLL _Pragma("GCC unroll 16")

inline int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

// Hidden layers: act(y) into [rows, ld], ld a multiple of 8: whole vectors are
// stored; the lanes past `out` hold act(0) = 0.
template <int Act>
struct StoreHidden {
  float* y;
  int64_t ld;
  float slope;
  MBRL_SIMD_INLINE void operator()(int64_t r, int64_t col, __m256 v) const {
    _mm256_storeu_ps(y + r * ld + col, activate_ps(v, Act, slope));
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

// Rows [0, R) x vectors [0, C) of one layer: store(r, col, A @ W + bias); W and bias hold
// whole vectors (a partial last block comes zero-padded, see dense_layer).
template <int R, int C, class Store>
inline void microkernel(const float* A, int64_t lda, const float* W, int64_t ldw, int64_t K,
                        const float* bias, int64_t r0, int64_t col0, const Store store) {
  __m256 acc[R][C];
  MBRL_UNROLL for (int c = 0; c < C; ++c) {
    const __m256 b = _mm256_loadu_ps(bias + 8 * c);
    MBRL_UNROLL for (int r = 0; r < R; ++r) acc[r][c] = b;
  }
  for (int64_t k = 0; k < K; ++k) {
    __m256 w[C];
    MBRL_UNROLL for (int c = 0; c < C; ++c) w[c] = _mm256_loadu_ps(W + k * ldw + 8 * c);
    MBRL_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      MBRL_UNROLL for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(a, w[c], acc[r][c]);
    }
  }
  MBRL_UNROLL for (int r = 0; r < R; ++r)
    MBRL_UNROLL for (int c = 0; c < C; ++c) store(r0 + r, col0 + 8 * c, acc[r][c]);
}

// One column block over every row of the tile: its weight panel (K x 8C floats,
// 19.2 KB at K = 200, C = 3) is reused by rows_pad / R microkernels.
template <int R, int C, class Store>
void column_block(const float* A, int64_t lda, const float* W, int64_t ldw, int64_t K,
                  const float* bias, int64_t rows_pad, int64_t col0, const Store& store) {
  for (int64_t r = 0; r < rows_pad; r += R)
    microkernel<R, C>(A + r * lda, lda, W, ldw, K, bias, r, col0, store);
}

// Column blocks of C vectors, R x C microkernels: 4 x 3 for the bulk; the last 1 or 2
// vectors as 12 x 1 / 6 x 2 when the rows allow (rows_pad % 12 == 0), else 4 x 1 / 4 x 2.
template <int C, class Store>
void column_block_for(bool tall, const float* A, int64_t lda, const float* W, int64_t ldw, int64_t K,
                      const float* bias, int64_t rows_pad, int64_t col0, const Store& store) {
  constexpr int kTall = C == 1 ? 12 : (C == 2 ? 6 : 4);
  if (tall) column_block<kTall, C>(A, lda, W, ldw, K, bias, rows_pad, col0, store);
  else column_block<4, C>(A, lda, W, ldw, K, bias, rows_pad, col0, store);
}

// One layer over rows [0, rows_pad) (a multiple of 4): out = 200 is 25 vectors = 8
// blocks of 3 + 1. panel: scratch for a packed weight panel (pack_panels).
template <class Store>
void dense_layer(const float* A, int64_t lda, const float* W, int64_t K, int64_t out,
                 const float* bias, int64_t rows_pad, const Store& store, float* panel) {
  const int64_t nv = (out + 7) / 8;
  const bool partial = out % 8 != 0, tall = rows_pad % 12 == 0, pack = pack_panels(out, rows_pad);
  for (int64_t v0 = 0; v0 < nv;) {
    const int C = nv - v0 >= 3 ? 3 : static_cast<int>(nv - v0);
    const bool p = partial && v0 + C == nv;
    const float* Wc = W + 8 * v0;
    const float* bc = bias + 8 * v0;
    int64_t ldw = out;
    float bpad[24];
    if (pack || p) {
      // A contiguous copy of the panel (pack_panels), or for the partial last block a
      // zero-padded one: masked loads in the k loop made that block (the 36-wide output
      // layer's 2nd) run at half speed, 3% of a propagate step (perf).
      const int64_t n = p ? out - 8 * v0 : 8 * C;
      for (int64_t k = 0; k < K; ++k) {
        std::copy_n(Wc + k * out, n, panel + k * 8 * C);
        std::fill(panel + k * 8 * C + n, panel + (k + 1) * 8 * C, 0.f);
      }
      std::copy_n(bc, n, bpad);
      std::fill(bpad + n, bpad + 8 * C, 0.f);
      Wc = panel, ldw = 8 * C, bc = bpad;
    }
    const int64_t col0 = 8 * v0;
    if (C == 3) column_block_for<3>(tall, A, lda, Wc, ldw, K, bc, rows_pad, col0, store);
    else if (C == 2) column_block_for<2>(tall, A, lda, Wc, ldw, K, bc, rows_pad, col0, store);
    else column_block_for<1>(tall, A, lda, Wc, ldw, K, bc, rows_pad, col0, store);
    v0 += C;
  }
}

// A hidden layer with its activation as a compile-time constant.
void hidden_layer(int act, const float* A, int64_t lda, const float* W, int64_t K, int64_t out,
                  const float* bias, int64_t rows_pad, float* y, int64_t ld, float slope, float* panel) {
  auto run = [&](auto store) { dense_layer(A, lda, W, K, out, bias, rows_pad, store, panel); };
  switch (act) {
    case kSilu: return run(StoreHidden<kSilu>{y, ld, slope});
    case kRelu: return run(StoreHidden<kRelu>{y, ld, slope});
    case kTanh: return run(StoreHidden<kTanh>{y, ld, slope});
    case kElu: return run(StoreHidden<kElu>{y, ld, slope});
    case kLeakyRelu: return run(StoreHidden<kLeakyRelu>{y, ld, slope});
    default: return run(StoreHidden<kIdentity>{y, ld, slope});
  }
}

}  // namespace

void forward_tile_avx2(const MLPView& v, int64_t e, int64_t rows, const float* in,
                       int64_t ld_in, float* out, int head, TileWorkspace& ws) {
  const int L = v.num_layers;
  const int64_t d0 = v.sizes[0], rows_pad = padded_rows(rows);
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
      _mm256_storeu_ps(cur + r * ld0 + j, x);
    }
  }

  int64_t lda = ld0;
  for (int l = 0; l + 1 < L; ++l) {
    const int64_t d_in = v.sizes[l], d_out = v.sizes[l + 1];
    const float* W = static_cast<const float*>(v.weights[l]) + e * d_in * d_out;
    hidden_layer(v.activation, cur, lda, W, d_in, d_out, v.biases[l] + e * d_out, rows_pad, nxt,
                 round8(d_out), v.leaky_slope, ws.panel.data());
    std::swap(cur, nxt);
    lda = round8(d_out);
  }
  const int64_t d_in = v.sizes[L - 1], dl = v.sizes[L];
  const float* W = static_cast<const float*>(v.weights[L - 1]) + e * d_in * dl;
  const bool gauss = head != kHeadRaw && v.gaussian();
  const StoreOutput store{out, rows, dl, dl / 2, gauss ? head : int{kHeadRaw},
                          ws.head_max.data(), ws.head_min.data(), ws.head_sel.data()};
  dense_layer(cur, lda, W, d_in, dl, v.biases[L - 1] + e * dl, rows_pad, store, ws.panel.data());
}

}  // namespace mbrl_fast::cpu
