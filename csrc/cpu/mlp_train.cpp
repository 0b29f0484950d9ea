// Entry point of the training MLP op (mlp_train.h): checks the flat arguments, allocates the
// per-call weight layouts, picks the kernels. The kernels are mlp_train_impl.h, compiled in
// imagine.cpp (portable) and imagine_avx512.cpp (AVX-512 / AVX512-BF16).
#include "cpu/mlp_train.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cpu/imagine.h"
#include "cpu/mlp_tile.h"  // kParallelMinMacs

namespace mbrl_fast::cpu {

void mlp_train_run_portable(const MlpTrainArgs& a, const MlpTrainPacked& p, bool backward,
                            int64_t R, int threads, uint32_t* work, int64_t work_words);
#if defined(MBRL_FAST_X86)
void mlp_train_run_avx512(const MlpTrainArgs& a, const MlpTrainPacked& p, bool backward,
                          int64_t R, int threads, uint32_t* work, int64_t work_words);
#endif

namespace {

// Rows per tile of the forward and of the input-gradient chain: a tile's activations (128 x 256
// floats, 128 KB) stay in L2 (1 MB on a Zen 4) next to the weight panel the GEMM streams. 64
// and 256 rows were within the noise of 128 on MBPO's model step and SAC's update (Zen 4).
constexpr int64_t kTrainTileRows = 128;

int64_t panels_of(int64_t n) { return (n + kImPanel - 1) / kImPanel; }
int64_t half_up(int64_t n) { return (n + 1) / 2; }

}  // namespace

void mlp_train_sizes(const MlpTrainArgs& a, bool backward, int64_t* pack, int64_t* hpairs,
                     int64_t* gpairs, int64_t* work_words) {
  int64_t width = 0;
  for (int l = 0; l < a.num_layers; ++l) {
    const int64_t di = a.sizes[l], dout = a.sizes[l + 1];
    width = std::max({width, di, dout});
    if (!backward) pack[l] = panels_of(dout) * (a.bf16 ? half_up(di) : di) * kImPanel;
    else pack[l] = panels_of(di) * (a.bf16 ? half_up(dout) : dout) * kImPanel;
    const bool pairs = backward && a.bf16 && a.dw[l];
    hpairs[l] = pairs ? a.members * half_up(a.grad_rows) * di : 0;
    gpairs[l] = pairs ? a.members * half_up(a.grad_rows) * dout : 0;
  }
  *work_words = kTrainTileRows * half_up(width) + 16;
}

void mlp_train_call(bool backward, const std::vector<int64_t>& dims,
                    const std::vector<int64_t>& sizes, int activation, bool bf16, bool shared_x,
                    const std::vector<uintptr_t>& w, const std::vector<uintptr_t>& b,
                    const std::vector<uintptr_t>& dw, const std::vector<uintptr_t>& db,
                    const std::vector<uintptr_t>& pre, const std::vector<uintptr_t>& post,
                    const std::vector<uintptr_t>& dpre, uintptr_t x, uintptr_t y, uintptr_t dy,
                    uintptr_t dx, int isa, int threads) {
  const int L = static_cast<int>(sizes.size()) - 1;
  auto fail = [](const std::string& m) { throw std::invalid_argument("mlp_train: " + m); };
  if (dims.size() != 3) fail("dims must be (members, batch, grad_rows)");
  if (L < 1 || L > kMtMaxLayers)
    fail("needs 1 to " + std::to_string(kMtMaxLayers) + " layers, got " + std::to_string(L));
  const size_t nl = static_cast<size_t>(L), nh = nl - 1;
  if (w.size() != nl || b.size() != nl || dw.size() != nl || db.size() != nl || pre.size() != nh ||
      post.size() != nh || dpre.size() != nh)
    fail("w, b, dw, db need one address per layer and pre, post, dpre one per hidden layer");
  if (activation < kImElu || activation > kImTanh) fail("unknown activation id");
  MlpTrainArgs a;
  a.members = dims[0], a.batch = dims[1], a.grad_rows = dims[2];
  if (a.members < 1 || a.batch < 1 || a.grad_rows < 0 || a.grad_rows > a.batch)
    fail("needs members >= 1, batch >= 1 and 0 <= grad_rows <= batch");
  a.num_layers = L;
  a.activation = activation;
  a.bf16 = bf16;
  a.shared_x = shared_x;
  auto f = [](uintptr_t v) { return reinterpret_cast<float*>(v); };
  for (int l = 0; l <= L; ++l) {
    if (sizes[l] < 1) fail("layer sizes must be >= 1");
    a.sizes[l] = sizes[l];
  }
  for (int l = 0; l < L; ++l) {
    a.w[l] = f(w[l]), a.b[l] = f(b[l]), a.dw[l] = f(dw[l]), a.db[l] = f(db[l]);
    if (!a.w[l] || !a.b[l]) fail("every layer needs its weight and bias");
    if (!a.dw[l] != !a.db[l]) fail("a layer's dw and db are requested together");
    if (l + 1 < L) {
      a.pre[l] = f(pre[l]), a.post[l] = f(post[l]), a.dpre[l] = f(dpre[l]);
      if (!a.pre[l] || !a.post[l] || (backward && !a.dpre[l]))
        fail("every hidden layer needs its pre / post buffers (and dpre in the backward)");
    }
  }
  a.x = f(x), a.y = f(y), a.dy = f(dy), a.dx = f(dx);
  if (!a.x || (!backward && !a.y) || (backward && !a.dy)) fail("x, y (forward), dy (backward) are needed");

  int64_t pack_n[kMtMaxLayers], hp_n[kMtMaxLayers], gp_n[kMtMaxLayers], work_words = 0;
  mlp_train_sizes(a, backward, pack_n, hp_n, gp_n, &work_words);
  // The per-call layouts live in this thread's workspace, grown as needed and kept for the
  // next call: a fresh allocation per call is fresh pages (page faults) under glibc's default
  // malloc, ~10% of a SAC update's time (bench/sac_update.py without keep_freed_memory).
  int64_t floats = 0, words = 0;
  for (int l = 0; l < L; ++l) {
    if (!backward || l > 0 || a.dx) (bf16 ? words : floats) += a.members * pack_n[l];
    words += hp_n[l] + gp_n[l];
  }
  const int team = std::max(1, threads);
  thread_local std::vector<float> fspace;
  thread_local std::vector<uint32_t> uspace;
  if (static_cast<int64_t>(fspace.size()) < floats) fspace.resize(floats);
  if (static_cast<int64_t>(uspace.size()) < words + team * work_words) uspace.resize(words + team * work_words);
  float* fnext = fspace.data();
  uint32_t* unext = uspace.data();
  MlpTrainPacked p;
  for (int l = 0; l < L; ++l) {
    p.stride[l] = pack_n[l];
    if (backward && l == 0 && !a.dx) continue;
    if (bf16) {
      (backward ? p.wtp[l] : p.wp[l]) = unext;
      unext += a.members * pack_n[l];
    } else {
      (backward ? p.wtpan[l] : p.wpan[l]) = fnext;
      fnext += a.members * pack_n[l];
    }
  }
  for (int l = 0; l < L; ++l) {
    if (hp_n[l] == 0) continue;
    p.hpairs[l] = unext;
    p.gpairs[l] = unext + hp_n[l];
    unext += hp_n[l] + gp_n[l];
  }
  double macs = 0;
  for (int l = 0; l < L; ++l) macs += static_cast<double>(a.sizes[l]) * a.sizes[l + 1];
  macs *= static_cast<double>(a.members) * a.batch * (backward ? 2 : 1);
  const int used = macs < kParallelMinMacs ? 1 : team;
#if defined(MBRL_FAST_X86)
  if (imagine_resolve_isa(isa, bf16) == kImAvx512) {
    mlp_train_run_avx512(a, p, backward, kTrainTileRows, used, unext, work_words);
    return;
  }
#endif
  mlp_train_run_portable(a, p, backward, kTrainTileRows, used, unext, work_words);
}

}  // namespace mbrl_fast::cpu
