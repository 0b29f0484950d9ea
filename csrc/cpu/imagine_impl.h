// The imagination rollout algorithm (forward, backward), compiled once per ISA: imagine.cpp
// includes it in namespace imagine_portable with plain-loop GEMMs, imagine_avx512.cpp in
// namespace imagine_avx512 (AVX-512 flags) with register-blocked GEMM microkernels. The
// elementwise code is plain C++ written to vectorize (branch-free math in
// imagine_elementwise.h), so each translation unit gets its ISA's vector width. Here: the
// tile's buffers and forward pass and the entry points; its backward pass is
// imagine_backward.h.
//
// Before including: #define IMAGINE_NS <namespace name> and define, inside
// mbrl_fast::cpu::IMAGINE_NS, struct Gemm with
//   static void f32(M, N, K, const float* A, lda, const float* B, ldb, float* C, ldc,
//                   const float* bias, bool acc, bool panel, bool ta);
//                   // C (= bias | += ) A[M,K] B[K,N]
//   static void bf16(M, N, K2, const uint32_t* A, lda, const uint32_t* B, ldb, float* C, ldc,
//                    const float* bias, bool acc, bool panel, bool ta);  // bf16 pairs along k
// A is row-major [M, K] (lda), or with `ta` stored transposed as [K, M] (lda): the weight
// gradient X^T dY reads X [rows, in] in place. B is row-major (ldb), or with `panel` packed
// as [ceil(N / kImPanel), K, kImPanel] (ldb unused).
// Nothing here uses the standard library's out-of-line code (containers, streams): a
// function compiled with AVX-512 flags must not be shared with the portable unit.
#include <cstdint>
#include <cstring>

#include <omp.h>

#include "cpu/imagine.h"

#include "cpu/imagine_elementwise.h"  // exp_, activations, bf16 packing

namespace mbrl_fast::cpu::IMAGINE_NS {

// ---- the rollout over one tile -----------------------------------------------------------

// Buffers of one MLP over a tile: pre / post activations of each hidden layer, the output.
struct MlpBufs {
  float* pre[kImMaxLayers];
  float* post[kImMaxLayers];
  float* out;
};

struct Arena {  // a bump allocator over one thread's workspace
  float* f;
  uint32_t* u;
  int64_t nf = 0, nu = 0;
  float* floats(int64_t n) { float* p = f ? f + nf : nullptr; nf += (n + 15) / 16 * 16; return p; }
  uint32_t* words(int64_t n) { uint32_t* p = u ? u + nu : nullptr; nu += (n + 15) / 16 * 16; return p; }
};

template <class Gemm>
struct Tile {
  Tile(const ImagineArgs& args, int64_t rows, float* grad_arena)
      : a(args), R(rows), grads(grad_arena) {}

  const ImagineArgs& a;
  int64_t R;  // rows per tile (capacity)
  float* grads;  // this thread's weight-gradient accumulators (nullptr in the forward)

  // one step's activations (a region of `saved`, or of the thread's arena)
  float *act_out = nullptr, *mean = nullptr, *stdv = nullptr, *u = nullptr, *zin = nullptr,
        *xpre = nullptr, *xh = nullptr, *gates = nullptr;
  MlpBufs actor{}, prior{}, heads[16]{};
  // the thread's work buffers
  float *hz[2] = {nullptr, nullptr};
  float *dfeat = nullptr, *dnext = nullptr, *dx0 = nullptr, *dx1 = nullptr, *dgates = nullptr,
        *dxh = nullptr, *dzin = nullptr, *dout = nullptr;
  uint32_t *pa = nullptr, *pb = nullptr;  // bf16 packing of GEMM operands

  int64_t F() const { return a.deter + a.stoch; }
  int64_t P() const { return a.stoch_kind == kImGaussian ? 2 * a.stoch : a.stoch; }
  const ImagineLayer& L(int i) const { return a.layers[i]; }

