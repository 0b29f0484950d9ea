// Elite updates and samplers; see elite_update.h and mbrl_fast/ops/elite_update.py.
// Portable C++ + OpenMP: these ops are cheap next to propagate.
#include "cpu/elite_update.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "philox.h"

namespace mbrl_fast::cpu {

namespace {

// Below this many elements one thread is faster than forking a team.
constexpr int64_t kParallelMin = 1 << 15;
constexpr float kSqrt2f = 1.41421356237309515f;
constexpr float kSqrt1_2f = 0.707106781186547573f;
constexpr double kSqrt2 = 1.4142135623730951;
constexpr double kTwoPi = 6.283185307179586;

// Giles, "Approximating the erfinv function" (GPU Computing Gems, 2011), single
// precision; |y| < 1. Samples built on it agree with torch.erfinv's to 3.6e-7 relative
// on the |y| <= 0.96 a 2-sigma truncation uses (measured, 200k draws).
inline float erfinv_giles(float y) {
  if (!(std::fabs(y) < 1.0f)) return std::copysign(std::numeric_limits<float>::infinity(), y);
  float w = -std::log((1.0f - y) * (1.0f + y));
  float p;
  if (w < 5.0f) {
    w = w - 2.5f;
    p = 2.81022636e-08f;
    p = 3.43273939e-07f + p * w;
    p = -3.5233877e-06f + p * w;
    p = -4.39150654e-06f + p * w;
    p = 0.00021858087f + p * w;
    p = -0.00125372503f + p * w;
    p = -0.00417768164f + p * w;
    p = 0.246640727f + p * w;
    p = 1.50140941f + p * w;
  } else {
    w = std::sqrt(w) - 3.0f;
    p = -0.000200214257f;
    p = 0.000100950558f + p * w;
    p = 0.00134934322f + p * w;
    p = -0.00367342844f + p * w;
    p = 0.00573950773f + p * w;
    p = -0.0076224613f + p * w;
    p = 0.00943887047f + p * w;
    p = 1.00167406f + p * w;
    p = 2.83297682f + p * w;
  }
  return p * y;
}

inline float clampf(float x, float lo, float hi) { return std::min(std::max(x, lo), hi); }

// Strict weak order "p ranks before q": larger return first, NaN last, ties by index.
struct RanksBefore {
  const float* r;
  bool operator()(int64_t p, int64_t q) const {
    const bool np = std::isnan(r[p]), nq = std::isnan(r[q]);
    if (np != nq) return nq;
    if (!np && r[p] != r[q]) return r[p] > r[q];
    return p < q;
  }
};

}  // namespace

void cem_update(const float* samples, const float* returns, const float* mean, const float* var,
                int64_t n, int64_t p, int64_t ha, int64_t num_elites, double alpha,
                double epsilon, float* new_mean, float* new_var, int64_t* elites, float* best,
                float* best_return, uint8_t* converged) {
#pragma omp parallel for schedule(static) if (n * p * ha >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = samples + i * p * ha;
    const float* r = returns + i * p;
    std::vector<int64_t> order(p);
    std::iota(order.begin(), order.end(), int64_t{0});
    std::partial_sort(order.begin(), order.begin() + num_elites, order.end(), RanksBefore{r});
    std::copy(order.begin(), order.begin() + num_elites, elites + i * num_elites);
    std::vector<double> m(ha, 0.0), v(ha, 0.0);
    for (int64_t k = 0; k < num_elites; ++k) {
      const float* e = x + order[k] * ha;
      for (int64_t j = 0; j < ha; ++j) m[j] += e[j];
    }
    for (int64_t j = 0; j < ha; ++j) m[j] /= static_cast<double>(num_elites);
    for (int64_t k = 0; k < num_elites; ++k) {
      const float* e = x + order[k] * ha;
      for (int64_t j = 0; j < ha; ++j) v[j] += (e[j] - m[j]) * (e[j] - m[j]);
    }
    double max_var = 0.0;
    for (int64_t j = 0; j < ha; ++j) {
      const int64_t o = i * ha + j;
      new_mean[o] = static_cast<float>(alpha * mean[o] + (1.0 - alpha) * m[j]);
      const float nv = static_cast<float>(alpha * var[o] +
                                          (1.0 - alpha) * v[j] / static_cast<double>(num_elites));
      new_var[o] = nv;
      max_var = std::max(max_var, static_cast<double>(nv));
    }
    converged[i] = max_var < epsilon ? 1 : 0;
    std::copy(x + order[0] * ha, x + (order[0] + 1) * ha, best + i * ha);
    best_return[i] = r[order[0]];
  }
}

void mppi_update(const float* samples, const float* returns, int64_t n, int64_t p, int64_t ha,
                 double temperature, float* new_mean, float* new_var, float* weights) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
#pragma omp parallel for schedule(static) if (n * p * ha >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = samples + i * p * ha;
    std::vector<double> z(p), w(p);
    double top = -kInf;
    for (int64_t q = 0; q < p; ++q) {
      const double zq = static_cast<double>(returns[i * p + q]) / temperature;
      z[q] = std::isnan(zq) ? -kInf : zq;
      top = std::max(top, z[q]);
    }
    double total = 0.0;
    for (int64_t q = 0; q < p; ++q) {
      if (top == -kInf) w[q] = 1.0;                      // nothing usable: uniform
      else if (top == kInf) w[q] = z[q] == kInf ? 1.0 : 0.0;  // +inf returns share it
      else w[q] = std::exp(z[q] - top);
      total += w[q];
    }
    std::vector<double> m(ha, 0.0), v(ha, 0.0);
    for (int64_t q = 0; q < p; ++q) {
      w[q] /= total;
      weights[i * p + q] = static_cast<float>(w[q]);
      for (int64_t j = 0; j < ha; ++j) m[j] += w[q] * x[q * ha + j];
    }
    for (int64_t q = 0; q < p; ++q) {
      for (int64_t j = 0; j < ha; ++j) {
        const double d = x[q * ha + j] - m[j];
        v[j] += w[q] * d * d;
      }
    }
    for (int64_t j = 0; j < ha; ++j) {
      new_mean[i * ha + j] = static_cast<float>(m[j]);
      new_var[i * ha + j] = static_cast<float>(v[j]);
    }
  }
}

