// The training forward / backward of stacked MLPs (mlp_train.h), compiled once per ISA with
// the imagination op's GEMMs: imagine.cpp includes it in namespace imagine_portable,
// imagine_avx512.cpp in namespace imagine_avx512, each after imagine_impl.h (which brings
// struct Gemm and the elementwise helpers of imagine_elementwise.h). No include guard, and no
// out-of-line standard library code (see imagine_impl.h).
#include <cstdint>
#include <cstring>

#include <omp.h>

#include "cpu/mlp_train.h"

namespace mbrl_fast::cpu::IMAGINE_NS {

namespace mt {

constexpr int64_t P = kImPanel;
inline int64_t min_(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t panels_of(int64_t n) { return (n + P - 1) / P; }
inline uint32_t pair(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }

// W [K, N] (ld N) -> column panels [ceil(N / P), K, P], zero-padded.
inline void pack_panels(const float* w, int64_t K, int64_t N, float* out) {
  for (int64_t p = 0; p < panels_of(N); ++p) {
    const int64_t c0 = p * P, nc = min_(P, N - c0);
    float* o = out + p * K * P;
    for (int64_t k = 0; k < K; ++k) {
      std::memcpy(o + k * P, w + k * N + c0, nc * 4);
      for (int64_t j = nc; j < P; ++j) o[k * P + j] = 0.f;
    }
  }
}
// W [K, N] -> W^T [N, K] in column panels [ceil(K / P), N, P] (zero-padded).
inline void pack_panels_t(const float* w, int64_t K, int64_t N, float* out) {
  for (int64_t p = 0; p < panels_of(K); ++p) {
    const int64_t k0 = p * P, nk = min_(P, K - k0);
    float* o = out + p * N * P;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = nk; j < P; ++j) o[n * P + j] = 0.f;
    for (int64_t j = 0; j < nk; ++j) {
      const float* wr = w + (k0 + j) * N;
      for (int64_t n = 0; n < N; ++n) o[n * P + j] = wr[n];
    }
  }
}
// W [K, N] -> bf16 pairs along K in column panels [ceil(N / P), ceil(K / 2), P].
inline void pack_pair_panels(const float* w, int64_t K, int64_t N, uint32_t* out) {
  const int64_t k2n = half_up(K);
  for (int64_t p = 0; p < panels_of(N); ++p) {
    const int64_t c0 = p * P, nc = min_(P, N - c0);
    uint32_t* o = out + p * k2n * P;
    Pack::row_pairs(K, nc, w + c0, N, o, P);
    if (nc < P)
      for (int64_t k2 = 0; k2 < k2n; ++k2)
        for (int64_t j = nc; j < P; ++j) o[k2 * P + j] = 0u;
  }
}
// W [K, N] -> W^T [N, K] as bf16 pairs along N in column panels [ceil(K / P), ceil(N / 2), P];
// row: scratch of ceil(N / 2) words.
inline void pack_pair_panels_t(const float* w, int64_t K, int64_t N, uint32_t* out, uint32_t* row) {
  const int64_t n2n = half_up(N);
  for (int64_t p = 0; p < panels_of(K); ++p) {
    const int64_t k0 = p * P, nk = min_(P, K - k0);
    uint32_t* o = out + p * n2n * P;
    for (int64_t n2 = 0; n2 < n2n; ++n2)
      for (int64_t j = nk; j < P; ++j) o[n2 * P + j] = 0u;
    for (int64_t j = 0; j < nk; ++j) {
      Pack::rows(1, N, w + (k0 + j) * N, N, row);  // W's row k0 + j in pairs along N
      for (int64_t n2 = 0; n2 < n2n; ++n2) o[n2 * P + j] = row[n2];
    }
  }
}

// h = act(v) over rows of a tile, v the pre-activations in `aux`, which keeps what the
// derivative needs besides h: SiLU overwrites it with sigmoid(v) (SiLU'(v) = s + h (1 - s),
// no exp in the backward); ELU, ReLU and tanh differentiate from h alone.
inline void act_forward(int act, int64_t n, int64_t cols, float* aux, float* h) {
  if (act != kImSilu) return act_rows(act, n, cols, aux, cols, h, cols);
#pragma omp simd
  for (int64_t i = 0; i < n * cols; ++i) {  // rows are dense: one loop
    const float v = aux[i], s = sigmoid_(v);
    h[i] = v * s;
    aux[i] = s;
  }
}
// g *= act'(v) from act_forward's aux and h.
inline void act_backward(int act, int64_t n, int64_t cols, const float* aux, const float* h,
                         float* g) {
  if (act != kImSilu) return act_grad_rows(act, n, cols, aux, h, cols, g);
#pragma omp simd
  for (int64_t i = 0; i < n * cols; ++i) g[i] *= aux[i] + h[i] * (1.f - aux[i]);
}

struct Run {
  const MlpTrainArgs& a;
  const MlpTrainPacked& p;
  int64_t R;

