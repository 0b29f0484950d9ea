// The backward pass of one tile of the imagination rollout (Tile<Gemm>::backward and the
// heads' output gradients): imagine_impl.h includes it after Tile, so it is compiled once per
// ISA like the forward (IMAGINE_NS defined by the including unit; no include guard).
#include <cstdint>
#include <cstring>

namespace mbrl_fast::cpu::IMAGINE_NS {

// Heads' output gradients at step t into dfeat (+=).
template <class Gemm>
inline void Tile<Gemm>::heads_bwd(int64_t t, int64_t r0, int64_t n, const float* feat) {
  const int64_t B = a.batch;
  for (int k = 0; k < a.num_heads; ++k) {
    if (!a.dheads[k]) continue;
    const int64_t o = L(a.head_first[k] + a.head_count[k] - 1).out;
    const bool detached = k >= a.num_heads - a.detached_heads;
    bool trains = false;  // a detached head whose weights need no gradient: nothing to do
    for (int l = 0; l < a.head_count[k]; ++l) trains |= L(a.head_first[k] + l).grad_offset >= 0;
    if (detached && !trains) continue;
    std::memcpy(dout, a.dheads[k] + (t * B + r0) * o, n * o * 4);
    mlp_bwd(a.head_first[k], a.head_count[k], heads[k], n, feat, F(), dout,
            detached ? nullptr : dfeat, true);
  }
}

// ---- backward over tile `i`, from the saved activations ------------------------------------
template <class Gemm>
inline void Tile<Gemm>::backward(int64_t i, int64_t tiles, int64_t step_n, int64_t r0, int64_t n) {
  const int64_t B = a.batch, D = a.deter, S = a.stoch, A = a.act, Hi = a.hidden, F_ = F();
  const int64_t T = a.horizon, C = a.classes;
  const int64_t G = a.stoch_kind == kImGaussian ? S : S / C;
  float* feat = hz[0];  // (h_t, z_t)
  float* next = hz[1];  // (h_{t+1}, z_{t+1})
  auto load_feat = [&](int64_t t, float* dst) {
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(dst + r * F_, a.h + (t * B + r0 + r) * D, D * 4);
      std::memcpy(dst + r * F_ + D, a.z + (t * B + r0 + r) * S, S * 4);
    }
  };
  auto add_output_grads = [&](int64_t t) {
    for (int64_t r = 0; r < n; ++r) {
      float* df = dfeat + r * F_;
      if (a.dh)
        for (int64_t j = 0; j < D; ++j) df[j] += a.dh[(t * B + r0 + r) * D + j];
      if (a.dz)
        for (int64_t j = 0; j < S; ++j) df[D + j] += a.dz[(t * B + r0 + r) * S + j];
    }
  };
  // the gradient of feat_H: heads at s_H plus the outputs' own gradients
  std::memset(dfeat, 0, n * F_ * 4);
  use_step(a.saved + (T * tiles + i) * step_n);
  load_feat(T, feat);
  heads_bwd(T, r0, n, feat);
  add_output_grads(T);

