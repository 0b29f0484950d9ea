// Elite updates and action samplers of the sampling planners (CEM, iCEM, MPPI).
// The math, the noise layout and the pure-torch references are in
// mbrl_fast/ops/elite_update.py; these kernels match them to float tolerance.
// All buffers are contiguous host memory validated by the Python side.
// HA = H * A (one action sequence, flattened).
#pragma once
#include <cstdint>

namespace mbrl_fast::cpu {

// Top-K elites (NaN last, ties by index), their moments with momentum alpha,
// the best sample, and PETS's early-stop flag (max var' < epsilon).
void cem_update(const float* samples,  // [N, P, HA]
                const float* returns,  // [N, P]
                const float* mean,     // [N, HA]
                const float* var,      // [N, HA]
                int64_t n, int64_t p, int64_t ha, int64_t num_elites, double alpha,
                double epsilon,
                float* new_mean,       // [N, HA]
                float* new_var,        // [N, HA]
                int64_t* elites,       // [N, K], best first
                float* best,           // [N, HA]
                float* best_return,    // [N]
                uint8_t* converged);   // [N]

// Softmax(returns / temperature)-weighted mean and variance (NaN returns weigh 0).
void mppi_update(const float* samples,  // [N, P, HA]
                 const float* returns,  // [N, P]
                 int64_t n, int64_t p, int64_t ha, double temperature,
                 float* new_mean,       // [N, HA]
                 float* new_var,        // [N, HA]
                 float* weights);       // [N, P]

// PETS's bound-constrained truncated normal by the inverse CDF, from the uniform
// stream (seed, offset) laid out [N, P, H, A].
void truncated_normal(const float* mean,   // [N, H, A]
                      const float* var,    // [N, H, A]
                      const float* lower,  // [A]
                      const float* upper,  // [A]
                      int64_t n, int64_t p, int64_t h, int64_t a, uint64_t seed,
                      uint64_t offset,
                      float* out);         // [N, P, H, A]

// iCEM's power-law (colored) noise over the horizon by a direct DFT, from the
// normal stream (seed, offset) laid out [N, P, A, F = H / 2 + 1, 2], clipped to bounds.
void colored_noise(const float* mean,     // [N, H, A]
                   const float* var,      // [N, H, A]
                   const float* lower,    // [A]
                   const float* upper,    // [A]
                   int64_t n, int64_t p, int64_t h, int64_t a,
                   const double* scales,  // [F] amplitude per frequency
                   double sigma, uint64_t seed, uint64_t offset,
                   float* out);           // [N, P, H, A]

}  // namespace mbrl_fast::cpu
