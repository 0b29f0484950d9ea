// Training forward and backward of stacked MLPs (math and shapes: mbrl_fast/nn/dense.py,
// whose torch path is the specification): E members, each
//
//     h_0 = x[e] (or x shared by all members),  pre_l = h_{l-1} W_l[e] + b_l[e],
//     h_l = act(pre_l) (l < L),  y[e] = pre_L,
//
// with the products on fp32 or bf16 operands (fp32 accumulation). The GEMMs are the
// imagination op's microkernels (imagine.cpp portable, imagine_avx512.cpp AVX-512 /
// AVX512-BF16); the algorithm is mlp_train_impl.h, compiled once per ISA with them.
//
// Work split: the forward and the backward's chain of input gradients run over tasks
// (member, tile of rows); the weight gradients run afterwards over tasks (member, layer,
// panel of output columns), each one GEMM over all the rows that train the weights, so
// every dW element is written by one task in a fixed order: deterministic for any thread
// count.
#pragma once
#include <cstdint>
#include <vector>

namespace mbrl_fast::cpu {

constexpr int kMtMaxLayers = 16;

struct MlpTrainArgs {
  int64_t members = 0, batch = 0;   // E, B
  int64_t grad_rows = 0;            // rows [0, grad_rows) train the weights (<= B)
  int num_layers = 0;               // L
  int64_t sizes[kMtMaxLayers + 1] = {};
  int activation = 0;               // ImagineActivation (elu, silu, relu, tanh)
  bool bf16 = false, shared_x = false;
  const float* x = nullptr;         // [E, B, d_0], or [B, d_0] when shared_x
  const float* w[kMtMaxLayers] = {};   // [E, d_{l-1}, d_l]
  const float* b[kMtMaxLayers] = {};   // [E, d_l]
  float* y = nullptr;               // [E, B, d_L]
  // per hidden layer l < L - 1: [E, B, d_{l+1}] each, written by the forward, read by the
  // backward (the launcher keeps them between the two): `pre` the pre-activations (SiLU:
  // their sigmoid, what its derivative needs; ReLU: not written, the GEMM applies it as it
  // stores post), `post` the activations
  float* pre[kMtMaxLayers] = {};
  float* post[kMtMaxLayers] = {};
  // backward
  const float* dy = nullptr;        // [E, B, d_L]
  float* dpre[kMtMaxLayers] = {};   // scratch, per hidden layer: gradient of pre [E, B, d]
  float* dw[kMtMaxLayers] = {};     // [E, d_{l-1}, d_l] (nullptr: not requested)
  float* db[kMtMaxLayers] = {};     // [E, d_l]
  float* dx = nullptr;              // [E, B, d_0] per member (nullptr: not requested)
};

// Per-call layouts of the weights, made by the kernels (mlp_train_impl.h) into buffers the
// entry point allocates: per layer, members one after another (stride elements apart).
struct MlpTrainPacked {
  float* wpan[kMtMaxLayers] = {};     // fp32 W in column panels [ceil(d_l / P), d_{l-1}, P]
  float* wtpan[kMtMaxLayers] = {};    // fp32 W^T in panels [ceil(d_{l-1} / P), d_l, P]
  uint32_t* wp[kMtMaxLayers] = {};    // bf16 pairs of W along d_{l-1}: [ceil(d_l / P), ceil(d_{l-1} / 2), P]
  uint32_t* wtp[kMtMaxLayers] = {};   // bf16 pairs of W^T along d_l: [ceil(d_{l-1} / P), ceil(d_l / 2), P]
  int64_t stride[kMtMaxLayers] = {};  // elements per member of whichever of the four is used
  // bf16 backward: the weight gradients' operands in pairs along the rows, per layer
  // [E, ceil(grad_rows / 2), d_{l-1}] (the layer's input) and [E, ceil(grad_rows / 2), d_l] (G_l)
  uint32_t* hpairs[kMtMaxLayers] = {};
  uint32_t* gpairs[kMtMaxLayers] = {};
};

// Elements of each buffer of MlpTrainPacked for these sizes (index: layer), and the words of
// one thread's workspace.
void mlp_train_sizes(const MlpTrainArgs& a, bool backward, int64_t* pack, int64_t* hpairs,
                     int64_t* gpairs, int64_t* work_words);

// Flat arguments (mbrl_fast/nn/dense.py's launcher): dims E, B, grad_rows; sizes [L + 1];
// w, b, dw, db [L]; pre, post, dpre [L - 1]; x, y, dy, dx (0 = none). `backward` false:
// the forward (y, pre, post); true: the backward (dpre, dw, db, dx) from the saved pre / post.
// isa: ImagineIsa request (falls back to portable where the CPU lacks it); threads >= 1.
void mlp_train_call(bool backward, const std::vector<int64_t>& dims,
                    const std::vector<int64_t>& sizes, int activation, bool bf16, bool shared_x,
                    const std::vector<uintptr_t>& w, const std::vector<uintptr_t>& b,
                    const std::vector<uintptr_t>& dw, const std::vector<uintptr_t>& db,
                    const std::vector<uintptr_t>& pre, const std::vector<uintptr_t>& post,
                    const std::vector<uintptr_t>& dpre, uintptr_t x, uintptr_t y, uintptr_t dy,
                    uintptr_t dx, int isa, int threads);

}  // namespace mbrl_fast::cpu