  for (int64_t t = T - 1; t >= 0; --t) {
    float* sw = dnext;  // dnext: gradient of feat_{t+1}
    dnext = dfeat;
    dfeat = sw;
    use_step(a.saved + (t * tiles + i) * step_n);
    float* fs = feat;  // feat_{t+1} becomes `next`, feat_t is loaded
    feat = next;
    next = fs;
    load_feat(t, feat);
    // z_{t+1} sample -> prior stats
    const float* st = prior.out;
    const int64_t P_ = P();
    float* dst = dout;
    const float* nz = a.noise_z + (t * B + r0) * G;
    if (a.stoch_kind == kImGaussian) {
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = 0; j < S; ++j) {
          const float gz = dnext[r * F_ + D + j];
          const float s = st[r * P_ + S + j];
          dst[r * P_ + j] = gz;
          dst[r * P_ + S + j] = gz * nz[r * S + j] * sigmoid_(s);
        }
    } else {
      for (int64_t r = 0; r < n; ++r)
        for (int64_t g = 0; g < G; ++g) {
          const float* lg = st + r * S + g * C;
          const float* gz = dnext + r * F_ + D + g * C;
          float* dl = dst + r * S + g * C;
          float mx = lg[0];
          for (int64_t j = 1; j < C; ++j) mx = lg[j] > mx ? lg[j] : mx;
          float sum = 0.f;
          for (int64_t j = 0; j < C; ++j) { dl[j] = std::exp(lg[j] - mx); sum += dl[j]; }
          float dot = 0.f;
          for (int64_t j = 0; j < C; ++j) { dl[j] /= sum; dot += dl[j] * gz[j]; }
          for (int64_t j = 0; j < C; ++j) dl[j] = (1.f - a.unimix) * dl[j] * (gz[j] - dot);
        }
    }
    // prior MLP on h_{t+1}; adds to dnext[:, :D]
    mlp_bwd(a.prior_first, a.prior_count, prior, n, next, F_, dst, dnext, true);
    // GRU
    for (int64_t r = 0; r < n; ++r) {
      const float* g = gates + r * 3 * D;
      const float* h = feat + r * F_;
      const float* dhn = dnext + r * F_;
      float* dg = dgates + r * 3 * D;
      float* dh = dfeat + r * F_;
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) {
        const float rs = sigmoid_(g[j]);
        const float cand = tanh_(rs * g[D + j]);
        const float up = sigmoid_(g[2 * D + j] - 1.f);
        const float dq = dhn[j] * up * (1.f - cand * cand);
        dg[j] = dq * g[D + j] * rs * (1.f - rs);
        dg[D + j] = dq * rs;
        dg[2 * D + j] = dhn[j] * (cand - h[j]) * up * (1.f - up);
        dh[j] = dhn[j] * (1.f - up);
      }
      std::memset(dh + D, 0, S * 4);
    }
    dense_dw(L(1), n, xh, Hi + D, dgates);
    dense_dx(L(1), n, dgates, dxh, Hi + D, false);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < D; ++j) dfeat[r * F_ + j] += dxh[r * (Hi + D) + Hi + j];
    // img_in: dx -> d pre-activation [n, Hi] in dx0 (x itself is in xh)
    for (int64_t r = 0; r < n; ++r)
      std::memcpy(dx0 + r * Hi, dxh + r * (Hi + D), Hi * 4);
    act_grad_rows(a.activation, n, Hi, xpre, xh, Hi + D, dx0);  // xpre: SiLU only
    dense_dw(L(0), n, zin, S + A, dx0);
    dense_dx(L(0), n, dx0, dzin, S + A, false);
    // actor: d action from the dynamics and the output, through tanh and the transforms
    const float c = a.act_mean_scale, span = a.act_max_std - a.act_min_std;
    const float* eps = a.eps + (t * B + r0) * A;
    for (int64_t r = 0; r < n; ++r) {
      float* df = dfeat + r * F_;
      for (int64_t j = 0; j < S; ++j) df[D + j] += dzin[r * (S + A) + j];
      const float* o = actor.out + r * 2 * A;
      float* d = dout + r * 2 * A;
      for (int64_t j = 0; j < A; ++j) {
        const int64_t idx = (t * B + r0 + r) * A + j;
        const float act = zin[r * (S + A) + S + j];
        const float da = dzin[r * (S + A) + S + j] + (a.daction ? a.daction[idx] : 0.f);
        const float du = da * (1.f - act * act);
        const float dmu = du + (a.dmean ? a.dmean[idx] : 0.f);
        const float dsd = du * eps[r * A + j] + (a.dstd ? a.dstd[idx] : 0.f);
        const float th = tanh_(o[j] / c);
        const float sg = sigmoid_(o[A + j] + 2.f);
        d[j] = dmu * (1.f - th * th);
        d[A + j] = dsd * span * sg * (1.f - sg);
      }
    }
    mlp_bwd(a.actor_first, a.actor_count, actor, n, feat, F_, dout, dfeat, true);
    heads_bwd(t, r0, n, feat);
    add_output_grads(t);
  }
  for (int64_t r = 0; r < n; ++r) {
    if (a.d_start_h) std::memcpy(a.d_start_h + (r0 + r) * D, dfeat + r * F_, D * 4);
    if (a.d_start_z) std::memcpy(a.d_start_z + (r0 + r) * S, dfeat + r * F_ + D, S * 4);
  }
}

}  // namespace mbrl_fast::cpu::IMAGINE_NS
