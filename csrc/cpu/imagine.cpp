// The imagination op's entry points and its portable kernels (plain loops the compiler
// vectorizes for whatever ISA this file is built for; no ISA flags needed).
#include "cpu/imagine.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_features.h"

namespace mbrl_fast::cpu::imagine_portable {

// GEMM in plain loops over column blocks of kImPanel (B row-major, or panel-packed), four
// rows at a time so each B row is read once per four rows. relu / mask: C = max(C, 0), or
// C *= (mask > 0) with mask laid out as C, after the product (the AVX-512 unit's epilogue).
struct Gemm {
  static void finish(int64_t M, int64_t N, float* C, int64_t ldc, bool relu, const float* mask) {
    if (!relu && !mask) return;
    for (int64_t i = 0; i < M; ++i) {
      float* c = C + i * ldc;
      const float* h = mask ? mask + i * ldc : nullptr;
      for (int64_t j = 0; j < N; ++j) {
        if (relu) c[j] = c[j] > 0.f ? c[j] : 0.f;
        if (h) c[j] *= h[j] > 0.f ? 1.f : 0.f;
      }
    }
  }
  static void init(int64_t M, int64_t N, float* C, int64_t ldc, const float* bias, bool acc) {
    if (acc) return;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = bias ? bias[j] : 0.f;
  }
  // B's row k of the column block starting at j0: (pointer, block width)
  template <class U>
  static const U* brow(const U* B, int64_t ldb, int64_t K, int64_t j0, int64_t k, bool panel) {
    return panel ? B + (j0 / kImPanel) * K * kImPanel + k * kImPanel : B + k * ldb + j0;
  }
  // A's element (i, k): row-major [M, K], or with `ta` stored [K, M]
  template <class U>
  static U aat(const U* A, int64_t lda, int64_t i, int64_t k, bool ta) {
    return ta ? A[k * lda + i] : A[i * lda + k];
  }
  static void f32(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                  int64_t ldb, float* C, int64_t ldc, const float* bias, bool acc, bool panel,
                  bool ta, bool relu = false, const float* mask = nullptr) {
    f32_product(M, N, K, A, lda, B, ldb, C, ldc, bias, acc, panel, ta);
    finish(M, N, C, ldc, relu, mask);
  }
  static void f32_product(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                          const float* B, int64_t ldb, float* C, int64_t ldc, const float* bias,
                          bool acc, bool panel, bool ta) {
    init(M, N, C, ldc, bias, acc);
    for (int64_t j0 = 0; j0 < N; j0 += kImPanel) {
      const int64_t nb = std::min(kImPanel, N - j0);
      int64_t i = 0;
      for (; i + 4 <= M; i += 4) {
        float* c0 = C + i * ldc + j0;
        float* c1 = c0 + ldc;
        float* c2 = c1 + ldc;
        float* c3 = c2 + ldc;
        for (int64_t k = 0; k < K; ++k) {
          const float a0 = aat(A, lda, i, k, ta), a1 = aat(A, lda, i + 1, k, ta),
                      a2 = aat(A, lda, i + 2, k, ta), a3 = aat(A, lda, i + 3, k, ta);
          const float* b = brow(B, ldb, K, j0, k, panel);
          for (int64_t j = 0; j < nb; ++j) {
            c0[j] += a0 * b[j];
            c1[j] += a1 * b[j];
            c2[j] += a2 * b[j];
            c3[j] += a3 * b[j];
          }
        }
      }
      for (; i < M; ++i) {
        float* c = C + i * ldc + j0;
        for (int64_t k = 0; k < K; ++k) {
          const float a = aat(A, lda, i, k, ta);
          const float* b = brow(B, ldb, K, j0, k, panel);
          for (int64_t j = 0; j < nb; ++j) c[j] += a * b[j];
        }
      }
    }
  }
  static float lo(uint32_t u) {
    const uint32_t v = u << 16;
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  }
  static float hi(uint32_t u) {
    const uint32_t v = u & 0xffff0000u;
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  }
  static void bf16(int64_t M, int64_t N, int64_t K2, const uint32_t* A, int64_t lda,
                   const uint32_t* B, int64_t ldb, float* C, int64_t ldc, const float* bias,
                   bool acc, bool panel, bool ta, bool relu = false, const float* mask = nullptr) {
    bf16_product(M, N, K2, A, lda, B, ldb, C, ldc, bias, acc, panel, ta);
    finish(M, N, C, ldc, relu, mask);
  }
  static void bf16_product(int64_t M, int64_t N, int64_t K2, const uint32_t* A, int64_t lda,
                           const uint32_t* B, int64_t ldb, float* C, int64_t ldc,
                           const float* bias, bool acc, bool panel, bool ta) {
    init(M, N, C, ldc, bias, acc);
    for (int64_t j0 = 0; j0 < N; j0 += kImPanel) {
      const int64_t nb = std::min(kImPanel, N - j0);
      for (int64_t i = 0; i < M; ++i) {
        float* c = C + i * ldc + j0;
        for (int64_t k = 0; k < K2; ++k) {
          const uint32_t av = aat(A, lda, i, k, ta);
          const float a0 = lo(av), a1 = hi(av);
          const uint32_t* b = brow(B, ldb, K2, j0, k, panel);
          for (int64_t j = 0; j < nb; ++j) c[j] += a0 * lo(b[j]) + a1 * hi(b[j]);
        }
      }
    }
  }
};

}  // namespace mbrl_fast::cpu::imagine_portable