  int64_t max_width() const {
    int64_t w = max_(max_(F(), a.hidden + a.deter), 3 * a.deter);
    for (int i = 0; i < a.num_layers; ++i) w = max_(w, max_(L(i).in, L(i).out));
    return max_(w, a.stoch + a.act);
  }

  // Hidden layers keep their pre-activation only for SiLU (the others differentiate from the
  // post-activation, computed in place): half the saved floats.
  void alloc_mlp(Arena& ar, MlpBufs& m, int first, int count) {
    for (int l = 0; l + 1 < count; ++l) {
      m.post[l] = ar.floats(R * L(first + l).out);
      m.pre[l] = a.activation == kImSilu ? ar.floats(R * L(first + l).out) : m.post[l];
    }
    m.out = ar.floats(R * L(first + count - 1).out);
  }

  // The step's activations in `ar` (pointers stay null when the arena only measures).
  void layout_step(Arena& ar) {
    const int64_t A = a.act;
    act_out = ar.floats(R * 2 * A);
    mean = ar.floats(R * A);
    stdv = ar.floats(R * A);
    u = ar.floats(R * A);
    zin = ar.floats(R * (a.stoch + A));
    xpre = a.activation == kImSilu ? ar.floats(R * a.hidden) : nullptr;  // else: x in xh
    xh = ar.floats(R * (a.hidden + a.deter));
    gates = ar.floats(R * 3 * a.deter);
    alloc_mlp(ar, actor, a.actor_first, a.actor_count);
    alloc_mlp(ar, prior, a.prior_first, a.prior_count);
    for (int k = 0; k < a.num_heads; ++k) alloc_mlp(ar, heads[k], a.head_first[k], a.head_count[k]);
  }
  void use_step(float* region) {
    Arena ar{region, nullptr};
    layout_step(ar);
  }
  void layout_work(Arena& ar, bool backward) {
    const int64_t F_ = F(), W = max_width();
    hz[0] = ar.floats(R * F_);
    hz[1] = ar.floats(R * F_);
    if (backward) {
      dfeat = ar.floats(R * F_);
      dnext = ar.floats(R * F_);
      dx0 = ar.floats(R * W);
      dx1 = ar.floats(R * W);
      dgates = ar.floats(R * 3 * a.deter);
      dxh = ar.floats(R * (a.hidden + a.deter));
      dzin = ar.floats(R * (a.stoch + a.act));
      dout = ar.floats(R * W);
      pb = ar.words(R * W);
    }
    pa = ar.words(R * W);
  }

  // ---- dense layers ----------------------------------------------------------------------
  void dense_fwd(const ImagineLayer& l, int64_t n, const float* x, int64_t ldx, float* y,
                 int64_t ldy = 0) {
    ldy = ldy ? ldy : l.out;
    if (a.bf16) {
      pack_rows(n, l.in, x, ldx, pa);
      Gemm::bf16(n, l.out, half_up(l.in), pa, half_up(l.in), l.wp, 0, y, ldy, l.b, false, true,
                 false);
    } else {
      Gemm::f32(n, l.out, l.in, x, ldx, l.wpan, 0, y, ldy, l.b, false, true, false);
    }
  }
  // dx (= | +=) dy [n, out] @ w^T, dx with leading dim ldx
  void dense_dx(const ImagineLayer& l, int64_t n, const float* dy, float* dx, int64_t ldx, bool acc) {
    if (a.bf16) {
      pack_rows(n, l.out, dy, l.out, pa);
      Gemm::bf16(n, l.in, half_up(l.out), pa, half_up(l.out), l.wtp, 0, dx, ldx, nullptr, acc,
                 true, false);
    } else {
      Gemm::f32(n, l.in, l.out, dy, l.out, l.wtpan, 0, dx, ldx, nullptr, acc, true, false);
    }
  }
  // dw += x^T [in, n] @ dy [n, out]; db += column sums of dy
  void dense_dw(const ImagineLayer& l, int64_t n, const float* x, int64_t ldx, const float* dy) {
    if (l.grad_offset < 0) return;
    float* dw = grads + l.grad_offset;
    float* db = dw + l.in * l.out;
    if (a.bf16) {
      pack_row_pairs(n, l.in, x, ldx, pa);  // [ceil(n/2), in]: X^T read transposed
      pack_row_pairs(n, l.out, dy, l.out, pb);
      Gemm::bf16(l.in, l.out, half_up(n), pa, l.in, pb, l.out, dw, l.out, nullptr, true, false,
                 true);
    } else {
      Gemm::f32(l.in, l.out, n, x, ldx, dy, l.out, dw, l.out, nullptr, true, false, true);
    }
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < l.out; ++j) db[j] += dy[r * l.out + j];
  }