void truncated_normal(const float* mean, const float* var, const float* lower, const float* upper,
                      int64_t n, int64_t p, int64_t h, int64_t a, uint64_t seed, uint64_t offset,
                      float* out) {
  const int64_t ha = h * a;
  // Per (n, h, a): std after PETS's bound constraint, the interval, and its CDF values.
  struct Cell { float mean, s, lo, hi, cdf_lo, cdf_hi; };
  std::vector<Cell> cells(n * ha);
  for (int64_t o = 0; o < n * ha; ++o) {
    const int64_t d = o % a;
    const float mu = mean[o];
    const float lb = (mu - lower[d]) * 0.5f, ub = (upper[d] - mu) * 0.5f;
    const float s = std::sqrt(std::min(var[o], std::min(lb * lb, ub * ub)));
    Cell c{mu, s, clampf(mu - 2.0f * s, lower[d], upper[d]),
           clampf(mu + 2.0f * s, lower[d], upper[d]), 0.0f, 0.0f};
    if (s > 0.0f) {
      c.cdf_lo = 0.5f * (1.0f + std::erf((c.lo - mu) / s * kSqrt1_2f));
      c.cdf_hi = 0.5f * (1.0f + std::erf((c.hi - mu) / s * kSqrt1_2f));
    } else {
      c.lo = c.hi = clampf(mu, lower[d], upper[d]);
    }
    cells[o] = c;
  }
#pragma omp parallel for schedule(static) if (n * p * ha >= kParallelMin)
  for (int64_t row = 0; row < n * p; ++row) {
    const Cell* cell = cells.data() + (row / p) * ha;
    const uint64_t base = static_cast<uint64_t>(row * ha);
    Philox4 block{};
    uint64_t have = ~uint64_t{0};
    for (int64_t j = 0; j < ha; ++j) {
      const uint64_t idx = base + static_cast<uint64_t>(j);
      if ((idx >> 2) != have) block = philox_block(seed, offset, have = idx >> 2);
      const float u = uint32_to_uniform(block.x[idx & 3]);
      const Cell& c = cell[j];
      float x = c.lo;  // s == 0: the clamped mean
      if (c.s > 0.0f) {
        const float q = c.cdf_lo + u * (c.cdf_hi - c.cdf_lo);
        x = clampf(c.mean + c.s * (kSqrt2f * erfinv_giles(2.0f * q - 1.0f)), c.lo, c.hi);
      }
      out[row * ha + j] = x;
    }
  }
}

void colored_noise(const float* mean, const float* var, const float* lower, const float* upper,
                   int64_t n, int64_t p, int64_t h, int64_t a, const double* scales, double sigma,
                   uint64_t seed, uint64_t offset, float* out) {
  const int64_t f = h / 2 + 1, ha = h * a;
  const bool nyquist = h % 2 == 0 && f > 1;  // the real coefficient at f = 1/2
  // DFT table [H, F]: cos and sin of 2 pi k t / H (H is a planning horizon, ~30).
  std::vector<double> cs(h * f), sn(h * f);
  for (int64_t t = 0; t < h; ++t) {
    for (int64_t k = 0; k < f; ++k) {
      const double phase = kTwoPi * static_cast<double>((k * t) % h) / static_cast<double>(h);
      cs[t * f + k] = std::cos(phase);
      sn[t * f + k] = std::sin(phase);
    }
  }
#pragma omp parallel for schedule(static) if (n * p * ha >= kParallelMin / 4)
  for (int64_t row = 0; row < n * p; ++row) {
    const int64_t i = row / p;
    std::vector<double> re(f), im(f);
    float g4[4];
    uint64_t have = ~uint64_t{0};
    for (int64_t d = 0; d < a; ++d) {
      const uint64_t base = static_cast<uint64_t>(((row * a) + d) * f * 2);
      for (int64_t k = 0; k < f; ++k) {
        float g[2];
        for (int c = 0; c < 2; ++c) {
          const uint64_t idx = base + static_cast<uint64_t>(2 * k + c);
          if ((idx >> 2) != have) philox_normal4(seed, offset, have = idx >> 2, g4);
          g[c] = g4[idx & 3];
        }
        re[k] = scales[k] * static_cast<double>(g[0]);
        im[k] = scales[k] * static_cast<double>(g[1]);
      }
      re[0] *= kSqrt2;
      im[0] = 0.0;
      if (nyquist) {
        re[f - 1] *= kSqrt2;
        im[f - 1] = 0.0;
      }
      const int64_t kmax = nyquist ? f - 1 : f;  // coefficients that appear twice (k, H - k)
      for (int64_t t = 0; t < h; ++t) {
        double y = re[0];
        for (int64_t k = 1; k < kmax; ++k) y += 2.0 * (re[k] * cs[t * f + k] - im[k] * sn[t * f + k]);
        if (nyquist) y += re[f - 1] * cs[t * f + f - 1];
        const float yf = static_cast<float>(y / static_cast<double>(h) / sigma);
        const int64_t o = i * ha + t * a + d;
        out[row * ha + t * a + d] = clampf(mean[o] + std::sqrt(var[o]) * yf, lower[d], upper[d]);
      }
    }
  }
}

}  // namespace mbrl_fast::cpu