#define IMAGINE_NS imagine_portable
#include "cpu/imagine_impl.h"
#undef IMAGINE_NS

namespace mbrl_fast::cpu {

#if defined(MBRL_FAST_X86)
// imagine_avx512.cpp
void imagine_run_avx512(const ImagineArgs& a, int64_t R, bool backward, int threads, float* ws_f,
                        int64_t ws_nf, uint32_t* ws_u, int64_t ws_nu, float* grads,
                        int64_t grad_n);
#endif

int imagine_resolve_isa(int isa, bool bf16) {
#if defined(MBRL_FAST_X86)
  if (isa == kImAvx512 && cpu_has_avx512() && (!bf16 || cpu_has_avx512_bf16())) return kImAvx512;
#endif
  return kImPortable;
}

namespace {

// Rows per tile: each weight panel is streamed once per tile and step and reused by every
// row of the tile, and the per-thread weight-gradient accumulators are read and written
// once per tile and step, so larger tiles move less memory. Dreamer V1 networks, B = 2500,
// H = 15, forward + backward, bf16, 1 thread, CPU seconds (3 runs, loaded machine): 64 rows
// 2.4-3.0, 128 rows 2.0-2.1, 256 rows 1.7-1.8, 512 rows 1.8-2.0 (fp32: 128 3.1-3.9,
// 256 2.8-3.3, 512 3.1-3.3).
constexpr int64_t kDefaultTileRows = 256;

inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// m [rows, cols] -> column panels [ceil(cols / P), rows, P] (zero-padded).
std::vector<float> panels(const float* m, int64_t rows, int64_t cols) {
  const int64_t np = (cols + kImPanel - 1) / kImPanel;
  std::vector<float> out(np * rows * kImPanel, 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out[(c / kImPanel) * rows * kImPanel + r * kImPanel + c % kImPanel] = m[r * cols + c];
  return out;
}

// m [rows, cols] -> bf16 pairs along rows in column panels [ceil(cols / P), ceil(rows / 2), P].
std::vector<uint32_t> pair_panels(const float* m, int64_t rows, int64_t cols) {
  const int64_t np = (cols + kImPanel - 1) / kImPanel, r2n = (rows + 1) / 2;
  std::vector<uint32_t> out(np * r2n * kImPanel, 0u);
  for (int64_t r2 = 0; r2 < r2n; ++r2)
    for (int64_t c = 0; c < cols; ++c) {
      const uint32_t lo = bf16_bits(m[2 * r2 * cols + c]);
      const uint32_t hi = 2 * r2 + 1 < rows ? bf16_bits(m[(2 * r2 + 1) * cols + c]) : 0u;
      out[(c / kImPanel) * r2n * kImPanel + r2 * kImPanel + c % kImPanel] = lo | (hi << 16);
    }
  return out;
}

// The per-call weight layouts the kernels read (column panels; bf16 pairs).
struct Prepared {
  std::vector<std::vector<float>> f;
  std::vector<std::vector<uint32_t>> u;
};

void prepare(ImagineArgs& a, bool backward, Prepared& p) {
  for (int i = 0; i < a.num_layers; ++i) {
    ImagineLayer& l = a.layers[i];
    if (a.bf16) {
      p.u.push_back(pair_panels(l.w, l.in, l.out));
      l.wp = p.u.back().data();
    } else {
      p.f.push_back(panels(l.w, l.in, l.out));
      l.wpan = p.f.back().data();
    }
    if (backward) {
      std::vector<float> wt(l.in * l.out);
      for (int64_t r = 0; r < l.in; ++r)
        for (int64_t c = 0; c < l.out; ++c) wt[c * l.in + r] = l.w[r * l.out + c];
      if (a.bf16) {
        p.u.push_back(pair_panels(wt.data(), l.out, l.in));
        l.wtp = p.u.back().data();
      } else {
        p.f.push_back(panels(wt.data(), l.out, l.in));
        l.wtpan = p.f.back().data();
      }
    }
  }
}

void run(ImagineArgs& a, int isa, int64_t tile_rows, bool backward) {
  const int64_t R = tile_rows > 0 ? tile_rows : kDefaultTileRows;
  Prepared prepared;
  prepared.f.reserve(2 * a.num_layers);  // no reallocation: layers keep pointers into them
  prepared.u.reserve(2 * a.num_layers);
  prepare(a, backward, prepared);
  int64_t grad_n = 0;
  for (int i = 0; i < a.num_layers; ++i) {
    ImagineLayer& l = a.layers[i];
    l.grad_offset = -1;
    if (backward && l.dw && l.db) {
      l.grad_offset = grad_n;
      grad_n += (l.in * l.out + l.out + 15) / 16 * 16;
    }
  }
  const int64_t tiles = (a.batch + R - 1) / R;
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), tiles)));
  int64_t step_n = 0, nf = 0, nu = 0;
  imagine_portable::workspace_size(a, R, backward, &step_n, &nf, &nu);
  std::vector<float> ws_f(threads * nf, 0.f);
  std::vector<uint32_t> ws_u(threads * nu, 0u);
  std::vector<float> grads(backward ? threads * grad_n : 0, 0.f);
  float* g = grad_n > 0 ? grads.data() : nullptr;