  // ---- MLPs ----------------------------------------------------------------------------
  void mlp_fwd(int first, int count, MlpBufs& m, int64_t n, const float* x, int64_t ldx) {
    for (int l = 0; l < count; ++l) {
      const ImagineLayer& ly = L(first + l);
      const float* in = l == 0 ? x : m.post[l - 1];
      const int64_t ld = l == 0 ? ldx : ly.in;
      if (l + 1 < count) {
        dense_fwd(ly, n, in, ld, m.pre[l]);
        act_rows(a.activation, n, ly.out, m.pre[l], ly.out, m.post[l], ly.out);
      } else {
        dense_fwd(ly, n, in, ld, m.out);
      }
    }
  }
  // dy [n, out_last] -> dx (+)= into dx [n, ldx] (nullptr: not needed); dy is not changed
  void mlp_bwd(int first, int count, MlpBufs& m, int64_t n, const float* x, int64_t ldx,
               float* dy, float* dx, bool acc) {
    float* g = dy;
    for (int l = count - 1; l >= 0; --l) {
      const ImagineLayer& ly = L(first + l);
      const float* in = l == 0 ? x : m.post[l - 1];
      dense_dw(ly, n, in, l == 0 ? ldx : ly.in, g);
      if (l == 0) {
        if (dx) dense_dx(ly, n, g, dx, ldx, acc);
      } else {
        float* gn = g == dx0 ? dx1 : dx0;
        dense_dx(ly, n, g, gn, ly.in, false);
        act_grad_rows(a.activation, n, ly.in, m.pre[l - 1], m.post[l - 1], ly.in, gn);
        g = gn;
      }
    }
  }

  // ---- one step ---------------------------------------------------------------------------
  // Actor on feat [n, F]: mean, std, the pre-tanh sample u and action a_t (into zin[:, S:]).
  void actor_fwd(int64_t n, const float* feat, const float* eps) {
    const int64_t A = a.act, S = a.stoch;
    mlp_fwd(a.actor_first, a.actor_count, actor, n, feat, F());
    const float c = a.act_mean_scale, lo = a.act_min_std, span = a.act_max_std - a.act_min_std;
    for (int64_t r = 0; r < n; ++r) {
      const float* o = actor.out + r * 2 * A;
#pragma omp simd
      for (int64_t j = 0; j < A; ++j) {
        const float mu = c * tanh_(o[j] / c);
        const float sd = lo + span * sigmoid_(o[A + j] + 2.f);
        const float uu = mu + sd * eps[r * A + j];
        mean[r * A + j] = mu;
        stdv[r * A + j] = sd;
        u[r * A + j] = uu;
        zin[r * (S + A) + S + j] = tanh_(uu);
      }
    }
  }

