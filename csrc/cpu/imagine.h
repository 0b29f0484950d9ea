// Dreamer's imagination rollout on the CPU, forward and backward (math and shapes:
// mbrl_fast/ops/imagine.py). One descriptor, ImagineArgs, for both entry points; the
// launcher (mbrl_fast/ops/_cpu_imagine.py) fills it from validated contiguous tensors.
//
// Work split: tiles of rows (start states) run through all H steps independently, one
// tile per OpenMP iteration (static schedule). A forward that will be differentiated writes
// each step's activations to `saved`; the backward walks the steps of a tile in reverse and
// reads them. Weight gradients accumulate per thread and are summed at the end (fixed
// order: deterministic for a fixed thread count; the sum order, and so the last bits,
// change with the thread count).
#pragma once
#include <cstdint>
#include <vector>

namespace mbrl_fast::cpu {

enum ImagineActivation : int { kImElu = 0, kImSilu = 1, kImRelu = 2, kImTanh = 3 };  // ops ACTIVATIONS
enum ImagineStoch : int { kImGaussian = 0, kImCategorical = 1 };
// Kernel ISA of this op (the launcher's MBRL_FAST_CPU_KERNELS choice). No AVX2-specific
// kernels yet: kImAvx2 runs the portable ones.
enum ImagineIsa : int { kImPortable = 0, kImAvx2 = 1, kImAvx512 = 2 };

constexpr int kImMaxLayers = 8;  // per MLP (the launcher checks)
constexpr int64_t kImPanel = 48;  // GEMM column block: 3 AVX-512 vectors

// One dense layer y = x @ w + b, plus what the dispatcher prepares per call.
struct ImagineLayer {
  int64_t in = 0, out = 0;
  const float* w = nullptr;  // [in, out]
  const float* b = nullptr;  // [out]
  float* dw = nullptr;       // [in, out] gradient output, nullptr: not requested
  float* db = nullptr;       // [out]
  // prepared by the dispatcher, in column panels of kImPanel outputs (the GEMMs stream one
  // contiguous panel per column block; the last panel zero-padded):
  const float* wpan = nullptr;     // w:   [ceil(out / P), in, P]
  const float* wtpan = nullptr;    // w^T: [ceil(in / P), out, P] (backward dX = dY w^T)
  const uint32_t* wp = nullptr;    // w in bf16 pairs along in:    [ceil(out / P), ceil(in / 2), P]
  const uint32_t* wtp = nullptr;   // w^T in bf16 pairs along out: [ceil(in / P), ceil(out / 2), P]
  int64_t grad_offset = -1;       // into a thread's gradient arena (dw then db), -1: none
};

struct ImagineArgs {
  int64_t batch = 0, horizon = 0;          // B, H
  int64_t deter = 0, stoch = 0, act = 0;   // D, S, A
  int64_t hidden = 0, classes = 0;         // Hi, C (categorical; S = G C)
  int stoch_kind = kImGaussian, activation = kImElu;
  float unimix = 0.01f, z_min_std = 0.1f, act_min_std = 0.1f, act_max_std = 1.f,
        act_mean_scale = 5.f;
  bool bf16 = false;

  // layers: [img_in, gru, prior..., actor..., head 0..., head 1..., ...]
  ImagineLayer* layers = nullptr;
  int num_layers = 0;
  int prior_first = 2, prior_count = 0, actor_first = 0, actor_count = 0;
  int num_heads = 0;
  int detached_heads = 0;  // the last k heads: weight gradients only (stop-gradient input)
  const int* head_first = nullptr;  // [num_heads]
  const int* head_count = nullptr;  // [num_heads]

  const float* start_h = nullptr;  // [B, D]
  const float* start_z = nullptr;  // [B, S]
  const float* eps = nullptr;      // [H, B, A] actor noise, N(0, 1)
  const float* noise_z = nullptr;  // [H, B, S] normals (gaussian) or [H, B, G] uniforms

  // forward outputs; the backward reads h and z (and `saved` for the rest)
  float* h = nullptr;        // [H+1, B, D]
  float* z = nullptr;        // [H+1, B, S]
  float* action = nullptr;   // [H, B, A]
  float* mean = nullptr;     // [H, B, A]
  float* stdev = nullptr;    // [H, B, A]
  float* const* heads = nullptr;  // [num_heads] of [H+1, B, out_k]

  // backward: gradients of the outputs (nullptr: zero) and of the start states (nullptr:
  // not requested); weight gradients go to layers[i].dw / db
  const float* dh = nullptr;       // [H+1, B, D]
  const float* dz = nullptr;       // [H+1, B, S]
  const float* daction = nullptr;  // [H, B, A]
  const float* dmean = nullptr;    // [H, B, A]
  const float* dstd = nullptr;     // [H, B, A]
  const float* const* dheads = nullptr;  // [num_heads] of [H+1, B, out_k] or nullptr
  float* d_start_h = nullptr;      // [B, D]
  float* d_start_z = nullptr;      // [B, S]

  // Every step's activations, [H+1, tiles, step_floats] (imagine_saved_floats): written by
  // a forward that will be differentiated, read by the backward (nullptr: not kept).
  float* saved = nullptr;
};

// Entry points (imagine.cpp): prepare the per-call weight layouts, pick the kernels for
// `isa` (falling back to portable where the CPU lacks it), run. `tile_rows` <= 0: default.
void imagine_forward(ImagineArgs& args, int isa, int64_t tile_rows);
void imagine_backward(ImagineArgs& args, int isa, int64_t tile_rows);

// The launcher's flat arguments (mbrl_fast/ops/_cpu_imagine.py builds them in this order):
//   dims    B, H, D, S, A, Hi, C
//   consts  unimix, z_min_std, act_min_std, act_max_std, act_mean_scale
//   layers  in, out, w, b, dw, db per layer (addresses, 0 = none), in the order of
//           ImagineArgs::layers; counts: prior, actor, then one per head, then the
//           number of detached heads
//   io      start_h, start_z, eps, noise_z, h, z, action, mean, std, dh, dz, daction,
//           dmean, dstd, d_start_h, d_start_z (0 = none)
//   heads, dheads: per head; saved: ImagineArgs::saved (0: not kept) and its size in floats
//   (std::invalid_argument when smaller than imagine_saved_floats)
void imagine_call(bool backward, const std::vector<int64_t>& dims, int stoch_kind, int activation,
                  const std::vector<double>& consts, bool bf16,
                  const std::vector<int64_t>& layer_in, const std::vector<int64_t>& layer_out,
                  const std::vector<uintptr_t>& layer_w, const std::vector<uintptr_t>& layer_b,
                  const std::vector<uintptr_t>& layer_dw, const std::vector<uintptr_t>& layer_db,
                  const std::vector<int>& counts, const std::vector<uintptr_t>& io,
                  const std::vector<uintptr_t>& heads, const std::vector<uintptr_t>& dheads,
                  uintptr_t saved, int64_t saved_floats, int isa, int64_t tile_rows);

// Floats of ImagineArgs::saved for these sizes (same flat arguments as imagine_call).
int64_t imagine_saved_floats(const std::vector<int64_t>& dims, int stoch_kind, int activation,
                             const std::vector<int64_t>& layer_in,
                             const std::vector<int64_t>& layer_out, const std::vector<int>& counts,
                             int64_t tile_rows);

// Which ISA the op actually runs for a request (kImAvx512 needs AVX-512, and AVX512-BF16
// when args.bf16).
int imagine_resolve_isa(int isa, bool bf16);

}  // namespace mbrl_fast::cpu