#if defined(MBRL_FAST_X86)
  if (imagine_resolve_isa(isa, a.bf16) == kImAvx512) {
    imagine_run_avx512(a, R, backward, threads, ws_f.data(), nf, ws_u.data(), nu, g, grad_n);
    return;
  }
#endif
  imagine_portable::run(a, R, backward, threads, ws_f.data(), nf, ws_u.data(), nu, g, grad_n);
}

}  // namespace

void imagine_forward(ImagineArgs& args, int isa, int64_t tile_rows) {
  run(args, isa, tile_rows, false);
}

void imagine_backward(ImagineArgs& args, int isa, int64_t tile_rows) {
  run(args, isa, tile_rows, true);
}

void imagine_call(bool backward, const std::vector<int64_t>& dims, int stoch_kind, int activation,
                  const std::vector<double>& consts, bool bf16,
                  const std::vector<int64_t>& layer_in, const std::vector<int64_t>& layer_out,
                  const std::vector<uintptr_t>& layer_w, const std::vector<uintptr_t>& layer_b,
                  const std::vector<uintptr_t>& layer_dw, const std::vector<uintptr_t>& layer_db,
                  const std::vector<int>& counts, const std::vector<uintptr_t>& io,
                  const std::vector<uintptr_t>& heads, const std::vector<uintptr_t>& dheads,
                  uintptr_t saved, int64_t saved_floats, int isa, int64_t tile_rows) {
  auto f = [](uintptr_t p) { return reinterpret_cast<float*>(p); };
  if (saved) {
    const int64_t need = imagine_saved_floats(dims, stoch_kind, activation, layer_in, layer_out,
                                              counts, tile_rows);
    if (saved_floats < need)
      throw std::invalid_argument("imagine: the saved-activations buffer holds " +
                                  std::to_string(saved_floats) + " floats, the call needs " +
                                  std::to_string(need));
  }
  ImagineArgs a;
  a.batch = dims[0]; a.horizon = dims[1]; a.deter = dims[2]; a.stoch = dims[3];
  a.act = dims[4]; a.hidden = dims[5]; a.classes = dims[6];
  a.stoch_kind = stoch_kind; a.activation = activation;
  a.unimix = static_cast<float>(consts[0]); a.z_min_std = static_cast<float>(consts[1]);
  a.act_min_std = static_cast<float>(consts[2]); a.act_max_std = static_cast<float>(consts[3]);
  a.act_mean_scale = static_cast<float>(consts[4]);
  a.bf16 = bf16;
  std::vector<ImagineLayer> layers(layer_in.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i].in = layer_in[i]; layers[i].out = layer_out[i];
    layers[i].w = f(layer_w[i]); layers[i].b = f(layer_b[i]);
    layers[i].dw = f(layer_dw[i]); layers[i].db = f(layer_db[i]);
  }
  a.layers = layers.data();
  a.num_layers = static_cast<int>(layers.size());
  a.prior_first = 2; a.prior_count = counts[0];
  a.actor_first = 2 + counts[0]; a.actor_count = counts[1];
  a.num_heads = static_cast<int>(counts.size()) - 3;
  a.detached_heads = counts.back();
  std::vector<int> first(a.num_heads), count(a.num_heads);
  int next = a.actor_first + a.actor_count;
  for (int k = 0; k < a.num_heads; ++k) {
    first[k] = next; count[k] = counts[2 + k]; next += count[k];
  }
  a.head_first = first.data(); a.head_count = count.data();
  a.start_h = f(io[0]); a.start_z = f(io[1]); a.eps = f(io[2]); a.noise_z = f(io[3]);
  a.h = f(io[4]); a.z = f(io[5]); a.action = f(io[6]); a.mean = f(io[7]); a.stdev = f(io[8]);
  a.dh = f(io[9]); a.dz = f(io[10]); a.daction = f(io[11]); a.dmean = f(io[12]);
  a.dstd = f(io[13]); a.d_start_h = f(io[14]); a.d_start_z = f(io[15]);
  std::vector<float*> hp(heads.size());
  std::vector<const float*> dhp(dheads.size());
  for (size_t k = 0; k < heads.size(); ++k) hp[k] = f(heads[k]);
  for (size_t k = 0; k < dheads.size(); ++k) dhp[k] = f(dheads[k]);
  a.heads = hp.data();
  a.dheads = dhp.data();
  a.saved = f(saved);
  run(a, isa, tile_rows, backward);
}