  // feat [n, F] = (h_t, z_t) -> next [n, F] = (h_{t+1}, z_{t+1}); actor already run.
  void dynamics_fwd(int64_t n, const float* feat, const float* nz, float* next) {
    const int64_t D = a.deter, S = a.stoch, A = a.act, Hi = a.hidden, F_ = F();
    for (int64_t r = 0; r < n; ++r) std::memcpy(zin + r * (S + A), feat + r * F_ + D, S * 4);
    // xh rows: [x | h_t]; x's pre-activation kept apart only for SiLU
    if (xpre) {
      dense_fwd(L(0), n, zin, S + A, xpre);
      act_rows(a.activation, n, Hi, xpre, Hi, xh, Hi + D);
    } else {
      dense_fwd(L(0), n, zin, S + A, xh, Hi + D);
      act_rows(a.activation, n, Hi, xh, Hi + D, xh, Hi + D);
    }
    for (int64_t r = 0; r < n; ++r) std::memcpy(xh + r * (Hi + D) + Hi, feat + r * F_, D * 4);
    dense_fwd(L(1), n, xh, Hi + D, gates);
    for (int64_t r = 0; r < n; ++r) {
      const float* g = gates + r * 3 * D;
      const float* h = feat + r * F_;
      float* hn = next + r * F_;
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) {
        const float rs = sigmoid_(g[j]);
        const float cand = tanh_(rs * g[D + j]);
        const float up = sigmoid_(g[2 * D + j] - 1.f);
        hn[j] = up * cand + (1.f - up) * h[j];
      }
    }
    mlp_fwd(a.prior_first, a.prior_count, prior, n, next, F_);
    const float* st = prior.out;
    if (a.stoch_kind == kImGaussian) {
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < S; ++j) {
          const float mu = st[r * 2 * S + j], s = st[r * 2 * S + S + j];
          next[r * F_ + D + j] = mu + (softplus_(s) + a.z_min_std) * nz[r * S + j];
        }
    } else {
      const int64_t C = a.classes, G = S / C;
      for (int64_t r = 0; r < n; ++r)
        for (int64_t g = 0; g < G; ++g) {
          const float* lg = st + r * S + g * C;
          float* zo = next + r * F_ + D + g * C;
          const float uu = nz[r * G + g];
          float mx = lg[0];
          for (int64_t j = 1; j < C; ++j) mx = lg[j] > mx ? lg[j] : mx;
          float sum = 0.f;
          for (int64_t j = 0; j < C; ++j) { zo[j] = std::exp(lg[j] - mx); sum += zo[j]; }
          // torch.cumsum accumulates float in double
          double cdf = 0.0;
          int64_t k = 0;
          const float inv = 1.f / sum;
          for (int64_t j = 0; j < C; ++j) {
            const float p = (1.f - a.unimix) * (zo[j] * inv) + a.unimix / static_cast<float>(C);
            cdf += p;
            if (static_cast<float>(cdf) <= uu) ++k;
          }
          if (k > C - 1) k = C - 1;
          for (int64_t j = 0; j < C; ++j) zo[j] = j == k ? 1.f : 0.f;
        }
    }
  }

  void heads_fwd(int64_t n, const float* feat) {
    for (int k = 0; k < a.num_heads; ++k) mlp_fwd(a.head_first[k], a.head_count[k], heads[k], n, feat, F());
  }

  // ---- forward over tile `i`, rows [r0, r0 + n); `own`: the step region when nothing is saved
  void forward(int64_t i, int64_t tiles, int64_t step_n, int64_t r0, int64_t n, float* own) {
    const int64_t B = a.batch, D = a.deter, S = a.stoch, A = a.act, F_ = F();
    const int64_t G = a.stoch_kind == kImGaussian ? S : S / a.classes;
    float* cur = hz[0];
    float* nxt = hz[1];
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(cur + r * F_, a.start_h + (r0 + r) * D, D * 4);
      std::memcpy(cur + r * F_ + D, a.start_z + (r0 + r) * S, S * 4);
    }
    for (int64_t t = 0;; ++t) {
      use_step(a.saved ? a.saved + (t * tiles + i) * step_n : own);
      for (int64_t r = 0; r < n; ++r) {
        std::memcpy(a.h + (t * B + r0 + r) * D, cur + r * F_, D * 4);
        std::memcpy(a.z + (t * B + r0 + r) * S, cur + r * F_ + D, S * 4);
      }
      heads_fwd(n, cur);
      for (int k = 0; k < a.num_heads; ++k) {
        const int64_t o = L(a.head_first[k] + a.head_count[k] - 1).out;
        std::memcpy(a.heads[k] + (t * B + r0) * o, heads[k].out, n * o * 4);
      }
      if (t == a.horizon) break;
      actor_fwd(n, cur, a.eps + (t * B + r0) * A);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < A; ++j) a.action[(t * B + r0 + r) * A + j] = zin[r * (S + A) + S + j];
      std::memcpy(a.mean + (t * B + r0) * A, mean, n * A * 4);
      std::memcpy(a.stdev + (t * B + r0) * A, stdv, n * A * 4);
      dynamics_fwd(n, cur, a.noise_z + (t * B + r0) * G, nxt);
      float* sw = cur;
      cur = nxt;
      nxt = sw;
    }
  }

  // Heads' output gradients at step t into dfeat (+=); imagine_backward.h.
  void heads_bwd(int64_t t, int64_t r0, int64_t n, const float* feat);
  // Backward over tile `i`, from the saved activations; imagine_backward.h.
  void backward(int64_t i, int64_t tiles, int64_t step_n, int64_t r0, int64_t n);
};

}  // namespace mbrl_fast::cpu::IMAGINE_NS

