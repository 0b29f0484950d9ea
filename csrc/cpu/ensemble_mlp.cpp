// Ensemble MLP forward driver: tiles of kTileRows rows of one member, OpenMP
// across (member, tile) pairs; the tile kernel is chosen once per call.
#include "cpu/ensemble_mlp.h"

#include <stdexcept>
#include <string>

#include "cpu/mlp_tile.h"
#include "cpu_features.h"

namespace mbrl_fast::cpu {

void check_view(const MLPView& v) {
  if (v.num_layers < 1 || v.num_layers > kMaxLayers)
    throw std::invalid_argument("ensemble_mlp: need 1.." + std::to_string(kMaxLayers) +
                                " layers, got " + std::to_string(v.num_layers));
  if (v.num_members < 1) throw std::invalid_argument("ensemble_mlp: need at least one member");
  for (int l = 0; l <= v.num_layers; ++l)
    if (v.sizes[l] < 1) throw std::invalid_argument("ensemble_mlp: layer widths must be >= 1");
  if (v.activation < kSilu || v.activation > kIdentity)
    throw std::invalid_argument("ensemble_mlp: unknown activation id " + std::to_string(v.activation));
  if ((v.in_mean == nullptr) != (v.in_std == nullptr) ||
      (v.max_logvar == nullptr) != (v.min_logvar == nullptr))
    throw std::invalid_argument("ensemble_mlp: give both normalizer tensors / both logvar bounds");
  if (v.gaussian() && v.out_features() % 2)
    throw std::invalid_argument("ensemble_mlp: a Gaussian head needs an even output width");
}

MLPView make_mlp_view(const MLPDesc& d) {
  const size_t L = d.weights.size();
  if (L < 1 || L > static_cast<size_t>(kMaxLayers) || d.biases.size() != L || d.sizes.size() != L + 1)
    throw std::invalid_argument("ensemble_mlp: need L weights, L biases and L + 1 sizes (1 <= L <= " +
                                std::to_string(kMaxLayers) + ")");
  MLPView v;
  v.num_layers = static_cast<int>(L);
  v.num_members = d.members;
  for (size_t l = 0; l <= L; ++l) v.sizes[l] = d.sizes[l];
  for (size_t l = 0; l < L; ++l) {
    v.weights[l] = reinterpret_cast<const void*>(d.weights[l]);
    v.biases[l] = reinterpret_cast<const float*>(d.biases[l]);
  }
  v.bf16 = d.bf16;
  v.activation = d.activation;
  v.leaky_slope = d.slope;
  v.in_mean = reinterpret_cast<const float*>(d.in_mean);
  v.in_std = reinterpret_cast<const float*>(d.in_std);
  v.max_logvar = reinterpret_cast<const float*>(d.max_logvar);
  v.min_logvar = reinterpret_cast<const float*>(d.min_logvar);
  check_view(v);
  return v;
}

TileForwardFn select_tile_forward(const MLPView& v, CpuIsa isa) {
  if (v.bf16 && !(isa == CpuIsa::kAvx512 && cpu_has_avx512_bf16()))
    throw std::invalid_argument(
        "bf16-packed weights run on the avx512 kernels of a CPU with AVX512-BF16 only; elsewhere "
        "the launcher (mbrl_fast/ops/_cpu.py) passes them unpacked to fp32");
#if defined(MBRL_FAST_X86)
  if (isa == CpuIsa::kAvx512) return forward_tile_avx512;
  if (isa == CpuIsa::kAvx2) return forward_tile_avx2;
#endif
  return forward_tile_portable;
}

void ensemble_mlp_forward(const MLPView& v, const float* x, int64_t batch, float* out,
                          float* out_logvar, CpuIsa isa) {
  check_view(v);
  const TileForwardFn forward = select_tile_forward(v, isa);
  const int64_t d0 = v.in_features(), dl = v.out_features();
  const int64_t tiles = (batch + kTileRows - 1) / kTileRows;
  const int64_t tasks = v.num_members * tiles;
  const bool split = v.gaussian();
  const int head = split ? kHeadLogvar : kHeadRaw;
  const int threads = team_size(tasks, v.macs_per_row() * static_cast<double>(v.num_members * batch));
#pragma omp parallel num_threads(threads)
  {
    TileWorkspace ws(v);
    std::vector<float> y(kTileRows * dl);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t e = task / tiles, r0 = (task % tiles) * kTileRows;
      const int64_t rows = std::min(kTileRows, batch - r0);
      const int64_t row0 = e * batch + r0;  // first row in [E * B]
      if (!split) {
        forward(v, e, rows, x + row0 * d0, d0, out + row0 * dl, head, ws);
        continue;
      }
      forward(v, e, rows, x + row0 * d0, d0, y.data(), head, ws);
      const int64_t half = dl / 2;
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(y.data() + r * dl, half, out + (row0 + r) * half);
        std::copy_n(y.data() + r * dl + half, half, out_logvar + (row0 + r) * half);
      }
    }
  }
}

}  // namespace mbrl_fast::cpu