int64_t imagine_saved_floats(const std::vector<int64_t>& dims, int stoch_kind, int activation,
                             const std::vector<int64_t>& layer_in,
                             const std::vector<int64_t>& layer_out, const std::vector<int>& counts,
                             int64_t tile_rows) {
  const std::vector<uintptr_t> none(layer_in.size(), 0);
  ImagineArgs a;
  a.batch = dims[0]; a.horizon = dims[1]; a.deter = dims[2]; a.stoch = dims[3];
  a.act = dims[4]; a.hidden = dims[5]; a.classes = dims[6]; a.stoch_kind = stoch_kind;
  a.activation = activation;
  std::vector<ImagineLayer> layers(layer_in.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i].in = layer_in[i];
    layers[i].out = layer_out[i];
  }
  a.layers = layers.data();
  a.num_layers = static_cast<int>(layers.size());
  a.prior_count = counts[0];
  a.actor_first = 2 + counts[0];
  a.actor_count = counts[1];
  a.num_heads = static_cast<int>(counts.size()) - 3;
  std::vector<int> first(a.num_heads), count(a.num_heads);
  int next = a.actor_first + a.actor_count;
  for (int k = 0; k < a.num_heads; ++k) {
    first[k] = next; count[k] = counts[2 + k]; next += count[k];
  }
  a.head_first = first.data();
  a.head_count = count.data();
  const int64_t R = tile_rows > 0 ? tile_rows : kDefaultTileRows;
  int64_t step_n = 0, nf = 0, nu = 0;
  imagine_portable::workspace_size(a, R, false, &step_n, &nf, &nu);
  return (a.horizon + 1) * ((a.batch + R - 1) / R) * step_n;
}

}  // namespace mbrl_fast::cpu

// The training MLP op's portable kernels (mlp_train_impl.h, with this unit's Gemm and the
// elementwise bf16 packings of imagine_elementwise.h).
namespace mbrl_fast::cpu::imagine_portable {

struct Pack {
  static void rows(int64_t n, int64_t K, const float* x, int64_t ldx, uint32_t* out) {
    pack_rows(n, K, x, ldx, out);
  }
  static void row_pairs(int64_t n, int64_t N, const float* y, int64_t ldy, uint32_t* out,
                        int64_t ldo) {
    pack_row_pairs(n, N, y, ldy, out, ldo);
  }
};

}  // namespace mbrl_fast::cpu::imagine_portable

#define IMAGINE_NS imagine_portable
#include "cpu/mlp_train_impl.h"
#undef IMAGINE_NS

namespace mbrl_fast::cpu {

void mlp_train_run_portable(const MlpTrainArgs& a, const MlpTrainPacked& p, bool backward,
                            int64_t R, int threads, uint32_t* work, int64_t work_words) {
  imagine_portable::mlp_train_run(a, p, backward, R, threads, work, work_words);
}

}  // namespace mbrl_fast::cpu