#include "cpu/imagine_backward.h"  // Tile<Gemm>::backward, heads_bwd

namespace mbrl_fast::cpu::IMAGINE_NS {

// ---- entry points of this ISA ------------------------------------------------------------

// Floats of one step region (R rows), and floats / words of one thread's work arena.
inline void workspace_size(const ImagineArgs& a, int64_t R, bool backward, int64_t* step_n,
                           int64_t* nf, int64_t* nu) {
  Tile<Gemm> tile(a, R, nullptr);
  Arena step{nullptr, nullptr};
  tile.layout_step(step);
  Arena work{nullptr, nullptr};
  tile.layout_work(work, backward);
  *step_n = step.nf;
  *nf = work.nf + step.nf;  // + the step region of a forward that saves nothing
  *nu = work.nu;
}

// ws_f / ws_u: per-thread workspaces of ws_nf / ws_nu elements (zeroed by the caller);
// grads: per-thread gradient arenas of grad_n floats (zeroed), summed into layers' dw / db.
inline void run(const ImagineArgs& a, int64_t R, bool backward, int threads, float* ws_f,
                int64_t ws_nf, uint32_t* ws_u, int64_t ws_nu, float* grads, int64_t grad_n) {
  const int64_t tiles = (a.batch + R - 1) / R;
  int64_t step_n = 0, nf = 0, nu = 0;
  workspace_size(a, R, backward, &step_n, &nf, &nu);
#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num();
    Tile<Gemm> tile(a, R, grads ? grads + tid * grad_n : nullptr);
    Arena ar{ws_f + tid * ws_nf, ws_u + tid * ws_nu};
    tile.layout_work(ar, backward);
    float* own = ar.floats(step_n);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t r0 = i * R;
      const int64_t n = a.batch - r0 < R ? a.batch - r0 : R;
      if (backward) tile.backward(i, tiles, step_n, r0, n);
      else tile.forward(i, tiles, step_n, r0, n, own);
    }
  }
  if (!grads) return;
  for (int i = 0; i < a.num_layers; ++i) {
    const ImagineLayer& l = a.layers[i];
    if (l.grad_offset < 0) continue;
    const int64_t nw = l.in * l.out;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t j = 0; j < nw + l.out; ++j) {
      float s = 0.f;
      for (int t = 0; t < threads; ++t) s += grads[t * grad_n + l.grad_offset + j];
      if (j < nw) l.dw[j] = s;
      else l.db[j - nw] = s;
    }
  }
}

}  // namespace mbrl_fast::cpu::IMAGINE_NS
