// One SAC update's gradients (sac_grads.h). Five mlp_train calls -- the policy on s and s'
// (one pass, rows [0, B) train it), the target critics on (s', a'), the critics on (s, a)
// and (s, a~) (one pass, rows [0, B) train them), the critics' backward, the policy's
// backward on rows [0, B) only -- and the head and the losses between them, with no
// Python, autograd graph or tensor allocation per update.
#include "cpu/sac_grads.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu/mlp_train.h"
#include "cpu/portable_math.h"

namespace mbrl_fast::cpu {

namespace {

constexpr float kLog2 = 0.693147180559945309f;
constexpr float kLog2Pi = 1.837877066409345484f;

float sigmoid(float x) { return 1.f / (1.f + pmath::exp(-x)); }

// One network as mlp_train takes it: members E, sizes, weights / biases, and the buffers of
// its forward (pre, post per hidden layer, [E, rows, d]) that the backward reads.
struct Net {
  int64_t members = 1;
  std::vector<int64_t> sizes;
  std::vector<uintptr_t> w, b;
  std::vector<uintptr_t> pre, post, dpre;

  int hidden() const { return static_cast<int>(sizes.size()) - 2; }
  int64_t hidden_floats(int64_t rows) const {
    int64_t n = 0;
    for (int l = 0; l < hidden(); ++l) n += members * rows * sizes[l + 1];
    return n;
  }
  // pre, post (and dpre when `backward`) carved out of `next` for `rows` rows
  void place(float*& next, int64_t rows, bool backward) {
    pre.assign(hidden(), 0), post.assign(hidden(), 0), dpre.assign(hidden(), 0);
    for (int l = 0; l < hidden(); ++l) {
      const int64_t n = members * rows * sizes[l + 1];
      pre[l] = reinterpret_cast<uintptr_t>(next), next += n;
      post[l] = reinterpret_cast<uintptr_t>(next), next += n;
      if (backward) dpre[l] = reinterpret_cast<uintptr_t>(next), next += n;
    }
  }
};

uintptr_t addr(const float* p) { return reinterpret_cast<uintptr_t>(p); }

}  // namespace

void sac_grads_call(const std::vector<int64_t>& dims, const std::vector<int64_t>& pi_sizes,
                    const std::vector<int64_t>& q_sizes, int activation, bool bf16,
                    const std::vector<uintptr_t>& pi_w, const std::vector<uintptr_t>& pi_b,
                    const std::vector<uintptr_t>& q_w, const std::vector<uintptr_t>& q_b,
                    const std::vector<uintptr_t>& qt_w, const std::vector<uintptr_t>& qt_b,
                    const std::vector<uintptr_t>& pi_dw, const std::vector<uintptr_t>& pi_db,
                    const std::vector<uintptr_t>& q_dw, const std::vector<uintptr_t>& q_db,
                    const std::vector<uintptr_t>& data, const std::vector<double>& scalars,
                    uintptr_t out, int isa, int threads) {
  auto fail = [](const std::string& m) { throw std::invalid_argument("sac_grads: " + m); };
  if (dims.size() != 3 || data.size() != 8 || scalars.size() != 3 || !out)
    fail("needs dims (B, D, A), 8 data addresses, 3 scalars and an output address");
  const int64_t B = dims[0], D = dims[1], A = dims[2], DA = D + A;
  if (B < 1 || D < 1 || A < 1) fail("needs B, D, A >= 1");
  const size_t lp = pi_sizes.size() - 1, lq = q_sizes.size() - 1;
  if (pi_sizes.size() < 2 || q_sizes.size() < 2 || pi_sizes.front() != D ||
      pi_sizes.back() != 2 * A || q_sizes.front() != DA || q_sizes.back() != 1)
    fail("the policy maps D to 2A and the critics D + A to 1");
  if (pi_w.size() != lp || pi_b.size() != lp || pi_dw.size() != lp || pi_db.size() != lp ||
      q_w.size() != lq || q_b.size() != lq || qt_w.size() != lq || qt_b.size() != lq ||
      q_dw.size() != lq || q_db.size() != lq)
    fail("one address per layer for every weight, bias and gradient");
  auto cf = [](uintptr_t v) { return reinterpret_cast<const float*>(v); };
  const float *obs = cf(data[0]), *act = cf(data[1]), *reward = cf(data[2]),
              *next_obs = cf(data[3]), *done = cf(data[4]), *eps = cf(data[5]),
              *max_lv = cf(data[6]), *min_lv = cf(data[7]);
  const float log_alpha = static_cast<float>(scalars[0]);
  const float gamma = static_cast<float>(scalars[1]), target_entropy = static_cast<float>(scalars[2]);
  const float alpha = std::exp(log_alpha);

  Net pi{1, pi_sizes, pi_w, pi_b, {}, {}, {}}, q{2, q_sizes, q_w, q_b, {}, {}, {}},
      qt{2, q_sizes, qt_w, qt_b, {}, {}, {}};
  // the buffers of this update, in one workspace kept for the next
  const int64_t floats = 2 * B * D + 2 * B * 2 * A + 4 * B * A + 2 * B  // xpi, ypi, a, lv1/std, logp
                         + B * DA + 2 * B + 3 * pi.hidden_floats(2 * B)  // xt, yt, policy
                         + 2 * B * DA + 4 * B + 4 * B + 2 * 2 * B * DA    // xc, yc, dyc, dxc
                         + B * 2 * A                                      // dypi
                         + 2 * qt.hidden_floats(B) + 3 * q.hidden_floats(2 * B) + 64;
  thread_local std::vector<float> space;
  if (static_cast<int64_t>(space.size()) < floats) space.resize(floats);
  float* next = space.data();
  auto take = [&next](int64_t n) { float* p = next; next += n; return p; };
  float *xpi = take(2 * B * D), *ypi = take(2 * B * 2 * A), *a = take(2 * B * A),
        *lv1 = take(B * A), *stdv = take(B * A), *logp = take(2 * B);
  float *xt = take(B * DA), *yt = take(2 * B), *xc = take(2 * B * DA), *yc = take(4 * B),
        *dyc = take(4 * B), *dxc = take(2 * 2 * B * DA), *dypi = take(B * 2 * A);
  pi.place(next, 2 * B, true);
  qt.place(next, B, false);
  q.place(next, 2 * B, true);

  const std::vector<uintptr_t> no_grad_pi(lp, 0), no_grad_q(lq, 0);
  auto forward = [&](Net& n, int64_t rows, int64_t grad_rows, const float* x, float* y) {
    mlp_train_call(false, {n.members, rows, grad_rows}, n.sizes, activation, bf16, true, n.w,
                   n.b, n.members == 1 ? no_grad_pi : no_grad_q,
                   n.members == 1 ? no_grad_pi : no_grad_q, n.pre, n.post, n.dpre, addr(x),
                   addr(y), 0, 0, isa, threads);
  };

  // 1. the policy on [s; s'] and the head: a~ = a[0, B), a' = a[B, 2B)
  std::copy(obs, obs + B * D, xpi);
  std::copy(next_obs, next_obs + B * D, xpi + B * D);
  forward(pi, 2 * B, B, xpi, ypi);
  for (int64_t i = 0; i < 2 * B; ++i) {
    const float* mean = ypi + i * 2 * A;
    const float* raw = mean + A;
    float lp_sum = 0.f;
    for (int64_t j = 0; j < A; ++j) {
      const float l1 = max_lv[j] - pmath::softplus(max_lv[j] - raw[j]);
      const float lv = min_lv[j] + pmath::softplus(l1 - min_lv[j]);
      const float sd = pmath::exp(0.5f * lv), e = eps[i * A + j];
      const float u = mean[j] + sd * e;
      a[i * A + j] = pmath::tanh(u);
      lp_sum += -0.5f * (e * e + lv + kLog2Pi) - 2.f * (kLog2 - u - pmath::softplus(-2.f * u));
      if (i < B) lv1[i * A + j] = l1, stdv[i * A + j] = sd;
    }
    logp[i] = lp_sum;
  }

  // 2. the target: y = r + gamma (1 - done) (min_e Qt_e(s', a') - alpha log pi(a'|s'))
  for (int64_t i = 0; i < B; ++i) {
    std::copy(next_obs + i * D, next_obs + (i + 1) * D, xt + i * DA);
    std::copy(a + (B + i) * A, a + (B + i + 1) * A, xt + i * DA + D);
  }
  forward(qt, B, 0, xt, yt);
  // 3. the critics on [(s, a); (s, a~)]
  for (int64_t i = 0; i < B; ++i) {
    std::copy(obs + i * D, obs + (i + 1) * D, xc + i * DA);
    std::copy(act + i * A, act + (i + 1) * A, xc + i * DA + D);
    std::copy(obs + i * D, obs + (i + 1) * D, xc + (B + i) * DA);
    std::copy(a + i * A, a + (i + 1) * A, xc + (B + i) * DA + D);
  }
  forward(q, 2 * B, B, xc, yc);

  // 4. the losses and their gradients with respect to the critics' outputs
  double critic = 0, actor = 0, q_sum = 0, logp_sum = 0;
  const float inv_b = 1.f / static_cast<float>(B);
  for (int64_t i = 0; i < B; ++i) {
    const float q_next = std::min(yt[i], yt[B + i]);
    const float y = reward[i] + gamma * (1.f - done[i]) * (q_next - alpha * logp[B + i]);
    for (int64_t e = 0; e < 2; ++e) {
      const float diff = yc[e * 2 * B + i] - y;
      critic += 0.5 * static_cast<double>(diff) * diff;
      q_sum += yc[e * 2 * B + i];
      dyc[e * 2 * B + i] = diff * inv_b;
    }
    const float q0 = yc[B + i], q1 = yc[2 * B + B + i];
    const int e_min = q1 < q0 ? 1 : 0;  // torch.min's index: the first of equal values
    dyc[B + i] = e_min == 0 ? -inv_b : 0.f;
    dyc[2 * B + B + i] = e_min == 1 ? -inv_b : 0.f;
    actor += static_cast<double>(alpha) * logp[i] - std::min(q0, q1);
    logp_sum += logp[i];
  }

  // 5. the critics' backward: their weights' gradients from rows [0, B) (J_Q), the input
  // gradients of rows [B, 2B) (J_pi's path to a~)
  mlp_train_call(true, {2, 2 * B, B}, q.sizes, activation, bf16, true, q.w, q.b, q_dw, q_db,
                 q.pre, q.post, q.dpre, addr(xc), 0, addr(dyc), addr(dxc), isa, threads);

  // 6. the head's backward on rows [0, B): dJ_pi/da~ (both members' input gradients) and
  // dJ_pi/dlog pi = alpha / B (nn/policy.py, _TanhGaussianHead.backward)
  const float g_lp = alpha * inv_b;
  for (int64_t i = 0; i < B; ++i) {
    const float* raw = ypi + i * 2 * A + A;
    for (int64_t j = 0; j < A; ++j) {
      const int64_t k = i * A + j, col = (B + i) * DA + D + j;
      const float g_a = dxc[col] + dxc[2 * B * DA + col];
      const float ai = a[k];
      const float g_u = g_a * (1.f - ai * ai) + 2.f * g_lp * ai;
      const float g_lv = 0.5f * (g_u * stdv[k] * eps[k] - g_lp);
      dypi[i * 2 * A + j] = g_u;
      dypi[i * 2 * A + A + j] =
          g_lv * sigmoid(lv1[k] - min_lv[j]) * sigmoid(max_lv[j] - raw[j]);
    }
  }
  // 7. the policy's backward on rows [0, B) only (rows [B, 2B) carry no gradient): its
  // saved activations for those rows are the first B rows of the [1, 2B, d] buffers
  mlp_train_call(true, {1, B, B}, pi.sizes, activation, bf16, true, pi.w, pi.b, pi_dw, pi_db,
                 pi.pre, pi.post, pi.dpre, addr(xpi), 0, addr(dypi), 0, isa, threads);

  float* o = reinterpret_cast<float*>(out);
  const double mean_logp = logp_sum / static_cast<double>(B);
  o[0] = static_cast<float>(critic / static_cast<double>(B));
  o[1] = static_cast<float>(actor / static_cast<double>(B));
  o[2] = static_cast<float>(-log_alpha * (mean_logp + target_entropy));
  o[3] = alpha;
  o[4] = static_cast<float>(q_sum / (2.0 * static_cast<double>(B)));
  o[5] = static_cast<float>(-mean_logp);
  o[6] = static_cast<float>(-(mean_logp + target_entropy));
}

}  // namespace mbrl_fast::cpu
