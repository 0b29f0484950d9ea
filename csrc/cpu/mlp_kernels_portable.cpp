// Portable tile forward: standard C++ that the compiler vectorizes for the target (SSE2
// on x86-64, NEON on aarch64; on x86 the same source is also compiled for AVX, below).
// Used where no hand-written path runs (CPUs without AVX2 + FMA, other architectures)
// and when MBRL_FAST_CPU_KERNELS=portable.
//
// The same structure as the AVX2 / AVX-512 tiles, written without intrinsics: a
// microkernel keeps an R x kV block of outputs in a local array the compiler holds in
// vector registers (fixed sizes, fully unrolled rows, `omp simd` over the kV outputs),
// so each weight row is loaded once per R rows and each activation once per kV outputs.
// Bias and activation are applied to the block before it is stored, with the
// vectorizable math of portable_math.h (libm's expf kept the epilogue scalar).
#include <atomic>

#include "cpu/mlp_tile.h"
#include "cpu/portable_math.h"

namespace mbrl_fast::cpu {

namespace {

#define MBRL_UNROLL _Pragma("GCC unroll 16")

// Outputs per block: a multiple of every vector width up to 512 bits.
constexpr int kV = 16;

inline float activate(float x, int act, float slope) {
  switch (act) {
    case kSilu: return pmath::silu(x);
    case kRelu: return x > 0.f || x != x ? x : 0.f;
    case kTanh: return pmath::tanh(x);
    case kElu: return x > 0.f || x != x ? x : pmath::exp(x) - 1.f;
    case kLeakyRelu: return x > 0.f || x != x ? x : x * slope;
    default: return x;
  }
}

// acc [R, kV] (+)= A[R, K] @ W[K, kV] (weights row stride ldw), started at bias [kV].
template <int R>
inline void block_product(const float* __restrict A, int64_t lda, const float* __restrict W,
                          int64_t ldw, int64_t K, const float* __restrict bias, float (&acc)[R][kV]) {
  MBRL_UNROLL for (int r = 0; r < R; ++r)
#pragma omp simd
    for (int j = 0; j < kV; ++j) acc[r][j] = bias[j];
  for (int64_t k = 0; k < K; ++k) {
    const float* __restrict w = W + k * ldw;
    MBRL_UNROLL for (int r = 0; r < R; ++r) {
      const float a = A[r * lda + k];
#pragma omp simd
      for (int j = 0; j < kV; ++j) acc[r][j] += a * w[j];
    }
  }
}

// One layer over rows [0, rows_pad): Y[:, :out] = act(A @ W + b), Y row stride ldy
// (>= out rounded up to kV: whole blocks are stored). Act is a compile-time constant.
template <int R, int Act>
void dense_layer(const float* A, int64_t lda, const float* W, int64_t K, int64_t out,
                 const float* bias, int64_t rows_pad, float* Y, int64_t ldy, float slope,
                 std::vector<float>& panel) {
  for (int64_t c0 = 0; c0 < out; c0 += kV) {
    const int64_t nc = std::min<int64_t>(kV, out - c0);
    const float* Wc = W + c0;
    const float* bc = bias + c0;
    int64_t ldw = out;
    float bpad[kV] = {};
    // A contiguous copy of the weight panel: for the last, partial block (zero-padded), and
    // where rows 256 B apart would evict each other (pack_panels).
    if (nc < kV || pack_panels(out, rows_pad)) {
      panel.assign(K * kV, 0.f);
      for (int64_t k = 0; k < K; ++k) std::copy_n(W + k * out + c0, nc, panel.data() + k * kV);
      std::copy_n(bias + c0, nc, bpad);
      Wc = panel.data(), bc = bpad, ldw = kV;
    }
    for (int64_t r0 = 0; r0 < rows_pad; r0 += R) {
      float acc[R][kV];
      block_product<R>(A + r0 * lda, lda, Wc, ldw, K, bc, acc);
      MBRL_UNROLL for (int r = 0; r < R; ++r) {
        float* y = Y + (r0 + r) * ldy + c0;
#pragma omp simd
        for (int j = 0; j < kV; ++j) y[j] = activate(acc[r][j], Act, slope);
      }
    }
  }
}

template <int R>
void dense_layer_act(int act, const float* A, int64_t lda, const float* W, int64_t K, int64_t out,
                     const float* bias, int64_t rows_pad, float* Y, int64_t ldy, float slope,
                     std::vector<float>& panel) {
  switch (act) {
    case kSilu: return dense_layer<R, kSilu>(A, lda, W, K, out, bias, rows_pad, Y, ldy, slope, panel);
    case kRelu: return dense_layer<R, kRelu>(A, lda, W, K, out, bias, rows_pad, Y, ldy, slope, panel);
    case kTanh: return dense_layer<R, kTanh>(A, lda, W, K, out, bias, rows_pad, Y, ldy, slope, panel);
    case kElu: return dense_layer<R, kElu>(A, lda, W, K, out, bias, rows_pad, Y, ldy, slope, panel);
    case kLeakyRelu:
      return dense_layer<R, kLeakyRelu>(A, lda, W, K, out, bias, rows_pad, Y, ldy, slope, panel);
    default: return dense_layer<R, kIdentity>(A, lda, W, K, out, bias, rows_pad, Y, ldy, slope, panel);
  }
}

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The tile with R-row blocks (see forward_tile_portable for R per target).
template <int R>
void forward_tile_generic(const MLPView& v, int64_t e, int64_t rows, const float* in, int64_t ld_in,
                          float* out, int head, TileWorkspace& ws) {
  static_assert(kTileRows % R == 0, "block height must divide the tile");
  const int L = v.num_layers;
  const int64_t d0 = v.sizes[0], rows_pad = round_up(rows, R);
  float* cur = ws.f0.data();
  float* nxt = ws.f1.data();
  thread_local std::vector<float> panel;

  // Layer 0 input: (x - mean) / std; scratch rows are zero inputs.
  for (int64_t r = 0; r < rows_pad; ++r) {
    float* a = cur + r * d0;
    for (int64_t j = 0; j < d0; ++j) {
      const float x = r < rows ? in[r * ld_in + j] : 0.f;
      a[j] = v.in_mean ? (x - v.in_mean[j]) / v.in_std[j] : x;
    }
  }
  // Hidden layers (activation) and the last layer (identity), each into
  // a buffer of row stride round_up(d_out, kV) (the workspace width is a multiple of 32).
  int64_t lda = d0;
  for (int l = 0; l < L; ++l) {
    const int64_t d_in = v.sizes[l], d_out = v.sizes[l + 1], ldy = round_up(d_out, kV);
    const float* W = static_cast<const float*>(v.weights[l]) + e * d_in * d_out;
    const bool last = l + 1 == L;
    dense_layer_act<R>(last ? kIdentity : v.activation, cur, lda, W, d_in, d_out, v.biases[l] + e * d_out,
                    rows_pad, nxt, ldy, v.leaky_slope, panel);
    std::swap(cur, nxt);
    lda = ldy;
  }
  // cur holds y [rows_pad, d_L] (row stride lda): the tile's output, head applied.
  const int64_t dl = v.sizes[L], half = dl / 2;
  const bool gauss = head != kHeadRaw && v.gaussian();
  for (int64_t r = 0; r < rows; ++r) {
    const float* y = cur + r * lda;
    float* o = out + r * dl;
    if (!gauss) {
      std::copy_n(y, dl, o);
      continue;
    }
    std::copy_n(y, half, o);
    const bool std_out = head == kHeadStd;
#pragma omp simd
    for (int64_t j = 0; j < half; ++j) {
      const float lv = pmath::soft_bound_logvar(y[half + j], v.max_logvar[j], v.min_logvar[j]);
      o[half + j] = std_out ? pmath::exp(0.5f * lv) : lv;
    }
  }
}

}  // namespace

#if defined(MBRL_FAST_X86)
// The same source compiled for AVX (8-wide, 16 ymm registers, still no FMA): the portable
// path of x86 CPUs that have AVX but not AVX2 + FMA (Sandy / Ivy Bridge, Bulldozer).
// flatten inlines the whole tile here, so all of it is compiled for AVX.
__attribute__((target("avx"), flatten)) static void forward_tile_portable_avx(
    const MLPView& v, int64_t e, int64_t rows, const float* in, int64_t ld_in, float* out, int head,
    TileWorkspace& ws) {
  forward_tile_generic<4>(v, e, rows, in, ld_in, out, head, ws);  // 8 ymm accumulators
}
#endif

std::atomic<bool> g_portable_baseline_only{false};

// Rows per block by target: x86-64's baseline has 16 xmm registers and no FMA, so 2 x 16
// outputs (8 accumulators + 4 weight vectors + broadcast and product temporaries); with
// AVX, 4 x 16 (8 ymm accumulators); aarch64 has 32 NEON registers and a by-element FMA,
// so 6 x 16 (24 accumulators + 4 weights).
void forward_tile_portable(const MLPView& v, int64_t e, int64_t rows, const float* in,
                           int64_t ld_in, float* out, int head, TileWorkspace& ws) {
#if defined(MBRL_FAST_X86)
  static const bool avx = __builtin_cpu_supports("avx");
  if (avx && !g_portable_baseline_only.load(std::memory_order_relaxed))
    return forward_tile_portable_avx(v, e, rows, in, ld_in, out, head, ws);
  forward_tile_generic<2>(v, e, rows, in, ld_in, out, head, ws);
#elif defined(__aarch64__)
  forward_tile_generic<6>(v, e, rows, in, ld_in, out, head, ws);
#else
  forward_tile_generic<2>(v, e, rows, in, ld_in, out, head, ws);
#endif
}

}  // namespace mbrl_fast::cpu
