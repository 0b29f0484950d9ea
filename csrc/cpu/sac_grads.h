// The gradients of one SAC update in one call (mbrl_fast/agents/sac.py, whose autograd
// path -- SAC.losses and backward on the torch MLPs -- is the specification):
//
//     a', log pi(a'|s') = head(pi(s'), eps[1])             (no gradient)
//     y      = r + gamma (1 - done) (min_e Qtarget_e(s', a') - alpha log pi(a'|s'))
//     a~, log pi(a~|s)  = head(pi(s), eps[0])             (reparameterized)
//     J_Q    = sum_e mean_i (Q_e(s, a) - y)^2 / 2
//     J_pi   = mean_i (alpha log pi(a~|s) - min_e Q_e(s, a~))
//     J_alpha = -mean_i log_alpha (log pi(a~|s) + target_entropy)
//
// with alpha = exp(log_alpha) a constant in J_Q and J_pi. Writes dJ/d(policy weights and
// biases) (from J_pi), dJ/d(critic weights and biases) (from J_Q) and dJ_alpha/dlog_alpha,
// and the metrics; the optimizer step and the target update stay with the caller. The
// networks' forward and backward are mlp_train's (mlp_train.h: its kernels, ISA dispatch,
// threads and bf16 rounding); the head (the soft log-variance bound, the tanh-Gaussian
// sample and its log-probability, nn/policy.py) and the losses are loops here.
#pragma once
#include <cstdint>
#include <vector>

namespace mbrl_fast::cpu {

// dims: batch B, obs_dim D, act_dim A. pi_sizes [Lp + 1] (D ... 2A), q_sizes [Lq + 1]
// (D + A ... 1). Addresses: pi_w / pi_b [Lp] ([1, in, out] / [1, out]), q_w / q_b and qt_w /
// qt_b [Lq] ([2, in, out] / [2, out]); pi_dw / pi_db, q_dw / q_db their gradients (written,
// not accumulated). data: obs [B, D], act [B, A], reward [B], next_obs [B, D], done [B],
// eps [2, B, A], max_logvar [A], min_logvar [A]. scalars: log_alpha, gamma,
// target_entropy. out [7]: critic_loss, actor_loss, alpha_loss, alpha, q_mean, entropy,
// dJ_alpha/dlog_alpha.
void sac_grads_call(const std::vector<int64_t>& dims, const std::vector<int64_t>& pi_sizes,
                    const std::vector<int64_t>& q_sizes, int activation, bool bf16,
                    const std::vector<uintptr_t>& pi_w, const std::vector<uintptr_t>& pi_b,
                    const std::vector<uintptr_t>& q_w, const std::vector<uintptr_t>& q_b,
                    const std::vector<uintptr_t>& qt_w, const std::vector<uintptr_t>& qt_b,
                    const std::vector<uintptr_t>& pi_dw, const std::vector<uintptr_t>& pi_db,
                    const std::vector<uintptr_t>& q_dw, const std::vector<uintptr_t>& q_db,
                    const std::vector<uintptr_t>& data, const std::vector<double>& scalars,
                    uintptr_t out, int isa, int threads);

}  // namespace mbrl_fast::cpu