  int64_t d(int l) const { return a.sizes[l]; }
  // layer l's input h_l for member e (row 0; rows d(l) floats apart)
  const float* input(int l, int64_t e) const {
    if (l > 0) return a.post[l - 1] + e * a.batch * d(l);
    return a.shared_x ? a.x : a.x + e * a.batch * d(0);
  }
  // G_l, the gradient of layer l's output pre-activation, member e
  const float* grad_out(int l, int64_t e) const {
    const int L = a.num_layers;
    return l == L - 1 ? a.dy + e * a.batch * d(L) : a.dpre[l] + e * a.batch * d(l + 1);
  }

  void pack_forward(int l, int64_t e) const {
    const float* w = a.w[l] + e * d(l) * d(l + 1);
    if (a.bf16) pack_pair_panels(w, d(l), d(l + 1), p.wp[l] + e * p.stride[l]);
    else pack_panels(w, d(l), d(l + 1), p.wpan[l] + e * p.stride[l]);
  }
  void pack_backward(int l, int64_t e, uint32_t* row) const {
    const float* w = a.w[l] + e * d(l) * d(l + 1);
    if (a.bf16) pack_pair_panels_t(w, d(l), d(l + 1), p.wtp[l] + e * p.stride[l], row);
    else pack_panels_t(w, d(l), d(l + 1), p.wtpan[l] + e * p.stride[l]);
  }

  // rows [r0, r0 + n) of member e through every layer; pa: R * max width words. A ReLU layer
  // is the GEMM's epilogue, straight into post (its pre stays unwritten: the derivative
  // reads post); other activations are a pass over pre.
  void forward_tile(int64_t e, int64_t r0, int64_t n, uint32_t* pa) const {
    const int L = a.num_layers;
    const bool relu = a.activation == kImRelu;
    for (int l = 0; l < L; ++l) {
      const int64_t di = d(l), dout = d(l + 1);
      const bool hidden = l + 1 < L, fused = hidden && relu;
      const float* in = input(l, e) + r0 * di;
      float* out = fused ? a.post[l] : hidden ? a.pre[l] : a.y;
      out += (e * a.batch + r0) * dout;
      const float* bias = a.b[l] + e * dout;
      if (a.bf16) {
        Pack::rows(n, di, in, di, pa);
        Gemm::bf16(n, dout, half_up(di), pa, half_up(di), p.wp[l] + e * p.stride[l], 0, out, dout,
                   bias, false, true, false, fused);
      } else {
        Gemm::f32(n, dout, di, in, di, p.wpan[l] + e * p.stride[l], 0, out, dout, bias, false, true,
                  false, fused);
      }
      if (hidden && !fused)
        act_forward(a.activation, n, dout, out, a.post[l] + (e * a.batch + r0) * dout);
    }
  }

  // the chain of input gradients over rows [r0, r0 + n) of member e: G_{l-1} for l = L-1..1
  // into dpre, and dx
  void backward_tile(int64_t e, int64_t r0, int64_t n, uint32_t* pa) const {
    const int L = a.num_layers;
    for (int l = L - 1; l >= 0; --l) {
      float* dst;
      if (l > 0) dst = a.dpre[l - 1] + (e * a.batch + r0) * d(l);
      else if (a.dx) dst = a.dx + (e * a.batch + r0) * d(0);
      else break;
      const int64_t di = d(l), dout = d(l + 1);
      const float* g = grad_out(l, e) + r0 * dout;
      const int64_t o = (e * a.batch + r0) * di;
      // ReLU's derivative, (post > 0), is the GEMM's epilogue; others a pass after it
      const float* mask = l > 0 && a.activation == kImRelu ? a.post[l - 1] + o : nullptr;
      if (a.bf16) {
        Pack::rows(n, dout, g, dout, pa);
        Gemm::bf16(n, di, half_up(dout), pa, half_up(dout), p.wtp[l] + e * p.stride[l], 0, dst, di,
                   nullptr, false, true, false, false, mask);
      } else {
        Gemm::f32(n, di, dout, g, dout, p.wtpan[l] + e * p.stride[l], 0, dst, di, nullptr, false,
                  true, false, false, mask);
      }
      if (l > 0 && !mask)
        act_backward(a.activation, n, di, a.pre[l - 1] + o, a.post[l - 1] + o, dst);
    }
  }

