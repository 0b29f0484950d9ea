// One tile of rows through every layer of one ensemble member: the unit of work
// shared by ensemble_mlp and propagate. Three implementations with one signature:
// mlp_kernels_avx512.cpp (register-blocked AVX-512 / AVX512-BF16 microkernels),
// mlp_kernels_avx2.cpp (register-blocked AVX2 + FMA) and mlp_kernels_portable.cpp
// (standard C++ the compiler vectorizes), chosen at run time by select_tile_forward.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

#include "cpu/ensemble_mlp.h"

namespace mbrl_fast::cpu {

// Rows per tile: a tile's activations (96 x 200 fp32 = 75 KB per buffer) stay in L2
// next to one member's weights (528 KB fp32 for 24-200x4-36) on a 1 MB-L2 core.
constexpr int64_t kTileRows = 96;
// Tiles are computed in multiples of 4 rows (the shortest microkernel); rows past `rows`
// are scratch and never read back. The taller microkernels (6, 8, 12 rows) run where
// the padded row count is a multiple of their height: full tiles (96) and most tails.
// Padding a 1-row call to 24 rows made a batch-1 forward 24x the work.
constexpr int64_t kRowQuantum = 4;

inline int64_t padded_rows(int64_t rows) { return (rows + kRowQuantum - 1) / kRowQuantum * kRowQuantum; }

// Weight panels are copied contiguous before use when the weight rows are a multiple of
// 256 bytes apart (out % 64 == 0, the common power-of-two widths) and the tile has rows
// enough to pay for the copy: read in place, the K rows of a panel then fall in a few
// L1 / L2 sets and evict each other (a 1024-wide layer ran 6x slower than torch at
// batch 64).
inline bool pack_panels(int64_t out, int64_t rows_pad) { return out % 64 == 0 && rows_pad >= 32; }

// Threads for `tasks` independent units of work of `macs` multiply-adds in all: one below
// kParallelMinMacs (~20 us of work: forking a team costs more than it saves, and on a
// loaded machine a descheduled team member stalls the join for a whole time slice),
// else up to one per task.
constexpr double kParallelMinMacs = 2e6;
inline int team_size(int64_t tasks, double macs) {
  if (macs < kParallelMinMacs || tasks < 2) return 1;
  return static_cast<int>(std::min<int64_t>(tasks, omp_get_max_threads()));
}

// What the tile writes for the last layer's output y = [y_a, y_b] (Gaussian head only).
enum HeadMode : int {
  kHeadRaw = 0,     // y as is (also: no Gaussian head)
  kHeadLogvar = 1,  // [mean, soft-bounded logvar]
  kHeadStd = 2,     // [mean, exp(logvar / 2)]
};

// Per-thread scratch, zero-initialized (scratch rows must hold finite values).
struct TileWorkspace {
  explicit TileWorkspace(const MLPView& v) {
    int64_t w = 0;
    for (int l = 0; l <= v.num_layers; ++l) w = std::max(w, v.sizes[l]);
    width = (w + 31) / 32 * 32;
    f0.assign(kTileRows * width, 0.f);
    f1.assign(kTileRows * width, 0.f);
    h0.assign(kTileRows * width, 0);
    h1.assign(kTileRows * width, 0);
    // A packed weight panel: K x up to 96 outputs (pack_panels, or a partial last block).
    panel.resize(width * 96);
    if (!v.gaussian()) return;
    // The Gaussian head's bounds at the output columns they apply to, for epilogues that
    // apply the head to whole vectors of outputs: column j >= d_L / 2 is a log-variance
    // (head_sel[j] = -1) bounded by max/min_logvar[j - d_L / 2].
    const int64_t dl = v.out_features(), half = dl / 2, padded = (dl + 15) / 16 * 16;
    head_max.assign(padded, 0.f);
    head_min.assign(padded, 0.f);
    head_sel.assign(padded, 0);
    for (int64_t j = half; j < dl; ++j) {
      head_max[j] = v.max_logvar[j - half];
      head_min[j] = v.min_logvar[j - half];
      head_sel[j] = -1;
    }
  }
  int64_t width;               // max layer width, padded to 32
  std::vector<float> f0, f1;   // [kTileRows, width] fp32 activations
  std::vector<uint16_t> h0, h1;  // [kTileRows, width] bf16 layer inputs (bf16 weights)
  std::vector<float> panel;      // a packed weight panel (pack_panels), or empty
  std::vector<float> head_max, head_min;  // [d_L padded to 16] (Gaussian head only)
  std::vector<int32_t> head_sel;          // [d_L padded to 16] -1: a log-variance column
};

// in [rows, d_0] (row stride ld_in) -> out [rows, d_L] dense, member e; rows <= kTileRows.
using TileForwardFn = void (*)(const MLPView& v, int64_t e, int64_t rows, const float* in,
                               int64_t ld_in, float* out, int head, TileWorkspace& ws);

void forward_tile_portable(const MLPView& v, int64_t e, int64_t rows, const float* in,
                           int64_t ld_in, float* out, int head, TileWorkspace& ws);
// Test / measurement hook (_C.set_portable_baseline_only): the portable path runs its
// x86-64 baseline build even where the CPU has AVX.
extern std::atomic<bool> g_portable_baseline_only;
#if defined(MBRL_FAST_X86)
void forward_tile_avx512(const MLPView& v, int64_t e, int64_t rows, const float* in,
                         int64_t ld_in, float* out, int head, TileWorkspace& ws);
void forward_tile_avx2(const MLPView& v, int64_t e, int64_t rows, const float* in,
                       int64_t ld_in, float* out, int head, TileWorkspace& ws);
#endif

// The tile of ISA path `isa` (validated by checked_isa); bf16-packed weights need
// kAvx512 on a CPU with AVX512-BF16 (throws std::invalid_argument otherwise).
TileForwardFn select_tile_forward(const MLPView& v, CpuIsa isa);

}  // namespace mbrl_fast::cpu