  // bf16: layer l's dW operands of member e in pairs along the rows
  void pack_grad_operands(int l, int64_t e) const {
    const int64_t n = a.grad_rows, n2 = half_up(n);
    Pack::row_pairs(n, d(l), input(l, e), d(l), p.hpairs[l] + e * n2 * d(l), d(l));
    Pack::row_pairs(n, d(l + 1), grad_out(l, e), d(l + 1), p.gpairs[l] + e * n2 * d(l + 1), d(l + 1));
  }

  // dW_l[e][:, c0:c0+nc] = h_l^T G_l[:, c0:c0+nc] and db over rows [0, grad_rows)
  void weight_grad(int l, int64_t e, int64_t c0, int64_t nc) const {
    const int64_t di = d(l), dout = d(l + 1), n = a.grad_rows;
    float* dw = a.dw[l] + e * di * dout + c0;
    if (n == 0) {
      for (int64_t i = 0; i < di; ++i)
        for (int64_t j = 0; j < nc; ++j) dw[i * dout + j] = 0.f;
    } else if (a.bf16) {
      const int64_t n2 = half_up(n);
      Gemm::bf16(di, nc, n2, p.hpairs[l] + e * n2 * di, di, p.gpairs[l] + e * n2 * dout + c0, dout,
                 dw, dout, nullptr, false, false, true);
    } else {
      Gemm::f32(di, nc, n, input(l, e), di, grad_out(l, e) + c0, dout, dw, dout, nullptr, false,
                false, true);
    }
    if (!a.db[l]) return;
    float* db = a.db[l] + e * dout + c0;
    const float* g = grad_out(l, e) + c0;
    for (int64_t j = 0; j < nc; ++j) db[j] = 0.f;
    for (int64_t r = 0; r < n; ++r)
#pragma omp simd
      for (int64_t j = 0; j < nc; ++j) db[j] += g[r * dout + j];
  }
};

}  // namespace mt

// R rows per tile; work: per-thread workspaces of work_words words.
inline void mlp_train_run(const MlpTrainArgs& a, const MlpTrainPacked& p, bool backward, int64_t R,
                          int threads, uint32_t* work, int64_t work_words) {
  const mt::Run run{a, p, R};
  const int L = a.num_layers;
  const int64_t E = a.members;
  const int64_t rows = backward && !a.dx ? a.grad_rows : a.batch;  // rows the tile pass reads
  const int64_t tiles = (rows + R - 1) / R;
  // weight-gradient tasks: (layer, member, column chunk), chunks of whole panels
  int64_t chunk_panels[kMtMaxLayers], chunks[kMtMaxLayers], wg_tasks = 0;
  for (int l = 0; l < L; ++l) {
    const int64_t np = mt::panels_of(a.sizes[l + 1]);
    // split a layer's columns while there are fewer tasks than 4 per thread
    const int64_t want = (4 * threads + E * L - 1) / (E * L);
    chunk_panels[l] = (np + want - 1) / want;
    chunks[l] = (np + chunk_panels[l] - 1) / chunk_panels[l];
    wg_tasks += backward && a.dw[l] ? E * chunks[l] : 0;
  }
#pragma omp parallel num_threads(threads)
  {
    uint32_t* pa = work + omp_get_thread_num() * work_words;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < E * L; ++t) {
      if (backward) {
        if (t / E > 0 || a.dx) run.pack_backward(static_cast<int>(t / E), t % E, pa);
      } else {
        run.pack_forward(static_cast<int>(t / E), t % E);
      }
    }
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < E * tiles; ++t) {
      const int64_t e = t / tiles, r0 = (t % tiles) * R, n = mt::min_(R, rows - r0);
      if (backward) run.backward_tile(e, r0, n, pa);
      else run.forward_tile(e, r0, n, pa);
    }
    if (backward) {
      if (a.bf16 && a.grad_rows > 0) {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < E * L; ++t)
          if (a.dw[t / E]) run.pack_grad_operands(static_cast<int>(t / E), t % E);
      }
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < wg_tasks; ++t) {
        int64_t rest = t;
        int l = 0;
        for (; l < L; ++l) {
          const int64_t n = a.dw[l] ? E * chunks[l] : 0;
          if (rest < n) break;
          rest -= n;
        }
        const int64_t e = rest / chunks[l], c = rest % chunks[l];
        const int64_t c0 = c * chunk_panels[l] * mt::P;
        run.weight_grad(l, e, c0, mt::min_(chunk_panels[l] * mt::P, a.sizes[l + 1] - c0));
      }
    }
  }
}

}  // namespace mbrl_fast::cpu::IMAGINE_NS
